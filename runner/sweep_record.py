"""The MLflow record of a sweep, as a Hydra callback: one parent run, every job a child of it, and a report.

``on_multirun_start`` runs in the launching process before any job starts. It creates the tracking store and
the experiment there once (parallel jobs on a fresh SQLite store otherwise race on creating its schema), opens
the parent run and writes ``<sweep dir>/parent_run.json``; each job reads that file (``child_link``) and
becomes a child run. ``on_multirun_end`` reads the children back, writes the report (``runner.sweep_report``)
on the parent and ends it. Hydra skips ``on_multirun_end`` when the sweeper raises (its basic sweeper does
after the last job when any job failed), so ``runner.cli.main`` calls ``end_open_sweeps`` on its way out (an
``atexit`` hook is the last resort): the report is written all the same, and the parent ends FINISHED when
every job of a grid ran and one finished, FAILED when the sweep stopped early.

One sweep is one MLflow experiment: where its jobs would go to different experiments (``+experiment=glob(*)``
across data sets), the parent and all children go to ``mixed_experiment`` (``sweeps``) instead.
"""

import atexit
import itertools
import json
import logging
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.console import apply_verbosity
from runner.security import redact_text
from runner.sweep_report import Objective

log = logging.getLogger("runner")

PARENT_FILE = "parent_run.json"
STUDY_PARENT_ATTR = "mlflow_parent_run_id"
EXPERIMENT_KEYS = ("experiment", "dataset", "tracking", "debug")  # overrides that can move a job's experiment
MAX_COMPOSED = 64  # combinations composed to find the jobs' experiments; more is not a sane sweep
OPEN_PLANS: list = []  # sweeps of this process whose parent run is not ended yet


@dataclass
class SweepPlan:
    """What the end of the sweep needs; plain values, as Hydra pickles callbacks into launcher workers."""

    sweep_name: str
    sweep_dir: str
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    objective: Objective
    swept_keys: list[str]
    best_config_dir: str
    grid_jobs: int | None  # how many jobs a grid sweep launches; None for a search
    closed: bool = False


class SweepRecord(Callback):
    """Hydra callback (``hydra.callbacks.sweep_record`` in conf/config.yaml); single runs are untouched."""

    def __init__(self, best_config_dir: str | None = None, mixed_experiment: str = "sweeps"):
        self.best_config_dir = best_config_dir
        self.mixed_experiment = mixed_experiment
        self.plan: SweepPlan | None = None

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs) -> None:
        apply_verbosity(OmegaConf.select(config, "verbosity", default="normal"))  # before MLflow, Optuna load
        self.plan = open_sweep(config, config_name, self.best_config_dir, self.mixed_experiment)
        OPEN_PLANS.append(self.plan)
        atexit.register(end_abandoned, self.plan)  # a last resort when the program is not run by runner.cli

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.plan is not None:
            close_safely(self.plan)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        # A search prints its trials' progress from its own loop (runner/search.py); a grid's jobs do it here.
        if self.plan is not None and self.plan.grid_jobs is not None and config.get("verbosity") != "quiet":
            print(job_progress(self.plan, config, job_return), flush=True)


# ---------------------------------------------------------------- start of the sweep


