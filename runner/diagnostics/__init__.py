"""Diagnostics for any compiled Keras model and NumPy arrays: checks before, during and after training.

One call::

    from runner.diagnostics import DiagnosticData, DiagnosticOptions, diagnose
    data = DiagnosticData("binary", x_train, y_train, x_val, y_val)
    report = diagnose(model, data, suite="full", options=DiagnosticOptions(output_dir="diag"),
                      fit_kwargs={"epochs": 5, "batch_size": 32})
    report.write("diag")                     # diag/report.json and diag/report.html

or the same stages around your own ``fit``::

    report = run_preflight(model, data, options)
    monitor = TrainingMonitor(data, options)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), callbacks=[monitor]).history
    report.extend(monitor.report(history))
    report.extend(analyse(model, data, options, history=history, monitor=monitor))

Importing this package imports neither Hydra nor MLflow; Keras is imported when a stage first runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.report import (
    FAIL,
    PASS,
    SKIP,
    STAGES,
    WARN,
    CheckResult,
    Report,
)

SUITES = ("none", "quick", "full")

__all__ = [
    "FAIL",
    "PASS",
    "SKIP",
    "STAGES",
    "SUITES",
    "WARN",
    "CheckResult",
    "DiagnosticData",
    "DiagnosticOptions",
    "Report",
    "TrainingMonitor",
    "analyse",
    "diagnose",
    "run_preflight",
]


def run_preflight(model, data: DiagnosticData, options: DiagnosticOptions | None = None) -> Report:
    """The ``preflight.*`` checks on a compiled, untrained model; the model's weights are not changed."""
    from runner.diagnostics import preflight as stage
    from runner.diagnostics.compat import keep_tensorflow_unimported

    keep_tensorflow_unimported()  # its clones' get_config would import TensorFlow on JAX and PyTorch (2.4 s)
    return stage.run(model, data, options or DiagnosticOptions())


def analyse(
    model, data: DiagnosticData, options: DiagnosticOptions | None = None, history=None, monitor=None
) -> Report:
    """The ``analysis.*`` checks on a trained model (``history``: ``History.history``, optional)."""
    from runner.diagnostics import analysis as stage
    from runner.diagnostics.compat import keep_tensorflow_unimported

    keep_tensorflow_unimported()
    return stage.run(model, data, options or DiagnosticOptions(), history=history, monitor=monitor)


def diagnose(
    model,
    data: DiagnosticData,
    suite: str = "quick",
    options: DiagnosticOptions | None = None,
    fit_kwargs: dict | None = None,
) -> Report:
    """Run a suite on a compiled, untrained ``model``.

    ``quick``: the preflight checks.  ``full``: preflight, then a copy of the model (same architecture,
    weights and compile settings) is trained with ``fit_kwargs`` (epochs, batch_size, ...; ``x``/``y`` and
    ``validation_data`` default to the data's train and val splits) under a TrainingMonitor, then analysed.
    ``model`` itself is never trained.
    """
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, not {suite!r}")
    if suite == "full" and fit_kwargs is None:
        raise ValueError(
            "suite='full' trains a copy of the model: pass fit_kwargs (e.g. {'epochs': 5}), or "
            "call run_preflight(), fit with callbacks=[TrainingMonitor(data, options)], then analyse()"
        )
    options = options or DiagnosticOptions()
    report = Report()
    if suite == "none":
        return report
    report.extend(run_preflight(model, data, options))
    if suite == "quick" or not (options.enabled("monitor") or options.enabled("analysis")):
        return report
    trained = _fit_copy(model, data, options, fit_kwargs)
    try:
        if trained.error is not None:
            report.add(
                CheckResult(
                    "monitor.training",
                    FAIL,
                    None,
                    None,
                    f"training raised {trained.error}; the checks below judge what was recorded before it",
                    "see the other verdicts for the likely cause",
                    "monitor",
                )
            )
        if options.enabled("monitor") and trained.monitor.records.epochs:
            report.extend(_stage_or_skip("monitor", lambda: trained.monitor.report(trained.history)))
        if options.enabled("analysis"):
            if trained.error is None:
                report.extend(
                    _stage_or_skip(
                        "analysis",
                        lambda: analyse(trained.model, data, options, history=trained.history, monitor=trained.monitor),
                    )
                )
            else:
                report.add(
                    CheckResult(
                        "analysis.skipped", SKIP, None, None, "not run: training did not finish", stage="analysis"
                    )
                )
    finally:
        trained.restore()
    return report


@dataclass
class _Trained:
    model: object
    history: dict
    monitor: object
    error: str | None
    restore: Callable[[], None]


def _fit_copy(model, data: DiagnosticData, options: DiagnosticOptions, fit_kwargs: dict) -> _Trained:
    """Train a copy (same architecture, weights and compile settings) under a TrainingMonitor.  A model that
    cannot be cloned (subclassed without get_config) is trained itself and put back afterwards (weights and
    optimizer state), so the caller's model still ends as it was given."""
    import keras

    from runner.diagnostics.monitors import TrainingMonitor

    restore = _nothing
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        copy.compile_from_config(model.get_compile_config())
    except Exception:  # noqa: BLE001 - subclassed models without a config cannot be cloned: train in place
        copy, restore = model, _snapshot(model)
    monitor = TrainingMonitor(data, options)
    kwargs = {"x": data.x_train, "y": data.y_train, "verbose": 0, **fit_kwargs}
    if data.x_val is not None and "validation_data" not in kwargs and "validation_split" not in kwargs:
        kwargs["validation_data"] = (data.x_val, data.y_val)
    kwargs["callbacks"] = [*kwargs.get("callbacks", []), monitor]
    try:
        history, error = copy.fit(**kwargs).history, None
    except Exception as failure:  # noqa: BLE001 - a run that blows up is what the monitors explain
        history = dict(getattr(getattr(copy, "history", None), "history", None) or {})
        error = f"{type(failure).__name__}: {failure}"
    return _Trained(copy, history, monitor, error, restore)


def _snapshot(model) -> Callable[[], None]:
    import keras

    weights = [keras.ops.convert_to_numpy(v) for v in model.variables]
    optimizer = getattr(model, "optimizer", None)
    slots = [keras.ops.convert_to_numpy(v) for v in optimizer.variables] if optimizer is not None else []

    def restore():
        for variable, value in zip(model.variables, weights):
            variable.assign(value)
        if optimizer is not None:
            for variable, value in zip(optimizer.variables, slots):
                variable.assign(value)

    return restore


def _nothing() -> None:
    return None


def _stage_or_skip(stage: str, run_stage) -> Report:
    """A stage that raises outside its checks (e.g. while setting up) becomes one SKIP naming the error."""
    try:
        return run_stage()
    except Exception as error:  # noqa: BLE001 - never lose the report for one stage
        return Report(
            [
                CheckResult(
                    f"{stage}.crashed",
                    SKIP,
                    None,
                    None,
                    f"could not run: {type(error).__name__}: {error}",
                    stage=stage,
                    evidence={"error": f"{type(error).__name__}: {error}"},
                )
            ]
        )


def __getattr__(name: str):
    # TrainingMonitor subclasses keras.callbacks.Callback: import Keras only when it is asked for.
    if name == "TrainingMonitor":
        from runner.diagnostics.monitors import TrainingMonitor

        return TrainingMonitor
    raise AttributeError(f"module 'runner.diagnostics' has no attribute {name!r}")
