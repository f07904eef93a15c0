"""The MLflow record of a sweep, as a Hydra callback: one parent run, every job a child of it, and a report.

``on_multirun_start`` runs in the launching process before any job starts and opens (or resumes) the parent
run (``runner.sweep.parent_run``); each job links itself to it as a child (``runner.sweep.child``);
``on_multirun_end`` writes the report on the parent and ends it (``runner.sweep.closing``). Hydra skips
``on_multirun_end`` when the sweeper raises (its basic sweeper does after the last job when any job failed), so
``runner.cli.main`` calls ``end_open_sweeps`` on its way out (an ``atexit`` hook is the last resort): the report
is written all the same, and the parent ends FINISHED when every job of a grid ran and one finished, FAILED when
the sweep stopped early.

Hydra loads this callback for every command: nothing here imports MLflow, Optuna or TensorFlow until a sweep
starts.
"""

import atexit

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError, Refused
from runner.runtime import compat
from runner.runtime.console import apply_verbosity
from runner.sweep.child import job_progress
from runner.sweep.closing import close_safely, end_abandoned
from runner.sweep.parent_run import ParentRun, open_sweep
from runner.sweep.warm_up import warm_up

OPEN_PARENTS: list[ParentRun] = []  # sweeps of this process whose parent run is not ended yet


class SweepRecord(Callback):
    """Hydra callback (``hydra.callbacks.sweep_record`` in conf/config.yaml); single runs are untouched."""

    def __init__(self, best_config_dir: str | None = None, mixed_experiment: str = "sweeps"):
        self.best_config_dir = best_config_dir
        self.mixed_experiment = mixed_experiment
        self.parent: ParentRun | None = None

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs) -> None:
        apply_verbosity(OmegaConf.select(config, "verbosity", default="normal"))  # before MLflow, Optuna load
        warm_up(config)  # the joblib workers import while this process opens the parent run
        try:
            self.parent = open_sweep(config, config_name, self.best_config_dir, self.mixed_experiment)
        except ConfigError as error:  # Hydra would turn it into a warning and go on to sweep
            raise Refused(str(error)) from None
        OPEN_PARENTS.append(self.parent)
        atexit.register(end_abandoned, self.parent)  # a last resort when the program is not run by runner.cli

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.runtime.choices.get("hydra/launcher") == "joblib":  # every job has returned
            compat.stop_joblib_workers()
        if self.parent is not None:
            close_safely(self.parent)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        # A search prints its trials' progress from its own loop (runner/sweep/search.py); a grid's jobs do it here.
        if self.parent is not None and self.parent.grid_jobs is not None and config.get("verbosity") != "quiet":
            print(job_progress(self.parent, config, job_return), flush=True)


def end_open_sweeps() -> None:
    """End the parent runs Hydra's on_multirun_end did not reach (the sweeper raised or was interrupted)."""
    for parent in OPEN_PARENTS:
        end_abandoned(parent)
