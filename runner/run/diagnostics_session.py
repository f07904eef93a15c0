"""The runner's side of the diagnostics: config -> DiagnosticData/Options, the stages at the right moments of
a job, MLflow logging as results arrive, and the console lines.

``runner.run.job`` calls, in order: ``start`` (after the data is loaded), ``session.preflight(model)`` (after
compile, before fit), ``session.callbacks()`` (into fit), ``session.after_training(model, history)`` (after
evaluation) or ``session.after_failure(model)`` (when training raised), and ``session.console_lines()``.
Every stage writes ``diagnostics/report.json`` and ``report.html`` and logs its tags, metrics and files at
once, so a run that crashes later keeps what was already found.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from datasets import SPECS
from models.losses import ONE_HOT_LOSSES
from runner.config.schema import DiagnosticsConfig, RunConfig
from runner.diagnostics import DiagnosticData, DiagnosticOptions, Report, registry
from runner.diagnostics.report import FAIL, SEVERITY, SKIP, CheckResult
from runner.errors import ConfigError, RunnerError
from runner.run.folder import RunFolder

log = logging.getLogger("runner")

ARTIFACT_FOLDER = "diagnostics"  # in the MLflow run's artifacts


class DiagnosticsStop(RunnerError):
    """A preflight check failed and ``diagnostics.stop_on_fail`` is set: nothing was trained."""


@dataclass
class DiagnosticsSession:
    suite: str
    data: DiagnosticData
    options: DiagnosticOptions
    record: object  # runner.tracking.RunRecord (anything with set_tags, log_metrics, log_artifact)
    stop_on_fail: bool = False
    title: str = "Diagnostics"
    prune: bool = False  # a sweep trial with diagnostics.prune_on_cause: stop it on a FAIL-level diagnosis
    report: Report = field(default_factory=Report)
    monitor: object = None
    pruned_because: str | None = None
    _logged_plots: set = field(default_factory=set)
    _cause2_tagged: bool = False

    @property
    def folder(self) -> Path:
        return Path(self.options.output_dir)

    def preflight(self, model) -> Report:
        """The preflight checks on the compiled, untrained model; raises DiagnosticsStop on a FAIL if asked."""
        from runner.diagnostics import preflight

        if not self.options.enabled(preflight.STAGE):  # nothing to run, say or publish
            return Report()
        log.info("diagnostics: preflight checks on the untrained model ...")
        started = time.perf_counter()
        found = self._guarded("preflight", lambda: preflight.run(model, self.data, self.options))
        self._publish(found)
        # Wall time: it includes what runs between the checks (which ones can run, the report's files).
        log.info("diagnostics: preflight done in %.1f s", time.perf_counter() - started)
        failed = [result for result in found.results if result.verdict == FAIL]
        if failed and self.stop_on_fail:
            lines = "\n".join(f"  {r.check}: {r.message} Fix: {r.fix}" for r in failed)
            raise DiagnosticsStop(
                f"preflight check(s) failed; nothing was trained (diagnostics.stop_on_fail=true):\n{lines}"
            )
        diagnosis = found.diagnosis
        if self.prune and diagnosis.verdict == FAIL and diagnosis.cause != "none":
            self._prune(f"diagnosis {diagnosis.cause} (FAIL) before training: {diagnosis.summary}")
        return found

    def callbacks(self) -> list:
        """The training monitor, for ``full`` with the monitor stage enabled; else nothing."""
        if self.suite != "full" or not self.options.enabled("monitor"):
            return []
        from runner.diagnostics.monitors import TrainingMonitor

        self.monitor = TrainingMonitor(self.data, self.options)
        return [self.monitor] + ([FirstEpochJudge(self)] if self.prune else [])

    def _prune(self, reason: str) -> None:
        import optuna

        self.pruned_because = reason
        raise optuna.TrialPruned(reason)

    def check_pruned(self) -> None:
        """After ``fit``: raise ``optuna.TrialPruned`` if the first epoch's verdict stopped the trial."""
        if self.pruned_because is not None:
            self._prune(self.pruned_because)

    def after_training(self, model, history: dict) -> None:
        """Judge the monitor's records and run the analysis on the trained (best-epoch) model."""
        if self.suite != "full":
            return
        if self.monitor is not None:
            self._publish(self._guarded("monitor", lambda: self.monitor.report(history)))
        if self.options.enabled("analysis"):
            from runner.diagnostics import analysis

            log.info("diagnostics: analysing the trained model ...")
            self._publish(
                self._guarded(
                    "analysis",
                    lambda: analysis.run(model, self.data, self.options, history=history, monitor=self.monitor),
                )
            )

    def after_failure(self, model) -> None:
        """Training raised (e.g. NaN loss): the monitor's records still say why; the analysis cannot run."""
        if self.monitor is None or not self.monitor.records.epochs:
            return
        history = getattr(getattr(model, "history", None), "history", None) or {}
        with contextlib.suppress(Exception):  # the training error matters more than a failed judgement
            self._publish(self._guarded("monitor", lambda: self.monitor.report(history)))
            for line in self.console_lines():
                log.warning("%s", line)

    def console_lines(self) -> list[str]:
        return console_lines(self.report, self.folder)

    def _guarded(self, stage: str, run_stage) -> Report:
        """A crash inside the checks must not cost the training run: it becomes a SKIP result that names the
        error (and the traceback goes to the log), and the run goes on."""
        try:
            return run_stage()
        except Exception as error:
            log.exception("the %s diagnostics crashed; the run goes on without them", stage)
            return Report(
                [
                    CheckResult(
                        f"{stage}.crashed",
                        SKIP,
                        None,
                        None,
                        f"the {stage} checks crashed: {type(error).__name__}: {error}",
                        "a bug in the diagnostics: see the run's log for the traceback",
                        stage,
                    )
                ]
            )

    def _publish(self, found: Report) -> None:
        self.report.extend(found)
        self.report.write(self.folder, self.title)
        self._cause2_tagged = log_to_mlflow(
            self.record, found, self.report.worst, self.report.diagnosis, self._cause2_tagged
        )
        self._log_files()

    def _log_files(self) -> None:
        """report.json/html every time; each plot or table file (e.g. confident_errors.csv, which report.html
        links to) once."""
        for name in ("report.json", "report.html"):
            self.record.log_artifact(self.folder / name, ARTIFACT_FOLDER)
        files = [
            path
            for path in self.folder.rglob("*")
            if path.is_file() and path.relative_to(self.folder).as_posix() not in ("report.json", "report.html")
        ]
        for path in sorted(files):
            relative = path.relative_to(self.folder)
            if relative not in self._logged_plots:
                subfolder = "/".join([ARTIFACT_FOLDER, *relative.parent.parts])
                self.record.log_artifact(path, subfolder)
                self._logged_plots.add(relative)


