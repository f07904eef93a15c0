"""Parallel search without a batch barrier: Optuna's own model of several workers on one study.

Each worker loops: claim a trial (ask), run it as a job through Hydra's launcher (a batch of one), tell the
result, claim the next at once. With ``n_jobs=N`` a sweep process runs N such workers as threads; any other
process that runs the same command on the same storage (another machine, on a PostgreSQL study) joins as more
workers. No worker waits for another's trial, except at the end, when every remaining trial is already taken.

Exactly ``n_trials`` trials count. A worker asks only while the counted trials and the live ones fall short of
``n_trials``; workers of other processes may ask at the same moment, so after asking, a trial whose rank (its
place among counted and live trials, by number) is ``n_trials`` or more is failed as surplus before it runs and
never counts (a queued re-run it took is queued again). While a worker holds trials, a heartbeat thread keeps
them fresh in the storage, so that other processes can tell a slow trial from one whose worker died
(``runner.sweep.stale``).
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.runtime import compat
from runner.sweep.stale import RERUN_OF, WORKER, worker_mark

log = logging.getLogger("runner.sweep.search")

SURPLUS = "runner.surplus"  # user attribute of a trial asked beyond n_trials: failed before it ran
POLL_S = 1.0  # how often an idle worker looks again for a trial to run


@dataclass
class Search:
    """What the workers share: the study, the budget, and the sweep's own steps (from ``runner.sweep.search``)."""

    study: Any
    distributions: dict
    n_trials: int
    run_trial: Callable[[Any], None]  # launch the trial's job and tell its result
    counted: Callable[[list], list]  # the trials that count towards n_trials, of a list of trials
    settle_stale: Callable[[set[int]], int]  # settle or re-queue dead workers' trials, given this process's
    check: Callable[[], None]  # raise to stop the whole sweep (the failure-rate limit)
    finished: Callable[[], bool] = lambda: False  # the search space is used up (an exhausted grid)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    held: set[int] = field(default_factory=set)  # numbers of the trials this process's workers run
    held_ids: dict[int, int] = field(default_factory=dict)  # trial number -> storage id, for heartbeats
    errors: list[BaseException] = field(default_factory=list)


def run_workers(search: Search, count: int, heartbeat_s: float) -> None:
    """Run ``count`` workers until the study holds n_trials counted trials; the first worker error is raised."""
    beat = threading.Thread(target=_heartbeats, args=(search, heartbeat_s), name="sweep-heartbeat", daemon=True)
    beat.start()
    try:
        if count == 1:
            work(search)  # in this thread: a launcher that runs jobs in-process stays in the main thread
        else:
            _run_threads(search, count)
    finally:
        search.stop.set()
        beat.join(timeout=heartbeat_s + 5)
    if search.errors:
        raise search.errors[0]


def _run_threads(search: Search, count: int) -> None:
    threads = [
        threading.Thread(target=_guarded, args=(search,), name=f"sweep-worker-{i}", daemon=True) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)  # short joins: Ctrl-C still reaches the main thread


def _guarded(search: Search) -> None:
    try:
        work(search)
    except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
        search.errors.append(error)
        search.stop.set()


def work(search: Search) -> None:
    """One worker: claim, run and tell trials until none is left to claim."""
    while not search.stop.is_set():
        search.check()
        trial, done = claim(search)
        if done:
            return
        if trial is None:
            search.stop.wait(POLL_S)  # the remaining trials are running elsewhere, or a dead one is not stale yet
            continue
        try:
            search.run_trial(trial)
        finally:
            with search.lock:
                search.held.discard(trial.number)
                search.held_ids.pop(trial.number, None)


def claim(search: Search) -> tuple[Any, bool]:
    """(a trial to run, False), (None, False) to wait, or (None, True) when the search is done.

    This process's workers claim one at a time, so their ranks and the sampler's view of the study agree.
    """
    from optuna.trial import TrialState

    with search.lock:
        search.settle_stale(set(search.held))
        trials = search.study.get_trials(deepcopy=False)
        counted = search.counted(trials)
        if len(counted) >= search.n_trials or search.finished():
            return None, True
        if len(counted) + len(_live(trials)) >= search.n_trials:
            return None, False
        trial = search.study.ask(search.distributions)
        trial.set_user_attr(WORKER, worker_mark())
        search.held.add(trial.number)
        search.held_ids[trial.number] = compat.trial_id(trial)
        compat.record_heartbeat(search.study, compat.trial_id(trial))
        trials = search.study.get_trials(deepcopy=False)
        rank = len(search.counted(trials)) + sum(t.number < trial.number for t in _live(trials))
        if rank < search.n_trials:
            return trial, False
        _drop_surplus(search, trial, TrialState)
        return None, False


def _live(trials: list) -> list:
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.RUNNING and not t.user_attrs.get(SURPLUS)]


def _drop_surplus(search: Search, trial, states) -> None:
    """A trial asked beyond n_trials (other processes asked at the same time): fail it before it runs."""
    trial.set_user_attr(SURPLUS, True)
    search.study.tell(trial, state=states.FAIL)
    search.held.discard(trial.number)
    search.held_ids.pop(trial.number, None)
    rerun_of = trial.user_attrs.get(RERUN_OF)
    if rerun_of is not None:  # it took a queued re-run: queue it again for the trial that will run
        search.study.enqueue_trial(trial.params, user_attrs={RERUN_OF: rerun_of}, skip_if_exists=False)
    log.debug("trial %d is beyond n_trials=%d: not run", trial.number, search.n_trials)


def _heartbeats(search: Search, every_s: float) -> None:
    """Keep this process's trials fresh in the storage until the workers stop."""
    while not search.stop.wait(every_s):
        with search.lock:
            ids = list(search.held_ids.values())
        for trial_id in ids:
            try:
                compat.record_heartbeat(search.study, trial_id)
            except Exception as error:  # a missed beat: the next one may get through
                log.warning("heartbeat of trial id %d not recorded: %s", trial_id, error)
