"""What several analysis checks share: the split they judge, the rows they probe, the model's predictions on
them, and those predictions read as probabilities or labels."""

from __future__ import annotations

from math import isqrt

import numpy as np

from runner.diagnostics.context import DiagnosticData
from runner.diagnostics.introspect import conv2d_layers, output_shape, output_units
from runner.diagnostics.result import SKIP, CheckResult

STAGE = "analysis"
PREDICT_BATCH = 1024


def _skip(check, reason) -> CheckResult:
    return CheckResult(check, SKIP, None, None, f"skipped: {reason}", "", STAGE)


def _evaluation_split(data: DiagnosticData):
    """The held-out split the analyses judge: test, else validation, else train."""
    for name in ("test", "val", "train"):
        x, y = data.split(name)
        if x is not None and y is not None:
            return name, np.asarray(x), np.asarray(y)
    raise ValueError("DiagnosticData holds no split with both x and y")


def _row_labels(data, split):
    """One sortable label per row: the class, the first target column (regression) or, for multilabel
    rows, how many labels the row has."""
    y = np.asarray(data.split(split)[1])
    if data.task == "regression":
        return y.astype("float64").reshape(len(y), -1)[:, 0]
    if data.task == "multilabel":
        return (y.reshape(len(y), -1) > 0.5).sum(axis=1)
    return np.asarray(data.labels(split)).astype(int)


def _probe_rows(data, split, options, limit=None):
    """A fixed, seeded set of row indices, sorted by label so heat maps group the classes."""
    x, _ = data.split(split)
    count = min(len(x), options.probe_samples, limit or len(x))
    rows = np.sort(np.random.default_rng(options.seed).choice(len(x), count, replace=False))
    labels = _row_labels(data, split)[rows]
    return rows[np.argsort(labels, kind="stable")]


def _predict(model, x):
    return np.asarray(model.predict(np.asarray(x, dtype="float32"), batch_size=PREDICT_BATCH, verbose=0))


def _label_probabilities(outputs) -> np.ndarray:
    """(rows, labels) independent probabilities of a multilabel output; logits are squashed."""
    out = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    if out.min() < 0 or out.max() > 1:
        out = 1.0 / (1.0 + np.exp(-out))
    return out


def _class_probabilities(outputs) -> np.ndarray:
    """(rows, classes) probabilities; one sigmoid unit becomes two columns; logits are squashed."""
    out = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    if out.shape[1] == 1:
        p = out[:, 0]
        if p.min() < 0 or p.max() > 1:
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1.0 - p, p], axis=1)
    if out.min() < 0 or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return out


def _units_mismatch(model, data, x) -> str | None:
    """Why the output cannot be read as one probability per class (too few units), or None."""
    if not data.single_label:
        return None
    units = output_units(model, x)
    classes = max(data.n_classes, int(_row_labels(data, _evaluation_split(data)[0]).max()) + 1)
    if units == 1 and classes == 2:
        return None
    if units < classes:
        return f"the output has {units} unit{'s' * (units != 1)} but the labels have {classes} classes"
    return None


def _flat_image_shape(x):
    """(height, width) when the rows are single-channel images, also flattened square ones of 16x16 or
    more (MNIST rows); else None."""
    shape = x.shape[1:]
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1):
        return tuple(shape[:2])
    side = isqrt(shape[0]) if len(shape) == 1 else 0
    return (side, side) if side >= 16 and side * side == shape[0] else None


def _image_layout(x) -> tuple[int, int, int] | None:
    """(height, width, channels) of image rows: (H, W), (H, W, C), or flattened square single-channel rows
    as ``_flat_image_shape`` reads them (MNIST rows a model reshapes itself); else None."""
    shape = x.shape[1:]
    if len(shape) in (2, 3):
        return int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1
    flat = _flat_image_shape(x)
    return (*flat, 1) if flat else None


def _conv_image(model, x):
    """((height, width, channels), the model's Conv2D layers) for a convolutional model of images, or
    (None, why the image analyses do not apply)."""
    layout = _image_layout(x)
    if layout is None:
        return None, "the inputs are not images ((H, W) or (H, W, C) rows, or flattened squares of 16x16 or more)"
    if np.issubdtype(x.dtype, np.integer):
        return None, "the inputs are integers (tokens): the output has no gradient with respect to them"
    convs = conv2d_layers(model)
    if not convs:
        return None, "the model has no Conv2D layer of its own (channels-last)"
    if len(output_shape(model, x)) != 2:
        return None, "the output is not one vector per image"
    return (layout, convs), None
