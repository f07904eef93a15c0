"""monitor.early_blowup: a loss that ended the first epoch above where it started."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, result, start_loss
from runner.diagnostics.monitors.loss_diverging import FIX as DIVERGING_FIX
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

CHECK = "monitor.early_blowup"
# Share of the start loss the end of epoch 1 sits above it: half the start is more than first-epoch noise; the
# whole start (the loss doubled) is a learning rate past the point where training can recover.
BLOWUP_WARN, BLOWUP_FAIL = 0.5, 1.0
FIX = DIVERGING_FIX  # the same cause as a diverging loss (a learning rate too high), caught one epoch in


def epoch1_end(windows: list[float]) -> float:
    """The end of epoch 1: the median of the last third of its loss windows, not one noisy batch."""
    return float(np.median(windows[-max(1, len(windows) // 3) :]))


@check(
    CHECK,
    what="the rise of the epoch-1 loss at its end (median of the last third of its windows) above "
    "the start loss, as a share of the start",
    threshold=f"WARN >= {BLOWUP_WARN:g}, FAIL >= {BLOWUP_FAIL:g}",
    fix=FIX,
)
def check_early_blowup(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    """A learning rate that is too high shows in the first epoch: the batch loss ends the epoch above where it
    started instead of below.  Judged on epoch 1 alone, so a sweep can act on it before more epochs run, and on
    the end of the epoch (the median of its last third), not on one noisy batch of a tiny data set."""
    records = observed.records
    warn = options.threshold(CHECK, BLOWUP_WARN)
    fail = options.threshold(f"{CHECK}.fail", BLOWUP_FAIL)
    threshold = (
        f"epoch-1 loss at its end (median of the last third of its windows) above the start loss by "
        f"WARN >= {warn:.0%}, FAIL >= {fail:.0%} of it"
    )
    first = [loss for loss, epoch in zip(records.window_losses, records.window_epochs) if epoch == 1]
    start = start_loss(records)
    if not first or not (math.isfinite(start) and start > 0):
        return result(CHECK, SKIP, None, threshold, "no loss windows in epoch 1, or no finite positive start loss")
    evidence = {"start": start, "epoch1_windows": first}
    if not all(math.isfinite(v) for v in first):
        return result(
            CHECK, FAIL, math.nan, threshold, "the loss became NaN/Inf within the first epoch", FIX, **evidence
        )
    end = epoch1_end(first)
    rise = end / start - 1.0
    if rise >= warn:
        return result(
            CHECK,
            FAIL if rise >= fail else WARN,
            rise,
            threshold,
            f"the loss ended the first epoch {rise:.0%} above where it started ({end:.4g} vs {start:.4g})",
            FIX,
            **evidence,
        )
    return result(
        CHECK, PASS, rise, threshold, f"the first epoch ended at {end / start:.0%} of the start loss", **evidence
    )
