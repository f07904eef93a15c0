"""preflight.zeroed_inputs: after an overfit test that did not memorise, does the model use its inputs at all?"""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.preflight._trainer import Probes
from runner.diagnostics.preflight.overfit_batch import NAME as OVERFIT
from runner.diagnostics.preflight.overfit_batch import OVERFIT_MOVING_DROP
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

NAME = f"{STAGE}.zeroed_inputs"
# Final loss on real inputs >= 0.9 x the loss on zeroed inputs: the inputs bought (almost) nothing.
ZEROED_SAME_CURVE = 0.9
FIX = (
    "Look for dead units (very negative biases, a huge learning rate), identical units (constant init), an "
    "input disconnected from the output, or labels unrelated to the inputs."
)


def loss_drops(overfit: CheckResult, zeroed_before: float, zeroed_after: float) -> list[float]:
    """How far each run lowered its loss (relative): the real-input run, then the zeroed-input run."""
    return [
        1.0 - after / before if before > 0 else 0.0
        for before, after in (
            (float(overfit.evidence["loss_before"]), float(overfit.evidence["loss_after"])),
            (zeroed_before, zeroed_after),
        )
    ]


@check(
    NAME,
    what="the one-batch run's final loss on the real inputs divided by the same run's on all-zero inputs",
    threshold=ZEROED_SAME_CURVE,
    fix=FIX,
    scope="probe",
)
def check_zeroed_inputs(
    model: keras.Model, data: DiagnosticData, options: DiagnosticOptions, probes: Probes | None = None
) -> CheckResult:
    """After an overfit test that did not memorise: the same training on all-zero inputs.  Reaching the same loss means the
    model never used its inputs (dead network, inputs disconnected, no signal reaching the output)."""
    probes = probes or Probes()
    overfit = probes.results.get(OVERFIT)
    if overfit is None or overfit.verdict not in (WARN, FAIL) or "steps" not in overfit.evidence:
        passed = overfit is not None and overfit.verdict == PASS
        why = "the overfit test passed" if passed else "the overfit test did not run"
        return result(NAME, SKIP, None, None, f"not run: {why}")
    trainer = probes.one_batch_trainer(model, data, options)
    zeroed = trainer.memorise(np.zeros_like(trainer.x), max_steps=int(overfit.evidence["steps"]))
    real_loss, zero_loss = float(overfit.evidence["loss_after"]), zeroed.loss_after
    ratio = real_loss / zero_loss if zero_loss > 0 else 1.0
    limit = options.threshold(NAME, ZEROED_SAME_CURVE)
    evidence = {"loss_after_real": real_loss, "loss_after_zeroed": zero_loss, "steps": zeroed.steps}
    moved = loss_drops(overfit, zeroed.loss_before, zero_loss)
    if max(moved) < OVERFIT_MOVING_DROP:
        return result(
            NAME,
            SKIP,
            None,
            None,
            "inconclusive: neither run lowered the loss by "
            f"{OVERFIT_MOVING_DROP:.0%} (real inputs {moved[0]:.1%}, zeroed {moved[1]:.1%})",
            evidence=evidence,
        )
    if ratio >= limit:
        return result(
            NAME,
            FAIL,
            ratio,
            limit,
            f"training on zeroed inputs reaches the same loss ({zero_loss:.3g} vs {real_loss:.3g} with "
            "the real inputs): the model ignores its inputs",
            FIX,
            evidence=evidence,
        )
    return result(
        NAME,
        PASS,
        ratio,
        limit,
        f"the real inputs lower the loss more than zeroed ones ({real_loss:.3g} vs {zero_loss:.3g}): "
        "the model uses its inputs but learns too slowly",
        evidence=evidence,
    )
