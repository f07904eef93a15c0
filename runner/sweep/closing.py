"""The end of a sweep, in the launching process: the report on the parent run, its metrics, the best config,
the console summary, and the parent's final status.

``close_sweep`` reads the children back (``runner.sweep.report``), writes the report and the best trial's config
(an experiment file to rerun it), logs the sweep's metrics on the parent and ends it: FINISHED when a trial
finished, FAILED when none did or the sweep stopped early. ``end_abandoned`` is the way out for a sweep Hydra
did not end (``runner.sweep.record``): a grid whose every job ran and ended still counts as complete.

MLflow is imported only when a sweep ends: Hydra loads the sweep callback, and so this module, for every command.
"""

import logging
import math
import tempfile
from pathlib import Path

from runner.config.objective import Objective, metric_direction
from runner.runtime.console import ui_command
from runner.sweep.parent_run import ParentRun
from runner.sweep.report import best_config_yaml, build_report, child_runs, download_config, hydra_choices

log = logging.getLogger("runner")


def end_abandoned(parent: ParentRun) -> None:
    """Report on and end a parent whose sweep stopped before on_multirun_end; do not leave it RUNNING."""
    close_safely(parent, stopped="the sweep stopped before its end (the sweeper raised or was interrupted)")


def close_safely(parent: ParentRun, stopped: str | None = None) -> None:
    """``close_sweep`` once; if the report cannot be written, the parent still ends (FAILED, with the reason)."""
    if parent.closed:
        return
    try:
        close_sweep(parent, stopped)
    except Exception as error:
        log.error("could not write the report of sweep %s: %s: %s", parent.sweep_name, type(error).__name__, error)
        record = parent_record(parent)
        record.set_tags({"runner.error": f"the sweep report failed: {error}"[:5000]})
        record.terminate("FAILED")


def parent_record(parent: ParentRun):
    """The parent run, to log onto and end (``runner.tracking`` is the one door to MLflow)."""
    from runner.tracking import RunRecord, store

    return RunRecord.existing(store(parent.tracking_uri, parent.experiment_id), parent.parent_run_id)


def close_sweep(parent: ParentRun, stopped: str | None = None) -> None:
    """Report on the parent run and end it: FINISHED, or FAILED when no trial finished or the sweep stopped."""
    from runner.tracking import RunRecord, store

    parent.closed = True
    tracker = store(parent.tracking_uri, parent.experiment_id)
    record = RunRecord.existing(tracker, parent.parent_run_id)
    client = tracker.client  # reads only: the writes go through RunRecord
    runs = child_runs(client, parent.experiment_id, parent.parent_run_id)
    launched = launched_jobs(parent)
    if stopped and parent.grid_jobs == launched and all(run.info.status != "RUNNING" for run in runs):
        # Hydra's basic sweeper raises after the last job when any job failed: the sweep itself did complete.
        stopped = None
    runs = end_stale_children(tracker, runs)
    objective = children_objective(runs, parent.objective)
    with tempfile.TemporaryDirectory() as folder:
        title = f"sweep {parent.sweep_name}"
        report = build_report(client, runs, parent.swept_keys, objective, title, Path(folder))
        for path in report.files.values():
            record.log_artifact(path, "sweep")
        best_config = write_best_config(record, parent, report) if report.best is not None else None
    counts = {state: report.count(state) for state in ("FINISHED", "FAILED", "PRUNED", "KILLED")}
    metrics = {f"trials_{state.lower()}": n for state, n in counts.items()}
    metrics["trials_total"] = len(report.table)
    tags = {}
    if report.best is not None:
        metrics[f"best_{objective.metric}"] = float(report.best["objective"])
        best_run = client.get_run(report.best["run_id"])
        metrics.update(
            {
                f"best_{name}": value
                for name, value in best_run.data.metrics.items()
                if name.startswith(("train_", "val_", "test_"))
                and name != objective.metric
                and not name.endswith("_seconds")
            }
        )  # best_train_seconds would read as "fastest"
        tags = {
            "runner.best_run_id": report.best["run_id"],
            "runner.best_trial": str(report.best["trial"]),
            "runner.best_config": str(best_config),
        }
    if stopped:
        tags["runner.error"] = stopped
    record.log_metrics({name: value for name, value in metrics.items() if math.isfinite(float(value))})
    record.set_tags(tags)
    status = "FINISHED" if counts["FINISHED"] and not stopped else "FAILED"
    record.terminate(status)
    print_summary(
        parent,
        report,
        best_config,
        status,
        unrecorded=launched - len(runs),
        trial_config=trial_config_path(best_run) if report.best is not None else None,
    )


def launched_jobs(parent: ParentRun) -> int:
    """Jobs Hydra started in this sweep's folder (each gets a .hydra/ folder before its task runs)."""
    return sum(1 for _ in Path(parent.sweep_dir).glob("**/.hydra/overrides.yaml"))


