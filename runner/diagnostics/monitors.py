"""Training monitors: cheap measurements during ``fit``, judged afterwards.

``TrainingMonitor(data, options)`` is a Keras callback.  Before the first update and at the end of every
epoch it measures a fixed probe batch (``options.probe_samples`` training rows, picked with ``options.seed``):
per-layer gradient norms of the data loss, the regularisation penalty and its gradient, the activations of
ReLU-family and sigmoid/tanh layers, and small log-magnitude histograms of weights, activations and
gradients.  In the first batch of every epoch it measures the size of one optimizer update relative to the
weights; every batch it only keeps the loss that Keras already computed.  Nothing is added to ``logs``.

After fit, ``monitor.report(history)`` turns these records and the Keras history into ``monitor.*`` checks.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import loss_and_gradients, regularization_loss_and_gradients
from runner.diagnostics.introspect import (
    LECUN_FAMILY,
    RECURRENT,
    RELU_FAMILY,
    RELU_LAYERS,
    SQUASHING,
    compiled_loss,
)
from runner.diagnostics.report import FAIL, PASS, SKIP, WARN, CheckResult, Report, run_check

STAGE = "monitor"

DEAD_LEVEL = 1e-5  # a unit is dead when the 95th percentile of |activation| is below this
# Saturated: as close to an asymptote as sigmoid(z) is at |z| = 5 (tanh(z) = 2 sigmoid(2z) - 1: |z| = 2.5).
SATURATION_EDGE = 1.0 / (1.0 + math.exp(5.0))
VANISHING_RATIO, VANISHING_FIRST_NORM, VANISHING_MEAN_ABS = 1e-3, 1e-4, 1e-7
EXPLODING_RATIO, EXPLODING_NORM = 70.0, 1e6
UPDATE_BAND = (-4.0, -1.0)  # healthy log10(mean |delta w| / mean |w|) per update
UPDATE_EXTREME = (-6.0, 0.0)
EARLY_UPDATES = 3  # epochs whose first update judges "too large"
SHORT_RUN_EPOCHS = 5  # a stalled loss with healthy-sized updates over this many epochs or fewer: too short a run
BLOWUP_WARN, BLOWUP_FAIL = 0.5, 1.0  # share of the start loss the end of epoch 1 sits above it
# still_improving: the windowed loss still fell this much between the last two fifths of training, while it
# was still this share of its start or more.
STILL_FALLING, STILL_HIGH = 0.2, 0.5
# loss_oscillating: a swing doubles the local minimum and is a fifth of the start loss; OSCILLATION_SHARE of the
# windows must be such swings, and the loss must still be at STUCK_SHARE of its start in the last third.
SWING, SWING_OF_START, OSCILLATION_SHARE, STUCK_SHARE = 1.0, 0.2, 0.1, 0.5
WINDOWS_PER_EPOCH = 10  # per-batch losses are averaged into this many windows per epoch
HIST_EDGES = np.linspace(-10.0, 2.0, 31)  # log10 |x|; exact zeros get their own first bin
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
        default_factory=lambda: {"weights": {}, "activations": {}, "gradients": {}})
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
        records, (x, y) = self.records, self._probe
        records.epochs.append(epoch)
        with _timer(records, "gradients"):
            self._measure_gradients(x, y)
        if self._extractor is not None:
            with _timer(records, "activations"):
                self._measure_activations(x)

    def _measure_gradients(self, x, y):
        records, model = self.records, self.model
        loss, grads = loss_and_gradients(model, x, y, training=False, include_regularization=False)
        reg_loss, reg_grads = regularization_loss_and_gradients(model)
        records.data_loss.append(loss)
        records.reg_loss.append(reg_loss)
        records.data_grad_norm.append(_norm(grads))
        records.reg_grad_norm.append(_norm(reg_grads))
        records.grad_mean_abs.append(_mean_abs(grads))
        by_weight = {id(w): g for w, g in zip(model.trainable_weights, grads)}
        for name, layer in weighted_layers(model).items():
            layer_grads = [by_weight[id(w)] for w in layer.trainable_weights if id(w) in by_weight]
            records.grad_norms.setdefault(name, []).append(_norm(layer_grads))
            _add_histogram(records, "gradients", name, layer_grads)
            _add_histogram(records, "weights", name, [keras.ops.convert_to_numpy(w) for w in
                                                      layer.trainable_weights])

    def _measure_activations(self, x):
        outputs = self._extractor(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for (name, kind), output in zip(self._watched.items(), outputs):
            values = keras.ops.convert_to_numpy(output)
            _add_histogram(self.records, "activations", name, [values])
            if kind == "relu":
                self.records.dead.setdefault(name, []).append(dead_share(values))
            elif kind in ("sigmoid", "tanh"):
                self.records.saturated.setdefault(name, []).append(saturated_share(values, kind))

    # -- after fit ---------------------------------------------------------------------------------------

    def report(self, history: dict[str, list[float]] | None = None) -> Report:
        """The ``monitor.*`` checks from what was recorded and the Keras history (``History.history``)."""
        if not self.records.epochs:
            raise RuntimeError("the monitor recorded nothing: pass it to model.fit(callbacks=[...]) first")
        history = dict(history or {})
        try:
            chance = chance_loss(self.model, self.data)
        except Exception:  # noqa: BLE001 - only the checks that need a chance level lose it (they SKIP)
            chance = None
        checks = {
            "monitor.gradient_norms": lambda: check_gradient_norms(self.records, self.options),
            "monitor.update_ratio": lambda: check_update_ratio(self.records, self.options),
            "monitor.dead_units": lambda: check_dead_units(self.records, self.options, self._watched,
                                                           self._extractor_error),
            "monitor.saturation": lambda: check_saturation(self.records, self.options, self._watched,
                                                           self._extractor_error),
            "monitor.loss_numeric": lambda: check_loss_numeric(self.records, history, self.options),
            "monitor.loss_stalled": lambda: check_loss_stalled(self.records, history, self.options),
            "monitor.loss_diverging": lambda: check_loss_diverging(self.records, history, self.options),
            "monitor.loss_oscillating": lambda: check_loss_oscillating(self.records, history, self.options),
            "monitor.overfitting": lambda: check_overfitting(self.records, history, self.options),
            "monitor.underfitting": lambda: check_underfitting(self.records, history, self.options, chance),
            "monitor.regularization": lambda: check_regularization(self.records, self.options, chance),
            "monitor.early_blowup": lambda: check_early_blowup(self.records, self.options),
            "monitor.still_improving": lambda: check_still_improving(self.records, history, self.options),
        }
        report = Report()
        for name, check in checks.items():
            if self.options.enabled(name):
                report.add(run_check(name, STAGE, check))
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


# -- model inspection ------------------------------------------------------------------------------------


def probe_rows(x, y, count: int, seed: int):
    """``count`` rows (all when fewer) picked with ``seed``, in their original order."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("the training data is empty: the monitors need at least one row")
    if count >= len(x):
        return x, y
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=count, replace=False))
    return x[rows], y[rows]


