"""Training monitors: cheap measurements during ``fit``, judged afterwards.

``TrainingMonitor(data, options)`` is a Keras callback.  Before the first update and at the end of every
epoch it measures a fixed probe batch (``options.probe_samples`` training rows, picked with ``options.seed``):
per-layer gradient norms of the data loss, the regularisation penalty and its gradient, the activations of
ReLU-family and sigmoid/tanh layers, and small log-magnitude histograms of weights, activations and
gradients.  In the first batch of every epoch it measures the size of one optimizer update relative to the
weights; every batch it only keeps the loss that Keras already computed.  Nothing is added to ``logs``.

After fit, ``monitor.report(history)`` turns these records and the Keras history into ``monitor.*`` checks.

Layout: ``recording`` measures (the callback and its ``Records``), one module per check judges (each takes
``(observed, options)``), ``plots`` draws; ``_measure`` and ``_shared`` hold what several of them use.
"""

# The check modules come first, in the stage's order: importing them registers the checks, and the registry
# runs them in registration order (recording imports some of them, so it must not be imported before them).
from runner.diagnostics.monitors.gradient_norms import check_gradient_norms  # noqa: I001 - order matters
from runner.diagnostics.monitors.update_ratio import check_update_ratio, update_ratio
from runner.diagnostics.monitors.dead_units import check_dead_units, dead_share
from runner.diagnostics.monitors.saturation import check_saturation, saturated_share
from runner.diagnostics.monitors.loss_numeric import check_loss_numeric
from runner.diagnostics.monitors.loss_stalled import check_loss_stalled
from runner.diagnostics.monitors.loss_diverging import check_loss_diverging, largest_climb, running_median
from runner.diagnostics.monitors.loss_oscillating import check_loss_oscillating, large_rises
from runner.diagnostics.monitors.overfitting import check_overfitting
from runner.diagnostics.monitors.underfitting import check_underfitting
from runner.diagnostics.monitors.regularization import check_regularization
from runner.diagnostics.monitors.early_blowup import check_early_blowup
from runner.diagnostics.monitors.still_improving import check_still_improving
from runner.diagnostics.monitors._measure import (
    chance_loss,
    data_loss,
    kernel_values,
    log_histogram,
    match_output_rank,
    probe_rows,
    window_means,
)
from runner.diagnostics.monitors._shared import STAGE, Observed
from runner.diagnostics.monitors.plots import write_plots
from runner.diagnostics.monitors.recording import Records, TrainingMonitor

__all__ = [
    "STAGE",
    "Observed",
    "Records",
    "TrainingMonitor",
    "chance_loss",
    "check_dead_units",
    "check_early_blowup",
    "check_gradient_norms",
    "check_loss_diverging",
    "check_loss_numeric",
    "check_loss_oscillating",
    "check_loss_stalled",
    "check_overfitting",
    "check_regularization",
    "check_saturation",
    "check_still_improving",
    "check_underfitting",
    "check_update_ratio",
    "data_loss",
    "dead_share",
    "kernel_values",
    "large_rises",
    "largest_climb",
    "log_histogram",
    "match_output_rank",
    "probe_rows",
    "running_median",
    "saturated_share",
    "update_ratio",
    "window_means",
    "write_plots",
]
