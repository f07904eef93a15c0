"""Keras callbacks of the runner: exact per-epoch ROC AUC (as the book's callback) and an epoch logger."""

import time

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from runner.runtime import backend, console, interrupts


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when a split holds one class only (tiny subsets) or the scores are not finite."""
    if len(np.unique(y_true)) < 2 or not np.all(np.isfinite(scores)):
        return float("nan")
    return float(roc_auc_score(y_true, scores))


def positive_scores(outputs: np.ndarray) -> np.ndarray:
    """Probability of the positive class from a sigmoid unit or a two-unit softmax."""
    outputs = np.asarray(outputs)
    return outputs[:, -1] if outputs.ndim == 2 else outputs


class RocAucHistory(keras.callbacks.Callback):
    """Adds ``roc_auc`` and ``val_roc_auc`` to the epoch logs, computed on the whole splits.

    ``predict_on_batch`` over large chunks: ``model.predict`` would build a new input pipeline and progress
    machinery on every call, which cost seizure_dnn more than its training steps.
    """

    def __init__(self, x_train, y_train, x_val, y_val, chunk_rows: int = 16384):
        super().__init__()
        self.splits = {"roc_auc": (x_train, y_train), "val_roc_auc": (x_val, y_val)}
        self.chunk_rows = chunk_rows

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, (x, y) in self.splits.items():
            logs[name] = roc_auc(y, positive_scores(self._predict(x)))

    def _predict(self, x):
        # Large rows (images) get smaller chunks: a chunk's activations, not only its inputs, must fit in memory.
        rows = max(1, min(self.chunk_rows, backend.BATCH_BYTES // max(1, x[:1].nbytes)))
        chunks = [
            keras.ops.convert_to_numpy(self.model.predict_on_batch(x[start : start + rows]))
            for start in range(0, len(x), rows)
        ]
        return np.concatenate(chunks)


class EpochLogger(keras.callbacks.Callback):
    """Hands each epoch's metrics (and the learning rate) to ``log_fn(metrics, step)``; step = epoch, 1-based.

    Adds ``epoch_seconds`` (the epoch's training, validation and the callbacks before this one) to the logs,
    so the history holds it too; ``first_step_at`` is the time the first training step began (time.time()).
    ``checkpoint(epoch, logs, metrics)``, when given, saves the resumable state just before the epoch is logged.
    """

    def __init__(self, log_fn, checkpoint=None):
        super().__init__()
        self.log_fn = log_fn
        self.checkpoint = checkpoint
        self.first_step_at = None
        self._epoch_started = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._epoch_started
        metrics = {name: float(value) for name, value in (logs or {}).items()}
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        # A SIGTERM waits for both: a resumed run then finds every checkpointed epoch in MLflow, and no other.
        with interrupts.deferred():
            if self.checkpoint is not None:
                self.checkpoint(epoch + 1, logs, metrics)
            self.log_fn(metrics, epoch + 1)


class EpochProgress(keras.callbacks.Callback):
    """One console line per epoch (runner/runtime/console.py): loss, val_loss, the checkpoint monitor (``*`` when it
    is the best so far, the epoch the run keeps) and the epoch's seconds. Used instead of Keras's own output
    where that is not a terminal; after EpochLogger, whose ``epoch_seconds`` it shows."""

    def __init__(self, monitor: str, mode: str, label: str = "", best: float | None = None):
        super().__init__()
        self.monitor, self.mode, self.label = monitor, mode, label
        self.best = best  # a resumed run passes the best of its earlier epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        value = logs.get(self.monitor)
        improved = value is not None and console.better(value, self.best, self.mode)
        if improved:
            self.best = value
        print(
            console.epoch_line(
                epoch + 1, self.params.get("epochs") or epoch + 1, logs, self.monitor, improved, self.label
            ),
            flush=True,
        )
