"""monitor.still_improving: training that stopped while the loss still fell steeply."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, result, start_loss
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, SKIP, WARN, CheckResult

CHECK = "monitor.still_improving"
# The windowed loss still fell this much between the last two fifths of training, while it was still this
# share of its start or more: far above where it is heading, so more epochs would pay.
STILL_FALLING, STILL_HIGH = 0.2, 0.5
MIN_WINDOWS = 4  # two fifths of fewer windows are single noisy values
FIX = (
    "Train for more epochs (or raise the learning rate a little); early stopping on the validation loss "
    "picks the point to stop."
)


def last_fifths(series: list[float]) -> tuple[float, float]:
    """The mean windowed loss of the last fifth of training and of the fifth before it (two windows at least)."""
    k = max(2, len(series) // 5)
    return float(np.mean(series[-k:])), float(np.mean(series[-2 * k : -k]))


@check(
    CHECK,
    what="the drop of the mean windowed training loss from the second-last to the last fifth of "
    "training, as a share of the former",
    threshold=STILL_FALLING,
    fix=FIX,
)
def check_still_improving(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    """Training that stopped while the loss still fell steeply, far above where it is heading: more epochs
    (or a higher learning rate) would help.  A loss that flattened, or that is already low, passes."""
    records = observed.records
    falling = options.threshold(CHECK, STILL_FALLING)
    threshold = (
        f"windowed training loss: drop >= {falling:.0%} from the second-last to the last fifth of training "
        f"while still >= {STILL_HIGH:.0%} of the start loss (and the val loss not rising)"
    )
    series = [v for v in records.window_losses if math.isfinite(v)]
    start = start_loss(records)
    if len(series) < MIN_WINDOWS or not (math.isfinite(start) and start > 0):
        return result(CHECK, SKIP, None, threshold, f"only {len(series)} loss windows recorded; need 4")
    recent, before = last_fifths(series)
    drop = 1.0 - recent / before if before > 0 else 0.0
    val = [v for v in observed.history.get("val_loss", []) if math.isfinite(v)]
    val_rising = len(val) >= 2 and val[-1] > val[-2]
    evidence = {
        "recent": recent,
        "before": before,
        "drop": drop,
        "start": start,
        "share_of_start": recent / start,
        "val_rising": val_rising,
    }
    if drop >= falling and recent >= STILL_HIGH * start and not val_rising:
        return result(
            CHECK,
            WARN,
            drop,
            threshold,
            f"training stopped while the loss still fell steeply ({drop:.0%} over the last fifth) at "
            f"{recent / start:.0%} of its start",
            FIX,
            **evidence,
        )
    return result(
        CHECK,
        PASS,
        drop,
        threshold,
        f"the loss changed {-drop:+.0%} over the last fifth, at {recent / start:.0%} of its start",
        **evidence,
    )
