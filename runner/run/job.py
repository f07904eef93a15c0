"""One job: config -> data -> model -> training -> evaluation, with everything recorded in MLflow.

``run_job`` takes a composed config and an output folder, so tests and other programs can call it without
Hydra's command line.
"""

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datasets import HELD_OUT, load_dataset
from runner.config.objective import Objective
from runner.config.schema import DatasetFiles, RunConfig, SyntheticDataset, TrialLink
from runner.config.spec import plain, prepare
from runner.errors import ConfigError, TrainingError
from runner.run import diagnostics_session, evaluation, faults, plots, resume, training
from runner.run.folder import RunFolder, write_json, write_reports
from runner.runtime import backend, placement, resources
from runner.runtime.console import print_summary
from runner.sweep import pruning
from runner.tracking import (
    RunRecord,
    Tracker,
    attach,
    config_params,
    connect,
    data_tags,
    environment_tags,
)

log = logging.getLogger("runner")


@dataclass
class JobResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    objective: float  # objective.metric: its final value, else its value at the kept epoch
    output_dir: Path
    artifact_uri: str
    diagnostics: list[str] = field(default_factory=list)  # console lines of the non-PASS diagnostic verdicts


def run_job(
    cfg: DictConfig | RunConfig,
    output_dir,
    overrides=(),
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    share: resources.JobShare | None = None,
) -> JobResult:
    """Validate, then train and record one experiment; a failure marks the MLflow run FAILED and re-raises.

    ``cfg`` is a composed config, or the spec ``prepare`` already made of one (the CLI checks it before
    TensorFlow loads).

    In a sweep, ``parent_run_id`` makes the run a child of the sweep's parent run (in the parent's experiment),
    ``run_name`` names it when ``tracking.run_name`` is not set, and ``tags`` are added to its tags.
    ``share`` is this job's part of the machine when jobs run side by side (None: all of it).
    """
    spec = cfg if isinstance(cfg, RunConfig) else prepare(cfg)
    folder = RunFolder(Path(output_dir))
    folder.create()
    trainer, tracking = spec.trainer, spec.tracking
    # Thread pools are fixed when the backend's runtime starts: size them before anything runs.
    plan = placement.configure_job(trainer.threads, share, trainer.gpu_memory_growth, trainer.deterministic)
    if parent_run_id is None:
        tracker = connect(tracking.uri, tracking.experiment, tracking.artifact_location)
    else:
        tracker = attach(tracking.uri, parent_run_id)
    saved = _checkpoint_to_resume(spec, parent_run_id)
    run_name = tracking.run_name or run_name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    tags = {
        "runner.preset": spec.name,
        "mlflow.note.content": spec.description,
        "runner.output_dir": str(folder.root.resolve()),
        **environment_tags(),
        **_trial_tags(spec.trial),
        **plan.tags(),
        **(tags or {}),
    }
    if saved:  # the same MLflow run goes on: one training, one record, whatever stopped it on the way
        record = RunRecord.reopen(
            tracker, saved.run_id, {**tags, "runner.resumed": f"after epoch {saved.epoch} from {saved.folder}"}
        )
    else:
        record = RunRecord(tracker, run_name, tags, parent_run_id=parent_run_id)
    log.info("MLflow run %s (%s) in experiment %r", record.run_id, run_name, tracking.experiment)
    try:
        if tracking.system_metrics:  # sampled until the run ends, whichever way it ends
            record.monitor_system(resume=bool(saved))
        if saved:
            resume.log_missing_epoch(record, saved)
        else:  # a resumed run has them from its start, and MLflow params cannot change
            resolved = plain(spec)
            record.log_params(config_params(resolved))
            record.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved)), "config/config.yaml")
            record.log_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))), "config/overrides.yaml")
        result = _train_and_evaluate(spec, folder, record, tracker, saved)
    except BaseException as error:
        with contextlib.suppress(Exception):  # the original error matters more than a failed upload
            _log_file_artifacts(record, folder)
        if pruning.is_pruned(error):  # a search stopped it on purpose: not a failure
            pruning.mark_pruned(record, error)
            raise
        _tag_trial_state(record, spec.trial, "FAIL")
        record.fail(error)
        if isinstance(error, KeyboardInterrupt) and (hint := resume.hint(folder.root, record.run_id)):
            log.warning("%s: %s", error or "interrupted", hint)
        raise
    _log_file_artifacts(record, folder)
    _tag_trial_state(record, spec.trial, "COMPLETE")
    record.finish()
    print_summary(spec, result, tracker.uri)
    return result