def match_output_rank(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n,) targets for an (n, 1) output become (n, 1): fit aligns them, the bare loss functions do not."""
    shape = tuple(model(x[:1], training=False).shape)  # also works for subclassed models
    if y.ndim == len(shape) - 1 and shape[-1] == 1:
        return y.reshape(-1, 1)
    return y


def weighted_layers(model) -> dict[str, keras.layers.Layer]:
    """Layers with a trainable matrix (kernel), in graph order: the ones whose gradients are compared."""
    return {layer.name: layer for layer in model.layers
            if any(len(w.shape) >= 2 for w in layer.trainable_weights)}


def activation_kind(layer) -> str | None:
    """'relu' (ReLU family), 'sigmoid' or 'tanh' for a layer whose output is an activation, else None."""
    class_name = type(layer).__name__
    if class_name == "Bidirectional":
        return activation_kind(layer.forward_layer)
    if class_name in RECURRENT:
        return "tanh"  # h = o * tanh(c) for an LSTM: bounded by the tanh's asymptotes
    if class_name in RELU_LAYERS:
        return "relu"
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    if name in RELU_FAMILY or name in LECUN_FAMILY:
        return "relu"
    if name in SQUASHING:
        return "sigmoid" if "sigmoid" in name else "tanh"
    return None


def watched_layers(model) -> dict[str, str]:
    """Hidden layers whose activations are checked, with their kind.  Output layers are left out: a
    confident sigmoid or softmax output is saturated by design."""
    layers = list(getattr(model, "layers", []))
    if not layers:
        return {}
    try:
        outputs = {id(t) for t in model.outputs}

        def is_output(layer):
            return _single_output_id(layer) in outputs
    except (AttributeError, ValueError):
        # A Sequential model that was never called symbolically: its last layer is the output.

        def is_output(layer):
            return layer is layers[-1]
    return {layer.name: kind for layer in layers
            if (kind := activation_kind(layer)) is not None and not is_output(layer)}


def feature_extractor(model, names: list[str], x: np.ndarray):
    """One Keras model over the watched layers' outputs, built once; (extractor, None) or (None, reason).

    A Functional model is read through its graph; a Sequential one (called or not, with an Input or not) is
    re-traced through its own layers from a fresh Input shaped like ``x``; a subclassed model has no graph."""
    if not names:
        return None, None
    try:
        if isinstance(model, keras.Sequential):
            inputs = keras.Input(shape=tuple(np.asarray(x).shape[1:]), dtype=str(np.asarray(x).dtype))
            tensor, found = inputs, {}
            for layer in model.layers:
                tensor = layer(tensor)
                found[layer.name] = tensor
            return keras.Model(inputs, [found[name] for name in names]), None
        return keras.Model(model.input, [model.get_layer(name).output for name in names]), None
    except (AttributeError, ValueError, TypeError) as error:
        kind = "a subclassed model has no layer graph" if not isinstance(model, keras.Model) or \
            type(model).__name__ not in ("Functional", "Sequential") else f"{type(error).__name__}: {error}"
        return None, f"hidden activations cannot be read: {kind}"


def _single_output_id(layer):
    try:
        return id(layer.output)
    except (AttributeError, ValueError):
        return None


def kernel_values(model) -> dict[str, list[np.ndarray]]:
    return {name: [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights if len(w.shape) >= 2]
            for name, layer in weighted_layers(model).items()}


# -- measured quantities -----------------------------------------------------------------------------------


def update_ratio(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    """mean |delta w| / mean |w| over a layer's kernels."""
    delta = np.concatenate([np.abs(a - b).ravel() for a, b in zip(after, before)])
    size = np.concatenate([np.abs(b).ravel() for b in before])
    scale = float(size.mean())
    if scale == 0.0:
        return math.inf if delta.mean() > 0 else math.nan
    return float(delta.mean()) / scale


def dead_share(values: np.ndarray) -> float:
    """Share of units (last axis) whose 95th percentile of |activation| over the rows is below DEAD_LEVEL."""
    values = np.abs(values.reshape(-1, values.shape[-1]))
    return float(np.mean(np.percentile(values, 95, axis=0) < DEAD_LEVEL))


def saturated_share(values: np.ndarray, kind: str) -> float:
    """Share of activations near an asymptote, measured in sigmoid units so that tanh compares alike."""
    values = values.ravel()
    distance = np.minimum(values, 1.0 - values) if kind == "sigmoid" else (1.0 - np.abs(values)) / 2.0
    return float(np.mean(distance < SATURATION_EDGE))


