"""Matplotlib figures of a run, each written to a PNG file (Agg backend: no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from runner.run.callbacks import positive_scores  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves(history: dict[str, list[float]], metrics: list[str], best_epoch: int, path: Path) -> Path:
    """Loss and the task's main metrics per epoch, train vs validation, with the kept epoch marked."""
    names = ["loss"] + [name for name in metrics if name in history and name != "loss"]
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label=f"train {name}")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label=f"val {name}")
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.legend()
    return _save(fig, path)


def predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, label: str, path: Path) -> Path:
    """The book's histogram of predicted and actual values, beside a scatter against the identity line."""
    fig, (hist_ax, scatter_ax) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.histogram_bin_edges(np.concatenate([y_true, y_pred]), bins=40)
    hist_ax.hist(y_true, bins=bins, alpha=0.6, label="actual")
    hist_ax.hist(y_pred, bins=bins, alpha=0.6, label="predicted")
    hist_ax.set_xlabel(label)
    hist_ax.set_ylabel("count")
    hist_ax.set_title("test set: predicted vs actual")
    hist_ax.legend()
    scatter_ax.scatter(y_true, y_pred, s=6, alpha=0.5)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    scatter_ax.plot([low, high], [low, high], color="grey", linestyle=":")
    scatter_ax.set_xlabel(f"actual {label}")
    scatter_ax.set_ylabel(f"predicted {label}")
    scatter_ax.set_title("test set: each row")
    return _save(fig, path)


def roc_curves(labels: dict[str, np.ndarray], outputs: dict[str, np.ndarray], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for split, y in labels.items():
        scores = positive_scores(outputs[split])
        if len(np.unique(y)) == 2 and np.all(np.isfinite(scores)):
            fpr, tpr, _ = roc_curve(y, scores)
            ax.plot(fpr, tpr, label=split)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend()
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], title: str, path: Path) -> Path:
    size = max(4.5, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > matrix.max() / 2 else "black",
            fontsize=8,
        )
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    return _save(fig, path)
