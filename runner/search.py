"""Optuna search behind the ``runner_optuna`` Hydra sweeper: the study, the search space, sampler and pruner,
and the trial loop that launches jobs through Hydra's launcher.

The study lives in persistent storage (by default ``optuna.db`` beside a local SQLite MLflow store), so running
the same command again continues it. Optuna and Hydra's internals are imported inside functions: Hydra imports
the plugin on every start, and ``--help`` must stay fast.
"""

import difflib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from runner import objective
from runner.errors import ConfigError, RunnerError
from runner.schema import validate

log = logging.getLogger("runner.search")

SWEEPER_TARGET = "hydra_plugins.runner_optuna_sweeper.runner_optuna_sweeper.RunnerOptunaSweeper"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "successive_halving")
INTERRUPTED = "runner.interrupted"  # user attribute of a trial a stopped sweep left running
ERROR = "runner.error"


class SweepError(RunnerError):
    """The sweep as a whole cannot go on (too many failed trials, a study that does not fit the command)."""


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
    n_trials: int = 20  # finished trials (complete, pruned or failed) the study should hold
    n_jobs: Optional[int] = None  # trials launched together; None: hydra.launcher.n_jobs if set, else 1
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    max_failure_rate: float = 0.5  # stop when a larger share of the finished trials failed ...
    min_trials_for_failure_rate: int = 4  # ... once at least this many have finished
    params: Dict[str, str] = field(default_factory=dict)  # key: Hydra sweep syntax, e.g. tag(log, interval(1e-4, 1e-2))


# ---------------------------------------------------------------- the search space


@dataclass
class Dimension:
    """One searched key: its Optuna distribution and how a sampled value is written as an override."""

    name: str  # the config key, as Optuna records it
    override_key: str  # the key as written on the command line (with a + or ++ prefix if any)
    distribution: Any
    raw_text: bool = False  # categories are override texts (lists, dicts), written as they are

    def override(self, value) -> str:
        return f"{self.override_key}={value if self.raw_text else override_text(value)}"


@dataclass
class SearchSpace:
    dimensions: dict[str, Dimension]
    fixed: list[str]  # the command's other overrides, passed to every trial

    def distributions(self) -> dict[str, Any]:
        return {name: dim.distribution for name, dim in self.dimensions.items()}

    def overrides(self, params: dict) -> list[str]:
        return self.fixed + [self.dimensions[name].override(params[name]) for name in self.dimensions]


def override_text(value) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text and all(ch.isalnum() or ch in "_-./:" for ch in text) and text[0] not in "-.":
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_space(params: dict, arguments: list[str]) -> SearchSpace:
    """Dimensions from ``hydra.sweeper.params`` and the command's sweep overrides (the command wins)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    dimensions, fixed = {}, {}
    for override in parser.parse_overrides(lines):
        name = override.key_or_group
        if override.is_sweep_override():
            fixed.pop(name, None)
            dimensions[name] = _dimension(override)
        else:
            dimensions.pop(name, None)
            fixed[name] = override.input_line
    return SearchSpace(dimensions=dimensions, fixed=list(fixed.values()))


def _dimension(override) -> Dimension:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    name, key = override.key_or_group, override.get_key_element()
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        values = list(override.sweep_iterator())
        if all(value is None or isinstance(value, (bool, int, float, str)) for value in values):
            return Dimension(name, key, CategoricalDistribution(values))
        texts = list(override.sweep_string_iterator())
        return Dimension(name, key, CategoricalDistribution(texts), raw_text=True)
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{key}={override.get_value_element_as_str()} is an empty range")
        step = values[1] - values[0] if len(values) > 1 else 1
        if all(isinstance(value, int) for value in values):
            return Dimension(name, key, IntDistribution(values[0], values[-1], step=step))
        return Dimension(name, key, FloatDistribution(values[0], values[-1], step=step))
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if "int" in sweep.tags:
            return Dimension(name, key, IntDistribution(int(sweep.start), int(sweep.end), log=log_scale))
        return Dimension(name, key, FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale))
    raise ConfigError(f"{override.input_line}: the runner_optuna sweeper takes choice(...), a,b,c, range(...), "
                      f"interval(...) and tag(log, interval(...)); glob() works with the basic sweeper only")


def grid_of(space: SearchSpace) -> dict[str, list]:
    """Every value of every dimension, for the grid sampler (intervals have none)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid = {}
    for name, dim in space.dimensions.items():
        dist = dim.distribution
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ConfigError(f"sampler grid cannot enumerate {dim.override_key} (a continuous interval); use "
                              f"choice(...) or range(...), or sampler tpe/random")
    return grid