def window_means(values: list[float], windows: int) -> list[float]:
    if not values:
        return []
    chunks = np.array_split(np.asarray(values, dtype=float), min(windows, len(values)))
    return [float(chunk.mean()) for chunk in chunks]


def data_loss(model, x, y, batch_size: int = 2048) -> float:
    """Inference-mode compiled loss (no regularisation) on (x, y), in chunks."""
    loss_fn = compiled_loss(model).fn
    total = 0.0
    for start in range(0, len(x), batch_size):
        predictions = model(x[start:start + batch_size], training=False)
        chunk = keras.ops.convert_to_numpy(loss_fn(y[start:start + batch_size], predictions))
        total += float(np.mean(chunk)) * len(x[start:start + batch_size])
    return total / len(x)


def chance_loss(model, data: DiagnosticData) -> float | None:
    """The loss of the best constant prediction: the entropy of the class priors for a cross-entropy, the
    compiled loss of the median or mean target for regression.  None when neither applies."""
    loss_fn = compiled_loss(model).fn
    name = compiled_loss(model).name
    if data.task == "multilabel":
        prevalence = np.clip(np.asarray(data.y_train, dtype="float64").reshape(len(data.y_train), -1).mean(axis=0),
                             1e-7, 1 - 1e-7)
        return float(np.mean(-(prevalence * np.log(prevalence) + (1 - prevalence) * np.log(1 - prevalence))))
    if data.task != "regression":
        if "crossentropy" not in str(name).replace("_", "").lower():
            return None
        counts = np.bincount(data.labels("train"), minlength=data.n_classes).astype(float)
        priors = counts[counts > 0] / counts.sum()
        return float(-(priors * np.log(priors)).sum())
    y = match_output_rank(model, data.x_train, np.asarray(data.y_train, dtype="float32"))
    constants = (np.median(y, axis=0), y.mean(axis=0))
    return min(float(np.mean(keras.ops.convert_to_numpy(loss_fn(y, np.broadcast_to(c, y.shape)))))
               for c in constants)


def _norm(arrays) -> float:
    return float(math.sqrt(sum(float(np.sum(np.square(a, dtype="float64"))) for a in arrays)))


def _mean_abs(arrays) -> float:
    sizes = sum(a.size for a in arrays)
    return float(sum(float(np.abs(a).sum()) for a in arrays) / max(sizes, 1))


def log_histogram(arrays) -> np.ndarray:
    """Counts: exact zeros first, then 30 bins of log10 |x| from -10 to 2 (values beyond go to the edge
    bins; non-finite values are left out).  A fixed log range needs no first-epoch calibration."""
    values = np.abs(np.concatenate([np.asarray(a, dtype="float64").ravel() for a in arrays]))
    values = values[np.isfinite(values)]
    nonzero = values[values > 0]
    logs = np.clip(np.log10(nonzero), HIST_EDGES[0], HIST_EDGES[-1])
    counts, _ = np.histogram(logs, bins=HIST_EDGES)
    return np.concatenate([[values.size - nonzero.size], counts]).astype(np.int64)


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


# -- checks ------------------------------------------------------------------------------------------------


def _result(check: str, verdict: str, value, threshold, message: str, fix: str = "", **evidence):
    return CheckResult(check=check, verdict=verdict, value=value, threshold=threshold, message=message,
                       fix=fix if verdict != PASS else "", stage=STAGE, evidence=evidence)


def check_gradient_norms(records: Records, options: DiagnosticOptions) -> CheckResult:
    check = "monitor.gradient_norms"
    threshold = ("vanishing: first/last layer norm ratio < 1e-3 with first-layer norm < 1e-4, or mean |grad| "
                 "< 1e-7, while the loss is still >= 10% of its start; exploding: ratio > 70 and growing, "
                 "a norm > 1e6, or NaN/Inf")
    layers = list(records.grad_norms)
    if not layers:
        return _result(check, SKIP, None, threshold, "no layer with a trainable kernel to measure")
    first, last = records.grad_norms[layers[0]], records.grad_norms[layers[-1]]
    ratios = [f / l if l > 0 else math.nan for f, l in zip(first, last)]
    evidence = {"epochs": records.epochs, "layer_norms": records.grad_norms, "first_last_ratio": ratios,
                "mean_abs_grad": records.grad_mean_abs, "first_layer": layers[0], "last_layer": layers[-1]}
    end_ratio = ratios[-1]
    bad = [e for i, e in enumerate(records.epochs)
           if not math.isfinite(records.data_grad_norm[i])
           or any(norms[i] > EXPLODING_NORM for norms in records.grad_norms.values())]
    if bad:
        return _result(check, FAIL, end_ratio, threshold,
                       f"exploding gradients: a gradient norm was NaN/Inf or above {EXPLODING_NORM:g} "
                       f"(epochs {bad})", "lower the learning rate, clip gradients (optimizer.clipnorm=1.0) and "
                       "check the input scaling", **evidence)
    vanishing = _vanishing_epochs(records, ratios, options.threshold(check, VANISHING_RATIO))
    if vanishing and vanishing[-1] == records.epochs[-1]:
        return _result(check, FAIL, end_ratio, threshold,
                       f"vanishing gradients: the first layer ({layers[0]}) gets almost no gradient while the loss "
                       f"is still high (epochs {vanishing})", _VANISHING_FIX, **evidence)
    if vanishing:
        return _result(check, WARN, end_ratio, threshold,
                       f"gradients vanished in epochs {vanishing} (0 = before training) and recovered later",
                       _VANISHING_FIX, **evidence)
    finite = [r for r in ratios if math.isfinite(r)]
    if finite and finite[-1] > EXPLODING_RATIO and finite[-1] > finite[0]:
        return _result(check, WARN, end_ratio, threshold,
                       f"the first layer's gradient norm grew to {finite[-1]:.3g}x the last layer's",
                       "lower the learning rate or clip gradients (optimizer.clipnorm=1.0)", **evidence)
    return _result(check, PASS, end_ratio, threshold,
                   f"gradient norms healthy; first/last layer ratio {end_ratio:.3g} at the end", **evidence)