def _checkpoint_to_resume(spec: RunConfig, parent_run_id: str | None) -> resume.Saved | None:
    target = spec.trainer.resume
    if not target:
        return None
    if parent_run_id is not None or spec.trial.id is not None:
        raise ConfigError(
            "trainer.resume continues one interrupted run; an interrupted search resumes when its command is run again"
        )
    saved = resume.load(target, spec.tracking.uri)
    resume.check_config(saved, spec)
    return saved


def load_data(dataset: DatasetFiles | SyntheticDataset):
    """The arrays a dataset spec names: its fields are the loader's options."""
    options = {item.name: getattr(dataset, item.name) for item in fields(dataset)}
    return load_dataset(options.pop("name"), **options)


def _train_and_evaluate(
    spec: RunConfig, folder: RunFolder, record: RunRecord, tracker: Tracker, saved: resume.Saved | None = None
) -> JobResult:
    data = faults.inject(load_data(spec.dataset), spec.fault)  # a no-op unless a fault preset is used
    record.set_tags(data_tags(data))
    record.log_datasets(data)
    log.info(
        "data: %s, %s task, rows train/val/test %d/%d/%d (%s split)",
        data.name,
        data.task,
        len(data.train.y),
        len(data.val.y),
        len(data.test.y),
        data.split_source,
    )
    trainer = spec.trainer
    backend.seed(trainer.seed, trainer.deterministic)
    compiled = training.build(data, spec.model, spec.optimizer, trainer, spec.evaluation.threshold)
    model = compiled.model
    _write_model_summary(model, folder)
    record.log_params({"model.parameters": str(model.count_params()), "model.resolved_loss": compiled.loss})

    diagnostics = diagnostics_session.start(spec, data, folder, record)  # None for diagnostics=none
    if diagnostics:
        diagnostics.preflight(model)
    diagnostics_session.reseed(trainer.seed)  # whatever the suite, so that diagnostics never change the training
    pruner = pruning.callback_for(spec)  # only when this job is a trial of an Optuna search
    hooks = training.Hooks(
        log_epoch=record.log_metrics,
        callbacks=([pruner] if pruner else []) + (diagnostics.callbacks() if diagnostics else []),
        checkpoint_context={"run_id": record.run_id, "tracking_uri": tracker.uri, "config": plain(spec)},
        saved=saved,
        label=f"trial {spec.trial.number}: " if spec.trial.number is not None else "",
        verbosity=spec.verbosity,
    )
    try:
        trained = training.train(compiled, data, trainer, folder, hooks)
    except Exception:
        if diagnostics:
            diagnostics.after_failure(model)
        raise
    if pruner:
        pruner.check()
    if diagnostics:
        diagnostics.check_pruned()
    result = evaluation.evaluate(model, data, spec.evaluation.threshold)
    if diagnostics:
        diagnostics.after_training(model, trained.history)
    final = {
        **result.metrics,
        "best_epoch": trained.best_epoch,
        "epochs_run": trained.epochs_run,
        "train_seconds": trained.seconds,
        "parameters": model.count_params(),
    }
    launched = _process_start_if_first_job()
    if launched is not None and trained.first_step_at is not None:
        # Launch to first step: interpreter and imports, config, data, model, diagnostics preflight.
        final["first_step_seconds"] = trained.first_step_at - launched
    # Per-epoch val_<m> and the final val_<m> share a name: logging the final values one step after the last
    # epoch makes them the run's latest values (what the runs table shows), ending each curve at the kept weights.
    record.log_metrics(final, step=trained.epochs_run + 1)

    write_reports(folder, data, result, trained.history, final)
    if spec.evaluation.plots:
        _write_plots(folder.plots, data, result, trained)
    if spec.tracking.log_model:
        folder.model_file.parent.mkdir(exist_ok=True)
        model.save(folder.model_file)
        if data.preprocessing:  # raw rows need it to become this model's inputs (datasets.table.transform)
            write_json(folder.preprocessing, data.preprocessing)
        _log_mlflow_model(spec, folder, record, model, data, final, step=trained.epochs_run + 1)
    value = Objective.of(spec).value(final, trained.history)
    if spec.trial.id is not None and not np.isfinite(value):
        raise TrainingError(f"the objective {spec.objective.metric} is {value}: the trial counts as failed")
    return JobResult(
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        metrics=final,
        objective=value,
        output_dir=folder.root,
        artifact_uri=record.artifact_uri,
        diagnostics=diagnostics.console_lines() if diagnostics else [],
    )