def start(spec: RunConfig, data, folder: RunFolder, record) -> DiagnosticsSession | None:
    """A session for the run's ``diagnostics`` settings, or None for ``suite: none``."""
    settings = spec.diagnostics
    if settings.suite == "none":
        return None
    options = diagnostic_options(settings, folder.diagnostics)
    session = DiagnosticsSession(
        settings.suite,
        diagnostic_data(data, spec.model.loss, settings.slices),
        options,
        record,
        stop_on_fail=settings.stop_on_fail,
        title=f"Diagnostics: {spec.name} ({settings.suite})",
        prune=settings.prune_on_cause and spec.trial.id is not None,
    )
    record.set_tags({"diag.suite": settings.suite})
    return session


def diagnostic_options(settings: DiagnosticsConfig, output_dir: Path | None) -> DiagnosticOptions:
    return DiagnosticOptions(
        output_dir=output_dir,
        seed=int(settings.seed),
        probe_samples=int(settings.probe_samples),
        disabled=set(settings.disable),
        thresholds={k: float(v) for k, v in settings.thresholds.items()},
    )


def diagnostic_data(data, loss: str | None, slices: str | None) -> DiagnosticData:
    """The loaded data set as the checks see it: targets in the compiled loss's form, plus the slices."""

    def targets(y):
        if data.task == "multiclass" and loss in ONE_HOT_LOSSES:
            return np.eye(data.n_classes, dtype="float32")[y]
        if data.task != "multiclass" and y.ndim == 1:
            # One column, like the model's output: a loss function called directly (not through fit) would
            # otherwise broadcast (n,) against (n, 1) or refuse the ranks.
            return y.reshape(-1, 1)
        return y

    column = slice_column(data, slices)
    return DiagnosticData(
        task=data.task,
        x_train=data.train.x,
        y_train=targets(data.train.y),
        x_val=data.val.x,
        y_val=targets(data.val.y),
        x_test=data.test.x,
        y_test=targets(data.test.y),
        class_names=data.class_names,
        feature_names=data.feature_names,
        slice_name=column,
        slices=_slice_values(data, column),
    )


def slice_column(data, slices: str | None) -> str | None:
    """``auto``: the data set's natural slice (seizure original class, wine quality, else the class label)."""
    if slices is None:
        return None
    available = sorted(set(data.train.meta) & set(data.test.meta))
    if slices == "auto":
        natural = SPECS[data.name].natural_slice if data.name in SPECS else None  # datasets/specs.py
        if natural in available:
            return natural
        return "label" if data.task in ("binary", "multiclass") else None  # a multilabel row has several labels
    if slices == "label":
        if data.task == "regression":
            raise ConfigError("diagnostics.slices=label needs a classification task; this one is a regression")
        return "label"
    if slices not in available:
        raise ConfigError(
            f"diagnostics.slices={slices!r} is not a column of the {data.name} data's metadata; "
            f"choose auto, null, label or one of: {', '.join(available) or '(none)'}"
        )
    return slices


def _slice_values(data, column: str | None) -> dict[str, np.ndarray]:
    if column is None:
        return {}
    if column == "label":
        return {name: np.asarray(part.y) for name, part in data.splits().items()}
    return {name: np.asarray(part.meta[column]) for name, part in data.splits().items() if column in part.meta}


