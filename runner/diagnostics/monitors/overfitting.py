"""monitor.overfitting: a validation loss that rose well above its minimum while the training loss kept
falling."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, losses, result, start_loss
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, SKIP, WARN, CheckResult

CHECK = "monitor.overfitting"
# Measured on the book runs (50/20 epochs): val loss ends at 2.26x its minimum for the plain MNIST MLP and
# 1.72x for seizure_dnn (both overfit), 1.30x with dropout (which the book calls flat); healthy small runs
# of the corpus (bench/healthy_corpus) reach 1.5-1.6x on noise, so only 1.7x and more is a warning.
RISE_LIMIT = 0.7
# The best epoch must lie this far before the end (epochs, share of the run): a minimum in the last epoch or
# two is noise around the end, not a turn.
MIN_EPOCHS_AFTER_BEST, MIN_SHARE_AFTER_BEST = 2, 0.2
MIN_EPOCHS = 3
FIX = "keep the best epoch (checkpointing does), stop early, add dropout or L2, or get more data"


@check(
    CHECK,
    what="the rise of the final validation loss above its minimum, as a share of the minimum",
    threshold=RISE_LIMIT,
    fix=FIX,
)
def check_overfitting(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    history = observed.history
    limit = options.threshold(CHECK, RISE_LIMIT)
    threshold = (
        f"val loss at the end > {1 + limit:g}x its minimum, the best epoch at least 2 epochs and 20% of "
        "the run before the end, and the training loss still falling and below its start"
    )
    val, train = history.get("val_loss", []), losses(history)
    if len(val) < MIN_EPOCHS or len(train) != len(val) or not all(math.isfinite(v) for v in val):
        return result(CHECK, SKIP, None, threshold, "needs a finite validation loss for at least 3 epochs")
    n = len(val)
    best = int(np.argmin(val)) + 1
    # A zero minimum (a loss that cannot go lower, e.g. a degenerate head) cannot be exceeded by a ratio.
    rise = val[-1] / val[best - 1] - 1.0 if val[best - 1] > 0 else 0.0
    evidence = {
        "best_epoch": best,
        "val_loss_min": val[best - 1],
        "val_loss_end": val[-1],
        "train_loss_at_best": train[best - 1],
        "train_loss_end": train[-1],
        "gap_end": val[-1] - train[-1],
    }
    early = n - best >= max(MIN_EPOCHS_AFTER_BEST, math.ceil(MIN_SHARE_AFTER_BEST * n))
    learning = train[-1] < train[best - 1] and train[-1] < start_loss(observed.records)
    if rise > limit and early and learning:
        return result(
            CHECK,
            WARN,
            rise,
            threshold,
            f"overfitting: val loss lowest in epoch {best} of {n}, then up {rise:.0%} while the "
            f"training loss kept falling (gap {val[-1] - train[-1]:.3g} at the end)",
            FIX,
            **evidence,
        )
    return result(
        CHECK,
        PASS,
        rise,
        threshold,
        f"val loss lowest in epoch {best} of {n}; {rise:.0%} above it at the end",
        **evidence,
    )