def _log_mlflow_model(spec: RunConfig, folder: RunFolder, record: RunRecord, model, data, final, step) -> None:
    """The model as an MLflow Model (the run's Models column), with test rows as its input example and the
    data set's fitted preprocessing beside it when it has one."""
    started = time.perf_counter()
    extra = [folder.preprocessing] if folder.preprocessing.is_file() else []
    logged = record.log_model(
        model, data.test.x, extra_files=extra, register_as=spec.tracking.register_as, metrics=final, step=step
    )
    registered = f", registered as {logged.registered}" if logged.registered else ""
    log.info("MLflow Model %s%s (%.1f s)", logged.run_uri, registered, time.perf_counter() - started)


def _write_model_summary(model, folder: RunFolder) -> None:
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    folder.reports.mkdir(parents=True, exist_ok=True)
    (folder.reports / "model_summary.txt").write_text("\n".join(lines) + "\n")


_jobs_started = 0


def _process_start_if_first_job() -> float | None:
    """When this process started (time.time()), for its first job only: later jobs (a reused sweep worker,
    a test session) did not pay the imports, so their launch time means nothing."""
    global _jobs_started
    _jobs_started += 1
    if _jobs_started > 1:
        return None
    try:  # Linux: the start time in clock ticks after boot; /proc/uptime (unlike btime) has centiseconds
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        booted = time.time() - float(Path("/proc/uptime").read_text().split()[0])
        return booted + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _trial_tags(link: TrialLink) -> dict[str, str]:
    if link.number is None:
        return {}
    return {"runner.trial": str(link.number), "runner.study": str(link.study)}


def _tag_trial_state(record: RunRecord, link: TrialLink, state: str) -> None:
    if link.number is not None:
        with contextlib.suppress(Exception):  # the run's own status matters more than this tag
            record.set_tags({"runner.trial_state": state})


def _write_plots(folder: Path, data, result: evaluation.Evaluation, trained) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    plots.learning_curves(
        trained.history, evaluation.CURVE_METRICS[data.task], trained.best_epoch, folder / "learning_curves.png"
    )
    if data.task == "regression":
        scale = data.target_scaling or {"mean": 0.0, "std": 1.0, "unit": "target"}
        unit = scale.get("unit") or data.target_name
        actual = data.test.y * scale["std"] + scale["mean"]
        predicted = result.predictions["test"][:, 0] * scale["std"] + scale["mean"]
        plots.predicted_vs_actual(actual, predicted, f"{data.target_name} ({unit})", folder / "predicted_vs_actual.png")
        return
    if data.task == "binary":
        labels = {split: data.splits()[split].y for split in HELD_OUT}
        plots.roc_curves(labels, result.predictions, folder / "roc_curve.png")
    names = data.class_names or [str(i) for i in range(data.n_classes)]
    plots.confusion_matrix(
        result.confusion["test"], names, "test set confusion matrix", folder / "confusion_matrix.png"
    )


def _log_file_artifacts(record: RunRecord, folder: RunFolder) -> None:
    """Upload what the run wrote locally; also called on failure, so partial results are kept."""
    for path, artifact_path in folder.uploads():
        record.log_folder(path, artifact_path)
    if folder.log_file.is_file():
        record.log_artifact(folder.log_file, "logs")