def open_sweep(config: DictConfig, config_name: str | None, best_config_dir: str | None,
               mixed_experiment: str) -> SweepPlan:
    from mlflow import MlflowClient

    from runner.tracking import RunRecord, connect

    overrides = list(config.hydra.overrides.task)
    sweep_dir = Path(config.hydra.runtime.cwd) / str(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    presets, experiments = job_identities(config, config_name, overrides)
    experiment = experiments[0] if len(experiments) == 1 else mixed_experiment
    preset = presets[0] if len(presets) == 1 else "mixed"
    uri = str(config.tracking.uri)
    tracker = connect(uri, experiment, config.tracking.artifact_location)
    client = MlflowClient(tracking_uri=uri)

    study = optuna_study(config)
    parent_id = reusable_parent(client, study)
    if parent_id is None:
        name = f"{preset}-sweep-{datetime.now():%Y%m%d-%H%M%S}"
        record = RunRecord(tracker, name, parent_tags(config, overrides, preset, sweep_dir))
        parent_id, experiment_id = record.run_id, record.experiment_id
        record.log_params(definition_params(config, overrides))
        if study is not None:
            study.set_user_attr(STUDY_PARENT_ATTR, parent_id)
    else:  # a resumed search keeps its one parent run
        run = client.get_run(parent_id)
        name, experiment_id = run.info.run_name, run.info.experiment_id
        experiment = client.get_experiment(experiment_id).name
        client.update_run(parent_id, status="RUNNING")
        client.set_tag(parent_id, "runner.resumed_at", f"{datetime.now():%Y-%m-%d %H:%M:%S}")
        log.info("resuming the search's parent run %s (%s)", parent_id, name)
    definition = sweep_definition(config, overrides, presets, experiments, sweep_dir)
    client.log_text(parent_id, redact_text(yaml.safe_dump(definition, sort_keys=False)), "sweep/definition.yaml")

    (sweep_dir / PARENT_FILE).write_text(json.dumps(
        {"run_id": parent_id, "experiment_id": experiment_id, "tracking_uri": uri, "experiment": experiment,
         "sweep_name": name}, indent=2))
    log.info("sweep %s: parent run %s in experiment %r", name, parent_id, experiment)
    return SweepPlan(sweep_name=name, sweep_dir=str(sweep_dir), tracking_uri=uri, experiment=experiment,
                     experiment_id=experiment_id, parent_run_id=parent_id, objective=sweep_objective(config),
                     swept_keys=swept_keys(config, overrides), grid_jobs=grid_jobs(config, overrides),
                     best_config_dir=str(default_best_config_dir(uri) if best_config_dir is None
                                         else Path(best_config_dir).resolve()))


def job_identities(config: DictConfig, config_name: str | None, overrides: list[str]) -> tuple[list, list]:
    """The presets and MLflow experiments the sweep's jobs will have (sorted, without repeats).

    Only sweep overrides that can change the experiment (preset, data set, tracking, debug) are expanded; each
    combination is composed the way Hydra composes a job.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    varying = [[f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()]
               for o in parsed if o.is_sweep_override() and o.key_or_group.split(".")[0] in EXPERIMENT_KEYS]
    combinations = list(itertools.islice(itertools.product(*varying), MAX_COMPOSED))
    identities = set()
    for combination in combinations:
        try:
            job = loader.load_configuration(config_name, fixed + list(combination), run_mode=RunMode.RUN)
        except (HydraException, OmegaConfBaseException) as error:  # that job fails on its own, with the error
            log.warning("cannot compose the job %s: %s", " ".join(combination), error)
            continue
        identities.add((str(job.name), str(job.tracking.experiment)))
    if not identities:
        identities.add((str(config.name), str(config.tracking.experiment)))
    return sorted({name for name, _ in identities}), sorted({experiment for _, experiment in identities})


def grid_jobs(config: DictConfig, overrides: list[str]) -> int | None:
    """The number of jobs Hydra's basic sweeper launches (the product of the value lists); None otherwise."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if config.hydra.runtime.choices.get("hydra/sweeper") != "basic":
        return None
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    sizes = [len(list(o.sweep_string_iterator())) for o in parser.parse_overrides(overrides) if o.is_sweep_override()]
    return math.prod(sizes)


def optuna_study(config: DictConfig):
    """The runner_optuna sweeper's study (created or loaded), or None for any other sweeper."""
    if config.hydra.runtime.choices.get("hydra/sweeper") != "runner_optuna":
        return None
    try:
        from runner.search import open_study
    except ImportError as error:
        log.warning("runner.search is not importable (%s): a resumed search will get a new parent run", error)
        return None

    return open_study(config)


def reusable_parent(client, study) -> str | None:
    """The parent run an earlier part of this search opened, if the study remembers one that still exists."""
    from mlflow.exceptions import MlflowException
    run_id = study.user_attrs.get(STUDY_PARENT_ATTR) if study is not None else None
    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as error:  # deleted from the store since: open a new parent
        log.warning("the search's earlier parent run %s is gone (%s); opening a new one", run_id, error)
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


def parent_tags(config: DictConfig, overrides: list[str], preset: str, sweep_dir: Path) -> dict[str, str]:
    from runner.tracking import environment_tags

    choices = config.hydra.runtime.choices
    command = "python -m runner -m " + " ".join(overrides)
    return {"runner.sweep": "true", "runner.sweeper": str(choices.get("hydra/sweeper")),
            "runner.launcher": str(choices.get("hydra/launcher")), "runner.preset": preset,
            "runner.overrides": " ".join(overrides)[:5000], "runner.sweep_dir": str(sweep_dir),
            "mlflow.note.content": f"Sweep: `{command}`", **environment_tags()}


def definition_params(config: DictConfig, overrides: list[str]) -> dict[str, str]:
    from runner.tracking import flatten

    objective = sweep_objective(config)
    definition = {"sweep": {"overrides": " ".join(overrides),
                            "sweeper": str(config.hydra.runtime.choices.get("hydra/sweeper")),
                            "launcher": str(config.hydra.runtime.choices.get("hydra/launcher"))},
                  "objective": {"metric": objective.metric, "direction": objective.direction},
                  "sweeper": hydra_section(config, "sweeper"), "launcher": hydra_section(config, "launcher")}
    return flatten(definition)


def sweep_definition(config: DictConfig, overrides: list[str], presets: list, experiments: list,
                     sweep_dir: Path) -> dict:
    objective = sweep_objective(config)
    return {"command": "python -m runner -m " + " ".join(overrides), "overrides": overrides,
            "swept": swept_keys(config, overrides), "presets": presets, "experiments": experiments,
            "objective": {"metric": objective.metric, "direction": objective.direction},
            "sweeper": {"choice": str(config.hydra.runtime.choices.get("hydra/sweeper")),
                        **hydra_section(config, "sweeper")},
            "launcher": {"choice": str(config.hydra.runtime.choices.get("hydra/launcher")),
                         **hydra_section(config, "launcher")},
            "sweep_dir": str(sweep_dir)}


def hydra_section(config: DictConfig, key: str) -> dict:
    node = config.hydra[key]
    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as error:  # an interpolation only a job can resolve: record it as written
        log.warning("hydra.%s has values that resolve only in a job (%s); recorded unresolved", key, error)
        return OmegaConf.to_container(node, resolve=False)


def sweep_objective(config: DictConfig) -> Objective:
    from runner.objective import direction

    spec = {"objective": OmegaConf.to_container(config.objective, resolve=True)}
    return Objective(metric=spec["objective"]["metric"], direction=direction(spec))


def swept_keys(config: DictConfig, overrides: list[str]) -> list[str]:
    """The keys a grid sweep varies (``key=a,b``, ``glob(...)``) and those an Optuna search samples."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if isinstance(params, DictConfig):
        keys += [str(key) for key in params]
    return list(dict.fromkeys(keys))


def default_best_config_dir(uri: str) -> Path:
    """conf/experiment/best/ beside a local SQLite store (outputs/ by default), else under outputs/."""
    from runner.tracking import sqlite_path

    database = sqlite_path(uri)
    root = database.parent if database is not None else Path("outputs")
    return (root / "conf" / "experiment" / "best").resolve()


# ---------------------------------------------------------------- in each job


def child_link(hydra_cfg, cfg: DictConfig) -> dict:
    """``run_job`` arguments that make a sweep's job a child of the parent run; {} when there is none."""
    path = Path(hydra_cfg.runtime.cwd) / str(hydra_cfg.sweep.dir) / PARENT_FILE
    if not path.is_file():
        log.warning("%s not found (the sweep-record callback did not run): this job is a standalone run", path)
        return {}
    parent = json.loads(path.read_text())
    if parent["tracking_uri"] != cfg.tracking.uri:
        log.warning("this job's tracking.uri %s is not the sweep's %s: it is recorded without its parent run",
                    cfg.tracking.uri, parent["tracking_uri"])
        return {}
    trial = OmegaConf.select(cfg, "trial.number")
    job_num = hydra_cfg.job.num
    choices = {group: str(choice) for group, choice in hydra_cfg.runtime.choices.items()
               if choice is not None and not group.startswith("hydra/")}
    tags = {"runner.job_num": str(job_num), "runner.hydra_choices": json.dumps(choices),
            "runner.sweep_name": parent["sweep_name"]}
    if trial is not None:
        tags["runner.trial"] = str(trial)
    run_name = f"{cfg.name}-trial-{trial}" if trial is not None else f"{cfg.name}-{job_num}"
    return {"parent_run_id": parent["run_id"], "run_name": run_name, "tags": tags}


def job_progress(plan: SweepPlan, config: DictConfig, job_return) -> str:
    """``job 2 (3/4) done: val_loss = 0.31 (optimizer.learning_rate=0.01); best so far: job 0, val_loss = 0.29``.

    The count and the best come from the sweep folder's progress file, which every job appends to: with a
    parallel launcher the jobs end in other processes.
    """
    from hydra.core.utils import JobStatus

    from runner.console import best_entry, record_job, trial_line

    number = int(config.hydra.job.num)
    value = job_return._return_value  # the objective, or the exception of a failed job
    finished = job_return.status == JobStatus.COMPLETED and isinstance(value, (int, float)) and math.isfinite(value)
    entries = record_job(Path(plan.sweep_dir), {"job": number, "value": float(value) if finished else None})
    swept = {key.lstrip("+~") for key in plan.swept_keys}
    params = dict(line.lstrip("+~").split("=", 1) for line in job_return.overrides or []
                  if "=" in line and line.split("=", 1)[0].lstrip("+~") in swept)
    reason = "" if finished else (f"{type(value).__name__}: {value}" if isinstance(value, BaseException)
                                  else f"the objective is {value!r}")
    return trial_line("job", len(entries), plan.grid_jobs, number, "COMPLETE" if finished else "FAIL",
                      plan.objective.metric, value if finished else None, params,
                      best_entry(entries, plan.objective.direction), reason=reason)


# ---------------------------------------------------------------- end of the sweep


def end_open_sweeps() -> None:
    """End the parent runs Hydra's on_multirun_end did not reach (the sweeper raised or was interrupted)."""
    for plan in OPEN_PLANS:
        end_abandoned(plan)


def end_abandoned(plan: SweepPlan) -> None:
    """Report on and end a parent whose sweep stopped before on_multirun_end; do not leave it RUNNING."""
    close_safely(plan, stopped="the sweep stopped before its end (the sweeper raised or was interrupted)")


def close_safely(plan: SweepPlan, stopped: str | None = None) -> None:
    """``close_sweep`` once; if the report cannot be written, the parent still ends (FAILED, with the reason)."""
    if plan.closed:
        return
    try:
        close_sweep(plan, stopped)
    except Exception as error:
        from mlflow import MlflowClient

        log.error("could not write the report of sweep %s: %s: %s", plan.sweep_name, type(error).__name__, error)
        client = MlflowClient(tracking_uri=plan.tracking_uri)
        client.set_tag(plan.parent_run_id, "runner.error", f"the sweep report failed: {error}"[:5000])
        client.set_terminated(plan.parent_run_id, "FAILED")


def close_sweep(plan: SweepPlan, stopped: str | None = None) -> None:
    """Report on the parent run and end it: FINISHED, or FAILED when no trial finished or the sweep stopped."""
    from mlflow import MlflowClient

    from runner.sweep_report import build_report, child_runs

    plan.closed = True
    client = MlflowClient(tracking_uri=plan.tracking_uri)
    runs = child_runs(client, plan.experiment_id, plan.parent_run_id)
    launched = launched_jobs(plan)
    if stopped and plan.grid_jobs == launched and all(run.info.status != "RUNNING" for run in runs):
        # Hydra's basic sweeper raises after the last job when any job failed: the sweep itself did complete.
        stopped = None
    runs = end_stale_children(client, runs)
    objective = children_objective(runs, plan.objective)
    with tempfile.TemporaryDirectory() as folder:
        report = build_report(client, runs, plan.swept_keys, objective, f"sweep {plan.sweep_name}", Path(folder))
        for path in report.files.values():
            client.log_artifact(plan.parent_run_id, str(path), "sweep")
        best_config = write_best_config(client, plan, report) if report.best is not None else None
    counts = {state: report.count(state) for state in ("FINISHED", "FAILED", "PRUNED", "KILLED")}
    metrics = {f"trials_{state.lower()}": n for state, n in counts.items()}
    metrics["trials_total"] = len(report.table)
    tags = {}
    if report.best is not None:
        metrics[f"best_{objective.metric}"] = float(report.best["objective"])
        best_run = client.get_run(report.best["run_id"])
        metrics.update({f"best_{name}": value for name, value in best_run.data.metrics.items()
                        if name.startswith(("train_", "val_", "test_")) and name != objective.metric
                        and not name.endswith("_seconds")})  # best_train_seconds would read as "fastest"
        tags = {"runner.best_run_id": report.best["run_id"], "runner.best_trial": str(report.best["trial"]),
                "runner.best_config": str(best_config)}
    if stopped:
        tags["runner.error"] = stopped
    client.log_batch(plan.parent_run_id, metrics=_metric_entities(metrics), tags=_tag_entities(tags))
    status = "FINISHED" if counts["FINISHED"] and not stopped else "FAILED"
    client.set_terminated(plan.parent_run_id, status)
    print_summary(plan, report, best_config, status, unrecorded=launched - len(runs),
                  trial_config=trial_config_path(best_run) if report.best is not None else None)


def launched_jobs(plan: SweepPlan) -> int:
    """Jobs Hydra started in this sweep's folder (each gets a .hydra/ folder before its task runs)."""
    return sum(1 for _ in Path(plan.sweep_dir).glob("**/.hydra/overrides.yaml"))


def end_stale_children(client, runs: list) -> list:
    """Children still RUNNING when the sweep is over belong to jobs that died: mark them KILLED."""
    stale = [run for run in runs if run.info.status == "RUNNING"]
    for run in stale:
        client.set_tag(run.info.run_id, "runner.error", "the job ended without closing its run (killed?)")
        client.set_terminated(run.info.run_id, "KILLED")
    return [client.get_run(run.info.run_id) if run in stale else run for run in runs]


def children_objective(runs: list, planned: Objective) -> Objective:
    """The objective the jobs themselves used, when they all agree (a glob over presets may differ)."""
    from runner.objective import metric_direction

    metrics = {run.data.params.get("objective.metric") for run in runs} - {None}
    if len(metrics) != 1 or metrics == {planned.metric}:
        return planned
    metric = metrics.pop()
    directions = {run.data.params.get("objective.direction") for run in runs}
    chosen = directions.pop() if len(directions) == 1 else "auto"
    return Objective(metric, metric_direction(metric) if chosen in ("auto", None) else chosen)


def write_best_config(client, plan: SweepPlan, report) -> Path:
    """The best trial as an experiment file (rerun: --config-dir <conf> +experiment=best/<sweep name>)."""
    from runner.sweep_report import best_config_yaml, download_config, hydra_choices

    best = report.best
    run = client.get_run(best["run_id"])
    folder = Path(plan.best_config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan.sweep_name}.yaml"
    description = (f"Best trial {best['trial']} of sweep {plan.sweep_name}: {report.objective.metric} = "
                   f"{best['objective']:.6g} (run {best['run_id']})")
    header = [description, f"Rerun: {rerun_command(plan)}",
              f"Written by the sweep's parent run {plan.parent_run_id} from the trial's resolved config."]
    text = best_config_yaml(download_config(client, best["run_id"]), hydra_choices(run),
                            f"{plan.sweep_name}-best", description, header)
    path.write_text(text)
    client.log_text(plan.parent_run_id, text, "sweep/best_config.yaml")
    return path


def rerun_command(plan: SweepPlan) -> str:
    conf_dir = Path(plan.best_config_dir).parent.parent
    try:
        conf_dir = conf_dir.relative_to(Path.cwd())
    except ValueError:
        pass  # outside the working folder: keep it absolute
    return f"python -m runner --config-dir {conf_dir} +experiment=best/{plan.sweep_name}"


def trial_config_path(run) -> str:
    """Where the trial's own config is: its run folder's .hydra/config.yaml, else the run's artifact."""
    folder = run.data.tags.get("runner.output_dir")
    path = Path(folder) / ".hydra" / "config.yaml" if folder else None
    if path is not None and path.is_file():
        return str(path)
    return f"config/config.yaml in the artifacts of run {run.info.run_id}"


def print_summary(plan: SweepPlan, report, best_config: Path | None, status: str, unrecorded: int = 0,
                  trial_config: str | None = None) -> None:
    from runner.console import ui_command

    counts = ", ".join(f"{report.count(state)} {state.lower()}" for state in ("FINISHED", "FAILED", "PRUNED"))
    lines = ["", f"== sweep {plan.sweep_name} {status.lower()}: {len(report.table)} trials ({counts}) =="]
    if unrecorded > 0:  # e.g. an out-of-range value: refused before its run was created
        lines.append(f"  {unrecorded} job(s) of this sweep failed before their MLflow run existed: see the log above")
    best = report.best
    if best is not None:
        lines += [(f"  best:        trial {best['trial']} ({best['run_name']}), {report.objective.metric} = "
                   f"{best['objective']:.6g}, run id {best['run_id']}"),
                  f"  params:      {', '.join(f'{key}={best[key]}' for key in report.param_columns) or '-'}",
                  f"  its config:  {trial_config}",
                  f"  best config: {best_config}", f"  rerun it:    {rerun_command(plan)}"]
    else:
        lines.append("  no trial finished: see the failed runs' runner.error tags")
    # The trials' diagnoses (tag diag.cause) and the parameter ranges that go with them (sweep/diagnoses.txt).
    lines += [f"  {line}" for line in getattr(report, "diagnoses", [])]
    lines += [f"  parent run:  {plan.parent_run_id} (experiment {plan.experiment!r}); trials table: sweep/trials.html",
              f"  browse:      {ui_command(plan.tracking_uri)}"]
    print("\n".join(lines), flush=True)


def _metric_entities(metrics: dict[str, float]) -> list:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(name, float(value), now, 0) for name, value in metrics.items() if math.isfinite(float(value))]


def _tag_entities(tags: dict[str, str]) -> list:
    from mlflow.entities import RunTag

    return [RunTag(name, str(value)) for name, value in tags.items()]