def check_keys(config: DictConfig, space: SearchSpace) -> None:
    """A searched key must exist in the composed config (unless it is added with +): a typo fails here."""
    known = _all_keys(OmegaConf.to_container(config, resolve=False))
    for dim in space.dimensions.values():
        if dim.override_key.startswith(("+", "~")) or dim.name.startswith("hydra."):
            continue
        if dim.name not in known:
            close = difflib.get_close_matches(dim.name, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"searched key {dim.name!r} is not in the composed config{hint} "
                              f"(no trial was run)")


def _all_keys(node, prefix="") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "hydra" and not prefix:
                continue
            name = f"{prefix}{key}"
            keys.add(name)
            keys |= _all_keys(value, f"{name}.")
    return keys


def corner_points(space: SearchSpace) -> list[dict]:
    """Points that exercise every category and both ends of every range, to validate before any trial."""
    from optuna.distributions import CategoricalDistribution

    def ends(dist):
        return list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]

    base = {name: ends(dim.distribution)[0] for name, dim in space.dimensions.items()}
    points = [base]
    for name, dim in space.dimensions.items():
        points += [{**base, name: value} for value in ends(dim.distribution)[1:]]
    return points


# ---------------------------------------------------------------- the study


def study_storage(sweeper: DictConfig, tracking_uri: str) -> str:
    """The study's storage URL: as configured, else ``optuna.db`` beside a local SQLite tracking store."""
    from runner.tracking import sqlite_path  # MLflow's import is slow; Hydra imports this plugin on every start

    if sweeper.storage:
        return str(sweeper.storage)
    database = sqlite_path(tracking_uri)
    if database is None:
        raise ConfigError(f"hydra.sweeper.storage is not set and the tracking store {tracking_uri} is not a local "
                          f"SQLite file; set it, e.g. hydra.sweeper.storage=sqlite:///optuna.db or a database URL")
    return f"sqlite:///{(database.parent.resolve() / 'optuna.db')}"


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
        return optuna.pruners.MedianPruner(n_startup_trials=pruner["n_startup_trials"],
                                           n_warmup_steps=pruner["n_warmup_steps"])
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=pruner["min_resource"],
                                              max_resource=pruner["max_resource"] or "auto",
                                              reduction_factor=pruner["reduction_factor"])
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=pruner["min_resource"],
                                                      reduction_factor=pruner["reduction_factor"])
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
    storage = study_storage(sweeper, config.tracking.uri)
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    name = study_name(config)
    metric, wanted = config.objective.metric, objective.direction(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def create():
        return optuna.create_study(storage=storage, study_name=name, direction=wanted, load_if_exists=True,
                                   sampler=build_sampler(sampler_cfg, space), pruner=build_pruner(pruner_cfg))

    study = create()
    recorded = study.user_attrs.get("runner.objective")
    if (recorded != metric or study.direction.name.lower() != wanted) and not study.trials:
        # A study that never ran a trial (say, opened by a command refused for a typo) takes the new objective.
        optuna.delete_study(study_name=name, storage=storage)
        study, recorded = create(), None
    if recorded is None:
        study.set_user_attr("runner.objective", metric)
    elif recorded != metric or study.direction.name.lower() != wanted:
        raise SweepError(f"study {name!r} in {storage} optimises {recorded} ({study.direction.name.lower()}), "
                         f"this sweep {metric} ({wanted}); choose another hydra.sweeper.study_name")
    study.set_user_attr("runner.pruner", pruner_cfg)
    if study.trials and sampler_cfg.get("seed") is not None:
        # A resumed study must not replay the first run's random draws (trial 0's params again): offset the
        # seed by the trials already held, which keeps a resumed sweep repeatable too.
        study.sampler = build_sampler({**sampler_cfg, "seed": sampler_cfg["seed"] + len(study.trials)}, space)
    return study


def _root(config: DictConfig) -> DictConfig:
    if "hydra" in config:
        return config
    root = config._get_root()  # a hydra.sweeper node still attached to its config
    if "hydra" not in root:
        raise ConfigError("open_study needs the composed multirun config (with hydra.sweeper)")
    return root


def load_trial(link: dict):
    """The running trial a job is (``trial.*`` keys), with the study's pruner; None if it is not running."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=link["study"], storage=link["storage"],
                              sampler=optuna.samplers.RandomSampler())
    study.pruner = build_pruner(study.user_attrs.get("runner.pruner", {"name": "none"}))
    state = study._storage.get_trial(link["id"]).state
    if state != optuna.trial.TrialState.RUNNING:
        # A trial's overrides replayed by hand: that trial is over, so this run reports to nothing.
        log.warning("trial %s of study %r is %s, not running: this run is not pruned", link["number"],
                    link["study"], state.name)
        return None
    return optuna.trial.Trial(study, link["id"])


# ---------------------------------------------------------------- the trial loop


def counted_trials(study) -> list:
    """Finished trials that count towards n_trials: those a stopped sweep left running are re-run instead."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get(INTERRUPTED)]


def requeue_interrupted(study) -> int:
    """Trials left running by a stopped sweep: mark them failed and queue their params to run once more."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        _tell(study, trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"runner.rerun_of": trial.number})
        log.info("trial %d was interrupted: it runs again with the same params", trial.number)
    return len(stale)


def link_overrides(study, trial, storage: str) -> list[str]:
    return [f"trial.number={trial.number}", f"trial.id={trial._trial_id}",
            f"trial.study={override_text(study.study_name)}", f"trial.storage={override_text(storage)}"]


def _tell(study, trial, value=None, state=None) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        # The grid sampler calls study.stop() once every point was visited, which only works inside
        # study.optimize; the trial is stored all the same, and run_sweep stops when the grid is exhausted.
        if "Study.stop" not in str(error):
            raise


def grid_exhausted(study) -> bool:
    import optuna

    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def tell_result(study, trial, job_return) -> str:
    """Record a job's outcome in its trial: COMPLETE with the value, PRUNED, or FAIL with the reason."""
    import optuna
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    outcome = job_return._return_value  # the value, or the exception a failed job raised (also via joblib)
    if job_return.status == JobStatus.COMPLETED:
        if isinstance(outcome, (int, float)) and not isinstance(outcome, bool) and math.isfinite(outcome):
            _tell(study, trial, float(outcome))
            return "COMPLETE"
        reason = f"the objective is {outcome!r}, not a finite number"
    elif isinstance(outcome, optuna.TrialPruned):
        _tell(study, trial, state=TrialState.PRUNED)
        return "PRUNED"
    else:
        reason = f"{type(outcome).__name__}: {outcome}"
    trial.set_user_attr(ERROR, reason[:2000])
    _tell(study, trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, reason.splitlines()[0] if reason else "")
    return "FAIL"


def check_failure_rate(trials: list, max_rate: float, min_trials: int) -> None:
    from optuna.trial import TrialState

    failed = [t for t in trials if t.state == TrialState.FAIL]
    if len(trials) < min_trials or len(failed) <= max_rate * len(trials):
        return
    lines = [f"  trial {t.number} {t.params}: {t.user_attrs.get(ERROR, 'no error recorded')}" for t in failed]
    raise SweepError(f"{len(failed)} of {len(trials)} finished trials failed, more than max_failure_rate="
                     f"{max_rate:g}: the sweep was stopped.\n" + "\n".join(lines))


def batch_size(config: DictConfig) -> int:
    chosen = config.hydra.sweeper.n_jobs
    if chosen is None:
        chosen = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None) or 1
    if chosen < 0:  # joblib's -1: every core
        chosen = os.cpu_count() or 1
    return int(chosen)


