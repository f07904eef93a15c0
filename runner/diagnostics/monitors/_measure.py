"""Measurements the callback takes (and ``report`` once): probe rows, kernels, losses, norms, histograms.

The quantities of single checks (update ratio, dead and saturated shares) live in those checks' modules."""

from __future__ import annotations

import math

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData
from runner.diagnostics.introspect import compiled_loss, weighted_layers

HIST_EDGES = np.linspace(-10.0, 2.0, 31)  # log10 |x|; exact zeros get their own first bin


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


def kernel_values(model) -> dict[str, list[np.ndarray]]:
    return {
        name: [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights if len(w.shape) >= 2]
        for name, layer in weighted_layers(model).items()
    }


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
        predictions = model(x[start : start + batch_size], training=False)
        chunk = keras.ops.convert_to_numpy(loss_fn(y[start : start + batch_size], predictions))
        total += float(np.mean(chunk)) * len(x[start : start + batch_size])
    return total / len(x)


def chance_loss(model, data: DiagnosticData) -> float | None:
    """The loss of the best constant prediction: the entropy of the class priors for a cross-entropy, the
    compiled loss of the median or mean target for regression.  None when neither applies."""
    loss_fn = compiled_loss(model).fn
    name = compiled_loss(model).name
    if data.task == "multilabel":
        prevalence = np.clip(
            np.asarray(data.y_train, dtype="float64").reshape(len(data.y_train), -1).mean(axis=0), 1e-7, 1 - 1e-7
        )
        return float(np.mean(-(prevalence * np.log(prevalence) + (1 - prevalence) * np.log(1 - prevalence))))
    if data.task != "regression":
        if "crossentropy" not in str(name).replace("_", "").lower():
            return None
        counts = np.bincount(data.labels("train"), minlength=data.n_classes).astype(float)
        priors = counts[counts > 0] / counts.sum()
        return float(-(priors * np.log(priors)).sum())
    y = match_output_rank(model, data.x_train, np.asarray(data.y_train, dtype="float32"))
    constants = (np.median(y, axis=0), y.mean(axis=0))
    return min(float(np.mean(keras.ops.convert_to_numpy(loss_fn(y, np.broadcast_to(c, y.shape))))) for c in constants)


def norm(arrays) -> float:
    return float(math.sqrt(sum(float(np.sum(np.square(a, dtype="float64"))) for a in arrays)))


def mean_abs(arrays) -> float:
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