def end_stale_children(tracker, runs: list) -> list:
    """Children still RUNNING when the sweep is over belong to jobs that died: mark them KILLED."""
    from runner.tracking import RunRecord

    client = tracker.client
    stale = [run for run in runs if run.info.status == "RUNNING"]
    for run in stale:
        child = RunRecord.existing(tracker, run.info.run_id, run.info.artifact_uri)
        child.set_tags({"runner.error": "the job ended without closing its run (killed?)"})
        child.terminate("KILLED")
    return [client.get_run(run.info.run_id) if run in stale else run for run in runs]


def children_objective(runs: list, planned: Objective) -> Objective:
    """The objective the jobs themselves used, when they all agree (a glob over presets may differ)."""
    metrics = {run.data.params.get("objective.metric") for run in runs} - {None}
    if len(metrics) != 1 or metrics == {planned.metric}:
        return planned
    metric = metrics.pop()
    directions = {run.data.params.get("objective.direction") for run in runs}
    chosen = directions.pop() if len(directions) == 1 else "auto"
    return Objective(metric, metric_direction(metric) if chosen in ("auto", None) else chosen)


def write_best_config(parent_record, parent: ParentRun, report) -> Path:
    """The best trial as an experiment file (rerun: --config-dir <conf> +experiment=best/<sweep name>)."""
    best = report.best
    client = parent_record.client  # reads
    run = client.get_run(best["run_id"])
    folder = Path(parent.best_config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{parent.sweep_name}.yaml"
    description = (
        f"Best trial {best['trial']} of sweep {parent.sweep_name}: {report.objective.metric} = "
        f"{best['objective']:.6g} (run {best['run_id']})"
    )
    header = [
        description,
        f"Rerun: {rerun_command(parent)}",
        f"Written by the sweep's parent run {parent.parent_run_id} from the trial's resolved config.",
    ]
    text = best_config_yaml(
        download_config(client, best["run_id"]), hydra_choices(run), f"{parent.sweep_name}-best", description, header
    )
    path.write_text(text)
    parent_record.log_text(text, "sweep/best_config.yaml")
    return path


def rerun_command(parent: ParentRun) -> str:
    conf_dir = Path(parent.best_config_dir).parent.parent
    try:
        conf_dir = conf_dir.relative_to(Path.cwd())
    except ValueError:
        pass  # outside the working folder: keep it absolute
    return f"python -m runner --config-dir {conf_dir} +experiment=best/{parent.sweep_name}"


def trial_config_path(run) -> str:
    """Where the trial's own config is: its run folder's .hydra/config.yaml, else the run's artifact."""
    folder = run.data.tags.get("runner.output_dir")
    path = Path(folder) / ".hydra" / "config.yaml" if folder else None
    if path is not None and path.is_file():
        return str(path)
    return f"config/config.yaml in the artifacts of run {run.info.run_id}"


def print_summary(
    parent: ParentRun,
    report,
    best_config: Path | None,
    status: str,
    unrecorded: int = 0,
    trial_config: str | None = None,
) -> None:
    killed = ("KILLED",) if report.count("KILLED") else ()  # runs of jobs that died (a killed sweep, re-run)
    shown = ("FINISHED", "FAILED", "PRUNED", *killed)
    counts = ", ".join(f"{report.count(state)} {state.lower()}" for state in shown)
    lines = ["", f"== sweep {parent.sweep_name} {status.lower()}: {len(report.table)} trials ({counts}) =="]
    if unrecorded > 0:  # e.g. an out-of-range value: refused before its run was created
        lines.append(f"  {unrecorded} job(s) of this sweep failed before their MLflow run existed: see the log above")
    best = report.best
    if best is not None:
        lines += [
            (
                f"  best:        trial {best['trial']} ({best['run_name']}), {report.objective.metric} = "
                f"{best['objective']:.6g}, run id {best['run_id']}"
            ),
            f"  params:      {', '.join(f'{key}={best[key]}' for key in report.param_columns) or '-'}",
            f"  its config:  {trial_config}",
            f"  best config: {best_config}",
            f"  rerun it:    {rerun_command(parent)}",
        ]
    else:
        lines.append("  no trial finished: see the failed runs' runner.error tags")
    # The trials' diagnoses (tag diag.cause) and the parameter ranges that go with them (sweep/diagnoses.txt).
    lines += [f"  {line}" for line in getattr(report, "diagnoses", [])]
    lines += [
        (f"  parent run:  {parent.parent_run_id} (experiment {parent.experiment!r}); trials table: sweep/trials.html"),
        f"  browse:      {ui_command(parent.tracking_uri)}",
    ]
    print("\n".join(lines), flush=True)