def check_settings(sweeper: DictConfig) -> None:
    problems = []
    if sweeper.n_trials < 1:
        problems.append(f"hydra.sweeper.n_trials={sweeper.n_trials} must be >= 1")
    if not 0 <= sweeper.max_failure_rate <= 1:
        problems.append(f"hydra.sweeper.max_failure_rate={sweeper.max_failure_rate} must be in [0, 1]")
    if sweeper.n_jobs is not None and sweeper.n_jobs == 0:
        problems.append("hydra.sweeper.n_jobs=0: give the number of trials to run at once (or null)")
    if problems:
        raise ConfigError("invalid sweep settings:\n  " + "\n  ".join(problems))


def validate_space(config: DictConfig, space: SearchSpace, compose) -> None:
    """Compose the config at corner points of the space and check it as a job would, before any trial."""
    check_keys(config, space)
    for point in corner_points(space):
        job_cfg = compose(space.overrides(point))
        validate(job_cfg)
        objective.check_metric(job_cfg)


def run_sweep(config: DictConfig, launcher, compose, arguments: list[str], validate_batch=None) -> list:
    """The whole search: validate, open (or resume) the study, then ask, launch and tell until it is done.

    ``compose(overrides)`` returns a job's config and ``launcher.launch(batch, initial_job_idx)`` runs a batch;
    the Hydra plugin passes its config loader and launcher.
    """
    sweeper = config.hydra.sweeper
    space = parse_space(OmegaConf.to_container(sweeper.params or {}), arguments)
    if not space.dimensions:
        raise ConfigError("nothing to search: give hydra.sweeper.params (a +sweep=NAME preset) or sweep "
                          "overrides such as model.dropout=interval(0.1,0.5)")
    check_settings(sweeper)
    validate_space(config, space, compose)
    study = open_study(config, space)
    storage = study_storage(sweeper, config.tracking.uri)
    requeue_interrupted(study)
    Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, Path(config.hydra.sweep.dir) / "multirun.yaml")
    n_trials, size = int(sweeper.n_trials), batch_size(config)
    log.info("study %r in %s: %d of %d trials finished, %d at a time", study.study_name, storage,
             len(counted_trials(study)), n_trials, size)
    returns = []
    while (remaining := n_trials - len(counted_trials(study))) > 0:
        check_failure_rate(counted_trials(study), sweeper.max_failure_rate, sweeper.min_trials_for_failure_rate)
        trials = [study.ask(space.distributions()) for _ in range(min(size, remaining))]
        batch = [space.overrides(trial.params) + link_overrides(study, trial, storage) for trial in trials]
        if validate_batch is not None:
            _validate_or_fail(study, trials, batch, validate_batch)
        results = launcher.launch(batch, initial_job_idx=trials[0].number)
        for trial, result in zip(trials, results):
            state = tell_result(study, trial, result)
            if config.get("verbosity") != "quiet":
                print(progress_line(study, trial, state, result, n_trials), flush=True)
        returns.append(results)
        if grid_exhausted(study):
            log.info("the grid is exhausted: every point ran")
            break
    finished = counted_trials(study)
    # Below min_trials_for_failure_rate the limit does not apply, but a sweep without one good trial failed.
    floor = len(finished) if _none_complete(finished) else sweeper.min_trials_for_failure_rate
    check_failure_rate(finished, sweeper.max_failure_rate, floor)
    log_summary(study)
    return returns


