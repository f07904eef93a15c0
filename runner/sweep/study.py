"""The Optuna study behind a search: its storage, sampler and pruner, opened by the sweep (``open_study``) and
by each of its jobs (``load_trial``, for pruning).

The study lives in persistent storage (by default ``optuna.db`` beside a local SQLite MLflow store), so running
the same command again continues it. Optuna is imported inside functions: Hydra imports the sweeper plugin on
every start, and ``--help`` must stay fast.
"""

import logging
import warnings

from omegaconf import DictConfig, OmegaConf

from runner.config import objective
from runner.config.sweeper import PRUNERS, SAMPLERS
from runner.errors import ConfigError, RunnerError
from runner.runtime import compat
from runner.runtime.sqlite_files import creation_lock, sqlite_path
from runner.sweep import definition
from runner.sweep.space import SearchSpace, grid_of, parse_space

log = logging.getLogger("runner.sweep.study")

# SQLite lets one writer in at a time: parallel workers and jobs wait this long for the lock instead of failing
# with "database is locked" after SQLite's default 5 s.
SQLITE_TIMEOUT_S = 120


class SweepError(RunnerError):
    """The sweep as a whole cannot go on (too many failed trials, a study that does not fit the command)."""


def study_storage(sweeper: DictConfig, tracking_uri: str) -> str:
    """The study's storage URL: as configured, else ``optuna.db`` beside a local SQLite tracking store."""
    if sweeper.storage:
        return str(sweeper.storage)
    database = sqlite_path(tracking_uri)
    if database is None:
        raise ConfigError(
            f"hydra.sweeper.storage is not set and the tracking store {tracking_uri} is not a local "
            f"SQLite file; set it, e.g. hydra.sweeper.storage=sqlite:///optuna.db or a database URL"
        )
    return f"sqlite:///{(database.parent.resolve() / 'optuna.db')}"


def storage_of(url: str, sweeper: DictConfig | None = None):
    """The study's storage at ``url``; with ``sweeper``, with heartbeats, so that workers find dead workers' trials.

    A worker records a heartbeat for each trial it runs every ``heartbeat_interval`` seconds; a running trial
    without one for ``grace_period`` seconds is stale (``runner.sweep.stale``).
    """
    import optuna

    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite:") else None
    heartbeats = {}
    if sweeper is not None:
        interval = int(OmegaConf.select(sweeper, "heartbeat_interval", default=10))
        grace = OmegaConf.select(sweeper, "grace_period", default=None)
        heartbeats = {"heartbeat_interval": interval, "grace_period": int(grace or 3 * interval)}
    # Opening a new SQLite file creates Optuna's tables and stamps its alembic version: two processes doing it at
    # once (two workers' first start, a job's load_trial) collide on the one alembic_version row.
    with creation_lock(sqlite_path(url)), warnings.catch_warnings():
        # heartbeats have been "experimental" since optuna 2.9; the API is stable
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **heartbeats)


def study_name(config: DictConfig) -> str:
    return str(config.hydra.sweeper.study_name or config.name)


def build_sampler(sampler: dict, space: SearchSpace | None):
    import optuna

    name = sampler["name"]
    seed = sampler.get("seed")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sampler["n_startup_trials"])
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_of(space) if space else {}, seed=seed)
    raise ConfigError(f"hydra.sweeper.sampler.name={name!r} is not a sampler; choose one of: {', '.join(SAMPLERS)}")


def build_pruner(pruner: dict):
    """The pruner of a study; jobs rebuild it from the study's user attributes to decide on their trial."""
    import optuna

    name = pruner["name"]
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner["n_startup_trials"], n_warmup_steps=pruner["n_warmup_steps"]
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner["min_resource"],
            max_resource=pruner["max_resource"] or "auto",
            reduction_factor=pruner["reduction_factor"],
        )
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner["min_resource"], reduction_factor=pruner["reduction_factor"]
        )
    raise ConfigError(f"hydra.sweeper.pruner.name={name!r} is not a pruner; choose one of: {', '.join(PRUNERS)}")


def open_study(config: DictConfig, space: SearchSpace | None = None):
    """Create the sweep's study, or load it when the same storage already holds one of that name.

    ``config`` is the composed multirun config (it holds ``hydra.sweeper``, ``objective`` and ``tracking``); a
    ``hydra.sweeper`` node that is still part of it works too. Idempotent: call it as often as you like.
    """
    import optuna

    config = _root(config)
    sweeper = config.hydra.sweeper
    if space is None:
        space = parse_space(OmegaConf.to_container(sweeper.params or {}), list(config.hydra.overrides.task))
    sampler_cfg = OmegaConf.to_container(sweeper.sampler, resolve=True)
    pruner_cfg = OmegaConf.to_container(sweeper.pruner, resolve=True)
    if sampler_cfg["name"] == "grid" and pruner_cfg["name"] != "none":
        log.info("grid sampler: pruning is off (a grid runs every point to the end)")
        pruner_cfg = {**pruner_cfg, "name": "none"}
    url = study_storage(sweeper, config.tracking.uri)
    storage = storage_of(url, sweeper)
    name = study_name(config)
    metric, wanted = config.objective.metric, objective.Objective.of(config).direction
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = definition.settle(config, space, storage, name)  # refuses a study created with other settings

    def create():
        return optuna.create_study(
            storage=storage,
            study_name=name,
            direction=wanted,
            load_if_exists=True,
            sampler=build_sampler(sampler_cfg, space),
            pruner=build_pruner(pruner_cfg),
        )

    study = create()
    recorded = study.user_attrs.get("runner.config.objective")
    if (recorded != metric or study.direction.name.lower() != wanted) and not study.trials:
        # A study that never ran a trial (say, opened by a command refused for a typo) takes the new objective.
        optuna.delete_study(study_name=name, storage=storage)
        study, recorded = create(), None
    if recorded is None:
        study.set_user_attr("runner.config.objective", metric)
    elif recorded != metric or study.direction.name.lower() != wanted:
        raise SweepError(
            f"study {name!r} in {url} optimises {recorded} ({study.direction.name.lower()}), "
            f"this sweep {metric} ({wanted}); choose another hydra.sweeper.study_name"
        )
    study.set_user_attr("runner.pruner", pruner_cfg)
    if study.trials and sampler_cfg.get("seed") is not None:
        # A resumed study must not replay the first run's random draws (trial 0's params again): offset the
        # seed by the trials already held, which keeps a resumed sweep repeatable too.
        study.sampler = build_sampler({**sampler_cfg, "seed": sampler_cfg["seed"] + len(study.trials)}, space)
    return study


def _root(config: DictConfig) -> DictConfig:
    if "hydra" in config:
        return config
    root = compat.config_root(config)  # a hydra.sweeper node still attached to its config
    if "hydra" not in root:
        raise ConfigError("open_study needs the composed multirun config (with hydra.sweeper)")
    return root


def load_trial(link):
    """The running trial a job is (its ``trial.*`` settings), with the study's pruner; None if it is not running."""
    import optuna

    number, trial_id, name, storage = link.number, link.id, link.study, link.storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage_of(storage), sampler=optuna.samplers.RandomSampler())
    study.pruner = build_pruner(study.user_attrs.get("runner.pruner", {"name": "none"}))
    state = compat.trial_state(study, trial_id)
    if state != optuna.trial.TrialState.RUNNING:
        # A trial's overrides replayed by hand: that trial is over, so this run reports to nothing.
        log.warning("trial %s of study %r is %s, not running: this run is not pruned", number, name, state.name)
        return None
    return optuna.trial.Trial(study, trial_id)
