"""Plotting helpers shared by the diagnostics: headless matplotlib, one PNG per call.

Every helper takes the absolute path to write (``DiagnosticOptions.plot_path``) and returns nothing; callers
record the file name relative to the output folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def heatmap(
    path: Path,
    matrix: np.ndarray,
    title: str,
    xlabel: str,
    ylabel: str,
    hlines: tuple[float, ...] = (),
    xticks: tuple[list, list] | None = None,
) -> None:
    """``matrix`` rows are drawn top to bottom (units), columns left to right (samples or time steps)."""
    plt = pyplot()
    height = min(10.0, 2.0 + 0.02 * matrix.shape[0])
    fig, ax = plt.subplots(figsize=(9, height))
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis")
    for y in hlines:
        ax.axhline(y, color="white", linewidth=1.0)
    if xticks is not None:
        ax.set_xticks(*xticks)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax)
    save(fig, path)


def image_grid(
    path: Path,
    rows: list[list[np.ndarray]],
    titles: list[list[str]],
    column_names: list[str],
    cmaps: list[str],
    limits: list[tuple[float, float] | None] | None = None,
) -> None:
    """A grid of small images: one list per row, one colour map and optional (vmin, vmax) per column."""
    plt = pyplot()
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 1.9 * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                vmin, vmax = limits[c] if limits and limits[c] else (None, None)
                ax.imshow(row[c], cmap=cmaps[c % len(cmaps)], interpolation="nearest", vmin=vmin, vmax=vmax)
                ax.set_title(titles[r][c], fontsize=7)
    for c, name in enumerate(column_names):
        axes[0][c].set_title(f"{name}\n{titles[0][c]}", fontsize=7)
    save(fig, path)


def overlay_grid(
    path: Path, images: list[np.ndarray], heats: list[np.ndarray], titles: list[str], columns: int
) -> None:
    """Images (grey, or RGB in [0, 1]) with a heat map in [0, 1] drawn half-transparent over each."""
    plt = pyplot()
    n_rows = -(-len(images) // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(2.0 * columns, 2.1 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, heat, title in zip(axes.flat, images, heats, titles):
        ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.set_title(title, fontsize=7)
    save(fig, path)


def line(
    path: Path,
    x: np.ndarray,
    ys: dict[str, np.ndarray],
    title: str,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
    vlines: tuple[float, ...] = (),
    hlines: tuple[float, ...] = (),
) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, y in ys.items():
        ax.plot(x, y, label=label)
    for v in vlines:
        ax.axvline(v, color="grey", linestyle="--", linewidth=1.0)
    for h in hlines:
        ax.axhline(h, color="red", linestyle=":", linewidth=1.0)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(ys) > 1:
        ax.legend()
    save(fig, path)


def bars(
    path: Path,
    labels: list[str],
    values: list[float],
    title: str,
    ylabel: str,
    annotations: list[str] | None = None,
    reference: float | None = None,
) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(labels) + 2), 3.5))
    positions = np.arange(len(labels))
    ax.bar(positions, values, color="steelblue")
    ax.set_xticks(positions, labels)
    for position, value, note in zip(positions, values, annotations or [""] * len(labels)):
        ax.annotate(note, (position, value), ha="center", va="bottom", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="red", linestyle=":", linewidth=1.0)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    save(fig, path)


def histogram_grid(
    path: Path,
    grid: list[list[np.ndarray]],
    row_names: list[str],
    column_names: list[str],
    title: str,
    value_range: tuple[float, float] | None = None,
) -> None:
    """One histogram per cell (e.g. rows = weight inits, columns = layers)."""
    plt = pyplot()
    n_rows, n_cols = len(grid), len(grid[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 1.8 * n_rows), squeeze=False)
    for r, row in enumerate(grid):
        for c, values in enumerate(row):
            ax = axes[r][c]
            ax.hist(np.ravel(values), bins=40, range=value_range, color="steelblue")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(column_names[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_names[r], fontsize=8)
    fig.suptitle(title)
    save(fig, path)