def progress_line(study, trial, state: str, job_return, n_trials: int) -> str:
    """``trial 3 (4/10) done: val_loss = 0.2211 (params); best so far: trial 1, val_loss = 0.2100``."""
    from runner.console import trial_line

    try:
        best = study.best_trial
        best = (best.number, best.value)
    except ValueError:  # no trial completed yet
        best = None
    value = job_return._return_value if state == "COMPLETE" else None
    return trial_line("trial", len(counted_trials(study)), n_trials, trial.number, state,
                      study.user_attrs.get("runner.objective", "objective"), value, trial.params, best,
                      reason=trial.user_attrs.get(ERROR, ""))


def _none_complete(trials: list) -> bool:
    from optuna.trial import TrialState

    return bool(trials) and all(t.state != TrialState.COMPLETE for t in trials)


def _validate_or_fail(study, trials: list, batch: list, validate_batch) -> None:
    """Hydra composes every job before launching; trials it cannot compose fail rather than stay running."""
    from optuna.trial import TrialState

    try:
        validate_batch(batch)
    except Exception as error:
        for trial in trials:
            trial.set_user_attr(ERROR, f"{type(error).__name__}: {error}"[:2000])
            _tell(study, trial, state=TrialState.FAIL)
        raise


def log_summary(study) -> None:
    from optuna.trial import TrialState

    trials = counted_trials(study)
    counts = {state: sum(t.state == state for t in trials) for state in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                          TrialState.FAIL)}
    summary = ", ".join(f"{n} {state.name.lower()}" for state, n in counts.items())
    if counts[TrialState.COMPLETE]:
        best = study.best_trial
        # At debug level: the sweep's summary (runner/sweep_record.py) prints the best trial and its params.
        log.debug("study %r: %s; best trial %d, %s = %g, params %s", study.study_name, summary, best.number,
                  study.user_attrs.get("runner.objective"), best.value, json.dumps(best.params))
    else:
        log.info("study %r: %s; no trial completed", study.study_name, summary)
