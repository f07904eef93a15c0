"""monitor.underfitting: a training loss that plateaued far above zero, with the model fitting its training
data no better than unseen data."""

from __future__ import annotations

import math

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, losses, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, SKIP, WARN, CheckResult

CHECK = "monitor.underfitting"
# The book's MNIST MLP ends at 0.4% of chance level, mnist_l2 at 6.2%: 3% separates them.
FAR_FROM_ZERO = 0.03
PLATEAU_DROP = 0.05  # the last third of the epochs lowered the loss by less than this share: a plateau
NO_GAP = 0.95  # train data loss at least this share of val's: no generalisation gap to speak of
MIN_EPOCHS = 6  # a plateau needs a last third of at least two epochs after a few of learning
FIX = "reduce regularisation (L2, dropout), add capacity, or train longer with a higher learning rate"


@check(
    CHECK,
    what="the inference-mode data loss on the training set at the end, over the chance-level loss",
    threshold=FAR_FROM_ZERO,
    fix=FIX,
)
def check_underfitting(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records, chance = observed.records, observed.chance
    far = options.threshold(CHECK, FAR_FROM_ZERO)
    threshold = (
        f"all of: training loss plateaued (< 5% drop over the last third), inference-mode data loss on "
        f"train >= 0.95x that on val (no generalisation gap), and >= {far:g}x the chance-level loss"
    )
    series = [v for v in losses(observed.history) if math.isfinite(v)]
    train_end, val_end = records.end_losses.get("train"), records.end_losses.get("val")
    if len(series) < MIN_EPOCHS or train_end is None or val_end is None or not chance:
        return result(
            CHECK, SKIP, None, threshold, "needs 6+ epochs, a validation split and a loss with a known chance level"
        )
    k = max(2, len(series) // 3)
    recent_drop = 1.0 - min(series[-k:]) / series[-k - 1] if series[-k - 1] > 0 else math.nan
    value = train_end / chance
    evidence = {
        "train_data_loss": train_end,
        "val_data_loss": val_end,
        "chance_loss": chance,
        "recent_drop": recent_drop,
        "window_epochs": k,
    }
    plateau = recent_drop < PLATEAU_DROP
    no_gap = train_end >= NO_GAP * val_end
    if plateau and no_gap and value >= far:
        return result(
            CHECK,
            WARN,
            value,
            threshold,
            f"underfitting: the training loss plateaued at {value:.0%} of chance level and the model "
            "fits its training data no better than unseen data",
            FIX,
            **evidence,
        )
    return result(
        CHECK,
        PASS,
        value,
        threshold,
        f"training data loss {value:.1%} of chance level; train/val data loss {train_end:.3g}/{val_end:.3g}",
        **evidence,
    )
