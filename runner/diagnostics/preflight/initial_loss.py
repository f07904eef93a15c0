"""preflight.initial_loss: the untrained model's loss against the level an untrained network should start at."""

from __future__ import annotations

import math

import keras
import numpy as np

from models.losses import REGRESSION_LOSSES
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    LossInfo,
    compiled_loss,
    output_units,
)
from runner.diagnostics.preflight._shared import (
    STAGE,
    batch_loss,
    predict,
    probe_batch,
    result,
)
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

NAME = f"{STAGE}.initial_loss"
# TheDeepChecker fails a deviation of 100% from chance.  Fresh networks written by others start further off
# than the book's (within 10%): +50% to +100% on healthy third-party programs (a deep sigmoid stack, an RNN,
# inputs in the tens), so 2x chance only WARNs and 4x chance (an exploding or saturated start) FAILs.
INITIAL_LOSS_WARN, INITIAL_LOSS_FAIL = 1.0, 3.0
# Regression: an untrained network's outputs have some spread of their own (MSE of a fresh MLP on standardised
# targets: about 1.2-2x the loss of predicting zeros); an exploding start is far above that.
REGRESSION_INITIAL_WARN, REGRESSION_INITIAL_FAIL = 3.0, 9.0
# The cross-entropies whose starting level is known: chance level -ln(1/k).
CHANCE_LEVEL_LOSSES = {"binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"}
FIX = (
    "An untrained model should predict near-uniform probabilities (or values near zero): check the "
    "initialisation scale, the input scaling and the output activation."
)
FIX_OVERFLOW = "Check the inputs' scale and the output layer: the untrained model already overflows."


def expected_initial_loss(loss: LossInfo, data: DiagnosticData, model, x, y_batch) -> tuple[float | None, str]:
    """The loss an untrained network should start at on (x, y_batch), and what that reference is; None when
    the loss has no known starting level."""
    if data.task != "regression" and loss.name in CHANCE_LEVEL_LOSSES:
        units = output_units(model, x)
        k = 2 if loss.name == "binary_crossentropy" or units == 1 else units
        return math.log(k), f"chance level -ln(1/{k})"
    if data.task == "regression" and loss.name in REGRESSION_LOSSES:
        zeros = np.zeros(np.shape(y_batch), dtype="float32")
        return batch_loss(loss.fn, y_batch.astype("float32"), zeros), "loss of predicting zeros"
    return None, ""


@check(
    NAME,
    what="the untrained model's loss in excess of chance level (cross-entropy) or of predicting zeros "
    "(regression), relative to that reference",
    threshold=f"WARN >= {INITIAL_LOSS_WARN:g}, FAIL >= {INITIAL_LOSS_FAIL:g} (regression: WARN >= "
    f"{REGRESSION_INITIAL_WARN:g}, FAIL >= {REGRESSION_INITIAL_FAIL:g})",
    fix=FIX,
    scope="model",
)
def check_initial_loss(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Loss of the untrained model vs what an untrained network gives: chance level -ln(1/k) for a
    cross-entropy (it outputs near-uniform probabilities), the loss of predicting zeros for regression (its
    outputs start near zero, whatever the targets' mean).  A much higher loss means an over-confident or
    exploding start: initialisation scale, unscaled inputs or a wrong head."""
    loss = compiled_loss(model)
    x, y = probe_batch(data, options.probe_samples, options.seed)
    # What the model outputs (predict: probabilities), not the logits path training takes: a softmax over one
    # unit trains its logits but always outputs 1.0, and this check must see that.
    measured = batch_loss(loss.fn, y, predict(model, x))
    expected, reference = expected_initial_loss(loss, data, model, x, y)
    if expected is None:
        return result(
            NAME,
            SKIP,
            None,
            None,
            f"{loss.name} has no known starting level (not a plain cross-entropy, and not a regression loss)",
            evidence={"loss": measured},
        )
    regression = data.task == "regression"
    warn = options.threshold(NAME, REGRESSION_INITIAL_WARN if regression else INITIAL_LOSS_WARN)
    fail = options.threshold(f"{NAME}.fail", REGRESSION_INITIAL_FAIL if regression else INITIAL_LOSS_FAIL)
    # Only a loss above the reference is a problem: a start below chance (a lucky head) costs nothing.
    excess = (measured - expected) / expected if expected > 0 else (math.inf if measured > 0 else 0.0)
    evidence = {"loss": measured, "expected": expected, "reference": reference, "rows": len(x)}
    threshold = f"relative excess over the reference WARN >= {warn:g}, FAIL >= {fail:g}"
    summary = f"initial loss {measured:.4g} vs {expected:.4g} ({reference}): {excess:+.0%}"
    if not math.isfinite(measured):
        return result(
            NAME,
            FAIL,
            math.nan,
            threshold,
            f"the untrained model's loss is {measured}",
            FIX_OVERFLOW,
            evidence=evidence,
        )
    if excess >= warn:
        return result(NAME, FAIL if excess >= fail else WARN, excess, threshold, summary, FIX, evidence=evidence)
    return result(NAME, PASS, excess, threshold, summary, evidence=evidence)
