"""The monitor's figures, drawn from the recorded arrays (drawing only: nothing here measures or judges).
Matplotlib is imported when a figure is first drawn, so that importing the monitors stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runner.diagnostics.monitors._measure import HIST_EDGES

if TYPE_CHECKING:
    from runner.diagnostics.monitors.recording import Records


def write_plots(records: Records, output_dir: Path) -> list[str]:
    """Gradient norms per layer over epochs, and per kind a heat map (bins x epochs) per layer."""
    written = []
    if records.grad_norms:
        written.append(_plot_gradient_norms(records, output_dir, "monitor/gradient_norms.png"))
    for kind, layers in records.histograms.items():
        if layers:
            written.append(_plot_histograms(kind, layers, records.epochs, output_dir, f"monitor/{kind}_histograms.png"))
    return written


def _figure(width, height, layout="constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _plot_gradient_norms(records: Records, output_dir: Path, name: str) -> str:
    figure = _figure(6, 4)
    axes = figure.subplots()
    for layer, norms in records.grad_norms.items():
        axes.plot(records.epochs, np.maximum(norms, 1e-30), marker="o", label=layer)
    axes.set(
        yscale="log",
        xlabel="epoch (0 = before training)",
        ylabel="gradient norm (probe batch)",
        title="Per-layer gradient norms",
    )
    _plain_log_labels(axes.yaxis)
    axes.legend(fontsize="small")
    return _save(figure, output_dir, name)


def _plot_histograms(
    kind: str, layers: dict[str, list[np.ndarray]], epochs: list[int], output_dir: Path, name: str
) -> str:
    from matplotlib.colors import LogNorm

    height = 1.6 * len(layers) + 0.8
    # Fixed margins rather than constrained layout, which measures every tick label of every row again and
    # again: it took three quarters of the drawing time (about 1 s a figure on 2 cores).
    figure = _figure(7, height, layout=None)
    rows = figure.subplots(len(layers), 1, squeeze=False, sharex=True)[:, 0]
    figure.subplots_adjust(left=0.12, right=0.8, top=1 - 0.45 / height, bottom=0.55 / height, hspace=0.12)
    for axes, (layer, counts) in zip(rows, layers.items()):
        counts = np.asarray(counts, dtype=float)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        # A log colour scale: one dominant bin (often the zeros) would otherwise hide the rest.
        extent = (epochs[0] - 0.5, epochs[len(counts) - 1] + 0.5, HIST_EDGES[0] - 0.4, HIST_EDGES[-1])
        image = axes.imshow(
            np.maximum(shares.T, 1e-5),
            aspect="auto",
            origin="lower",
            cmap="viridis",
            norm=LogNorm(vmin=1e-5, vmax=1.0),
            extent=extent,
        )
        axes.set_yticks([-10, -5, 0])
        axes.set_ylabel(f"{layer}\nlog10|x|", fontsize="small")
    bar = figure.colorbar(image, cax=figure.add_axes((0.82, 0.55 / height, 0.025, 1 - 1.0 / height)))
    bar.set_label("share of values")
    bar.minorticks_off()
    bar.set_ticks([10.0**power for power in range(-5, 1)])
    _plain_log_labels(bar.ax.yaxis)
    rows[0].set_title(f"{kind.capitalize()}: share of values per log10|x| bin (bottom row: exact zeros)")
    rows[-1].set_xlabel("epoch (0 = before training)")
    return _save(figure, output_dir, name)


def _plain_log_labels(axis) -> None:
    """Labels such as 1e-05 instead of Matplotlib's mathtext powers of ten, whose parser takes most of a
    second on its first use in a process."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(figure, output_dir: Path, name: str) -> str:
    path = Path(output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return name