_VANISHING_FIX = ("use ReLU-family activations with He initialisation in deep stacks, scale the inputs, add "
                  "batch normalisation, or make the network shallower")


def _vanishing_epochs(records: Records, ratios: list[float], ratio_limit: float) -> list[int]:
    # A well-fitted network legitimately has tiny gradients: only flag while the loss is still high.
    start = records.data_loss[0]
    first = records.grad_norms[next(iter(records.grad_norms))]
    epochs = []
    for i, epoch in enumerate(records.epochs):
        still_high = math.isfinite(start) and records.data_loss[i] >= 0.1 * start
        tiny = (ratios[i] < ratio_limit and first[i] < VANISHING_FIRST_NORM) or \
            records.grad_mean_abs[i] < VANISHING_MEAN_ABS
        if still_high and tiny:
            epochs.append(epoch)
    return epochs


def check_update_ratio(records: Records, options: DiagnosticOptions) -> CheckResult:
    """Size of one update relative to the weights, per layer.  Too large is judged on the first updates (a
    huge learning rate shows at once, and later epochs must not average it away); too small only while the
    loss has not fallen (tiny updates after convergence are what a converged model should make)."""
    check = "monitor.update_ratio"
    low, high = UPDATE_BAND
    threshold = (f"per-layer log10(mean |dw| / mean |w|) per update: largest of the first {EARLY_UPDATES} <= "
                 f"{high:g} (FAIL above {UPDATE_EXTREME[1]:g}); median >= {low:g} (FAIL below "
                 f"{UPDATE_EXTREME[0]:g}) unless the loss fell by half")
    if not records.update_ratio:
        return _result(check, SKIP, None, threshold,
                       "no update was measured: Keras never called the batch hooks for the first batch")
    early = {name: _max_log10(ratios[:EARLY_UPDATES]) for name, ratios in records.update_ratio.items()}
    typical = {name: _median_log10(ratios) for name, ratios in records.update_ratio.items()}
    evidence = {"update_epochs": records.update_epochs, "ratios": records.update_ratio,
                "early_max_log10": early, "median_log10": typical}
    value = float(np.nanmax(list(early.values()))) if any(math.isfinite(v) for v in early.values()) else math.nan
    half = len(early) / 2
    learning = _loss_fell(records, 0.5)
    huge = [n for n, v in early.items() if v > UPDATE_EXTREME[1]]
    big = [n for n, v in early.items() if v > high]
    tiny = [n for n, v in typical.items() if v < low]
    vanishing = [n for n, v in typical.items() if v < UPDATE_EXTREME[0]]
    if len(huge) > half:
        return _result(check, FAIL, value, threshold, f"updates larger than the weights from the first steps in "
                       f"{len(huge)} of {len(early)} layers ({', '.join(huge)})", _update_fix(True), **evidence)
    if len(big) > half:
        return _result(check, WARN, value, threshold, f"large updates in the first steps in {', '.join(big)} "
                       f"(log10 {', '.join(f'{early[n]:.1f}' for n in big)})", _update_fix(True), **evidence)
    if len(tiny) > half and not learning:
        verdict = FAIL if len(vanishing) > half else WARN
        level = UPDATE_EXTREME[0] if verdict == FAIL else low
        return _result(check, verdict, float(np.nanmedian(list(typical.values()))), threshold,
                       f"updates below 1e{level:g} of the weights in {', '.join(vanishing if verdict == FAIL else tiny)}"
                       " while the loss has not fallen by half", _update_fix(False), **evidence)
    note = "; small later updates after the loss fell are convergence" if tiny and learning else ""
    return _result(check, PASS, value, threshold,
                   f"first updates at most 10^{value:.1f} of the weights{note}", **evidence)


def _loss_fell(records: Records, share: float) -> bool:
    """Whether the probe batch's data loss ended at most ``share`` of its start."""
    if not records.data_loss:
        return False
    start, end = records.data_loss[0], records.data_loss[-1]
    return math.isfinite(start) and math.isfinite(end) and start > 0 and end <= share * start


def _max_log10(ratios: list[float]) -> float:
    with np.errstate(divide="ignore"):
        logs = np.log10(np.asarray([r for r in ratios if not math.isnan(r)], dtype=float))
    return float(np.max(logs)) if logs.size else math.nan


def _median_log10(ratios: list[float]) -> float:
    with np.errstate(divide="ignore"):
        logs = np.log10(np.asarray([r for r in ratios if not math.isnan(r)], dtype=float))
    return float(np.median(logs)) if logs.size else math.nan


def _update_fix(too_big: bool) -> str:
    if too_big:
        return "lower the learning rate (by 10x), or check for weights initialised at or near zero"
    return "raise the learning rate (by 10x or more), or check that gradients reach these layers"


def check_dead_units(records: Records, options: DiagnosticOptions, watched: dict[str, str],
                     unreadable: str | None = None) -> CheckResult:
    result = _activation_check("monitor.dead_units", records.dead, options, watched, unreadable, "relu",
                               "dead units (95th percentile of |activation| < 1e-5)",
                               "use he_normal initialisation, zero or small positive biases, a lower learning "
                               "rate, or leaky_relu/elu")
    # A dominating weight penalty shrinks whole units to zero (mnist_l2: 94% of a layer): the same cause as
    # monitor.regularization, so one FAIL there is enough and the fix named here is the regulariser's.
    if result.verdict == FAIL and _regularizer_dominated(records):
        result.verdict = WARN
        result.message += "; likely pruned by the dominating regulariser (see monitor.regularization)"
        result.fix = "lower the L2 factor; " + result.fix
    return result


