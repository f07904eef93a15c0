"""analysis.attributions: which pixels an image classifier's decision rests on (information, no verdict)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import (
    STAGE,
    _class_probabilities,
    _evaluation_split,
    _flat_image_shape,
    _predict,
    _row_labels,
    _skip,
    _units_mismatch,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import input_gradients
from runner.diagnostics.introspect import SEQUENCE_LAYERS, has_layers, output_units
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, CheckResult

NAME = "analysis.attributions"
# Occlusion patches of 4x4 pixels: a 7x7 grid on a 28x28 digit, fine enough to tell which strokes matter, and
# still a 4x4 grid on the smallest image the check accepts (16x16).
PATCH = 4
# One image per class for at most this many classes: one figure row per image.
MAX_CLASSES = 10


def _image_shape(model, data, x):
    if not data.single_label or has_layers(model, SEQUENCE_LAYERS):
        return None
    return _flat_image_shape(x)


def _true_class_score(targets, units) -> Callable:
    """Per row, the model's output for the row's true class (one sigmoid unit: p or 1 - p)."""
    if units == 1:
        sign = (2.0 * targets - 1.0).astype("float32")
        offset = (1.0 - targets).astype("float32")
        return lambda out: keras.ops.reshape(out, (-1,)) * sign + offset
    chosen = np.eye(units, dtype="float32")[targets]
    return lambda out: keras.ops.sum(out * chosen, axis=-1)


def _occlusion_drops(model, images, targets, probabilities, shape, fill, patch=PATCH):
    """(images, grid rows, grid cols) drop of the true class's probability, all occlusions in one predict."""
    height, width = shape
    corners = [(r, c) for r in range(0, height - patch + 1, patch) for c in range(0, width - patch + 1, patch)]
    batch = np.repeat(images.reshape(len(images), height, width, -1), len(corners), axis=0)
    for index in range(len(batch)):
        r, c = corners[index % len(corners)]
        batch[index, r : r + patch, c : c + patch] = fill
    occluded = _class_probabilities(_predict(model, batch.reshape((len(batch),) + images.shape[1:])))
    occluded = occluded[np.arange(len(batch)), np.repeat(targets, len(corners))]
    grid = (len(range(0, height - patch + 1, patch)), len(range(0, width - patch + 1, patch)))
    return probabilities[:, None, None] - occluded.reshape((len(images),) + grid)


@check(
    NAME,
    threshold=None,
    fix="",
    what="saliency and occlusion maps of one held-out image per class; the value is the mean largest drop "
    f"of the true class's probability when a {PATCH}x{PATCH} patch is blanked (information only)",
)
def attributions(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Saliency (|d true-class probability / d pixel|) and occlusion sensitivity (drop of the true class's
    probability when a patch is blanked) on one image per class.  Information only: PASS with the mean
    largest occlusion drop as the value."""
    split, x, _ = _evaluation_split(data)
    shape = _image_shape(model, data, x)
    if shape is None:
        return _skip(
            NAME,
            "not an image classifier (needs 2-D inputs or a square number of at least 256 "
            "features, a single-label classification task and no recurrent layer)",
        )
    mismatch = _units_mismatch(model, data, x)
    if mismatch:
        return _skip(NAME, mismatch)
    if np.issubdtype(x.dtype, np.integer):
        return _skip(NAME, "the inputs are integers (tokens): the output has no gradient with respect to them")
    labels = _row_labels(data, split)
    rows = np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)[:MAX_CLASSES]])
    images, targets = x[rows].astype("float32"), labels[rows]
    probabilities = _class_probabilities(_predict(model, images))[np.arange(len(rows)), targets]
    saliency = np.abs(input_gradients(model, images, _true_class_score(targets, output_units(model, images))))
    fill = float(np.median(data.x_train))
    drops = _occlusion_drops(model, images, targets, probabilities, shape, fill)
    drawn = plots.attribution_figure(options, images, targets, probabilities, saliency, drops, shape)
    table = [
        {"index": int(r), "label": int(t), "probability": float(p), "max_occlusion_drop": float(d.max())}
        for r, t, p, d in zip(rows, targets, probabilities, drops)
    ]
    value = float(np.mean([d.max() for d in drops]))
    return CheckResult(
        NAME,
        PASS,
        value,
        None,
        f"saliency and occlusion maps for {len(rows)} {split} images (one per class); mean "
        f"largest drop of the true class's probability under a {PATCH}x{PATCH} patch: {value:.2f}",
        "",
        STAGE,
        {"images": table, "patch": PATCH, "fill": fill},
        drawn,
    )
