"""Keras callbacks of the runner: exact per-epoch ROC AUC (as the book's callback) and an epoch logger."""

import keras
import numpy as np
from sklearn.metrics import roc_auc_score


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
    """Adds ``roc_auc`` and ``val_roc_auc`` to the epoch logs, computed on the whole splits."""

    def __init__(self, x_train, y_train, x_val, y_val, batch_size: int = 2048):
        super().__init__()
        self.splits = {"roc_auc": (x_train, y_train), "val_roc_auc": (x_val, y_val)}
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, (x, y) in self.splits.items():
            scores = positive_scores(self.model.predict(x, batch_size=self.batch_size, verbose=0))
            logs[name] = roc_auc(y, scores)


class EpochLogger(keras.callbacks.Callback):
    """Hands each epoch's metrics (and the learning rate) to ``log_fn(metrics, step)``; step = epoch, 1-based."""

    def __init__(self, log_fn):
        super().__init__()
        self.log_fn = log_fn

    def on_epoch_end(self, epoch, logs=None):
        metrics = {name: float(value) for name, value in (logs or {}).items()}
        metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.log_fn(metrics, epoch + 1)
