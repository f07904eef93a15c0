"""One job: config -> data -> model -> training -> evaluation, with everything recorded in MLflow.

``run_job`` takes a composed config and an output folder, so tests and other programs can call it without
Hydra's command line.
"""

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from datasets import HELD_OUT, Dataset
from runner.config.objective import Objective
from runner.config.schema import RunConfig, TrialLink
from runner.config.spec import plain, prepare
from runner.config.validation import check_loaded_task
from runner.errors import ConfigError, TrainingError
from runner.run import architecture, diagnostics_session, evaluation, faults, plots, resume, training
from runner.run.data import load_data
from runner.run.folder import RunFolder, write_json, write_reports
from runner.run.late_record import Deferred, LateRecord, OpenOnFirstStep
from runner.runtime import backend, backend_choice, placement, resources
from runner.runtime.console import print_summary
from runner.tracking import (
    RunRecord,
    Tracker,
    attach,
    check_server,
    config_params,
    connect,
    data_tags,
    end_orphaned_runs,
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
    data: Dataset | Exception | None = None,
) -> JobResult:
    """Validate, then train and record one experiment; a failure marks the MLflow run FAILED and re-raises.

    ``cfg`` is a composed config, or the spec ``prepare`` already made of one (the CLI checks it before
    TensorFlow loads).

    In a sweep, ``parent_run_id`` makes the run a child of the sweep's parent run (in the parent's experiment),
    ``run_name`` names it when ``tracking.run_name`` is not set, and ``tags`` are added to its tags.
    ``share`` is this job's part of the machine when jobs run side by side (None: all of it).
    ``data`` is the data set when the caller loaded it already (the CLI does, before TensorFlow loads), or the
    error loading it raised, which fails the run at its data step; None: loaded here.
    """
    spec = cfg if isinstance(cfg, RunConfig) else prepare(cfg)
    backend_choice.choose_backend(spec.trainer.backend)  # Keras is loaded here: another backend is refused
    folder = RunFolder(Path(output_dir))
    folder.create()
    trainer, tracking = spec.trainer, spec.tracking
    # Thread pools are fixed when the backend's runtime starts: size them before anything runs.
    plan = placement.configure_job(trainer.threads, share, trainer.gpu_memory_growth, trainer.deterministic)
    backend.keep_compiled_programs(trainer.compile_cache)  # JAX: programs compiled by earlier runs are reused
    if tracking.uri.startswith(("http://", "https://")):
        check_server(tracking.uri)  # an unreachable server fails the job now, before any training
    opening = RunOpening(spec, folder, list(overrides), parent_run_id, run_name, {**plan.tags(), **(tags or {})})
    if trainer.resume:  # the checkpoint to go on from is found through the store: it opens first
        saved = opening.find_saved()
        record = opening.create()
    else:
        saved, record = None, LateRecord(opening.create, opening.begin)
    try:
        if saved:
            opening.begin(record)
        result = _train_and_evaluate(spec, folder, record, saved, data)
    except BaseException as error:
        with contextlib.suppress(Exception):  # the original error matters more than a failed upload
            _log_file_artifacts(record, folder)
        if _is_pruned(error):  # a search stopped it on purpose: not a failure
            from runner.sweep import pruning

            pruning.mark_pruned(record, error)
            _close(record)
            raise
        _tag_trial_state(record, spec.trial, "FAIL")
        record.fail(error)
        _close(record)
        run_id = getattr(record, "run_id", None)  # None: the store could not be used, no run was opened
        if isinstance(error, KeyboardInterrupt) and run_id and (hint := resume.hint(folder.root, run_id)):
            log.warning("%s: %s", error or "interrupted", hint)
        raise
    _log_file_artifacts(record, folder)
    _tag_trial_state(record, spec.trial, "COMPLETE")
    record.finish()
    _close(record)
    print_summary(spec, result, tracking.uri)
    return result


