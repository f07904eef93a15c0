"""The objective of a search: which metric a run is judged by, in which direction, and its value.

TensorFlow-free, so a sweep can check its objective before any trial starts. The metric names here must
match what ``training`` compiles and ``evaluation`` computes; tests/test_search.py checks that they agree.
"""

import math
from collections.abc import Mapping

from runner.errors import ConfigError

DATASET_TASKS = {"wine": "regression", "seizure": "binary", "mnist": "multiclass"}
SYNTHETIC_TASKS = {
    "regression": "regression",
    "binary": "binary",
    "multiclass": "multiclass",
    "xor": "binary",
    "sequence": "regression",
}
EPOCH_METRICS = {"regression": ("mae", "rmse"), "binary": ("accuracy",), "multiclass": ("accuracy",)}
FINAL_METRICS = {
    "regression": ("mae", "rmse"),
    "binary": ("accuracy", "roc_auc", "precision", "recall", "f1"),
    "multiclass": ("accuracy", "macro_f1"),
}
RUN_METRICS = ("best_epoch", "epochs_run", "train_seconds", "first_step_seconds", "parameters")
SPLITS = ("train", "val", "test")
HIGHER_IS_BETTER = ("accuracy", "auc", "f1", "precision", "recall")
# Losses that take one-hot targets (the others take class indices); shared by training and the diagnostics.
ONE_HOT_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy", "kl_divergence"}


def task_of(cfg: Mapping) -> str | None:
    """The task a config's data set poses, or None for a data set this module does not know."""
    dataset = cfg["dataset"]
    if dataset["name"] == "synthetic":
        return SYNTHETIC_TASKS.get(dataset["task"])
    return DATASET_TASKS.get(dataset["name"])


def epoch_metric_names(cfg: Mapping) -> list[str]:
    """What every epoch logs: the loss and the compiled metrics, their val_ twins, and the learning rate."""
    task = task_of(cfg)
    names = ["loss", *EPOCH_METRICS[task]]
    if task == "binary" and cfg["trainer"]["roc_auc_per_epoch"]:
        names.append("roc_auc")
    return names + [f"val_{name}" for name in names] + ["epoch_seconds", "learning_rate"]


def final_metric_names(cfg: Mapping) -> list[str]:
    """What the final evaluation logs (with the kept epoch's weights), per split, plus the run's counters."""
    task = task_of(cfg)
    names = list(FINAL_METRICS[task])
    dataset = cfg["dataset"]
    if task == "regression" and dataset["name"] == "wine" and dataset.get("scale_target", False):
        names += ["mae_original", "rmse_original"]  # errors in % alcohol as well as standardised units
    return [f"{split}_{name}" for split in SPLITS for name in names] + list(RUN_METRICS)


def metric_names(cfg: Mapping) -> list[str]:
    """Every metric a run of this config logs, per-epoch names first."""
    return list(dict.fromkeys(epoch_metric_names(cfg) + final_metric_names(cfg)))


def metric_direction(metric: str) -> str:
    return "maximize" if any(word in metric for word in HIGHER_IS_BETTER) else "minimize"


def direction(cfg: Mapping) -> str:
    """``minimize`` or ``maximize``: objective.direction, or from the metric's name when it is ``auto``."""
    chosen = cfg["objective"]["direction"]
    return metric_direction(cfg["objective"]["metric"]) if chosen == "auto" else chosen


def check_metric(cfg: Mapping) -> None:
    """Refuse an objective the run would never log, listing the ones it does."""
    if task_of(cfg) is None:
        return  # a data set added later: the job reports a missing metric when it ends
    metric = cfg["objective"]["metric"]
    available = metric_names(cfg)
    if metric not in available:
        raise ConfigError(
            f"objective.metric={metric!r} is not a metric of this run; choose one of: {', '.join(available)}"
        )


def objective_value(cfg: Mapping, metrics: Mapping[str, float], history: Mapping[str, list] | None = None) -> float:
    """The run's objective: the final metric of that name (kept weights), else its value at the kept epoch."""
    metric = cfg["objective"]["metric"]
    if metric in metrics:
        return float(metrics[metric])
    values = list((history or {}).get(metric, []))
    if not values:
        raise ConfigError(
            f"objective.metric={metric!r} was not logged by this run; it logged: "
            f"{', '.join(sorted(set(metrics) | set(history or {})))}"
        )
    best_epoch = metrics.get("best_epoch")
    if best_epoch is not None and 1 <= int(best_epoch) <= len(values):
        return float(values[int(best_epoch) - 1])
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return float("nan")
    return max(finite) if direction(cfg) == "maximize" else min(finite)


def pruning_monitor(cfg: Mapping) -> tuple[str, float]:
    """The per-epoch metric a trial reports to its pruner, and the sign that orients it like the objective.

    A final-only objective (test_accuracy, val_macro_f1, ...) has no per-epoch values; the checkpoint monitor
    stands in for it, negated when it improves the other way (a loss for a maximised score).
    """
    metric = cfg["objective"]["metric"]
    if metric in epoch_metric_names(cfg):
        return metric, 1.0
    checkpoint = cfg["trainer"]["checkpoint"]
    monitor = checkpoint["monitor"]
    mode = checkpoint["mode"]
    monitor_direction = metric_direction(monitor) if mode == "auto" else ("maximize" if mode == "max" else "minimize")
    return monitor, 1.0 if monitor_direction == direction(cfg) else -1.0
