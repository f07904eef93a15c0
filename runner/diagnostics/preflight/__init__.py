"""Preflight checks: what can be known about a compiled, untrained model and its data before training.

``run(model, data, options)`` returns a Report of ``preflight.*`` checks: the data (non-finite values, input
scale, constant targets, class balance, train/val/test overlap), the loss and output layer taken together,
the initial loss and weights, a gradient check, and whether the model can memorise 16 samples.  The model
itself is never changed: checks that train or perturb weights work on clones.  A check that cannot apply
(class balance on a regression task, zeroed inputs when the overfit test passed) returns SKIP and says why.

Each check is a module of this package named after it and registers itself (``runner.diagnostics.registry``);
the imports below fix the order of the report.  Checks come in three scopes, each with its own arguments:
``data`` checks take ``(data, options)``, ``model`` checks ``(model, data, options)``, and the training
``probe`` checks ``(model, data, options, probes)`` (``Probes``: the trainer they share and their verdicts).
"""

from __future__ import annotations

import keras

from runner.diagnostics import registry
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    LossInfo,
    compiled_loss,
    ensure_built,
    output_shape,
)

# Check modules, in report order (registration order): data, then model, then the training probes.
# isort: off
from runner.diagnostics.preflight.data_finite import check_data_finite
from runner.diagnostics.preflight.input_scale import check_input_scale
from runner.diagnostics.preflight.target_scale import check_target_scale
from runner.diagnostics.preflight.constant_target import check_constant_target
from runner.diagnostics.preflight.class_balance import check_class_balance
from runner.diagnostics.preflight.split_leakage import LEAKAGE_FAIL, check_split_leakage
from runner.diagnostics.preflight.split_shift import check_split_shift
from runner.diagnostics.preflight.loss_output_pairing import check_loss_output_pairing
from runner.diagnostics.preflight.nonlinearity import check_nonlinearity
from runner.diagnostics.preflight.initial_loss import check_initial_loss
from runner.diagnostics.preflight.loss_reduction import check_loss_reduction
from runner.diagnostics.preflight.initial_weights import INIT_FAIL_RATIO, check_initial_weights
from runner.diagnostics.preflight.gradient_check import check_gradients
from runner.diagnostics.preflight.dropout_rate import check_dropout_rate
from runner.diagnostics.preflight.overfit_batch import check_overfit_batch
from runner.diagnostics.preflight.zeroed_inputs import check_zeroed_inputs
from runner.diagnostics.preflight.label_signal import check_label_signal

# isort: on
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.preflight._trainer import Memorisation, OneBatchTrainer, Probes
from runner.diagnostics.report import FAIL, SKIP, Report, run_check

__all__ = [
    "INIT_FAIL_RATIO",
    "LEAKAGE_FAIL",
    "STAGE",
    "LossInfo",
    "Memorisation",
    "OneBatchTrainer",
    "Probes",
    "check_class_balance",
    "check_constant_target",
    "check_data_finite",
    "check_dropout_rate",
    "check_gradients",
    "check_initial_loss",
    "check_initial_weights",
    "check_input_scale",
    "check_label_signal",
    "check_loss_output_pairing",
    "check_loss_reduction",
    "check_nonlinearity",
    "check_overfit_batch",
    "check_split_leakage",
    "check_split_shift",
    "check_target_scale",
    "check_zeroed_inputs",
    "compiled_loss",
    "run",
    "unavailable",
]

SCOPES = ("data", "model", "probe")
# Checks that compute the compiled loss on the labels, and checks that convert or train a copy of the model.
LOSS_CHECKS = ("initial_loss", "loss_reduction", "gradient_check", "label_signal", "overfit_batch", "zeroed_inputs")
COPY_CHECKS = ("gradient_check", "label_signal", "overfit_batch", "zeroed_inputs")
# zeroed_inputs replays the overfit run on zeroed inputs: with overfit_batch switched off it is left out too.
PREREQUISITES = {f"{STAGE}.zeroed_inputs": f"{STAGE}.overfit_batch"}


def run(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> Report:
    """All enabled preflight checks on a compiled, untrained ``model``; the model is left untouched.

    Each check runs isolated (``run_check``): one that raises becomes a SKIP naming the error, and the others
    still run."""
    report = Report()
    probes = Probes()
    arguments = {"data": (data, options), "model": (model, data, options), "probe": (model, data, options, probes)}
    reasons: dict[str, str] = {}
    for scope in SCOPES:
        if scope == "model":
            reasons = unavailable(model, data, report)  # the data checks' verdicts are in by now
        for entry in registry.checks(STAGE):
            if entry.scope != scope or not options.enabled(entry.name):
                continue
            if entry.short_name in reasons:
                # Said once per check, without running it: it would measure NaN or fail the same way.
                report.add(result(entry.name, SKIP, None, None, reasons[entry.short_name]))
            elif entry.name not in PREREQUISITES or options.enabled(PREREQUISITES[entry.name]):
                report.add(probes.add(run_check(entry.name, STAGE, entry.run, *arguments[scope])))
    return report


def unavailable(model: keras.Model, data: DiagnosticData, report: Report) -> dict[str, str]:
    """Why each model or probe check cannot run here, by its short name (a check that can run is absent).

    None of them can run on NaN/Inf data, an empty training split, a model without a single loss or one that
    cannot take the inputs.  The loss checks cannot run when the labels name classes the output has no unit
    for (the loss cannot be computed); the copy checks cannot run on a model that cannot be copied."""
    later = [entry.short_name for entry in registry.checks(STAGE) if entry.scope != "data"]
    if any(r.check == f"{STAGE}.data_finite" and r.verdict == FAIL for r in report.results):
        return dict.fromkeys(later, "not run: the data holds NaN/Inf values (see preflight.data_finite)")
    if len(data.x_train) == 0:
        return dict.fromkeys(later, "not run: the training split is empty")
    if getattr(model, "loss", None) is None:
        return dict.fromkeys(
            later, "not run: the model is not compiled with a loss (compile it before the diagnostics)"
        )
    if isinstance(model.loss, (list, tuple, dict)):
        return dict.fromkeys(
            later, "not run: the model has several losses; the model checks support a single-output model"
        )
    try:
        ensure_built(model, data.x_train)
        units = output_shape(model, data.x_train)[-1]
    except Exception as error:  # noqa: BLE001 - the reason is the verdict
        return dict.fromkeys(
            later, f"not run: the model cannot be called on the training inputs ({type(error).__name__}: {error})"
        )
    if data.single_label and units < data.n_classes and not (units == 1 and data.n_classes == 2):
        return dict.fromkeys(
            LOSS_CHECKS,
            f"not run: the output has {units} unit{'s' * (units != 1)} but the "
            f"labels have {data.n_classes} classes, so the loss cannot be computed (see "
            "preflight.loss_output_pairing)",
        )
    try:
        keras.models.clone_model(model, clone_function=lambda layer: layer)  # shares layers: no config needed
    except (ValueError, TypeError, NotImplementedError) as error:
        return dict.fromkeys(
            COPY_CHECKS,
            f"not run: this check works on a copy of the model, and a "
            f"{type(model).__name__} cannot be copied ({str(error).split('.')[0]}); a Functional "
            "or Sequential model can",
        )
    return {}
