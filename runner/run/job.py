"""One job: config -> data -> model -> training -> evaluation, with everything recorded in MLflow.

``run_job`` takes a composed config and an output folder, so tests and other programs can call it without
Hydra's command line.
"""

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datasets import load_dataset
from runner.config import objective
from runner.config.validation import validate
from runner.errors import ConfigError, TrackingError, TrainingError
from runner.run import diagnostics_session, evaluation, faults, plots, resume, training
from runner.runtime import placement, resources
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
    cfg: DictConfig,
    output_dir,
    overrides=(),
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    share: resources.JobShare | None = None,
) -> JobResult:
    """Validate, then train and record one experiment; a failure marks the MLflow run FAILED and re-raises.

    In a sweep, ``parent_run_id`` makes the run a child of the sweep's parent run (in the parent's experiment),
    ``run_name`` names it when ``tracking.run_name`` is not set, and ``tags`` are added to its tags.
    ``share`` is this job's part of the machine when jobs run side by side (None: all of it).
    """
    validate(cfg)
    output_dir = Path(output_dir)
    check_writable(output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # Thread pools are fixed when the backend's runtime starts: size them before anything runs.
    plan = placement.configure_job(
        resolved["trainer"]["threads"],
        share,
        resolved["trainer"]["gpu_memory_growth"],
        resolved["trainer"]["deterministic"],
    )
    tracking_cfg = resolved["tracking"]
    if parent_run_id is None:
        tracker = connect(tracking_cfg["uri"], tracking_cfg["experiment"], tracking_cfg["artifact_location"])
    else:
        tracker = attach(tracking_cfg["uri"], parent_run_id)
    saved = _checkpoint_to_resume(resolved, parent_run_id)
    run_name = tracking_cfg["run_name"] or run_name or f"{resolved['name']}-{datetime.now():%Y%m%d-%H%M%S}"
    tags = {
        "runner.preset": resolved["name"],
        "mlflow.note.content": resolved["description"],
        "runner.output_dir": str(output_dir.resolve()),
        **environment_tags(),
        **_trial_tags(resolved),
        **plan.tags(),
        **(tags or {}),
    }
    if saved:  # the same MLflow run goes on: one training, one record, whatever stopped it on the way
        record = RunRecord.reopen(
            tracker, saved.run_id, {**tags, "runner.resumed": f"after epoch {saved.epoch} from {saved.folder}"}
        )
    else:
        record = RunRecord(tracker, run_name, tags, parent_run_id=parent_run_id)
    log.info("MLflow run %s (%s) in experiment %r", record.run_id, run_name, tracking_cfg["experiment"])
    try:
        if saved:
            resume.log_missing_epoch(record, saved)
        else:  # a resumed run has them from its start, and MLflow params cannot change
            record.log_params(config_params(resolved))
            record.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved)), "config/config.yaml")
            record.log_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))), "config/overrides.yaml")
        result = _train_and_evaluate(resolved, output_dir, record, tracker, saved)
    except BaseException as error:
        with contextlib.suppress(Exception):  # the original error matters more than a failed upload
            _log_file_artifacts(record, output_dir)
        if pruning.is_pruned(error):  # a search stopped it on purpose: not a failure
            pruning.mark_pruned(record, error)
            raise
        _tag_trial_state(record, resolved, "FAIL")
        record.fail(error)
        if isinstance(error, KeyboardInterrupt) and (hint := resume.hint(output_dir, record.run_id)):
            log.warning("%s: %s", error or "interrupted", hint)
        raise
    _log_file_artifacts(record, output_dir)
    _tag_trial_state(record, resolved, "COMPLETE")
    record.finish()
    print_summary(resolved, result, tracker.uri)
    return result


def check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise TrackingError(
            f"the output folder {output_dir} is not writable: {error}. Choose another with "
            f"hydra.run.dir=... (or run from a folder you can write to)."
        ) from error


def _checkpoint_to_resume(cfg: dict, parent_run_id: str | None) -> resume.Saved | None:
    target = cfg["trainer"]["resume"]
    if not target:
        return None
    if parent_run_id is not None or cfg["trial"]["id"] is not None:
        raise ConfigError(
            "trainer.resume continues one interrupted run; an interrupted search resumes when its command is run again"
        )
    saved = resume.load(target, cfg["tracking"]["uri"])
    resume.check_config(saved, cfg)
    return saved


def load_data(dataset_cfg: dict):
    options = dict(dataset_cfg)
    return load_dataset(options.pop("name"), **options)


