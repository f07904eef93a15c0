"""Optuna search behind the ``runner_optuna`` Hydra sweeper: it asks the study for trials, launches each as a
job through Hydra's launcher and tells the study its result, with ``n_jobs`` workers that each take the next trial
as soon as theirs ends (``workers.py``; dead workers' trials: ``stale.py``). The study itself is opened in
``study.py``, the search space parsed in ``space.py``; both modules' API is importable from here too.

Optuna and Hydra are imported inside functions: Hydra imports the plugin on every start, and ``--help`` must
stay fast.
"""

import copy
import json
import logging
import math
import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner.config.validation import validate
from runner.errors import ConfigError
from runner.runtime import compat
from runner.sweep.space import (  # noqa: F401 - parse_space, override_text: this module's API too
    SearchSpace,
    check_keys,
    corner_points,
    grid_of,
    override_text,
    parse_space,
)
from runner.sweep.stale import INTERRUPTED, end_dead_runs, settle_stale, stale_trials, worker_mark  # noqa: F401 - API here too
from runner.sweep.study import (  # noqa: F401 - the study's API, importable from here as before
    SweepError,
    build_pruner,
    build_sampler,
    load_trial,
    open_study,
    study_name,
    study_storage,
)
from runner.sweep.workers import SURPLUS, Search, run_workers

log = logging.getLogger("runner.sweep.search")

ERROR = "runner.error"


# ---------------------------------------------------------------- the trial loop


def counted_trials(study) -> list:
    """Finished trials that count towards n_trials: not those whose worker died (re-run instead), nor surplus."""
    return counted_of(study.get_trials(deepcopy=False))


def counted_of(trials: list) -> list:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [
        t for t in trials if t.state in states and not t.user_attrs.get(INTERRUPTED) and not t.user_attrs.get(SURPLUS)
    ]


def requeue_interrupted(study, tracking_uri: str = "", objective=None) -> int:
    """Trials whose worker died: settled from their MLflow run, or failed and queued to run once more.

    Trials of live workers (other sweep processes on the same study) are left running (``runner.sweep.stale``).
    """
    return settle_stale(study, tracking_uri, objective)


def link_overrides(study, trial, storage: str) -> list[str]:
    return [
        f"trial.number={trial.number}",
        f"trial.id={compat.trial_id(trial)}",
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

    outcome = compat.job_outcome(job_return)  # the value, or the exception a failed job raised (also via joblib)
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
    """Check the job's config at corner points of the space as a job would, before any trial.

    The first point is composed; a point that differs from it in a plain value (no config group, no Hydra
    key, no added or deleted key) is that composed config with the value set, which is what Hydra's override
    does, without composing again (0.3-0.4 s a point on 2 cores, 10 points for the wine search)."""
    check_keys(config, space)
    first, *others = corner_points(space)
    composed = compose(space.overrides(first))
    validate(composed)  # the objective's metric too (runner/config/validation.py)
    choices = OmegaConf.select(composed, "hydra.runtime.choices", default=None)  # None: a config without hydra
    groups = set(choices) if choices is not None else None
    for point in others:
        changed = [space.dimensions[name] for name in point if point[name] != first[name]]
        if all(_plain_value(dim, groups) for dim in changed):
            job_cfg = copy.deepcopy(composed)
            for dim in changed:
                OmegaConf.update(job_cfg, dim.name, point[dim.name], merge=False)
        else:
            job_cfg = compose(space.overrides(point))
        validate(job_cfg)


def _plain_value(dim, groups: set[str] | None) -> bool:
    if groups is None:  # which keys are config groups is unknown: compose every point
        return False
    return not (dim.raw_text or dim.name in groups or dim.name.startswith("hydra.") or dim.override_key != dim.name)


def run_sweep(config: DictConfig, launcher, compose, arguments: list[str]) -> list:
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
    Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, Path(config.hydra.sweep.dir) / "multirun.yaml")
    n_trials, size = int(sweeper.n_trials), worker_count(config, launcher)
    _own_draws_if_shared(study)
    end_dead_runs(study, str(config.tracking.uri))
    log.info(
        "study %r in %s: %d of %d trials finished, %d at a time",
        study.study_name,
        storage,
        len(counted_trials(study)),
        n_trials,
        size,
    )
    returns = []
    search = _search(config, study, space, n_trials, _trial_runner(config, study, space, launcher, returns))
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    run_workers(search, size, heartbeat_s=float(sweeper.get("heartbeat_interval", 10)))
    finished = counted_trials(study)
    # Below min_trials_for_failure_rate the limit does not apply, but a sweep without one good trial failed.
    floor = len(finished) if _none_complete(finished) else sweeper.min_trials_for_failure_rate
    check_failure_rate(finished, sweeper.max_failure_rate, floor)
    log_summary(study)
    return returns


