"""The objective of a search: which metric a run is judged by, in which direction, and its value.

TensorFlow-free, so a sweep can check its objective before any trial starts. The metric names here must
match what ``training`` compiles and ``evaluation`` computes; tests/test_search.py checks that they agree.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from datasets import SPLITS, spec_for, spec_of
from runner.errors import ConfigError

# multilabel: accuracy is over every (row, label) decision, subset_accuracy over whole rows; roc_auc averages
# the labels' AUCs (per epoch Keras's streaming estimate, finally scikit-learn's exact one).
EPOCH_METRICS = {
    "regression": ("mae", "rmse"),
    "binary": ("accuracy",),
    "multiclass": ("accuracy",),
    "multilabel": ("accuracy", "micro_f1", "macro_f1", "roc_auc"),
}
FINAL_METRICS = {
    "regression": ("mae", "rmse"),
    "binary": ("accuracy", "roc_auc", "precision", "recall", "f1"),
    "multiclass": ("accuracy", "macro_f1"),
    "multilabel": ("accuracy", "subset_accuracy", "micro_f1", "macro_f1", "roc_auc"),
}
RUN_METRICS = ("best_epoch", "epochs_run", "train_seconds", "first_step_seconds", "parameters")
HIGHER_IS_BETTER = ("accuracy", "auc", "f1", "precision", "recall")


def task_of(cfg) -> str | None:
    """The task a config's data set poses (datasets/specs.py), or None for a data set it does not know."""
    spec = spec_of(cfg.dataset)  # a composed config or a typed spec
    return None if spec is None else spec.task


def epoch_metric_names(cfg, task: str | None = None) -> list[str]:
    """What every epoch logs: the loss and the compiled metrics, their val_ twins, and the learning rate.
    ``task``: the task the loaded data posed (task=auto), else the config's."""
    task = task or task_of(cfg)
    names = ["loss", *EPOCH_METRICS[task]]
    if task == "binary" and cfg.trainer.roc_auc_per_epoch:
        names.append("roc_auc")
    return names + [f"val_{name}" for name in names] + ["epoch_seconds", "learning_rate"]


def final_metric_names(cfg, task: str | None = None) -> list[str]:
    """What the final evaluation logs (with the kept epoch's weights), per split, plus the run's counters."""
    spec = spec_of(cfg.dataset) if task is None else spec_for(cfg.dataset.name, {**_options(cfg.dataset), "task": task})
    names = [*FINAL_METRICS[task or spec.task], *spec.extra_final_metrics]  # e.g. wine's mae_original
    return [f"{split}_{name}" for split in SPLITS for name in names] + list(RUN_METRICS)


def metric_names(cfg, task: str | None = None) -> list[str]:
    """Every metric a run of this config logs, per-epoch names first."""
    return list(dict.fromkeys(epoch_metric_names(cfg, task) + final_metric_names(cfg, task)))


def _options(dataset) -> dict:
    return dict(dataset.items()) if isinstance(dataset, Mapping) else dict(vars(dataset))


def metric_direction(metric: str) -> str:
    """``maximize`` for scores (accuracy, AUC, F1, precision, recall), ``minimize`` for losses and errors."""
    return "maximize" if any(word in metric for word in HIGHER_IS_BETTER) else "minimize"


def monitor_mode(monitor: str, mode: str) -> str:
    """A Keras callback's ``mode`` (``min``/``max``): the configured one, or from the metric's name for ``auto``."""
    if mode != "auto":
        return mode
    return "max" if metric_direction(monitor) == "maximize" else "min"


def improves(value: float, than: float, direction: str) -> bool:
    """Whether ``value`` is better than ``than`` in ``direction`` (a NaN ``than``: any finite value is)."""
    if not math.isfinite(value):
        return False
    if math.isnan(than):
        return True
    return value > than if direction == "maximize" else value < than


def best_index(values, direction: str) -> int | None:
    """Index of the first best finite value (the one a save-best checkpoint keeps), None when none is finite."""
    best = None
    for index, value in enumerate(values):
        if improves(float(value), float("nan") if best is None else float(values[best]), direction):
            best = index
    return best


@dataclass(frozen=True)
class Objective:
    """What a run is judged by: its metric, which way is better, and what a pruner watches every epoch."""

    metric: str
    direction: str  # "minimize" or "maximize"
    monitor: str = ""  # the per-epoch metric a trial reports to its pruner ("": the metric itself)
    monitor_sign: float = 1.0  # +1 when the monitor improves the objective's way, -1 when it improves the other way

    def __post_init__(self):
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"an objective's direction is minimize or maximize, not {self.direction!r}")
        if not self.monitor:
            object.__setattr__(self, "monitor", self.metric)

    @classmethod
    def of(cls, cfg) -> "Objective":
        """From a config's ``objective`` block (a typed spec or a composed config)."""
        metric = cfg.objective.metric
        chosen = cfg.objective.direction
        direction = metric_direction(metric) if chosen == "auto" else chosen
        if task_of(cfg) is None or metric in epoch_metric_names(cfg):
            return cls(metric, direction, metric, 1.0)
        # A final-only objective (test_accuracy, val_macro_f1, ...) has no per-epoch values; the checkpoint
        # monitor stands in for it, negated when it improves the other way (a loss for a maximised score).
        checkpoint = cfg.trainer.checkpoint
        mode = monitor_mode(checkpoint.monitor, checkpoint.mode)
        monitor_direction = "maximize" if mode == "max" else "minimize"
        return cls(metric, direction, checkpoint.monitor, 1.0 if monitor_direction == direction else -1.0)

    def better(self, value: float, than: float) -> bool:
        return improves(value, than, self.direction)

    def best(self, values) -> int | None:
        """Index of the first best finite value, None when none is finite."""
        return best_index(list(values), self.direction)

    def value(self, metrics: Mapping[str, float], history: Mapping[str, list] | None = None) -> float:
        """The run's objective: the final metric of that name (kept weights), else its value at the kept epoch."""
        if self.metric in metrics:
            return float(metrics[self.metric])
        values = list((history or {}).get(self.metric, []))
        if not values:
            raise ConfigError(
                f"objective.metric={self.metric!r} was not logged by this run; it logged: "
                f"{', '.join(sorted(set(metrics) | set(history or {})))}"
            )
        best_epoch = metrics.get("best_epoch")
        if best_epoch is not None and 1 <= int(best_epoch) <= len(values):
            return float(values[int(best_epoch) - 1])
        best = self.best(values)
        return float("nan") if best is None else float(values[best])
