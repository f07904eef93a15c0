"""preflight.overfit_batch: can the model, without dropout or regularisation, memorise 16 training rows?"""

from __future__ import annotations

import math

import keras

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result

# The trainer stops at these targets: they are this check's thresholds.
from runner.diagnostics.preflight._trainer import (
    OVERFIT_ACCURACY,
    OVERFIT_MAX_STEPS,
    OVERFIT_RELATIVE_ERROR,
    OVERFIT_ROWS,
    Probes,
)
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = f"{STAGE}.overfit_batch"
# Loss drop when the target was not reached: a slow optimiser (plain SGD at 0.01) still lowers the loss by
# 30% within the budget, so that is learning (PASS); below 10% nothing moved (FAIL).
OVERFIT_LEARNING_DROP, OVERFIT_MOVING_DROP = 0.3, 0.1
FIX = (
    "A healthy model memorises a handful of samples: check the loss/output pairing, the learning rate (too low "
    "or too high), the initialisation and dead units."
)
FIX_PAIRING = "Check the loss/output pairing (e.g. softmax over a single unit)."


@check(
    NAME,
    what=f"the accuracy (regression: loss / loss of the mean) a regularisation-free copy reaches on "
    f"{OVERFIT_ROWS} training rows within {OVERFIT_MAX_STEPS} steps, else how far its loss fell",
    threshold=f"accuracy >= {OVERFIT_ACCURACY:g} (regression: <= {OVERFIT_RELATIVE_ERROR:g}); else loss drop "
    f"WARN < {OVERFIT_LEARNING_DROP:.0%}, FAIL < {OVERFIT_MOVING_DROP:.0%}",
    fix=FIX,
    scope="probe",
)
def check_overfit_batch(
    model: keras.Model, data: DiagnosticData, options: DiagnosticOptions, probes: Probes | None = None
) -> CheckResult:
    """Can the model, without dropout or regularisation, memorise 16 training samples?

    Dropout and weight penalties are switched off (as Karpathy does) so the test isolates the pipeline:
    data, architecture, loss and optimiser; whether the regularisation is too strong is the monitors'
    question (and the book's L2 model must not fail here for being regularised as intended).
    """
    trainer = (probes or Probes()).one_batch_trainer(model, data, options)
    run = trainer.memorise(trainer.x)
    evidence = {
        "steps": run.steps,
        "seconds": round(run.seconds, 2),
        "loss_before": run.loss_before,
        "loss_after": run.loss_after,
        "rows": len(trainer.x),
        "criterion": trainer.criterion,
    }
    sign = ">=" if trainer.higher_is_better else "<="
    threshold = (
        f"{trainer.criterion} {sign} {trainer.target:g} within {trainer.max_steps} steps; else the loss "
        f"must fall by {OVERFIT_LEARNING_DROP:.0%} (WARN) or {OVERFIT_MOVING_DROP:.0%} (FAIL below)"
    )
    if run.reached:
        return result(
            NAME,
            PASS,
            run.score,
            threshold,
            f"memorised {len(trainer.x)} samples in {run.steps} steps ({trainer.criterion} {run.score:.3g})",
            evidence=evidence,
        )
    drop = 1.0 - run.loss_after / run.loss_before if run.loss_before > 0 else 0.0
    evidence["loss_drop"] = drop
    summary = (
        f"{trainer.criterion} {run.score:.3g} after {run.steps} steps on {len(trainer.x)} samples, loss "
        f"{run.loss_before:.3g} -> {run.loss_after:.3g} ({drop:.0%} lower)"
    )
    accuracy_stuck = trainer.classify and not run.score > run.score_first
    if math.isfinite(drop) and drop >= OVERFIT_LEARNING_DROP and not accuracy_stuck:
        # A slow optimiser (plain SGD at 0.01) learns the batch, just not to the target within the budget.
        return result(NAME, PASS, run.score, threshold, f"learning, not yet memorised: {summary}", evidence=evidence)
    if math.isfinite(drop) and drop >= OVERFIT_LEARNING_DROP:
        return result(
            NAME,
            FAIL,
            run.score,
            threshold,
            f"the loss falls but the accuracy never rises ({summary}): the loss does not measure what "
            "the model predicts",
            FIX_PAIRING,
            evidence=evidence,
        )
    verdict = WARN if math.isfinite(drop) and drop >= OVERFIT_MOVING_DROP else FAIL
    return result(NAME, verdict, run.score, threshold, f"could not memorise: {summary}", FIX, evidence=evidence)
