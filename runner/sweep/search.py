"""Optuna search behind the ``runner_optuna`` Hydra sweeper: the study, its sampler and pruner, and the trial
loop that launches jobs through Hydra's launcher (the search space is parsed in ``space.py``).

The study lives in persistent storage (by default ``optuna.db`` beside a local SQLite MLflow store), so running
the same command again continues it. Optuna and Hydra's internals are imported inside functions: Hydra imports
the plugin on every start, and ``--help`` must stay fast.
"""

import json
import logging
import math
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner.config import objective
from runner.config.sweeper import PRUNERS, SAMPLERS
from runner.config.validation import validate
from runner.errors import ConfigError, RunnerError
from runner.sweep.space import (  # noqa: F401 - parse_space, override_text: this module's API too
    SearchSpace,
    check_keys,
    corner_points,
    grid_of,
    override_text,
    parse_space,
)

log = logging.getLogger("runner.sweep.search")

INTERRUPTED = "runner.interrupted"  # user attribute of a trial a stopped sweep left running
ERROR = "runner.error"


class SweepError(RunnerError):
    """The sweep as a whole cannot go on (too many failed trials, a study that does not fit the command)."""


# ---------------------------------------------------------------- the study


def study_storage(sweeper: DictConfig, tracking_uri: str) -> str:
    """The study's storage URL: as configured, else ``optuna.db`` beside a local SQLite tracking store."""
    from runner.tracking import (
        sqlite_path,  # MLflow's import is slow; Hydra imports this plugin on every start
    )

    if sweeper.storage:
        return str(sweeper.storage)
    database = sqlite_path(tracking_uri)
    if database is None:
        raise ConfigError(
            f"hydra.sweeper.storage is not set and the tracking store {tracking_uri} is not a local "
            f"SQLite file; set it, e.g. hydra.sweeper.storage=sqlite:///optuna.db or a database URL"
        )
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
    storage = study_storage(sweeper, config.tracking.uri)
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    name = study_name(config)
    metric, wanted = config.objective.metric, objective.direction(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

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
            f"study {name!r} in {storage} optimises {recorded} ({study.direction.name.lower()}), "
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
    root = config._get_root()  # a hydra.sweeper node still attached to its config
    if "hydra" not in root:
        raise ConfigError("open_study needs the composed multirun config (with hydra.sweeper)")
    return root


def load_trial(link: dict):
    """The running trial a job is (``trial.*`` keys), with the study's pruner; None if it is not running."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=link["study"], storage=link["storage"], sampler=optuna.samplers.RandomSampler()
    )
    study.pruner = build_pruner(study.user_attrs.get("runner.pruner", {"name": "none"}))
    state = study._storage.get_trial(link["id"]).state
    if state != optuna.trial.TrialState.RUNNING:
        # A trial's overrides replayed by hand: that trial is over, so this run reports to nothing.
        log.warning(
            "trial %s of study %r is %s, not running: this run is not pruned", link["number"], link["study"], state.name
        )
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
    return [
        f"trial.number={trial.number}",
        f"trial.id={trial._trial_id}",
        f"trial.study={override_text(study.study_name)}",
        f"trial.storage={override_text(storage)}",
    ]


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
    raise SweepError(
        f"{len(failed)} of {len(trials)} finished trials failed, more than max_failure_rate="
        f"{max_rate:g}: the sweep was stopped.\n" + "\n".join(lines)
    )


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
        raise ConfigError(
            "nothing to search: give hydra.sweeper.params (a +sweep=NAME preset) or sweep "
            "overrides such as model.dropout=interval(0.1,0.5)"
        )
    check_settings(sweeper)
    validate_space(config, space, compose)
    study = open_study(config, space)
    storage = study_storage(sweeper, config.tracking.uri)
    requeue_interrupted(study)
    Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, Path(config.hydra.sweep.dir) / "multirun.yaml")
    n_trials, size = int(sweeper.n_trials), batch_size(config)
    log.info(
        "study %r in %s: %d of %d trials finished, %d at a time",
        study.study_name,
        storage,
        len(counted_trials(study)),
        n_trials,
        size,
    )
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
    from runner.runtime.console import trial_line

    try:
        best = study.best_trial
        best = (best.number, best.value)
    except ValueError:  # no trial completed yet
        best = None
    value = job_return._return_value if state == "COMPLETE" else None
    return trial_line(
        "trial",
        len(counted_trials(study)),
        n_trials,
        trial.number,
        state,
        study.user_attrs.get("runner.config.objective", "objective"),
        value,
        trial.params,
        best,
        reason=trial.user_attrs.get(ERROR, ""),
    )


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
    counts = {
        state: sum(t.state == state for t in trials)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    summary = ", ".join(f"{n} {state.name.lower()}" for state, n in counts.items())
    if counts[TrialState.COMPLETE]:
        best = study.best_trial
        # At debug level: the sweep's summary (runner/sweep/closing.py) prints the best trial and its params.
        log.debug(
            "study %r: %s; best trial %d, %s = %g, params %s",
            study.study_name,
            summary,
            best.number,
            study.user_attrs.get("runner.config.objective"),
            best.value,
            json.dumps(best.params),
        )
    else:
        log.info("study %r: %s; no trial completed", study.study_name, summary)
