"""monitor.loss_stalled: whether the training loss dropped below its start at all, and early enough."""

from __future__ import annotations

import math

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import (
    Observed,
    losses,
    max_log10,
    result,
    start_loss,
)
from runner.diagnostics.monitors.update_ratio import EARLY_UPDATES, UPDATE_BAND
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

CHECK = "monitor.loss_stalled"
# A drop of 5% is beyond the sampling noise of the start estimate, and any learning model makes it.
NEEDED_DROP = 0.05
SLOW_START_EPOCHS = 4  # a slow start (no drop by half-time) is only judged on runs of at least this many epochs
SHORT_RUN_EPOCHS = 5  # a stalled loss with healthy-sized updates over this many epochs or fewer: too short a run
FIX = (
    "raise the learning rate (by 10x), check the initialisation (constant or saturating weights), and that "
    "labels match the inputs"
)


def updates_healthy(update_ratio: dict[str, list[float]]) -> bool:
    """Whether every layer's largest early update sits inside the healthy band of monitor.update_ratio."""
    early = [max_log10(ratios[:EARLY_UPDATES]) for ratios in update_ratio.values()]
    return bool(early) and all(UPDATE_BAND[0] <= v <= UPDATE_BAND[1] for v in early if math.isfinite(v))


@check(
    CHECK,
    what="the drop of the lowest epoch training loss below the start loss, as a share of the start",
    threshold=NEEDED_DROP,
    fix=FIX,
)
def check_loss_stalled(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records = observed.records
    needed = options.threshold(CHECK, NEEDED_DROP)
    threshold = f"the training loss must drop >= {needed:.0%} below its start (and within the first half)"
    series = [v for v in losses(observed.history) if math.isfinite(v)]
    if not series:
        return result(CHECK, SKIP, None, threshold, "no finite training loss in the history")
    # The probe batch estimates the start with sampling noise; the first window of epoch 1 is another
    # estimate.  The larger one errs towards crediting a drop, never towards a false alarm.
    start = max([start_loss(records)] + records.window_losses[:1])
    if not start > 0:
        return result(CHECK, SKIP, None, threshold, "the loss is not positive: relative drops are undefined")
    drop = 1.0 - min(series) / start
    half = series[math.ceil(len(series) / 2) - 1]
    # Updates of a healthy size over only a few epochs: the run was too short, not the learning rate too low.
    healthy_steps = updates_healthy(records.update_ratio)
    evidence = {
        "start": start,
        "epoch_losses": series,
        "drop": drop,
        "epochs": len(series),
        "updates_healthy": healthy_steps,
        "short_run": healthy_steps and len(series) <= SHORT_RUN_EPOCHS,
    }
    if drop < needed:
        return result(
            CHECK,
            FAIL,
            drop,
            threshold,
            f"the training loss never dropped {needed:.0%} below its start ({start:.4g}); best {min(series):.4g}",
            FIX,
            **evidence,
        )
    if len(series) >= SLOW_START_EPOCHS and half > (1.0 - needed) * start:
        return result(
            CHECK,
            WARN,
            drop,
            threshold,
            f"slow start: after half of the {len(series)} epochs the loss was still within {needed:.0%} of its start",
            FIX,
            **evidence,
        )
    return result(CHECK, PASS, drop, threshold, f"the training loss dropped {drop:.0%} from its start", **evidence)