def _own_draws_if_shared(study) -> None:
    """Another process already works on this study: draw with its own randomness, not the same seeded draws."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale_numbers = {t.number for t in stale_trials(study)}
    if any(t.number not in stale_numbers for t in running):
        study.sampler.reseed_rng()
        log.info("other workers are running trials of this study: this process joins them with unseeded draws")


def worker_count(config: DictConfig, launcher) -> int:
    """Workers of this process: ``n_jobs``, or one where the launcher runs jobs in this process (Hydra's basic
    launcher changes the working folder and global state for each job, so two at once would collide)."""
    size = batch_size(config)
    if size > 1 and type(launcher).__name__ == "BasicLauncher":
        log.warning("hydra.sweeper.n_jobs=%d with Hydra's basic launcher: one trial at a time (+launcher=joblib)", size)
        return 1
    return size


def _search(config: DictConfig, study, space: SearchSpace, n_trials: int, run_trial) -> Search:
    from runner.config.objective import Objective

    sweeper, uri, objective = config.hydra.sweeper, str(config.tracking.uri), Objective.of(config)

    def check() -> None:
        check_failure_rate(counted_trials(study), sweeper.max_failure_rate, sweeper.min_trials_for_failure_rate)

    def finished() -> bool:
        if grid_exhausted(study):
            log.info("the grid is exhausted: every point ran")
            return True
        return False

    return Search(
        study=study,
        distributions=space.distributions(),
        n_trials=n_trials,
        run_trial=run_trial,
        counted=counted_of,
        settle_stale=lambda held: settle_stale(study, uri, objective, held),
        check=check,
        finished=finished,
    )


def _trial_runner(config: DictConfig, study, space: SearchSpace, launcher, returns: list):
    """One trial as a batch of one job through the launcher; its result told to the study."""
    storage = study_storage(config.hydra.sweeper, config.tracking.uri)
    n_trials = int(config.hydra.sweeper.n_trials)

    def run_trial(trial) -> None:
        batch = [space.overrides(trial.params) + link_overrides(study, trial, storage)]
        try:
            results = launcher.launch(batch, initial_job_idx=trial.number)
        except Exception as error:
            # Launchers compose the job's config before it runs (Hydra's validate_batch_is_legal would compose
            # it once more, 0.2 s of this process's time a trial): a trial that cannot be launched fails rather
            # than stays running. Its job's own errors come back in its JobReturn.
            _fail_trial(study, trial, error)
            raise
        state = tell_result(study, trial, results[0])
        if config.get("verbosity") != "quiet":
            print(progress_line(study, trial, state, results[0], n_trials), flush=True)
        returns.append(results)

    return run_trial


def progress_line(study, trial, state: str, job_return, n_trials: int) -> str:
    """``trial 3 (4/10) done: val_loss = 0.2211 (params); best so far: trial 1, val_loss = 0.2100``."""
    from runner.runtime.console import trial_line

    try:
        best = study.best_trial
        best = (best.number, best.value)
    except ValueError:  # no trial completed yet
        best = None
    value = job_return.return_value if state == "COMPLETE" else None  # COMPLETE: the job completed
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


def _fail_trial(study, trial, error: Exception) -> None:
    from optuna.trial import TrialState

    trial.set_user_attr(ERROR, f"{type(error).__name__}: {error}"[:2000])
    _tell(study, trial, state=TrialState.FAIL)


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
