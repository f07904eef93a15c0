"""Post-training analysis: what the trained network does, judged on held-out data.

``run(model, data, options)`` runs each check below on a trained, compiled Keras model and NumPy arrays.
Every check returns one ``CheckResult`` of stage ``analysis``; a check that cannot apply to the model or the
data (no recurrent layer, no image input, no convolution, no slices, no dropout) returns SKIP with the reason.  Plots go
under ``options.output_dir`` (none when it is None).  The model's weights and state are left as they were.

One module per check (its thresholds, its fix, what it measures and its verdict), registered with
``runner.diagnostics.registry.check``; the order of the imports below is the order in which the checks run.
Helpers several checks share are in ``_shared``; the figures are drawn by ``plots``.
"""

from __future__ import annotations

import keras

from runner.diagnostics import registry
from runner.diagnostics.analysis._shared import STAGE

# The check modules, in the order the checks run (registration order is run order, so not alphabetical).
# isort: off
from runner.diagnostics.analysis.constant_units import constant_units
from runner.diagnostics.analysis.attributions import attributions
from runner.diagnostics.analysis.gradcam_focus import gradcam_focus
from runner.diagnostics.analysis.conv_features import conv_features
from runner.diagnostics.analysis.receptive_field import receptive_field
from runner.diagnostics.analysis.confident_errors import confident_errors
from runner.diagnostics.analysis.slices import slices
from runner.diagnostics.analysis.baseline import baseline
from runner.diagnostics.analysis.dropout_consistency import dropout_consistency

# isort: on
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.report import Report, run_check

__all__ = [
    "STAGE",
    "attributions",
    "baseline",
    "confident_errors",
    "constant_units",
    "conv_features",
    "dropout_consistency",
    "gradcam_focus",
    "receptive_field",
    "run",
    "slices",
]


def run(
    model: keras.Model,
    data: DiagnosticData,
    options: DiagnosticOptions | None = None,
    history: dict[str, list[float]] | None = None,
    monitor=None,
) -> Report:
    """All enabled analysis checks on a trained model.  ``history`` and ``monitor`` are accepted for the
    common stage interface; the monitor plots its own histograms, so neither is needed here."""
    options = options or DiagnosticOptions()
    report = Report()
    for entry in registry.checks(STAGE):
        if options.enabled(entry.name):
            report.add(run_check(entry.name, STAGE, entry.run, model, data, options))
    return report
