"""The analysis stage's figures, drawn from arrays the checks measured.

Each function takes the options (for the output folder) and the measured values, writes one PNG through
``runner.diagnostics.figures`` and returns its name relative to the output folder (``[]`` when the options
have no output folder, or when there is nothing to draw).
"""

from __future__ import annotations

import numpy as np

from runner.diagnostics import figures


def activation_heatmap(options, layer_name: str, values, labels, bidirectional: bool) -> list[str]:
    """Units x probe samples (dense outputs, samples grouped by label; a Conv2D channel by its mean over the
    image) or units x time steps of the first probe sample (recurrent outputs, ``values`` of shape (samples,
    steps, units))."""
    name = f"analysis/activations_{layer_name}.png"
    path = options.plot_path(name)
    if path is None:
        return []
    channels = values.ndim == 4
    if channels:
        values = values.mean(axis=(1, 2))
    if values.ndim == 3:
        # A Bidirectional output holds forward then backward units: a line between the two halves.
        split_line = (values.shape[-1] / 2 - 0.5,) if bidirectional else ()
        title = f"{layer_name}: units x time steps (sample label {labels[0]})"
        if split_line:
            title += "; forward units above the line, backward below"
        figures.heatmap(path, values[0].T, title, "time step", "unit", hlines=split_line)
    else:
        ticks = _group_ticks(labels)
        figures.heatmap(
            path,
            values.T,
            f"{layer_name}: {'channel means' if channels else 'units'} x probe samples (sorted by label)",
            "sample (label)",
            "unit",
            xticks=ticks,
        )
    return [name]


def _group_ticks(labels):
    """One tick per label group in the middle of its samples; none for continuous or many labels."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" or len(np.unique(labels)) > 20:
        return None
    values, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    return [list(starts + counts / 2.0), [str(v) for v in values]]


def attribution_figure(options, images, targets, probabilities, saliency, drops, shape) -> list[str]:
    """Per image one row: the input, its saliency map and its occlusion drops scaled up to the image."""
    name = "analysis/attributions.png"
    path = options.plot_path(name)
    if path is None:
        return []
    rows, titles = [], []
    for image, target, p, grad, drop in zip(images, targets, probabilities, saliency, drops):
        scale = shape[0] // drop.shape[0]
        rows.append(
            [
                image.reshape(shape),
                grad.reshape(shape[0], shape[1], -1).sum(axis=-1),
                np.kron(drop, np.ones((scale, scale))),
            ]
        )
        titles.append([f"label {target}, p={p:.2f}", "", f"max drop {drop.max():.2f}"])
    # A fixed, symmetric scale for the drop: white is "no change", red a loss of the true class's probability.
    figures.image_grid(
        path, rows, titles, ["input", "saliency", "occlusion (drop)"], ["gray", "hot", "bwr"], [None, None, (-1.0, 1.0)]
    )
    return [name]


def receptive_field_plot(options, magnitude, anchor, floor) -> list[str]:
    """The gradient magnitude per input step on a log scale, with the anchor step and the visibility floor."""
    name = "analysis/receptive_field.png"
    path = options.plot_path(name)
    if path is None:
        return []
    figures.line(
        path,
        np.arange(len(magnitude)),
        {"mean |d output / d input step|": np.maximum(magnitude, 1e-30)},
        "gradient of the output w.r.t. each input step",
        "input time step",
        "gradient magnitude",
        log_y=True,
        vlines=(anchor,),
        hlines=(floor,),
    )
    return [name]


def error_images(options, x, table, class_names, shape, name) -> list[str]:
    """The first rows of an error table as images (``shape``: their (height, width); None: not images)."""
    path = options.plot_path(name) if shape is not None and table else None
    if path is None:
        return []
    # An output with more units than named classes can predict a class that has no name: show its index.
    largest = max(max(row["label"], row["predicted"]) for row in table)
    names = list(class_names or []) + [str(k) for k in range(len(class_names or []), largest + 1)]
    shown = table[:8]
    figures.image_grid(
        path,
        [[x[row["index"]].reshape(shape)] for row in shown],
        [[f"{row['kind']}: {names[row['label']]}->{names[row['predicted']]} {row['score']:.3f}"] for row in shown],
        ["most confident errors"],
        ["gray"],
    )
    return [name]


def slice_plot(options, table, metric, name) -> list[str]:
    """One bar per slice: its error, labelled with its row count."""
    plot = "analysis/slices.png"
    path = options.plot_path(plot)
    if path is None:
        return []
    keys = list(table)
    figures.bars(
        path,
        keys,
        [table[k]["error"] for k in keys],
        f"{metric} per {name}",
        metric,
        [f"n={table[k]['rows']}" for k in keys],
    )
    return [plot]


def _picture(row, layout) -> np.ndarray:
    """An image row as matplotlib shows it: (H, W, 3) scaled to [0, 1] for three channels, else the mean of
    the channels as (H, W) (grey; imshow scales it)."""
    image = np.asarray(row, dtype="float64").reshape(layout)
    if layout[2] == 3:
        low, high = image.min(), image.max()
        return (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image.mean(axis=-1)


def _rows_of(cells: list, titles: list[str], width: int) -> tuple[list[list], list[list[str]]]:
    return (
        [cells[i : i + width] for i in range(0, len(cells), width)],
        [titles[i : i + width] for i in range(0, len(titles), width)],
    )


def gradcam_figure(options, images, maps, layout, titles) -> list[str]:
    """Each image with its Grad-CAM map (scaled to its own peak) drawn over it, four images a row."""
    name = "analysis/gradcam.png"
    path = options.plot_path(name)
    if path is None:
        return []
    peaks = maps.max(axis=(1, 2), keepdims=True)
    heats = np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1.0), 0.0)
    pictures = [_picture(image, layout) for image in images]
    figures.overlay_grid(path, pictures, list(heats), [f"Grad-CAM {t}" for t in titles], columns=4)
    return [name]


def conv_filter_grid(options, kernel, layer_name: str) -> list[str]:
    """The filters of a Conv2D kernel (height, width, in, out), each scaled to [0, 1] on its own: as colours
    when the layer reads three channels, else averaged over its input channels (grey)."""
    name = "analysis/conv_filters.png"
    path = options.plot_path(name)
    if path is None:
        return []
    cells = []
    for k in range(kernel.shape[-1]):
        weights = kernel[..., k] if kernel.shape[2] == 3 else kernel[..., k].mean(axis=2)
        low, high = weights.min(), weights.max()
        cells.append((weights - low) / (high - low) if high > low else np.zeros_like(weights))
    rows, titles = _rows_of(cells, [f"{layer_name} {k}" for k in range(len(cells))], 8)
    figures.image_grid(path, rows, titles, [], ["gray"], [(0.0, 1.0)] * 8)
    return [name]


def activation_maximisation_figure(options, grown, layout, layer_name, filters, classes, class_names) -> list[str]:
    """The grown inputs: one row for the last conv layer's filters, one for the class scores."""
    name = "analysis/activation_maximisation.png"
    path = options.plot_path(name)
    if path is None:
        return []
    names = list(class_names or [])
    pictures = [_picture(row, layout) for row in grown]
    rows = [pictures[: len(filters)], pictures[len(filters) :]]
    titles = [
        [f"{layer_name} filter {k}" for k in filters],
        [f"class {names[c] if c < len(names) else c}" for c in classes],
    ]
    figures.image_grid(path, [row for row in rows if row], [t for t in titles if t], [], ["gray"])
    return [name]
