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

    return stage.run(model, data, options or DiagnosticOptions())


def analyse(model, data: DiagnosticData, options: DiagnosticOptions | None = None, history=None,
            monitor=None) -> Report:
    """The ``analysis.*`` checks on a trained model (``history``: ``History.history``, optional)."""
    from runner.diagnostics import analysis as stage

    return stage.run(model, data, options or DiagnosticOptions(), history=history, monitor=monitor)


def diagnose(model, data: DiagnosticData, suite: str = "quick", options: DiagnosticOptions | None = None,
             fit_kwargs: dict | None = None) -> Report:
    """Run a suite on a compiled, untrained ``model``.

    ``quick``: the preflight checks.  ``full``: preflight, then a copy of the model (same architecture,
    weights and compile settings) is trained with ``fit_kwargs`` (epochs, batch_size, ...; ``x``/``y`` and
    ``validation_data`` default to the data's train and val splits) under a TrainingMonitor, then analysed.
    ``model`` itself is never trained.
    """
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, not {suite!r}")
    if suite == "full" and fit_kwargs is None:
        raise ValueError("suite='full' trains a copy of the model: pass fit_kwargs (e.g. {'epochs': 5}), or "
                         "call run_preflight(), fit with callbacks=[TrainingMonitor(data, options)], then analyse()")
    options = options or DiagnosticOptions()
    report = Report()
    if suite == "none":
        return report
    report.extend(run_preflight(model, data, options))
    if suite == "quick":
        return report
    trained, history, monitor = _fit_copy(model, data, options, fit_kwargs)
    if options.enabled("monitor"):
        report.extend(monitor.report(history))
    if options.enabled("analysis"):
        report.extend(analyse(trained, data, options, history=history, monitor=monitor))
    return report


def _fit_copy(model, data: DiagnosticData, options: DiagnosticOptions, fit_kwargs: dict):
    import keras

    from runner.diagnostics.monitors import TrainingMonitor

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile_from_config(model.get_compile_config())
    monitor = TrainingMonitor(data, options)
    kwargs = {"x": data.x_train, "y": data.y_train, "verbose": 0, **fit_kwargs}
    if data.x_val is not None and "validation_data" not in kwargs and "validation_split" not in kwargs:
        kwargs["validation_data"] = (data.x_val, data.y_val)
    kwargs["callbacks"] = [*kwargs.get("callbacks", []), monitor]
    history = copy.fit(**kwargs).history
    return copy, history, monitor


def __getattr__(name: str):
    # TrainingMonitor subclasses keras.callbacks.Callback: import Keras only when it is asked for.
    if name == "TrainingMonitor":
        from runner.diagnostics.monitors import TrainingMonitor

        return TrainingMonitor
    raise AttributeError(f"module 'runner.diagnostics' has no attribute {name!r}")