def _regularizer_dominated(records: Records) -> bool:
    return any(r > d for r, d in zip(records.reg_loss, records.data_loss))


def check_saturation(records: Records, options: DiagnosticOptions, watched: dict[str, str],
                     unreadable: str | None = None) -> CheckResult:
    return _activation_check("monitor.saturation", records.saturated, options, watched, unreadable, "squashing",
                             "saturated activations (|z| > 5 for sigmoid, > 2.5 for tanh)",
                             "use Glorot initialisation (smaller weights), scale the inputs, add batch "
                             "normalisation, or switch hidden layers to ReLU")


def _activation_check(check, shares_by_layer, options, watched, unreadable, family, what, fix) -> CheckResult:
    limit = options.threshold(check, 0.5)
    threshold = f"share of {what} per layer > {limit:g}"
    kinds = "ReLU-family" if family == "relu" else "sigmoid/tanh"
    if unreadable and any((kind == "relu") == (family == "relu") for kind in watched.values()):
        return _result(check, SKIP, None, threshold, unreadable)
    if not shares_by_layer:
        return _result(check, SKIP, None, threshold, f"no {kinds} hidden layer")
    final = {name: shares[-1] for name, shares in shares_by_layer.items()}
    flagged = [name for name, share in final.items() if share > limit]
    value = max(final.values())
    evidence = {"per_layer_per_epoch": shares_by_layer, "final": final}
    last_layer = list(final)[-1]
    described = ", ".join(f"{n} {final[n]:.0%}" for n in flagged)
    if len(flagged) > len(final) / 2 or (family == "relu" and last_layer in flagged):
        return _result(check, FAIL, value, threshold, f"{what} dominate: {described}", fix, **evidence)
    if flagged:
        return _result(check, WARN, value, threshold, f"{what} in {described}", fix, **evidence)
    return _result(check, PASS, value, threshold, f"at most {value:.0%} {what} in any layer", **evidence)


def _losses(history: dict) -> list[float]:
    return [float(v) for v in history.get("loss", [])]


def _start_loss(records: Records) -> float:
    """Training loss before any update (data + regularisation, inference mode, probe batch); NaN when none was
    measured (training failed before its first step)."""
    if not records.data_loss or not records.reg_loss:
        return math.nan
    return records.data_loss[0] + records.reg_loss[0]


def check_loss_numeric(records: Records, history: dict, options: DiagnosticOptions) -> CheckResult:
    check = "monitor.loss_numeric"
    limit = options.threshold(check, 1e3)
    threshold = f"NaN/Inf, or a loss >= {limit:g}x its start"
    losses = _losses(history) + records.window_losses
    if not losses:
        return _result(check, SKIP, None, threshold, "no training loss in the history")
    start = _start_loss(records)
    evidence = {"start": start, "epoch_losses": _losses(history)}
    bad = [i + 1 for i, v in enumerate(_losses(history)) if not math.isfinite(v)]
    if bad or not all(math.isfinite(v) for v in losses):
        return _result(check, FAIL, math.nan, threshold,
                       f"the training loss became NaN/Inf{f' in epoch {bad[0]}' if bad else ''}",
                       _NUMERIC_FIX, **evidence)
    growth = max(losses) / start if start > 0 else math.nan
    if growth >= limit:
        return _result(check, FAIL, growth, threshold, f"the training loss grew to {growth:.3g}x its start",
                       _NUMERIC_FIX, **evidence)
    return _result(check, PASS, growth, threshold, "the training loss stayed finite and bounded", **evidence)


_NUMERIC_FIX = ("lower the learning rate, clip gradients (optimizer.clipnorm=1.0), scale the inputs, and check "
                "the loss for log(0) (e.g. a probability output with the wrong loss)")


def check_loss_stalled(records: Records, history: dict, options: DiagnosticOptions) -> CheckResult:
    check = "monitor.loss_stalled"
    needed = options.threshold(check, 0.05)
    threshold = f"the training loss must drop >= {needed:.0%} below its start (and within the first half)"
    losses = [v for v in _losses(history) if math.isfinite(v)]
    if not losses:
        return _result(check, SKIP, None, threshold, "no finite training loss in the history")
    # The probe batch estimates the start with sampling noise; the first window of epoch 1 is another
    # estimate.  The larger one errs towards crediting a drop, never towards a false alarm.
    start = max([_start_loss(records)] + records.window_losses[:1])
    if not start > 0:
        return _result(check, SKIP, None, threshold, "the loss is not positive: relative drops are undefined")
    drop = 1.0 - min(losses) / start
    half = losses[math.ceil(len(losses) / 2) - 1]
    # Updates of a healthy size over only a few epochs: the run was too short, not the learning rate too low.
    early = [_max_log10(ratios[:EARLY_UPDATES]) for ratios in records.update_ratio.values()]
    healthy_steps = bool(early) and all(UPDATE_BAND[0] <= v <= UPDATE_BAND[1] for v in early if math.isfinite(v))
    evidence = {"start": start, "epoch_losses": losses, "drop": drop, "epochs": len(losses),
                "updates_healthy": healthy_steps, "short_run": healthy_steps and len(losses) <= SHORT_RUN_EPOCHS}
    if drop < needed:
        return _result(check, FAIL, drop, threshold,
                       f"the training loss never dropped {needed:.0%} below its start ({start:.4g}); "
                       f"best {min(losses):.4g}", _STALLED_FIX, **evidence)
    if len(losses) >= 4 and half > (1.0 - needed) * start:
        return _result(check, WARN, drop, threshold,
                       f"slow start: after half of the {len(losses)} epochs the loss was still within "
                       f"{needed:.0%} of its start", _STALLED_FIX, **evidence)
    return _result(check, PASS, drop, threshold, f"the training loss dropped {drop:.0%} from its start",
                   **evidence)


