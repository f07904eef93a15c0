"""The measuring during ``fit``: ``TrainingMonitor`` (a Keras callback) fills ``Records``; ``report`` hands
them to the registered ``monitor.*`` checks and the figures to ``plots``."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from runner.diagnostics import registry
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import (
    probe_gradients_function,
    probe_outputs_function,
    regularization_loss_and_gradients,
)
from runner.diagnostics.introspect import (
    feature_extractor,
    watched_layers,
    weighted_layers,
)
from runner.diagnostics.monitors._measure import (
    chance_loss,
    data_loss,
    kernel_values,
    log_histogram,
    match_output_rank,
    mean_abs,
    norm,
    probe_rows,
    window_means,
)
from runner.diagnostics.monitors._shared import STAGE, Observed
from runner.diagnostics.monitors.dead_units import dead_share
from runner.diagnostics.monitors.plots import write_plots
from runner.diagnostics.monitors.saturation import saturated_share
from runner.diagnostics.monitors.update_ratio import update_ratio
from runner.diagnostics.report import Report, run_check

WINDOWS_PER_EPOCH = 10  # per-batch losses are averaged into this many windows per epoch
END_ROWS = 8192  # rows of train and val evaluated once at the end (underfitting)


@dataclass
class Records:
    """What the callback measured; plain lists so a report can be rebuilt from it."""

    epochs: list[int] = field(default_factory=list)  # 0 = before any update, then 1..n
    data_loss: list[float] = field(default_factory=list)
    reg_loss: list[float] = field(default_factory=list)
    data_grad_norm: list[float] = field(default_factory=list)
    reg_grad_norm: list[float] = field(default_factory=list)
    grad_mean_abs: list[float] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    dead: dict[str, list[float]] = field(default_factory=dict)
    saturated: dict[str, list[float]] = field(default_factory=dict)
    update_epochs: list[int] = field(default_factory=list)
    update_ratio: dict[str, list[float]] = field(default_factory=dict)
    window_losses: list[float] = field(default_factory=list)
    window_epochs: list[int] = field(default_factory=list)  # the epoch (1..n) of each window
    histograms: dict[str, dict[str, list[np.ndarray]]] = field(
        default_factory=lambda: {"weights": {}, "activations": {}, "gradients": {}}
    )
    end_losses: dict[str, float] = field(default_factory=dict)  # inference-mode data loss on train / val
    seconds: dict[str, float] = field(default_factory=dict)


class TrainingMonitor(keras.callbacks.Callback):
    """Per-epoch probe measurements during ``fit``; ``report(history)`` judges them afterwards."""

    def __init__(self, data: DiagnosticData, options: DiagnosticOptions | None = None):
        super().__init__()
        self.data = data
        self.options = options or DiagnosticOptions()
        self.records = Records()
        self._probe = None
        self._extractor = None
        self._extractor_error: str | None = None
        self._probe_gradients = None
        self._probe_activations = None
        self._watched: dict[str, str] = {}
        self._snapshot = None
        self._batch_losses: list[float] = []
        self._last_step = (0, 0.0)

    # -- Keras hooks -------------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.records = Records()
        with _timer(self.records, "setup"):
            x, y = probe_rows(self.data.x_train, self.data.y_train, self.options.probe_samples, self.options.seed)
            self._probe = x, match_output_rank(self.model, x, y)
            self._watched = watched_layers(self.model)
            self._extractor, self._extractor_error = feature_extractor(self.model, list(self._watched), x)
            # Compiled once for the run: the same probe rows are measured after every epoch.
            self._probe_gradients = probe_gradients_function(self.model, *self._probe)
            self._probe_activations = (
                probe_outputs_function(self._extractor, x) if self._extractor is not None else None
            )
        self._measure(0)

    def on_epoch_begin(self, epoch, logs=None):
        self._batch_losses = []
        self._last_step = (0, 0.0)

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            with _timer(self.records, "updates"):
                self._snapshot = kernel_values(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self._keep_batch_loss(batch, logs)
        if self._snapshot is not None:
            with _timer(self.records, "updates"):
                self._record_update(steps=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        windows = window_means(self._batch_losses, WINDOWS_PER_EPOCH)
        self.records.window_losses.extend(windows)
        self.records.window_epochs.extend([epoch + 1] * len(windows))
        self._measure(epoch + 1)

    def on_train_end(self, logs=None):
        with _timer(self.records, "end"):
            for split in ("train", "val"):
                x, y = self.data.split(split)
                if x is not None and y is not None:
                    x, y = probe_rows(x, y, END_ROWS, self.options.seed)
                    self.records.end_losses[split] = data_loss(self.model, x, match_output_rank(self.model, x, y))

    # -- measurements ------------------------------------------------------------------------------------

    def _keep_batch_loss(self, batch, logs):
        # Keras logs the running mean of the epoch's loss; undo the averaging to get the mean loss of the
        # steps since the last call (one batch, or one steps_per_execution group).
        if not logs or "loss" not in logs:
            return
        steps, mean = batch + 1, float(logs["loss"])
        last_steps, last_mean = self._last_step
        if steps > last_steps:
            self._batch_losses.append((steps * mean - last_steps * last_mean) / (steps - last_steps))
        self._last_step = (steps, mean)

    def _record_update(self, steps: int):
        after = kernel_values(self.model)
        self.records.update_epochs.append(len(self.records.update_epochs) + 1)
        for name, before in self._snapshot.items():
            ratio = update_ratio(before, after[name]) / max(steps, 1)
            self.records.update_ratio.setdefault(name, []).append(ratio)
        self._snapshot = None

    def _measure(self, epoch: int):
        records = self.records
        records.epochs.append(epoch)
        with _timer(records, "gradients"):
            self._measure_gradients()
        if self._probe_activations is not None:
            with _timer(records, "activations"):
                self._measure_activations()

    def _measure_gradients(self):
        records, model = self.records, self.model
        loss, grads = self._probe_gradients()
        reg_loss, reg_grads = regularization_loss_and_gradients(model)
        records.data_loss.append(loss)
        records.reg_loss.append(reg_loss)
        records.data_grad_norm.append(norm(grads))
        records.reg_grad_norm.append(norm(reg_grads))
        records.grad_mean_abs.append(mean_abs(grads))
        by_weight = {id(w): g for w, g in zip(model.trainable_weights, grads)}
        for name, layer in weighted_layers(model).items():
            layer_grads = [by_weight[id(w)] for w in layer.trainable_weights if id(w) in by_weight]
            records.grad_norms.setdefault(name, []).append(norm(layer_grads))
            _add_histogram(records, "gradients", name, layer_grads)
            _add_histogram(records, "weights", name, [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights])

    def _measure_activations(self):
        for (name, kind), values in zip(self._watched.items(), self._probe_activations()):
            _add_histogram(self.records, "activations", name, [values])
            if kind == "relu":
                self.records.dead.setdefault(name, []).append(dead_share(values))
            elif kind in ("sigmoid", "tanh"):
                self.records.saturated.setdefault(name, []).append(saturated_share(values, kind))

    # -- after fit ---------------------------------------------------------------------------------------

    def _observed(self, history: dict[str, list[float]] | None = None) -> Observed:
        """What the checks read: the records, ``history``, the watched layers and the chance-level loss."""
        try:
            chance = chance_loss(self.model, self.data)
        except Exception:  # noqa: BLE001 - only the checks that need a chance level lose it (they SKIP)
            chance = None
        return Observed(self.records, dict(history or {}), self._watched, self._extractor_error, chance)

    def report(self, history: dict[str, list[float]] | None = None) -> Report:
        """The ``monitor.*`` checks from what was recorded and the Keras history (``History.history``)."""
        if not self.records.epochs:
            raise RuntimeError("the monitor recorded nothing: pass it to model.fit(callbacks=[...]) first")
        observed = self._observed(history)
        report = Report()
        for entry in registry.checks(STAGE):
            if self.options.enabled(entry.name):
                report.add(run_check(entry.name, STAGE, entry.run, observed, self.options))
        if self.options.output_dir is not None:
            self._attach_plots(report)
        return report

    def plots(self, output_dir=None) -> list[str]:
        """Write the gradient-norm figure and one histogram heat-map figure per kind; names relative to
        ``output_dir`` (default ``options.output_dir``)."""
        output_dir = output_dir if output_dir is not None else self.options.output_dir
        if output_dir is None:
            return []
        return write_plots(self.records, Path(output_dir))

    def _attach_plots(self, report: Report):
        written = self.plots()
        for name in written:
            if name.endswith("gradient_norms.png") and "monitor.gradient_norms" in report.verdicts():
                report["monitor.gradient_norms"].plots.append(name)
            else:
                report.plots.append(name)


def _add_histogram(records: Records, kind: str, name: str, arrays):
    if arrays:
        records.histograms[kind].setdefault(name, []).append(log_histogram(arrays))


@contextmanager
def _timer(records: Records, key: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        records.seconds[key] = records.seconds.get(key, 0.0) + time.perf_counter() - started
