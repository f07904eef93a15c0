"""Pruning inside a job: report each epoch's objective to the Optuna trial and stop a hopeless trial early.

A pruned trial's MLflow run ends KILLED (it was stopped on purpose before its planned epochs, so it is not
listed among the finished runs it cannot be compared with) and is tagged ``runner.trial_state=PRUNED``.
"""

import logging
import math

import keras
import optuna

from runner.config.objective import Objective
from runner.sweep.study import load_trial

log = logging.getLogger("runner")


class PruningCallback(keras.callbacks.Callback):
    """Reports ``sign * logs[monitor]`` at step = epoch (1-based); stops training when the pruner says so."""

    def __init__(self, trial, monitor: str, sign: float = 1.0):
        super().__init__()
        self.trial, self.monitor, self.sign = trial, monitor, sign
        self.pruned_at: int | None = None
        self.last_value: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return  # a NaN loss ends the run as a failure elsewhere; the pruner must not see it
        self.last_value = float(value)
        self.trial.report(self.sign * self.last_value, step=epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True

    def check(self) -> None:
        """After ``fit``: raise ``optuna.TrialPruned`` if the pruner stopped the trial."""
        if self.pruned_at is not None:
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned after epoch {self.pruned_at}: {self.monitor}={self.last_value:.6g}"
            )


def callback_for(spec) -> PruningCallback | None:
    """The pruning callback of a job that is an Optuna trial (``trial.*`` set by the sweeper), else None."""
    link = spec.trial
    if link.id is None:
        return None
    trial = load_trial(link)
    if trial is None:
        return None
    objective = Objective.of(spec)
    return PruningCallback(trial, objective.monitor, objective.monitor_sign)


def is_pruned(error: BaseException) -> bool:
    return isinstance(error, optuna.TrialPruned)


def mark_pruned(record, error: BaseException) -> None:
    log.info("%s", error)
    record.set_tags({"runner.trial_state": "PRUNED", "runner.pruned": str(error)[:5000]})
    record.terminate("KILLED")
