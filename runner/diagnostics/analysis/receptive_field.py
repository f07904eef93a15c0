"""analysis.receptive_field: how much of its input sequence a sequence model's output depends on."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import (
    STAGE,
    _evaluation_split,
    _predict,
    _probe_rows,
    _skip,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import input_gradients
from runner.diagnostics.introspect import SEQUENCE_LAYERS, has_layers
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = "analysis.receptive_field"
# An input step is visible when the averaged gradient magnitude is at least this share of the peak (the case
# study's model lost 10^6 within ~450 steps).
VISIBLE_RATIO = 1e-6
# WARN when less than half the steps are visible.
COVERAGE_WARN = 0.5
# The input gradients are taken in one batch of at most this many probe rows.
PROBE_LIMIT = 64
# At most this many points of the gradient profile go into the evidence, which the JSON report carries.
PROFILE_POINTS = 200
FIX = (
    "the model cannot use most of the sequence: use a bidirectional layer, shorter sequences (windows), "
    "more units, or attention/convolutions with a wider receptive field"
)
FIX_NO_DEPENDENCE = "check that the inputs reach the output (frozen or zero weights, a constant output)"


def _output_score(outputs) -> Callable:
    """The scalar per row whose input gradient is measured: the middle step of a per-step output, summed
    over units; else the single output unit, or the class predicted for the row (multi-unit outputs)."""
    if outputs.ndim == 3:
        middle = outputs.shape[1] // 2
        return lambda out: keras.ops.sum(out[:, middle, :], axis=-1)
    flat = outputs.reshape(len(outputs), -1)
    if flat.shape[1] == 1:
        return lambda out: keras.ops.reshape(out, (-1,))
    chosen = np.eye(flat.shape[1], dtype="float32")[flat.argmax(axis=1)]
    return lambda out: keras.ops.sum(out * chosen, axis=-1)


def step_gradients(model, probe, steps):
    """(model outputs on ``probe``, mean |d output / d input| per input step)."""
    outputs = _predict(model, probe)
    grads = np.abs(input_gradients(model, probe, _output_score(outputs)))
    return outputs, grads.reshape(len(probe), steps, -1).sum(axis=-1).mean(axis=0)


def _downsample(values, most):
    step = max(1, math.ceil(len(values) / most))
    return [float(v) for v in values[::step]]


@check(
    NAME,
    threshold=f"WARN < {COVERAGE_WARN:g}, FAIL when no step moves the output",
    fix=FIX,
    what=f"the share of input time steps whose mean gradient on the output is at least {VISIBLE_RATIO:g} of "
    "the strongest step's",
)
def receptive_field(
    model: keras.Model, data: DiagnosticData, options: DiagnosticOptions, ratio: float = VISIBLE_RATIO
) -> CheckResult:
    """How much of its input sequence the model uses.  The gradient of the output (at the middle time step
    for per-step outputs, else the single output) w.r.t. every input step, |.| averaged over probe samples;
    a step is visible when that gradient is at least ``ratio`` times the peak.  Value: the share of visible
    steps; WARN below one half, FAIL when the output does not depend on the input at all."""
    split, x, _ = _evaluation_split(data)
    if not (x.ndim == 3 or (x.ndim == 2 and has_layers(model, SEQUENCE_LAYERS))):
        return _skip(NAME, "not a sequence model (needs 3-D inputs or a recurrent/convolutional sequence layer)")
    if np.issubdtype(x.dtype, np.integer) or has_layers(model, {"Embedding"}):
        # An embedding lookup is not differentiable in its integer index: d output / d token does not exist.
        return _skip(NAME, "the inputs are integer tokens (Embedding): the output has no gradient with respect to them")
    probe = x[_probe_rows(data, split, options, limit=PROBE_LIMIT)].astype("float32")
    outputs, magnitude = step_gradients(model, probe, x.shape[1])
    steps = len(magnitude)
    peak = float(magnitude.max())
    if not np.isfinite(peak) or peak == 0.0:
        return CheckResult(
            NAME,
            FAIL,
            0.0,
            COVERAGE_WARN,
            "the output does not depend on any input step",
            FIX_NO_DEPENDENCE,
            STAGE,
            {"seq_len": steps},
        )
    per_step_output = outputs.ndim == 3
    anchor = outputs.shape[1] // 2 if per_step_output else int(magnitude.argmax())
    visible = np.flatnonzero(magnitude >= ratio * peak)
    coverage = len(visible) / steps
    evidence = {
        "seq_len": steps,
        "ratio": ratio,
        "anchor_step": anchor,
        "anchor": "middle output step" if per_step_output else "step with the largest gradient",
        "visible_steps": len(visible),
        "first_visible": int(visible[0]),
        "last_visible": int(visible[-1]),
        "reach_back": int(anchor - visible[0]),
        "reach_forward": int(visible[-1] - anchor),
        "log10_gradient": _downsample(np.log10(np.maximum(magnitude, 1e-30)), PROFILE_POINTS),
    }
    drawn = plots.receptive_field_plot(options, magnitude, anchor, ratio * peak)
    warn_below = options.threshold(NAME, COVERAGE_WARN)
    verdict = WARN if coverage < warn_below else PASS
    message = (
        f"{len(visible)} of {steps} input steps ({coverage:.0%}) move the output by at least "
        f"{ratio:g} of the strongest step; the model sees {evidence['reach_back']} steps back and "
        f"{evidence['reach_forward']} forward from step {anchor}"
    )
    fix = "" if verdict == PASS else FIX
    return CheckResult(NAME, verdict, coverage, warn_below, message, fix, STAGE, evidence, drawn)