_STALLED_FIX = ("raise the learning rate (by 10x), check the initialisation (constant or saturating weights), "
                "and that labels match the inputs")


def check_loss_diverging(records: Records, history: dict, options: DiagnosticOptions) -> CheckResult:
    check = "monitor.loss_diverging"
    limit = options.threshold(check, 2.0)
    threshold = (f"final training loss >= {limit:g}x its minimum (start included) and above it by >= 10% of the "
                 "start loss, or a blow-up: the windowed batch loss climbed >= 1x the start loss above its "
                 "running minimum")
    losses = _losses(history)
    if not losses:
        return _result(check, SKIP, None, threshold, "no training loss in the history")
    start = _start_loss(records)
    series = [start] + losses
    # Windows of one batch each (a tiny data set) jump on single hard batches: a running median of 3 keeps the
    # blow-up of a too-high learning rate (several windows up) and drops a one-batch spike.
    smoothed = running_median([start] + records.window_losses + losses[-1:], 3)
    climb = largest_climb(smoothed) / start if start > 0 else math.nan
    evidence = {"losses_with_start": series, "largest_climb_over_start": climb}
    if not math.isfinite(losses[-1]):
        return _result(check, FAIL, math.nan, threshold, "the training loss ended as NaN/Inf: training diverged",
                       _DIVERGING_FIX, **evidence)
    lowest = min(v for v in series if math.isfinite(v))
    growth = losses[-1] / lowest if lowest > 0 else math.nan
    if growth >= limit and losses[-1] - lowest >= 0.1 * start:
        return _result(check, FAIL, growth, threshold,
                       f"the training loss ended at {growth:.3g}x its minimum: training diverged",
                       _DIVERGING_FIX, **evidence)
    if climb >= 1.0:
        return _result(check, FAIL, growth, threshold,
                       f"the training loss blew up: it climbed {climb:.3g}x its start above its running minimum "
                       f"(ending at {growth:.3g}x its minimum)", _DIVERGING_FIX, **evidence)
    return _result(check, PASS, growth, threshold, f"final loss {growth:.3g}x its minimum", **evidence)


def running_median(series: list[float], width: int) -> list[float]:
    """Each value replaced by the median of the ``width`` values ending at it (fewer at the start)."""
    return [float(np.median(series[max(0, i - width + 1):i + 1])) for i in range(len(series))]


def largest_climb(series: list[float]) -> float:
    """The largest rise of a finite series above its running minimum."""
    lowest, climb = math.inf, 0.0
    for value in series:
        if math.isfinite(value):
            lowest = min(lowest, value)
            climb = max(climb, value - lowest)
    return climb


_DIVERGING_FIX = "lower the learning rate (by 10x), clip gradients (optimizer.clipnorm=1.0), or add a decay schedule"


