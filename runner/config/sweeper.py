"""The ``runner_optuna`` sweeper's settings (``hydra.sweeper.*``), a structured config Hydra validates.

Kept apart from the search itself so that the Hydra plugin registers its schema without importing Optuna or the
sweep wing (Hydra imports every plugin on every start).
"""

from dataclasses import dataclass, field
from typing import Dict, Optional

SWEEPER_TARGET = "hydra_plugins.runner_optuna_sweeper.runner_optuna_sweeper.RunnerOptunaSweeper"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "successive_halving")


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | grid
    seed: Optional[int] = "${trainer.seed}"  # same command, same trials
    n_startup_trials: int = 10  # tpe: random trials before its model of good and bad regions takes over


@dataclass
class PrunerConf:
    name: str = "none"  # none | median | hyperband | successive_halving
    n_startup_trials: int = 5  # median: finished trials before any trial is pruned
    n_warmup_steps: int = 2  # median: the first epoch after which a trial can be pruned (steps are epochs)
    min_resource: int = 1  # hyperband, successive_halving: epochs every trial runs
    max_resource: Optional[int] = "${trainer.epochs}"  # hyperband
    reduction_factor: int = 3  # hyperband, successive_halving: keep the best 1/factor at each rung


@dataclass
class RunnerOptunaSweeperConf:
    _target_: str = SWEEPER_TARGET
    storage: Optional[str] = None  # None: sqlite optuna.db beside a local SQLite tracking store
    study_name: Optional[str] = None  # None: the experiment's name
    study: str = "check"  # check | new | continue: when the study was created with other settings (sweep/definition.py)
    n_trials: int = 20  # finished trials (complete, pruned or failed) the study should hold
    n_jobs: Optional[int] = None  # trials run at once; None: hydra.launcher.n_jobs if set, else 1
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats in the study's storage ...
    grace_period: Optional[int] = None  # ... and without one before another worker re-runs it (None: 3x interval)
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    max_failure_rate: float = 0.5  # stop when a larger share of the finished trials failed ...
    min_trials_for_failure_rate: int = 4  # ... once at least this many have finished
    params: Dict[str, str] = field(default_factory=dict)  # key: Hydra sweep syntax, e.g. tag(log, interval(1e-4, 1e-2))
