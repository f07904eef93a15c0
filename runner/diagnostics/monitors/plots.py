"""The monitor's figures, drawn from the recorded arrays (drawing only: nothing here measures or judges).
Matplotlib is imported when a figure is first drawn, so that importing the monitors stays cheap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runner.diagnostics.monitors._measure import HIST_EDGES

BAND_GAP = 1.6  # blank space between two layers' bands, in log10 units

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
    figure = _figure(6, 4, layout=None)
    axes = figure.add_axes((0.14, 0.12, 0.82, 0.8))  # fixed margins: constrained layout cost 0.3 s a figure
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
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    # One Axes holding a band per layer, not one Axes per layer: Matplotlib's cost is mostly per Axes (each
    # makes and measures its own ticks), and the bands made the monitors' figures cost seconds a run.
    low, high = HIST_EDGES[0] - 0.4, HIST_EDGES[-1]  # the zeros' bin sits below the first edge
    band = high - low + BAND_GAP
    height = 0.9 * len(layers) + 1.2
    figure = _figure(7, height, layout=None)
    axes = figure.add_axes((0.25, 0.6 / height, 0.55, 1 - 1.1 / height))
    norm = LogNorm(vmin=1e-5, vmax=1.0)
    ticks, tick_labels = [], []
    names_at = blended_transform_factory(axes.transAxes, axes.transData)
    for row, (layer, counts) in enumerate(layers.items()):
        counts = np.asarray(counts, dtype=float)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        base = (len(layers) - 1 - row) * band  # the first layer on top, as in the model
        # A log colour scale: one dominant bin (often the zeros) would otherwise hide the rest.
        image = axes.imshow(
            np.maximum(shares.T, 1e-5),
            aspect="auto",
            origin="lower",
            cmap="viridis",
            norm=norm,
            interpolation="nearest",
            extent=(epochs[0] - 0.5, epochs[len(counts) - 1] + 0.5, base + low, base + high),
        )
        ticks += [base - 10, base - 5, base]
        tick_labels += ["-10", "-5", "0"]
        axes.text(-0.08, base + (low + high) / 2, layer, transform=names_at, ha="right", va="center", fontsize="small")
    axes.set_ylim(low, (len(layers) - 1) * band + high)
    axes.set_yticks(ticks, tick_labels, fontsize="x-small")
    axes.set_xlim(epochs[0] - 0.5, max(epochs) + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    bar = figure.colorbar(image, cax=figure.add_axes((0.83, 0.6 / height, 0.025, 1 - 1.1 / height)))
    bar.set_label("share of values")
    bar.minorticks_off()
    bar.set_ticks([10.0**power for power in range(-5, 1)])
    _plain_log_labels(bar.ax.yaxis)
    axes.set_title(f"{kind.capitalize()}: share of values per log10|x| bin", fontsize="medium")
    axes.set_xlabel("epoch (0 = before training); a layer's lowest bin: exact zeros", fontsize="small")
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
