"""Trials whose worker died: found, settled from what their job recorded, or failed and queued to run again.

Every worker (a sweep process, on this machine or another) marks each trial it runs with its process
(``runner.worker``) and keeps the trial's heartbeat fresh in the study's storage. A RUNNING trial is stale when
its process is known to have died (this machine: ``runner.runtime.liveness``), when its heartbeat is older than
the storage's grace period (another machine, which this one cannot see), or when it carries no mark and is
older than the grace period (asked by an older runner, or by hand). Trials of live workers are left alone: with
several workers on one study, a RUNNING trial is usually someone's work in progress.

A stale trial's job may have ended before its worker could tell the study: its MLflow child run says how. A
FINISHED run settles the trial COMPLETE with the run's objective, a pruned one PRUNED; otherwise the run (if any)
ends KILLED with the reason, and the trial is failed as interrupted (not counted) and its params are queued to
run once more. Only the worker whose state change wins re-queues, so a trial is never queued twice.
"""

import datetime
import logging
import math

from runner.runtime import compat, liveness

log = logging.getLogger("runner.sweep.search")

WORKER = "runner.worker"  # user attribute: the process running the trial (host, pid, start token)
INTERRUPTED = "runner.interrupted"  # user attribute of a trial whose worker died before it ended
RERUN_OF = "runner.rerun_of"  # user attribute of a queued re-run: the interrupted trial's number


def worker_mark() -> dict:
    here = liveness.current()
    return {"host": here.host, "pid": here.pid, "start": here.start}


def is_own(trial) -> bool:
    """The trial is run by this process."""
    mark = trial.user_attrs.get(WORKER) or {}
    here = liveness.current()
    return mark.get("host") == here.host and mark.get("pid") == here.pid


def stale_trials(study, own_live: set[int] = frozenset()) -> list:
    """RUNNING trials no live worker runs (``own_live``: numbers of the trials this process runs now)."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    silent = set(compat.stale_trial_ids(study))
    return [t for t in running if t.number not in own_live and _is_stale(t, silent, study)]


def _is_stale(trial, silent: set[int], study) -> bool:
    mark = trial.user_attrs.get(WORKER)
    if mark is None:
        return _age_s(trial) > compat.heartbeat_grace_s(study)
    if is_own(trial):
        return True  # this process does not run it (not in own_live): an earlier process with a reused pid
    alive = liveness.is_alive(liveness.Process(mark["host"], int(mark["pid"]), mark.get("start", "")))
    return alive is False or (alive is None and compat.trial_id(trial) in silent)


def _age_s(trial) -> float:
    started = trial.datetime_start or datetime.datetime.now()
    return (datetime.datetime.now() - started).total_seconds()


def settle_stale(study, tracking_uri: str, objective, own_live: set[int] = frozenset()) -> int:
    """Settle or re-queue every stale trial (see the module's docstring); the number re-queued."""
    requeued = 0
    for trial in stale_trials(study, own_live):
        run = child_run(study, tracking_uri, trial.number)
        requeued += _settle(study, trial, run, tracking_uri, objective)
    return requeued


def _settle(study, trial, run, tracking_uri: str, objective) -> int:
    from optuna.trial import TrialState

    status = run.info.status if run is not None else None
    outcome = _recorded_outcome(run, tracking_uri, objective) if run is not None else None
    if outcome is not None:
        if _finish(study, trial, *outcome):
            log.info(
                "trial %d's worker died after its job ended: %s, as its run recorded", trial.number, outcome[0].name
            )
        return 0
    compat.mark_trial_attr(study, trial, INTERRUPTED, True)
    if not _finish(study, trial, TrialState.FAIL, None):
        return 0  # another worker settled it first
    if status == "RUNNING":
        end_child(tracking_uri, run, f"trial {trial.number}'s worker died; its params run again as a new trial")
    study.enqueue_trial(trial.params, user_attrs={RERUN_OF: trial.number}, skip_if_exists=False)
    log.info("trial %d was interrupted (its worker died): it runs again with the same params", trial.number)
    return 1


def _recorded_outcome(run, tracking_uri: str, objective):
    """(state, values) of a trial whose job ended and recorded it: FINISHED with a finite objective, or pruned."""
    from optuna.trial import TrialState

    from runner.sweep.report import run_objective
    from runner.tracking import store

    if run.data.tags.get("runner.trial_state") == "PRUNED":
        return TrialState.PRUNED, None
    if run.info.status != "FINISHED":
        return None
    value = run_objective(store(tracking_uri, run.info.experiment_id).client, run, objective)
    return (TrialState.COMPLETE, [float(value)]) if math.isfinite(value) else None


def _finish(study, trial, state, values) -> bool:
    """Set a stale trial's final state; False when another worker did first."""
    import optuna

    try:
        return compat.set_trial_state(study, trial, state, values)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def child_run(study, tracking_uri: str, number: int):
    """The MLflow run of the study's trial ``number`` under the sweep's parent run; None if it has none."""
    from runner.sweep.parent_run import STUDY_PARENT_ATTR
    from runner.tracking import store

    parent_id = study.user_attrs.get(STUDY_PARENT_ATTR)
    if parent_id is None:
        return None
    client = store(tracking_uri, "").client
    experiment_id = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`runner.trial` = '{number}'",
        max_results=10,
    )
    return max(runs, key=lambda r: r.info.start_time) if runs else None


def end_child(tracking_uri: str, run, reason: str) -> None:
    from runner.tracking import RunRecord, store

    record = RunRecord.existing(store(tracking_uri, run.info.experiment_id), run.info.run_id, run.info.artifact_uri)
    record.set_tags({"runner.error": reason, "runner.error_type": "ProcessDied"})
    record.terminate("KILLED")


def end_dead_runs(study, tracking_uri: str) -> list[str]:
    """Runs of the sweep's experiment that processes of this machine left RUNNING when they died (a killed sweep's
    parent or job): ended KILLED with the reason, before this sweep goes on (other machines' runs stay)."""
    from runner.sweep.parent_run import STUDY_PARENT_ATTR
    from runner.tracking import end_orphaned_runs, store

    parent_id = study.user_attrs.get(STUDY_PARENT_ATTR)
    if parent_id is None:
        return []
    client = store(tracking_uri, "").client
    experiment_id = client.get_run(parent_id).info.experiment_id
    return end_orphaned_runs(client, [experiment_id], "a sweep process died without closing the run", {parent_id})
