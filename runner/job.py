"""One job: config -> data -> model -> training -> evaluation, with everything recorded in MLflow.

``run_job`` takes a composed config and an output folder, so tests and other programs can call it without
Hydra's command line.
"""

import contextlib
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datasets import load_dataset
from runner import evaluation, plots, training
from runner.console import print_summary
from runner.errors import TrackingError
from runner.schema import validate
from runner.tracking import RunRecord, Tracker, config_params, connect, data_tags, environment_tags

log = logging.getLogger("runner")


@dataclass
class JobResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    objective: float  # the checkpoint monitor's best value
    output_dir: Path
    artifact_uri: str


def run_job(cfg: DictConfig, output_dir, overrides=()) -> JobResult:
    """Validate, then train and record one experiment; a failure marks the MLflow run FAILED and re-raises."""
    validate(cfg)
    output_dir = Path(output_dir)
    check_writable(output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tracking_cfg = resolved["tracking"]
    tracker = connect(tracking_cfg["uri"], tracking_cfg["experiment"], tracking_cfg["artifact_location"])
    run_name = tracking_cfg["run_name"] or f"{resolved['name']}-{datetime.now():%Y%m%d-%H%M%S}"
    tags = {"runner.preset": resolved["name"], "mlflow.note.content": resolved["description"],
            "runner.output_dir": str(output_dir.resolve()), **environment_tags()}
    record = RunRecord(tracker, run_name, tags)
    log.info("MLflow run %s (%s) in experiment %r", record.run_id, run_name, tracking_cfg["experiment"])
    try:
        record.log_params(config_params(resolved))
        record.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved)), "config/config.yaml")
        record.log_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))), "config/overrides.yaml")
        result = _train_and_evaluate(resolved, output_dir, record, tracker)
    except BaseException as error:
        with contextlib.suppress(Exception):  # the original error matters more than a failed upload
            _log_file_artifacts(record, output_dir)
        record.fail(error)
        raise
    _log_file_artifacts(record, output_dir)
    record.finish()
    print_summary(resolved, result, tracker.uri)
    return result


def check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise TrackingError(f"the output folder {output_dir} is not writable: {error}. Choose another with "
                            f"hydra.run.dir=... (or run from a folder you can write to).") from error


def load_data(dataset_cfg: dict):
    options = dict(dataset_cfg)
    return load_dataset(options.pop("name"), **options)


def _train_and_evaluate(cfg: dict, output_dir: Path, record: RunRecord, tracker: Tracker) -> JobResult:
    data = load_data(cfg["dataset"])
    record.set_tags(data_tags(data))
    log.info("data: %s, %s task, rows train/val/test %d/%d/%d (%s split)", data.name, data.task,
             len(data.train.y), len(data.val.y), len(data.test.y), data.split_source)

    trainer = dict(cfg["trainer"])
    if trainer["verbose"] is None:
        trainer["verbose"] = 1 if sys.stdout.isatty() else 2
    training.seed_everything(trainer["seed"], trainer["deterministic"])
    loss = training.loss_name(cfg["model"], data.task)
    metrics = training.task_metrics(data.task, loss, cfg["evaluation"]["threshold"])
    training.check_monitors(trainer, cfg["optimizer"],
                            training.logged_metric_names(metrics, data.task, trainer["roc_auc_per_epoch"]))
    model = training.build_network(cfg["model"], data)
    optimizer, schedule_callbacks = training.build_optimizer(cfg["optimizer"])
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    reports = output_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    summary_lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: summary_lines.append(line))
    (reports / "model_summary.txt").write_text("\n".join(summary_lines) + "\n")
    record.log_params({"model.parameters": str(model.count_params()), "model.resolved_loss": loss})

    trained = training.fit(model, data, {**cfg, "trainer": trainer}, output_dir, record.log_metrics,
                           extra_callbacks=schedule_callbacks)
    result = evaluation.evaluate(model, data, cfg["evaluation"]["threshold"])
    final = {**result.metrics, "best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run,
             "train_seconds": trained.seconds, "parameters": model.count_params()}
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
    return JobResult(run_id=record.run_id, experiment_id=record.experiment_id, metrics=final,
                     objective=trained.best_value, output_dir=output_dir, artifact_uri=record.artifact_uri)


def _write_reports(folder: Path, data, result: evaluation.Evaluation, trained, final: dict) -> None:
    (folder / "metrics.json").write_text(json.dumps(final, indent=2))
    (folder / "dataset.json").write_text(json.dumps({
        "name": data.name, "task": data.task, "split": data.split_source,
        "rows": {split: len(part.y) for split, part in data.splits().items()},
        "input_shape": list(data.input_shape), "target": data.target_name, "classes": data.class_names,
        "features": data.feature_names, "feature_scaling": data.feature_scaling,
        "target_scaling": data.target_scaling, "files": data.files, "notes": data.notes,
    }, indent=2, default=str))
    epochs = len(trained.history["loss"])
    lines = ["epoch," + ",".join(trained.history)]
    lines += [f"{i + 1}," + ",".join(repr(float(values[i])) for values in trained.history.values())
              for i in range(epochs)]
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
    plots.learning_curves(trained.history, evaluation.CURVE_METRICS[data.task], trained.best_epoch,
                          folder / "learning_curves.png")
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
    plots.confusion_matrix(result.confusion["test"], names, "test set confusion matrix",
                           folder / "confusion_matrix.png")


def _log_file_artifacts(record: RunRecord, output_dir: Path) -> None:
    """Upload what the run wrote locally; also called on failure, so partial results are kept."""
    for folder in ("reports", "plots", "model"):
        path = output_dir / folder
        if path.is_dir() and any(path.iterdir()):
            record.client.log_artifacts(record.run_id, str(path), folder)
    hydra_log = output_dir / "runner.log"
    if hydra_log.is_file():
        record.log_artifact(hydra_log, "logs")

