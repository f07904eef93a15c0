"""analysis.gradcam_focus: where in the image a convolutional network finds the evidence for its prediction
(Grad-CAM on the last Conv2D layer), and how much of it lies on the image border (information, no verdict)."""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import (
    STAGE,
    _class_probabilities,
    _conv_image,
    _evaluation_split,
    _predict,
    _probe_rows,
    _row_labels,
    _skip,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import activation_gradients
from runner.diagnostics.introspect import logits_tap
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, CheckResult

NAME = "analysis.gradcam_focus"
# A seeded grid of this many held-out images: one gradient pass, a figure of two rows.
IMAGES = 8
# The border band is the outer eighth of each side: 44% of a 16x16 image's area, 49% of a 28x28 one's (the
# band is rounded to whole pixels).  Heat spread evenly puts about that share there; an object in the middle,
# far less; evidence on a half of the image (left vs right), about as much as the band's area.
BAND = 1 / 8
# No verdict: the heat is only as sharp as the last conv layer's grid (5x5 for a 16x16 input through two 3x3
# convolutions and a pooling).  Models that read nothing but a 2-pixel frame scored 0.35-0.64 on the border
# share (4 seeds, TensorFlow and JAX), a healthy one on bright-left vs bright-right images 0.54: any
# threshold would either miss the frame or cry wolf on objects that fill the image.
# A map whose spread is below this share of its peak (or that is zero: no feature speaks for the class) has
# no location, so it takes no part in the border share.
FLAT = 1e-6


def score_weights(data: DiagnosticData, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, units) weights whose product with the logits is each row's predicted-class score, and the
    predicted classes.  One sigmoid unit: +logit for class 1, -logit for class 0; regression: the output."""
    flat = np.asarray(outputs).reshape(len(outputs), -1)
    if flat.shape[1] == 1:
        positive = _class_probabilities(flat)[:, 1] >= 0.5 if data.single_label else np.ones(len(flat), bool)
        return np.where(positive, 1.0, -1.0).astype("float32")[:, None], positive.astype(int)
    classes = _class_probabilities(flat).argmax(axis=1) if data.single_label else flat.argmax(axis=1)
    return np.eye(flat.shape[1], dtype="float32")[classes], classes


def resize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear scaling of a (rows, cols) map to ``size``, pixel centres aligned."""
    grid = [np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1) for old, new in zip(cam.shape, size)]
    tall = np.stack([np.interp(grid[0], np.arange(cam.shape[0]), column) for column in cam.T], axis=1)
    return np.stack([np.interp(grid[1], np.arange(cam.shape[1]), row) for row in tall])


def heat_maps(tap, to_logits, images, weights, size) -> tuple[np.ndarray, np.ndarray]:
    """(Grad-CAM maps at the layer's resolution, the same scaled up to ``size``): per position, the layer's
    activations times the class score's gradient on them, summed over channels, negative parts cut (they
    speak for other classes).  The gradient weights each position on its own (HiResCAM): with a global
    average pooling head that is Grad-CAM exactly; with a Flatten + Dense head, Grad-CAM's weights averaged
    over positions mix the positions that speak for the class with those against it (on bright-left vs
    bright-right images they put the heat on the wrong half, or left every map of a class empty)."""
    weights = keras.ops.convert_to_tensor(weights)
    activations, grads = activation_gradients(
        tap, images, lambda later: keras.ops.sum(to_logits(later) * weights, axis=-1)
    )
    cams = np.maximum(np.einsum("nhwk,nhwk->nhw", activations, grads), 0.0)
    return cams, np.stack([resize(cam, size) for cam in cams])


def border_share(maps: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Per map the share of its mass in the border band (nan for a map with none), the band in pixels and
    the share of the image's area it covers."""
    height, width = maps.shape[1:]
    band = max(1, round(min(height, width) * BAND))
    border = np.ones((height, width), dtype=bool)
    border[band : height - band, band : width - band] = False
    totals = maps.sum(axis=(1, 2))
    shares = np.where(totals > 0, maps[:, border].sum(axis=1) / np.where(totals > 0, totals, 1.0), np.nan)
    return shares, band, float(border.mean())


def _flat(cams: np.ndarray) -> np.ndarray:
    peaks = cams.max(axis=(1, 2))
    return (peaks <= 0) | (peaks - cams.min(axis=(1, 2)) <= FLAT * peaks)


@check(
    NAME,
    threshold=None,
    fix="",
    what=f"Grad-CAM maps (last Conv2D layer, predicted class) of {IMAGES} held-out images; the value is the mean "
    f"share of their heat in the image's outer band (1/{round(1 / BAND)} of each side, about 45% of the area; "
    "information only)",
)
def gradcam_focus(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Grad-CAM heat maps of the predicted class on a seeded grid of held-out images, drawn over the images;
    value: the mean share of the heat in the border band over the maps that have a location (flat maps are
    counted in the evidence).  Information only: PASS with that share as the value."""
    split, x, _ = _evaluation_split(data)
    found, reason = _conv_image(model, x)
    if found is None:
        return _skip(NAME, reason)
    layout, convs = found
    layer = convs[-1].name
    tap, to_logits = logits_tap(model, layer, x)
    if tap is None:
        return _skip(NAME, to_logits)
    rows = _probe_rows(data, split, options, limit=IMAGES)
    images = x[rows].astype("float32")
    weights, predicted = score_weights(data, _predict(model, images))
    cams, maps = heat_maps(tap, to_logits, images, weights, layout[:2])
    flat = _flat(cams)
    shares, band, area = border_share(np.where(flat[:, None, None], 0.0, maps))
    labels = [_plain(label) for label in _row_labels(data, split)[rows]]
    evidence = {
        "layer": layer,
        "band_px": band,
        "band_area": area,
        "flat_maps": int(flat.sum()),
        "images": [
            {"index": int(r), "label": t, "predicted": int(p), "border_share": None if f else float(s)}
            for r, t, p, s, f in zip(rows, labels, predicted, shares, flat)
        ],
    }
    titles = [f"{t} -> {int(p)}" for t, p in zip(labels, predicted)]
    drawn = plots.gradcam_figure(options, images, maps, layout, titles)
    if flat.all():
        message = (
            f"all {len(rows)} Grad-CAM maps on {split} images are flat: no feature of {layer} speaks for the class"
        )
        return CheckResult(NAME, PASS, None, None, message, "", STAGE, evidence, drawn)
    value = float(np.mean(shares[~flat]))
    message = (
        f"Grad-CAM of the predicted class ({layer}) on {len(rows)} {split} images: {value:.0%} of the heat lies in "
        f"the outer {band}-pixel band ({area:.0%} of the image); {int(flat.sum())} of {len(rows)} maps are flat"
    )
    return CheckResult(NAME, PASS, value, None, message, "", STAGE, evidence, drawn)


def _plain(value):
    """A label as JSON takes it: an int for a class, a float for a regression target."""
    return int(value) if float(value).is_integer() else float(value)
