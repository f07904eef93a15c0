"""monitor.loss_numeric: whether the training loss stayed finite and bounded."""

from __future__ import annotations

import math

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, losses, result, start_loss
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, CheckResult

CHECK = "monitor.loss_numeric"
# A thousandfold growth over the start is no longer noise or a slow start: the arithmetic has run away.
GROWTH_LIMIT = 1e3
FIX = (
    "lower the learning rate, clip gradients (optimizer.clipnorm=1.0), scale the inputs, and check the loss "
    "for log(0) (e.g. a probability output with the wrong loss)"
)


@check(
    CHECK,
    what="the largest epoch or windowed batch training loss over the start loss, and whether any was NaN/Inf",
    threshold=GROWTH_LIMIT,
    fix=FIX,
)
def check_loss_numeric(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records, history = observed.records, observed.history
    limit = options.threshold(CHECK, GROWTH_LIMIT)
    threshold = f"NaN/Inf, or a loss >= {limit:g}x its start"
    series = losses(history) + records.window_losses
    if not series:
        return result(CHECK, SKIP, None, threshold, "no training loss in the history")
    start = start_loss(records)
    evidence = {"start": start, "epoch_losses": losses(history)}
    bad = [i + 1 for i, v in enumerate(losses(history)) if not math.isfinite(v)]
    if bad or not all(math.isfinite(v) for v in series):
        return result(
            CHECK,
            FAIL,
            math.nan,
            threshold,
            f"the training loss became NaN/Inf{f' in epoch {bad[0]}' if bad else ''}",
            FIX,
            **evidence,
        )
    growth = max(series) / start if start > 0 else math.nan
    if growth >= limit:
        return result(
            CHECK, FAIL, growth, threshold, f"the training loss grew to {growth:.3g}x its start", FIX, **evidence
        )
    return result(CHECK, PASS, growth, threshold, "the training loss stayed finite and bounded", **evidence)