class RunOpening:
    """Opening a job's MLflow run, in two steps that a LateRecord makes on its worker thread: ``create`` (the
    store, the experiment, the run and its tags) and ``begin`` (system metrics, params, config)."""

    def __init__(self, spec: RunConfig, folder: RunFolder, overrides: list, parent_run_id, run_name, tags: dict):
        self.spec, self.folder, self.overrides, self.parent_run_id = spec, folder, overrides, parent_run_id
        self.run_name = spec.tracking.run_name or run_name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
        self.extra_tags = tags
        self.saved: resume.Saved | None = None
        self._tracker: Tracker | None = None

    def tracker(self) -> Tracker:
        if self._tracker is None:
            tracking = self.spec.tracking
            if self.parent_run_id is None:
                self._tracker = connect(tracking.uri, tracking.experiment, tracking.artifact_location)
            else:
                self._tracker = attach(tracking.uri, self.parent_run_id)
        return self._tracker

    def find_saved(self) -> resume.Saved | None:
        self.tracker()
        self.saved = _checkpoint_to_resume(self.spec, self.parent_run_id)
        return self.saved

    def create(self) -> RunRecord:
        tracker, saved, spec = self.tracker(), self.saved, self.spec
        # A process killed without closing its run (SIGKILL, out of memory) left it RUNNING: it ends here.
        end_orphaned_runs(tracker.client, [tracker.experiment_id], keep={saved.run_id} if saved else ())
        tags = {
            "runner.preset": spec.name,
            "mlflow.note.content": spec.description,
            "runner.output_dir": str(self.folder.root.resolve()),
            **environment_tags(),
            **_trial_tags(spec.trial),
            **self.extra_tags,
        }
        if saved:  # the same MLflow run goes on: one training, one record, whatever stopped it on the way
            resumed = {**tags, "runner.resumed": f"after epoch {saved.epoch} from {saved.folder}"}
            record = RunRecord.reopen(tracker, saved.run_id, resumed)
        else:
            record = RunRecord(tracker, self.run_name, tags, parent_run_id=self.parent_run_id)
        log.info("MLflow run %s (%s) in experiment %r", record.run_id, self.run_name, spec.tracking.experiment)
        return record

    def begin(self, record: RunRecord) -> None:
        if self.spec.tracking.system_metrics:  # sampled until the run ends, whichever way it ends
            record.monitor_system(resume=bool(self.saved))
        if self.saved:
            resume.log_missing_epoch(record, self.saved)
        else:  # a resumed run has them from its start, and MLflow params cannot change
            resolved = plain(self.spec)
            record.log_params(config_params(resolved))
            record.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved)), "config/config.yaml")
            record.log_text(OmegaConf.to_yaml(OmegaConf.create(self.overrides)), "config/overrides.yaml")


def _pruner(spec: RunConfig):
    """The pruning callback of a trial. Optuna (a fraction of a second to import) is imported for trials only."""
    if spec.trial.id is None:
        return None
    from runner.sweep import pruning

    return pruning.callback_for(spec)


def _is_pruned(error: BaseException) -> bool:
    if "optuna" not in sys.modules:  # nothing can have raised Optuna's TrialPruned
        return False
    from runner.sweep import pruning

    return pruning.is_pruned(error)


def _close(record) -> None:
    if isinstance(record, LateRecord):
        record.close()


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


def _train_and_evaluate(
    spec: RunConfig,
    folder: RunFolder,
    record: RunRecord | LateRecord,
    saved: resume.Saved | None = None,
    loaded: Dataset | Exception | None = None,
) -> JobResult:
    if isinstance(loaded, Exception):
        raise loaded
    data = loaded if loaded is not None else load_data(spec.dataset)
    data = faults.inject(data, spec.fault)  # a no-op unless a fault preset is used
    check_loaded_task(spec, data.task)  # task=auto: the metrics could not be checked before loading
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
    pruner = _pruner(spec)  # only when this job is a trial of an Optuna search
    opener = [OpenOnFirstStep(record)] if isinstance(record, LateRecord) else []
    hooks = training.Hooks(
        log_epoch=record.log_metrics,
        callbacks=([pruner] if pruner else []) + (diagnostics.callbacks() if diagnostics else []) + opener,
        # Read at the first checkpoint, once the run is open.
        checkpoint_context=Deferred(
            lambda: {"run_id": record.run_id, "tracking_uri": spec.tracking.uri, "config": plain(spec)}
        ),
        saved=saved,
        label=f"trial {spec.trial.number}: " if spec.trial.number is not None else "",
        verbosity=spec.verbosity,
    )
    if spec.tracking.log_model:
        record.prepare_model_logging()  # a LateRecord does it on its thread, once MLflow is imported
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
    architecture.draw(model, folder.architecture_image)  # uploaded with model/ at the end of the run


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
    if data.task == "multilabel":  # no confusion matrix or single ROC curve: a row holds any set of labels
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