def log_to_mlflow(record, report: Report, worst: str, diagnosis=None, cause2_tagged: bool = False) -> bool:
    """Tag ``diag.<check>`` = verdict for every check, metric ``diag.<check>`` = value where numeric; with a
    ``diagnosis`` (of the whole report so far) also ``diag.cause`` and, when there is one, ``diag.cause2``.
    Returns whether ``diag.cause2`` now names a cause; ``cause2_tagged``: an earlier stage tagged one, which a
    later diagnosis without a second cause overwrites with "none" rather than leave stale."""
    tags = {f"diag.{result.check}": result.verdict for result in report.results}
    tags["diag.worst"] = worst
    second = diagnosis.second if diagnosis is not None else None
    has_second = second is not None and second.cause != "none"
    if diagnosis is not None:
        tags["diag.cause"] = diagnosis.cause
        if has_second or cause2_tagged:
            tags["diag.cause2"] = second.cause if has_second else "none"
    record.set_tags(tags)
    metrics = {
        f"diag.{result.check}": result.value
        for result in report.results
        if result.value is not None and math.isfinite(result.value)
    }
    if metrics:
        record.log_metrics(metrics)
    return has_second or cause2_tagged


def console_lines(report: Report, folder: Path | None = None) -> list[str]:
    """The ranked diagnosis first (cause, its one fix, the checks behind it, the flagged checks it explains
    without their own fixes, which could contradict it), then the second cause, then the counts."""
    if not report.results:
        return []
    skipped = sum(result.verdict == SKIP for result in report.results)
    problems = report.problems()
    if not problems:
        passed = len(report.results) - skipped
        return [
            f"  diagnostics: all {passed} checks passed"
            if not skipped
            else f"  diagnostics: {passed} passed, {skipped} skipped"
        ]
    diagnosis = report.diagnosis
    by_name = {result.check: result for result in report.results}
    lines = _diagnosis_lines("diagnosis", diagnosis, by_name)
    if diagnosis.second is not None:
        lines += _diagnosis_lines("second cause", diagnosis.second, by_name)
    lines += _unexplained_lines(diagnosis, problems)
    lines.append(
        f"  diagnostics: {len(problems)} of {len(report.results)} checks flagged (worst {report.worst})"
        + (f", {skipped} skipped" if skipped else "")
        + (f", report: {folder / 'report.html'}" if folder else "")
    )
    return lines


def _unexplained_lines(diagnosis, problems: list[CheckResult]) -> list[str]:
    """Flagged checks that neither cause covers (a third problem): listed with their own fixes."""
    covered = set()
    for cause in (diagnosis, diagnosis.second):
        if cause is not None:
            covered |= {row["check"] for row in cause.evidence} | set(cause.consequences)
    rest = [result for result in problems if result.check not in covered]
    lines = ["  also flagged:"] if rest else []
    for result in rest:
        lines.append(f"    {result.verdict:<4} {result.check}: {result.message}")
        if result.fix:
            lines.append(f"         fix: {result.fix}")
    return lines


def _diagnosis_lines(title: str, diagnosis, by_name: dict) -> list[str]:
    lines = [f"  {title}: {diagnosis.cause} ({diagnosis.verdict}): {diagnosis.summary}", f"    fix: {diagnosis.fix}"]
    unknown = diagnosis.cause == "none"  # no cause, so each flagged check keeps its own fix
    for row in sorted(diagnosis.evidence, key=lambda r: (-SEVERITY[r["verdict"]], r["check"])):
        lines.append(f"    {row['verdict']:<4} {row['check']}: {row['message']}")
        fix = by_name[row["check"]].fix if unknown and row["check"] in by_name else ""
        if fix:
            lines.append(f"         fix: {fix}")
    if diagnosis.consequences:
        lines.append("    explained by it:")
        for name in diagnosis.consequences:
            result = by_name[name]
            lines.append(f"      {result.verdict:<4} {result.check}: {result.message}")
    return lines


def reseed(seed: int) -> None:
    """Reset the generators after the preflight checks (which draw from them), so that a run with
    diagnostics trains exactly like one without: the job calls this whatever the suite."""
    keras.utils.set_random_seed(int(seed))


class FirstEpochJudge(keras.callbacks.Callback):
    """After epoch 1: a learning rate so high that the loss blows up within the first epoch stops the trial
    (``monitor.early_blowup`` FAIL); the job then raises ``optuna.TrialPruned`` through ``check_pruned``."""

    def __init__(self, session: DiagnosticsSession):
        super().__init__()
        self.session = session

    def on_epoch_end(self, epoch, logs=None):
        monitor = self.session.monitor
        if epoch != 0 or monitor is None or not monitor.records.window_losses:
            return
        # Imported here, not at the top: the monitor that fills the records has already imported it.
        from runner.diagnostics.monitors import Observed

        verdict = registry.get("monitor.early_blowup").run(Observed(monitor.records), self.session.options)
        if verdict.verdict == FAIL:
            self.session.pruned_because = f"diagnosis lr_too_high (FAIL) in epoch 1: {verdict.message}"
            self.model.stop_training = True
