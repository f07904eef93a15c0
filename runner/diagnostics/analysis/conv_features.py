"""analysis.conv_features: what a convolutional network's filters look for, as pictures (information only):
the first Conv2D layer's filters, and inputs grown by gradient ascent to excite a few filters of the last
Conv2D layer and a few class scores (activation maximisation)."""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import STAGE, _conv_image, _evaluation_split, _probe_rows, _skip
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import input_gradient_function
from runner.diagnostics.introspect import logits_tap
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, CheckResult

NAME = "analysis.conv_features"
# Units maximised: this many of the last Conv2D layer's filters (the most active on the probe images, so none
# is a dead one drawn as noise) and this many class scores.
UNITS = 4
# Gradient ascent: a fixed number of steps, each moving the input by STEP of the data's range along the
# normalised gradient, then pulling it back towards the data's mean by DECAY (pixels that do not matter fade
# to grey instead of keeping their start noise) and clipping it to the data's range.
STEPS, STEP, DECAY = 32, 0.05, 0.02
# The start: the data's mean plus seeded noise of this share of its range.
NOISE = 0.1
# Probe images that set the bar the maximised inputs are compared with.
PROBE = 32
# First-layer filters drawn at most (8 per figure row).
MAX_FILTERS = 32


def _unit_weights(activations, logits, single_label):
    """(filters, classes, filter weights, logit weights): one row per maximised unit; a row's score is its
    weights times the channel means of the last conv layer plus its weights times the logits."""
    filters = [int(k) for k in np.argsort(-activations.mean(axis=(0, 1, 2)), kind="stable")[:UNITS]]
    units = logits.shape[1]
    if units > 1:
        classes = [(c, 1.0) for c in range(min(UNITS, units))]
    else:  # one logit: class 1 rises with it, class 0 with its negative (regression: the output itself)
        classes = [(0, -1.0), (1, 1.0)] if single_label else [(0, 1.0)]
    rows = len(filters) + len(classes)
    channel = np.zeros((rows, activations.shape[-1]), dtype="float32")
    channel[np.arange(len(filters)), filters] = 1.0
    logit = np.zeros((rows, units), dtype="float32")
    for row, (unit, sign) in enumerate(classes, start=len(filters)):
        logit[row, min(unit, units - 1)] = sign
    return filters, [unit for unit, _ in classes], channel, logit


def _score_fn(to_logits, channel, logit):
    channel, logit = keras.ops.convert_to_tensor(channel), keras.ops.convert_to_tensor(logit)

    def score(outputs):
        activations, later = outputs
        means = keras.ops.mean(activations, axis=(1, 2))
        return keras.ops.sum(means * channel, axis=-1) + keras.ops.sum(to_logits(later) * logit, axis=-1)

    return score


def _scores(tap, to_logits, x, channel, logit) -> np.ndarray:
    """Each unit's score on every row of ``x``: (rows of x, units)."""
    activations, later = tap(np.asarray(x, dtype="float32"), training=False)
    means = keras.ops.convert_to_numpy(keras.ops.mean(activations, axis=(1, 2)))
    logits = keras.ops.convert_to_numpy(to_logits(later)).reshape(len(x), -1)
    return means @ channel.T + logits @ logit.T


def maximise(tap, score_fn, start, low, high, centre) -> np.ndarray:
    """``start`` moved ``STEPS`` normalised gradient steps up each row's own score (rows are independent)."""
    x, step, gradient = start.copy(), STEP * (high - low), input_gradient_function(tap, score_fn)
    for _ in range(STEPS):
        grads = gradient(x)
        norms = np.sqrt(np.mean(grads.reshape(len(x), -1) ** 2, axis=1)) + 1e-12
        moved = x + step * grads / norms.reshape((-1,) + (1,) * (x.ndim - 1))
        x = np.clip(centre + (1.0 - DECAY) * (moved - centre), low, high).astype("float32")
    return x


def _grow(tap, score_fn, x_train, rows: int, seed: int) -> np.ndarray:
    """``rows`` inputs grown from seeded noise around the training data's mean, within its range."""
    train = np.asarray(x_train, dtype="float64")
    low, high, centre = float(np.nanmin(train)), float(np.nanmax(train)), float(np.nanmean(train))
    high = high if high > low else low + 1.0  # constant inputs: still a range to move in
    noise = np.random.default_rng(seed).standard_normal((rows,) + train.shape[1:])
    start = np.clip(centre + NOISE * (high - low) * noise, low, high).astype("float32")
    return maximise(tap, score_fn, start, low, high, centre)


@check(
    NAME,
    threshold=None,
    fix="",
    what=f"pictures of the first Conv2D layer's filters and of inputs grown in {STEPS} gradient-ascent steps to "
    f"excite {UNITS} filters of the last Conv2D layer and up to {UNITS} class scores; the value is the share of those "
    "units that the grown inputs excite more than any probe image (information only)",
)
def conv_features(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """First-layer filters and activation maximisation for a convolutional image model.  Information only:
    PASS with the share of maximised units whose grown input beats every probe image as the value."""
    split, x, _ = _evaluation_split(data)
    found, reason = _conv_image(model, x)
    if found is None:
        return _skip(NAME, reason)
    layout, convs = found
    first, last = convs[0], convs[-1]
    tap, to_logits = logits_tap(model, last.name, x)
    if tap is None:
        return _skip(NAME, to_logits)
    kernel = keras.ops.convert_to_numpy(first.kernel)
    drawn = plots.conv_filter_grid(options, kernel[..., :MAX_FILTERS], first.name)
    probe = x[_probe_rows(data, split, options, limit=PROBE)].astype("float32")
    activations, later = tap(probe, training=False)
    logits = keras.ops.convert_to_numpy(to_logits(later)).reshape(len(probe), -1)
    filters, classes, channel, logit = _unit_weights(keras.ops.convert_to_numpy(activations), logits, data.single_label)
    grown = _grow(tap, _score_fn(to_logits, channel, logit), data.x_train, len(channel), options.seed)
    reached = np.diag(_scores(tap, to_logits, grown, channel, logit))
    best_probe = _scores(tap, to_logits, probe, channel, logit).max(axis=0)
    beaten = reached > best_probe
    drawn += plots.activation_maximisation_figure(options, grown, layout, last.name, filters, classes, data.class_names)
    units = [f"{last.name} filter {k}" for k in filters] + [f"class {c}" for c in classes]
    evidence = {
        "first_layer": first.name,
        "filters_drawn": int(kernel[..., :MAX_FILTERS].shape[-1]),
        "steps": STEPS,
        "units": [
            {"unit": u, "reached": float(r), "best_probe": float(b)} for u, r, b in zip(units, reached, best_probe)
        ],
    }
    value = float(beaten.mean())
    message = (
        f"first-layer filters of {first.name}; activation maximisation ({STEPS} steps) of {len(filters)} filters of "
        f"{last.name} and {len(classes)} class scores: {int(beaten.sum())} of {len(units)} grown inputs excite "
        f"their unit more than any of {len(probe)} {split} images"
    )
    return CheckResult(NAME, PASS, value, None, message, "", STAGE, evidence, drawn)