def _train_and_evaluate(
    cfg: dict, output_dir: Path, record: RunRecord, tracker: Tracker, saved: resume.Saved | None = None
) -> JobResult:
    data = faults.inject(load_data(cfg["dataset"]), cfg["fault"])  # a no-op unless a fault preset is used
    record.set_tags(data_tags(data))
    log.info(
        "data: %s, %s task, rows train/val/test %d/%d/%d (%s split)",
        data.name,
        data.task,
        len(data.train.y),
        len(data.val.y),
        len(data.test.y),
        data.split_source,
    )

    trainer = dict(cfg["trainer"])
    training.seed_everything(trainer["seed"], trainer["deterministic"])
    loss = training.loss_name(cfg["model"], data.task)
    metrics = training.task_metrics(data.task, loss, cfg["evaluation"]["threshold"])
    training.check_monitors(
        trainer, cfg["optimizer"], training.logged_metric_names(metrics, data.task, trainer["roc_auc_per_epoch"])
    )
    objective.check_metric(cfg)
    model = training.build_network(cfg["model"], data)
    optimizer, schedule_callbacks = training.build_optimizer(cfg["optimizer"])
    training.compile_model(model, optimizer, loss, metrics, trainer)
    reports = output_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    summary_lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: summary_lines.append(line))
    (reports / "model_summary.txt").write_text("\n".join(summary_lines) + "\n")
    record.log_params({"model.parameters": str(model.count_params()), "model.resolved_loss": loss})

    diagnostics = diagnostics_session.start(cfg, data, output_dir, record)  # None for diagnostics=none
    if diagnostics:
        diagnostics.preflight(model)
    diagnostics_session.reseed(trainer["seed"])  # whatever the suite, so that diagnostics never change the training
    pruner = pruning.callback_for(cfg)  # only when this job is a trial of an Optuna search
    try:
        trained = training.fit(
            model,
            data,
            {**cfg, "trainer": trainer},
            output_dir,
            record.log_metrics,
            extra_callbacks=schedule_callbacks
            + ([pruner] if pruner else [])
            + (diagnostics.callbacks() if diagnostics else []),
            saved=saved,
            context={"run_id": record.run_id, "tracking_uri": tracker.uri, "config": cfg},
        )
    except Exception:
        if diagnostics:
            diagnostics.after_failure(model)
        raise
    if pruner:
        pruner.check()
    if diagnostics:
        diagnostics.check_pruned()
    result = evaluation.evaluate(model, data, cfg["evaluation"]["threshold"])
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

    _write_reports(reports, data, result, trained, final)
    if cfg["evaluation"]["plots"]:
        _write_plots(output_dir / "plots", data, result, trained)
    if cfg["tracking"]["log_model"]:
        model_dir = output_dir / "model"
        model_dir.mkdir(exist_ok=True)
        model.save(model_dir / "model.keras")
    value = objective.objective_value(cfg, final, trained.history)
    if cfg["trial"]["id"] is not None and not np.isfinite(value):
        raise TrainingError(f"the objective {cfg['objective']['metric']} is {value}: the trial counts as failed")
    return JobResult(
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        metrics=final,
        objective=value,
        output_dir=output_dir,
        artifact_uri=record.artifact_uri,
        diagnostics=diagnostics.console_lines() if diagnostics else [],
    )


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


def _trial_tags(cfg: dict) -> dict[str, str]:
    link = cfg["trial"]
    if link["number"] is None:
        return {}
    return {"runner.trial": str(link["number"]), "runner.study": str(link["study"])}


def _tag_trial_state(record: RunRecord, cfg: dict, state: str) -> None:
    if cfg["trial"]["number"] is not None:
        with contextlib.suppress(Exception):  # the run's own status matters more than this tag
            record.set_tags({"runner.trial_state": state})


def _write_reports(folder: Path, data, result: evaluation.Evaluation, trained, final: dict) -> None:
    (folder / "metrics.json").write_text(json.dumps(final, indent=2))
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "name": data.name,
                "task": data.task,
                "split": data.split_source,
                "rows": {split: len(part.y) for split, part in data.splits().items()},
                "input_shape": list(data.input_shape),
                "target": data.target_name,
                "classes": data.class_names,
                "features": data.feature_names,
                "feature_scaling": data.feature_scaling,
                "target_scaling": data.target_scaling,
                "files": data.files,
                "notes": data.notes,
            },
            indent=2,
            default=str,
        )
    )
    epochs = len(trained.history["loss"])
    lines = ["epoch," + ",".join(trained.history)]
    lines += [
        f"{i + 1}," + ",".join(repr(float(values[i])) for values in trained.history.values()) for i in range(epochs)
    ]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    for name, text in result.reports.items():
        (folder / name).write_text(text)
    _write_test_predictions(folder / "test_predictions.csv", data, result.predictions["test"])


def _write_test_predictions(path: Path, data, outputs: np.ndarray) -> None:
    """One row per test example: the label and the raw model outputs (and % alcohol for the wine target)."""
    columns = {"y_true": data.test.y}
    for index in range(outputs.shape[1]):
        columns[f"output_{index}"] = outputs[:, index]
    if data.target_scaling:
        mean, std = data.target_scaling["mean"], data.target_scaling["std"]
        columns["y_true_original"] = data.test.y * std + mean
        columns["y_pred_original"] = outputs[:, 0] * std + mean
    rows = zip(*columns.values())
    lines = [",".join(columns)] + [",".join(repr(float(value)) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


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
        labels = {split: data.splits()[split].y for split in ("val", "test")}
        plots.roc_curves(labels, result.predictions, folder / "roc_curve.png")
    names = data.class_names or [str(i) for i in range(data.n_classes)]
    plots.confusion_matrix(
        result.confusion["test"], names, "test set confusion matrix", folder / "confusion_matrix.png"
    )


def _log_file_artifacts(record: RunRecord, output_dir: Path) -> None:
    """Upload what the run wrote locally; also called on failure, so partial results are kept."""
    for folder in ("reports", "plots", "model"):
        path = output_dir / folder
        if path.is_dir() and any(path.iterdir()):
            record.client.log_artifacts(record.run_id, str(path), folder)
    hydra_log = output_dir / "runner.log"
    if hydra_log.is_file():
        record.log_artifact(hydra_log, "logs")
