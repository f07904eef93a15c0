"""monitor.loss_oscillating: many large swings of the windowed batch loss while it makes no progress."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, result, start_loss
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, SKIP, WARN, CheckResult

CHECK = "monitor.loss_oscillating"
# A swing doubles the local minimum and is a fifth of the start loss; OSCILLATION_SHARE of the windows must be
# such swings (at least MIN_RISES), and the loss must still be at STUCK_SHARE of its start in the last third.
SWING, SWING_OF_START, OSCILLATION_SHARE, STUCK_SHARE = 1.0, 0.2, 0.1, 0.5
MIN_RISES = 3
MIN_WINDOWS = 8  # fewer windows cannot show repeated swings
FIX = "lower the learning rate or raise the batch size"


def large_rises(series: list[float], scale: float) -> list[tuple[float, float]]:
    """(local minimum, next local maximum) pairs where the loss rises by > SWING times the minimum and
    > SWING_OF_START of ``scale`` (the start loss): minibatch noise late in training is small against the start
    loss."""
    rises, low = [], series[0]
    for previous, current, following in zip(series, series[1:], series[2:] + [-math.inf]):
        if current <= previous and current <= following:
            low = current
        elif current >= previous and current > following:
            rise = current - low
            if rise > SWING * low and rise > SWING_OF_START * scale:
                rises.append((low, current))
            low = current
    return rises


@check(
    CHECK,
    what="the number of rises of the windowed batch loss (10 windows per epoch) that double the local "
    "minimum and exceed a fifth of the start loss, while the loss stays at half its start or more",
    threshold=OSCILLATION_SHARE,
    fix=FIX,
)
def check_loss_oscillating(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    """Many large swings of the windowed batch loss while it makes no progress.  Small-batch SGD is noisy on
    healthy programs too (15% of the healthy corpus swung by half its level), so a swing must double the loss
    and the loss must still sit at half its start or more in the last third of training."""
    records = observed.records
    series = [v for v in records.window_losses if math.isfinite(v)]
    needed = max(MIN_RISES, math.ceil(len(series) * options.threshold(CHECK, OSCILLATION_SHARE)))
    threshold = (
        f">= {needed} rises of the windowed batch loss (10 windows per epoch) by > {SWING:.0%} of the "
        f"local minimum and > {SWING_OF_START:.0%} of the start loss, with the last third's median >= "
        f"{STUCK_SHARE:.0%} of the start"
    )
    if len(series) < MIN_WINDOWS:
        return result(CHECK, SKIP, None, threshold, f"only {len(series)} loss windows recorded; need 8")
    start = start_loss(records)
    rises = large_rises(series, scale=start)
    late = float(np.median(series[-max(1, len(series) // 3) :]))
    stuck = math.isfinite(start) and start > 0 and late >= STUCK_SHARE * start
    evidence = {
        "window_losses": series,
        "large_rises": rises,
        "late_median_over_start": late / start if math.isfinite(start) and start > 0 else None,
    }
    if len(rises) >= needed and stuck:
        return result(
            CHECK,
            WARN,
            len(rises),
            threshold,
            f"the loss oscillates: {len(rises)} large rises between local extrema, and it is still at "
            f"{late / start:.0%} of its start late in training",
            FIX,
            **evidence,
        )
    note = "" if stuck or not rises else " (noise around a falling loss)"
    return result(CHECK, PASS, len(rises), threshold, f"{len(rises)} large rises of the loss{note}", **evidence)