def check_loss_oscillating(records: Records, history: dict, options: DiagnosticOptions) -> CheckResult:
    """Many large swings of the windowed batch loss while it makes no progress.  Small-batch SGD is noisy on
    healthy programs too (15% of the healthy corpus swung by half its level), so a swing must double the loss
    and the loss must still sit at half its start or more in the last third of training."""
    check = "monitor.loss_oscillating"
    series = [v for v in records.window_losses if math.isfinite(v)]
    needed = max(3, math.ceil(len(series) * options.threshold(check, OSCILLATION_SHARE)))
    threshold = (f">= {needed} rises of the windowed batch loss (10 windows per epoch) by > {SWING:.0%} of the "
                 f"local minimum and > {SWING_OF_START:.0%} of the start loss, with the last third's median >= "
                 f"{STUCK_SHARE:.0%} of the start")
    if len(series) < 8:
        return _result(check, SKIP, None, threshold, f"only {len(series)} loss windows recorded; need 8")
    start = _start_loss(records)
    rises = large_rises(series, scale=start)
    late = float(np.median(series[-max(1, len(series) // 3):]))
    stuck = math.isfinite(start) and start > 0 and late >= STUCK_SHARE * start
    evidence = {"window_losses": series, "large_rises": rises, "late_median_over_start": late / start
                if math.isfinite(start) and start > 0 else None}
    if len(rises) >= needed and stuck:
        return _result(check, WARN, len(rises), threshold,
                       f"the loss oscillates: {len(rises)} large rises between local extrema, and it is still at "
                       f"{late / start:.0%} of its start late in training",
                       "lower the learning rate or raise the batch size", **evidence)
    note = "" if stuck or not rises else " (noise around a falling loss)"
    return _result(check, PASS, len(rises), threshold, f"{len(rises)} large rises of the loss{note}", **evidence)


def large_rises(series: list[float], scale: float) -> list[tuple[float, float]]:
    """(local minimum, next local maximum) pairs where the loss rises by > 50% of the minimum and > 10% of
    ``scale`` (the start loss): minibatch noise late in training is small against the start loss."""
    rises, low = [], series[0]
    for previous, current, following in zip(series, series[1:], series[2:] + [-math.inf]):
        if current <= previous and current <= following:
            low = current
        elif current >= previous and current > following:
            rise = current - low
            if rise > SWING * low and rise > SWING_OF_START * scale:
                rises.append((low, current))
            low = current
    return rises


def check_overfitting(records: Records, history: dict, options: DiagnosticOptions) -> CheckResult:
    check = "monitor.overfitting"
    # Measured on the book runs (50/20 epochs): val loss ends at 2.26x its minimum for the plain MNIST MLP and
    # 1.72x for seizure_dnn (both overfit), 1.30x with dropout (which the book calls flat); healthy small runs
    # of the corpus (bench/healthy_corpus) reach 1.5-1.6x on noise, so only 1.7x and more is a warning.
    limit = options.threshold(check, 0.7)
    threshold = (f"val loss at the end > {1 + limit:g}x its minimum, the best epoch at least 2 epochs and 20% of "
                 "the run before the end, and the training loss still falling and below its start")
    val, train = history.get("val_loss", []), _losses(history)
    if len(val) < 3 or len(train) != len(val) or not all(math.isfinite(v) for v in val):
        return _result(check, SKIP, None, threshold, "needs a finite validation loss for at least 3 epochs")
    n = len(val)
    best = int(np.argmin(val)) + 1
    # A zero minimum (a loss that cannot go lower, e.g. a degenerate head) cannot be exceeded by a ratio.
    rise = val[-1] / val[best - 1] - 1.0 if val[best - 1] > 0 else 0.0
    evidence = {"best_epoch": best, "val_loss_min": val[best - 1], "val_loss_end": val[-1],
                "train_loss_at_best": train[best - 1], "train_loss_end": train[-1],
                "gap_end": val[-1] - train[-1]}
    early = n - best >= max(2, math.ceil(0.2 * n))
    learning = train[-1] < train[best - 1] and train[-1] < _start_loss(records)
    if rise > limit and early and learning:
        return _result(check, WARN, rise, threshold,
                       f"overfitting: val loss lowest in epoch {best} of {n}, then up {rise:.0%} while the "
                       f"training loss kept falling (gap {val[-1] - train[-1]:.3g} at the end)",
                       "keep the best epoch (checkpointing does), stop early, add dropout or L2, or get more "
                       "data", **evidence)
    return _result(check, PASS, rise, threshold,
                   f"val loss lowest in epoch {best} of {n}; {rise:.0%} above it at the end", **evidence)


def check_underfitting(records: Records, history: dict, options: DiagnosticOptions,
                       chance: float | None) -> CheckResult:
    check = "monitor.underfitting"
    # The book's MNIST MLP ends at 0.4% of chance level, mnist_l2 at 6.2%: 3% separates them.
    far = options.threshold(check, 0.03)
    threshold = (f"all of: training loss plateaued (< 5% drop over the last third), inference-mode data loss on "
                 f"train >= 0.95x that on val (no generalisation gap), and >= {far:g}x the chance-level loss")
    losses = [v for v in _losses(history) if math.isfinite(v)]
    train_end, val_end = records.end_losses.get("train"), records.end_losses.get("val")
    if len(losses) < 6 or train_end is None or val_end is None or not chance:
        return _result(check, SKIP, None, threshold,
                       "needs 6+ epochs, a validation split and a loss with a known chance level")
    k = max(2, len(losses) // 3)
    recent_drop = 1.0 - min(losses[-k:]) / losses[-k - 1] if losses[-k - 1] > 0 else math.nan
    value = train_end / chance
    evidence = {"train_data_loss": train_end, "val_data_loss": val_end, "chance_loss": chance,
                "recent_drop": recent_drop, "window_epochs": k}
    plateau = recent_drop < 0.05
    no_gap = train_end >= 0.95 * val_end
    if plateau and no_gap and value >= far:
        return _result(check, WARN, value, threshold,
                       f"underfitting: the training loss plateaued at {value:.0%} of chance level and the model "
                       "fits its training data no better than unseen data",
                       "reduce regularisation (L2, dropout), add capacity, or train longer with a higher "
                       "learning rate", **evidence)
    return _result(check, PASS, value, threshold,
                   f"training data loss {value:.1%} of chance level; train/val data loss "
                   f"{train_end:.3g}/{val_end:.3g}", **evidence)


def check_regularization(records: Records, options: DiagnosticOptions, chance: float | None) -> CheckResult:
    check = "monitor.regularization"
    limit = options.threshold(check, 0.5)
    threshold = (f"regularisation share of the loss > {limit:g} before training, or at the end while the data "
                 "loss is >= 10% of chance level (FAIL: >= 0.9 before training)")
    if not any(records.reg_loss):
        return _result(check, SKIP, None, threshold, "the model has no weight regularisers")
    shares = [r / (r + d) if r + d > 0 else math.nan for r, d in zip(records.reg_loss, records.data_loss)]
    grad_ratio = [r / d if d > 0 else math.nan for r, d in zip(records.reg_grad_norm, records.data_grad_norm)]
    evidence = {"epochs": records.epochs, "reg_loss": records.reg_loss, "data_loss": records.data_loss,
                "share": shares, "reg_to_data_grad_norm": grad_ratio}
    start, end = shares[0], shares[-1]
    data_far = chance is not None and records.data_loss[-1] >= 0.1 * chance
    message = (f"the regulariser is {start:.0%} of the loss before training and {end:.0%} at the end "
               f"(gradient norm {grad_ratio[-1]:.2g}x the data loss's)")
    fix = "lower the L2 factor (e.g. 10x-100x, to 1e-4) or remove it"
    # Only a penalty that is nearly all of the loss from the start FAILs: the book's mnist_l2 (83% at the start,
    # data loss still high after 5 epochs) is a deliberate, if too strong, choice the book shows as underfitting.
    if start >= 0.9:
        return _result(check, FAIL, end, threshold, f"strong regularisation: {message}", fix, **evidence)
    # A penalty that grows to a quarter of the loss is what L2 on a small data set does by design (it fixed the
    # overfitting); only a penalty that is most of the loss says the data term is swamped.
    if start > limit or (end > limit and data_far):
        return _result(check, WARN, end, threshold, f"regularisation dominates: {message}", fix, **evidence)
    return _result(check, PASS, end, threshold, message, **evidence)


def check_early_blowup(records: Records, options: DiagnosticOptions) -> CheckResult:
    """A learning rate that is too high shows in the first epoch: the batch loss ends the epoch above where it
    started instead of below.  Judged on epoch 1 alone, so a sweep can act on it before more epochs run, and on
    the end of the epoch (the median of its last third), not on one noisy batch of a tiny data set."""
    check = "monitor.early_blowup"
    warn = options.threshold(check, BLOWUP_WARN)
    fail = options.threshold(f"{check}.fail", BLOWUP_FAIL)
    threshold = (f"epoch-1 loss at its end (median of the last third of its windows) above the start loss by "
                 f"WARN >= {warn:.0%}, FAIL >= {fail:.0%} of it")
    first = [loss for loss, epoch in zip(records.window_losses, records.window_epochs) if epoch == 1]
    start = _start_loss(records)
    if not first or not (math.isfinite(start) and start > 0):
        return _result(check, SKIP, None, threshold, "no loss windows in epoch 1, or no finite positive start loss")
    evidence = {"start": start, "epoch1_windows": first}
    if not all(math.isfinite(v) for v in first):
        return _result(check, FAIL, math.nan, threshold, "the loss became NaN/Inf within the first epoch",
                       _DIVERGING_FIX, **evidence)
    end = float(np.median(first[-max(1, len(first) // 3):]))
    rise = end / start - 1.0
    if rise >= warn:
        return _result(check, FAIL if rise >= fail else WARN, rise, threshold,
                       f"the loss ended the first epoch {rise:.0%} above where it started ({end:.4g} vs {start:.4g})",
                       _DIVERGING_FIX, **evidence)
    return _result(check, PASS, rise, threshold, f"the first epoch ended at {end / start:.0%} of the start loss",
                   **evidence)


def check_still_improving(records: Records, history: dict, options: DiagnosticOptions) -> CheckResult:
    """Training that stopped while the loss still fell steeply, far above where it is heading: more epochs
    (or a higher learning rate) would help.  A loss that flattened, or that is already low, passes."""
    check = "monitor.still_improving"
    falling = options.threshold(check, STILL_FALLING)
    threshold = (f"windowed training loss: drop >= {falling:.0%} from the second-last to the last fifth of training "
                 f"while still >= {STILL_HIGH:.0%} of the start loss (and the val loss not rising)")
    series = [v for v in records.window_losses if math.isfinite(v)]
    start = _start_loss(records)
    if len(series) < 4 or not (math.isfinite(start) and start > 0):
        return _result(check, SKIP, None, threshold, f"only {len(series)} loss windows recorded; need 4")
    k = max(2, len(series) // 5)
    recent, before = float(np.mean(series[-k:])), float(np.mean(series[-2 * k:-k]))
    drop = 1.0 - recent / before if before > 0 else 0.0
    val = [v for v in history.get("val_loss", []) if math.isfinite(v)]
    val_rising = len(val) >= 2 and val[-1] > val[-2]
    evidence = {"recent": recent, "before": before, "drop": drop, "start": start, "share_of_start": recent / start,
                "val_rising": val_rising}
    if drop >= falling and recent >= STILL_HIGH * start and not val_rising:
        return _result(check, WARN, drop, threshold,
                       f"training stopped while the loss still fell steeply ({drop:.0%} over the last fifth) at "
                       f"{recent / start:.0%} of its start", "Train for more epochs (or raise the learning rate a "
                       "little); early stopping on the validation loss picks the point to stop.", **evidence)
    return _result(check, PASS, drop, threshold, f"the loss changed {-drop:+.0%} over the last fifth, at "
                   f"{recent / start:.0%} of its start", **evidence)


# -- plots ---------------------------------------------------------------------------------------------------


def write_plots(records: Records, output_dir: Path) -> list[str]:
    """Gradient norms per layer over epochs, and per kind a heat map (bins x epochs) per layer."""
    written = []
    if records.grad_norms:
        written.append(_plot_gradient_norms(records, output_dir, "monitor/gradient_norms.png"))
    for kind, layers in records.histograms.items():
        if layers:
            written.append(_plot_histograms(kind, layers, records.epochs, output_dir,
                                            f"monitor/{kind}_histograms.png"))
    return written


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _plot_gradient_norms(records: Records, output_dir: Path, name: str) -> str:
    figure = _figure(6, 4)
    axes = figure.subplots()
    for layer, norms in records.grad_norms.items():
        axes.plot(records.epochs, np.maximum(norms, 1e-30), marker="o", label=layer)
    axes.set(yscale="log", xlabel="epoch (0 = before training)", ylabel="gradient norm (probe batch)",
             title="Per-layer gradient norms")
    axes.legend(fontsize="small")
    return _save(figure, output_dir, name)


def _plot_histograms(kind: str, layers: dict[str, list[np.ndarray]], epochs: list[int], output_dir: Path,
                     name: str) -> str:
    from matplotlib.colors import LogNorm

    figure = _figure(7, 1.6 * len(layers) + 0.8)
    rows = figure.subplots(len(layers), 1, squeeze=False)[:, 0]
    for axes, (layer, counts) in zip(rows, layers.items()):
        counts = np.asarray(counts, dtype=float)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        # A log colour scale: one dominant bin (often the zeros) would otherwise hide the rest.
        extent = (epochs[0] - 0.5, epochs[len(counts) - 1] + 0.5, HIST_EDGES[0] - 0.4, HIST_EDGES[-1])
        image = axes.imshow(np.maximum(shares.T, 1e-5), aspect="auto", origin="lower", cmap="viridis",
                            norm=LogNorm(vmin=1e-5, vmax=1.0), extent=extent)
        axes.set_ylabel(f"{layer}\nlog10|x|", fontsize="small")
    figure.colorbar(image, ax=list(rows), label="share of values")
    rows[0].set_title(f"{kind.capitalize()}: share of values per log10|x| bin (bottom row: exact zeros)")
    rows[-1].set_xlabel("epoch (0 = before training)")
    return _save(figure, output_dir, name)


def _save(figure, output_dir: Path, name: str) -> str:
    path = Path(output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return name
