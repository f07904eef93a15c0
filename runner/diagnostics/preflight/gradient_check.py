"""preflight.gradient_check: backprop against centred finite differences, in float64 where the model allows."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import (
    computes_in_float64,
    float64_enabled,
    forward_loss,
    loss_and_gradients,
)
from runner.diagnostics.introspect import LossInfo, compiled_loss
from runner.diagnostics.preflight._shared import STAGE, clone, probe_batch, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = f"{STAGE}.gradient_check"
# Relative error of one entry (CS231n's rule of thumb in float64: > 1e-2 is wrong, 1e-4 is suspect).  A model
# that refuses float64 is checked in float32 with 10x looser bounds and larger steps.
GRAD_WARN, GRAD_FAIL = 1e-4, 1e-2
GRAD_STEP, GRAD_FINE_STEP, GRAD_TINY = 1e-4, 1e-6, 1e-8
FLOAT32_STEPS = (1e-2, 1e-3)
GRAD_ROWS, GRAD_ENTRIES_PER_WEIGHT = 16, 3
KINK = -1.0  # marks an entry that sits on a kink of the loss (e.g. a ReLU input exactly at 0)
FIX = (
    "A custom layer, loss or gradient is wrong (or not differentiable): test it in isolation and compare its "
    "gradient with finite differences."
)


@dataclass
class _Clone:
    model: keras.Model
    loss: Callable

    def __post_init__(self):
        # Finite differences must see the loss that backprop differentiates (logits kept by sigmoid/softmax).
        self.forward = forward_loss(self.model, self.loss)


def relative_errors(
    model: keras.Model, data: DiagnosticData, options: DiagnosticOptions
) -> tuple[dict[str, float], dict]:
    """The worst relative error between backprop and finite differences per trainable weight (by path), and
    what was measured: entries checked, kinks skipped, float64 or not, the steps and rows.  Above the WARN
    level an entry is measured again with a finer step, then tested for a kink.  Call it inside
    ``float64_enabled`` (on JAX float64 is float32 otherwise)."""
    loss = compiled_loss(model)
    copy, precise = _float64_clone(model, loss)
    x, y = probe_batch(data, GRAD_ROWS, options.seed)
    x = x.astype("float64") if precise else x
    _, analytic = loss_and_gradients(copy.model, x, y, training=False, loss_fn=copy.loss, include_regularization=False)
    rng = np.random.default_rng(options.seed)
    warn = warn_threshold(options, precise)
    steps = (GRAD_STEP, GRAD_FINE_STEP) if precise else FLOAT32_STEPS
    base = copy.forward(x, y)
    per_weight, checked, kinks = {}, 0, 0
    for weight, grad in zip(copy.model.trainable_weights, analytic):
        worst = 0.0
        for index in _entries(weight, GRAD_ENTRIES_PER_WEIGHT, rng):
            error = _entry_error(copy, weight, index, float(grad[index]), x, y, base, steps, warn)
            kinks += error == KINK
            checked += error is not None and error != KINK
            worst = max(worst, error if error not in (None, KINK) else 0.0)
        per_weight[weight.path] = worst
    return per_weight, {
        "entries": checked,
        "kinks_skipped": kinks,
        "float64": precise,
        "steps": list(steps),
        "rows": len(x),
    }


def warn_threshold(options: DiagnosticOptions, precise: bool) -> float:
    return options.threshold(NAME, GRAD_WARN if precise else 10 * GRAD_WARN)


@check(
    NAME,
    what="the largest relative error between backprop and centred finite differences (float64) on a "
    "few entries of every trainable weight",
    threshold=f"WARN > {GRAD_WARN:g}, FAIL > {GRAD_FAIL:g}",
    fix=FIX,
    scope="model",
)
@float64_enabled()
def check_gradients(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Backprop vs centred differences in float64 on a few entries of every trainable weight."""
    per_weight, measured = relative_errors(model, data, options)
    precise = measured["float64"]
    warn = warn_threshold(options, precise)
    fail = options.threshold(f"{NAME}.fail", GRAD_FAIL if precise else 10 * GRAD_FAIL)
    value = max(per_weight.values(), default=0.0)
    worst_weight = max(per_weight, key=per_weight.get) if per_weight else None
    evidence = {"max_relative_error": per_weight, **measured}
    threshold = f"relative error WARN > {warn:g}, FAIL > {fail:g}"
    if value > warn:
        return result(
            NAME,
            FAIL if value > fail else WARN,
            value,
            threshold,
            f"backprop and finite differences disagree on {worst_weight} (relative error {value:.2g})",
            FIX,
            evidence=evidence,
        )
    kinks = measured["kinks_skipped"]
    return result(
        NAME,
        PASS,
        value,
        threshold,
        f"backprop matches finite differences on {measured['entries']} entries (max relative error "
        f"{value:.1g}{f', {kinks} at kinks skipped' if kinks else ''})",
        evidence=evidence,
    )


def _entry_error(copy: _Clone, weight, index, analytic: float, x, y, base: float, steps, warn: float) -> float | None:
    """Relative error of one gradient entry; None when both derivatives are ~0, KINK at a kink.

    At a kink the two one-sided derivatives differ and backprop returns one of them: that is a valid
    subgradient, not a bug, so the entry is left out rather than failed.
    """
    error = None
    for step in steps:
        forward, backward = _one_sided_derivatives(copy, weight, index, x, y, base, step)
        error = _relative_error(analytic, (forward + backward) / 2.0)
        if error is None or error <= warn:
            return error
    one_sided = [_relative_error(analytic, d) for d in (forward, backward)]
    jump = _relative_error(forward, backward)
    if jump is not None and jump > warn and min((e for e in one_sided if e is not None), default=math.inf) <= warn:
        return KINK
    return error


def _float64_clone(model: keras.Model, loss: LossInfo) -> tuple[_Clone, bool]:
    """A float64 copy of ``model`` (same weights) and loss, or a float32 copy if the model refuses float64."""
    try:
        copy = clone(model, dtype="float64")
        precise = computes_in_float64(copy)
        return _Clone(copy, _float64_loss(loss) if precise else loss.fn), precise
    except (TypeError, ValueError, NotImplementedError):
        return _Clone(clone(model), loss.fn), False


def _float64_loss(loss: LossInfo) -> Callable:
    # Loss objects cast predictions to their own dtype (float32 by default), which would undo float64.
    if isinstance(loss.fn, keras.losses.Loss):
        return loss.fn.__class__.from_config({**loss.fn.get_config(), "dtype": "float64"})
    return loss.fn


def _one_sided_derivatives(copy: _Clone, weight, index: tuple, x, y, base: float, step: float) -> tuple[float, float]:
    original = keras.ops.convert_to_numpy(weight)
    losses = []
    for sign in (1.0, -1.0):
        shifted = original.copy()
        shifted[index] += sign * step
        weight.assign(shifted)
        losses.append(copy.forward(x, y))
    weight.assign(original)
    return (losses[0] - base) / step, (base - losses[1]) / step


def _relative_error(analytic: float, numeric: float) -> float | None:
    scale = max(abs(analytic), abs(numeric))
    return None if scale < GRAD_TINY else abs(analytic - numeric) / scale


def _entries(weight, count: int, rng: np.random.Generator) -> list[tuple]:
    shape = tuple(weight.shape)
    size = int(np.prod(shape)) if shape else 1
    flat = rng.choice(size, size=min(count, size), replace=False)
    return [np.unravel_index(int(i), shape) for i in flat]
