"""monitor.loss_diverging: a training loss that ended well above its minimum, or blew up on the way."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, losses, result, start_loss
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, CheckResult

CHECK = "monitor.loss_diverging"
# Ending at twice the minimum undoes most of what training achieved; it must also be a rise of a tenth of the
# start loss, so that doubling a near-zero loss late in training is not called divergence.
GROWTH_LIMIT, RISE_OF_START = 2.0, 0.1
# A blow-up: the windowed loss climbs above its running minimum by as much as the whole start loss.
CLIMB_OF_START = 1.0
SMOOTHING = 3  # windows in the running median that drops one-batch spikes
FIX = "lower the learning rate (by 10x), clip gradients (optimizer.clipnorm=1.0), or add a decay schedule"
THRESHOLD = (
    "final training loss >= {limit:g}x its minimum (start included) and above it by >= 10% of the start "
    "loss, or a blow-up: the windowed batch loss climbed >= 1x the start loss above its running minimum"
)


def running_median(series: list[float], width: int) -> list[float]:
    """Each value replaced by the median of the ``width`` values ending at it (fewer at the start)."""
    return [float(np.median(series[max(0, i - width + 1) : i + 1])) for i in range(len(series))]


def largest_climb(series: list[float]) -> float:
    """The largest rise of a finite series above its running minimum."""
    lowest, climb = math.inf, 0.0
    for value in series:
        if math.isfinite(value):
            lowest = min(lowest, value)
            climb = max(climb, value - lowest)
    return climb


@check(
    CHECK,
    what="the final epoch training loss over its minimum (start included), and the largest climb of "
    "the windowed batch loss above its running minimum, over the start loss",
    threshold=f"FAIL: ratio >= {GROWTH_LIMIT:g}, or climb >= {CLIMB_OF_START:g}",
    fix=FIX,
)
def check_loss_diverging(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records = observed.records
    limit = options.threshold(CHECK, GROWTH_LIMIT)
    threshold = THRESHOLD.format(limit=limit)
    series = losses(observed.history)
    if not series:
        return result(CHECK, SKIP, None, threshold, "no training loss in the history")
    start = start_loss(records)
    with_start = [start] + series
    # Windows of one batch each (a tiny data set) jump on single hard batches: a running median of 3 keeps the
    # blow-up of a too-high learning rate (several windows up) and drops a one-batch spike.
    smoothed = running_median([start] + records.window_losses + series[-1:], SMOOTHING)
    climb = largest_climb(smoothed) / start if start > 0 else math.nan
    evidence = {"losses_with_start": with_start, "largest_climb_over_start": climb}
    if not math.isfinite(series[-1]):
        return result(
            CHECK, FAIL, math.nan, threshold, "the training loss ended as NaN/Inf: training diverged", FIX, **evidence
        )
    lowest = min(v for v in with_start if math.isfinite(v))
    growth = series[-1] / lowest if lowest > 0 else math.nan
    if growth >= limit and series[-1] - lowest >= RISE_OF_START * start:
        return result(
            CHECK,
            FAIL,
            growth,
            threshold,
            f"the training loss ended at {growth:.3g}x its minimum: training diverged",
            FIX,
            **evidence,
        )
    if climb >= CLIMB_OF_START:
        return result(
            CHECK,
            FAIL,
            growth,
            threshold,
            f"the training loss blew up: it climbed {climb:.3g}x its start above its running minimum "
            f"(ending at {growth:.3g}x its minimum)",
            FIX,
            **evidence,
        )
    return result(CHECK, PASS, growth, threshold, f"final loss {growth:.3g}x its minimum", **evidence)
