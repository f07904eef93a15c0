"""Final evaluation on train, val and test with the task's metrics (scikit-learn, on the full splits)."""

from dataclasses import dataclass, field

import numpy as np
from sklearn import metrics as skm

from datasets import SPLITS
from runner.run.callbacks import positive_scores, roc_auc
from runner.runtime import backend

CURVE_METRICS = {
    "regression": ["mae"],
    "binary": ["accuracy", "roc_auc"],
    "multiclass": ["accuracy"],
    "multilabel": ["macro_f1", "roc_auc"],
}


@dataclass
class Evaluation:
    metrics: dict[str, float]  # "<split>_<metric>"
    predictions: dict[str, np.ndarray]  # split -> raw model outputs
    reports: dict[str, str] = field(default_factory=dict)  # file name -> text
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # split -> matrix


def evaluate(model, data, threshold: float = 0.5, batch_size: int = 2048) -> Evaluation:
    """Predict every split once and compute the task's metrics for each."""
    outputs = {name: backend.predict(model, data.splits()[name].x, batch_size) for name in SPLITS}
    evaluation = Evaluation(metrics={}, predictions=outputs)
    for name in SPLITS:
        y = data.splits()[name].y
        if data.task == "regression":
            split_metrics = regression_metrics(y, outputs[name][:, 0], data.target_scaling)
        elif data.task == "binary":
            split_metrics, evaluation.confusion[name] = binary_metrics(y, positive_scores(outputs[name]), threshold)
        elif data.task == "multilabel":  # no confusion matrix: a row may hold any set of labels
            split_metrics = multilabel_metrics(y, outputs[name], threshold)
        else:
            split_metrics, evaluation.confusion[name] = multiclass_metrics(y, outputs[name], data.n_classes)
        evaluation.metrics.update({f"{name}_{key}": value for key, value in split_metrics.items()})
    if data.task != "regression":
        evaluation.reports["classification_report.txt"] = classification_reports(data, outputs, threshold)
    return evaluation


def regression_metrics(y: np.ndarray, predicted: np.ndarray, target_scaling: dict | None) -> dict[str, float]:
    """MAE and RMSE in the model's (standardised) units and, when the target was scaled, in original units."""
    if not np.all(np.isfinite(predicted)):
        return {"mae": float("nan"), "rmse": float("nan")}
    result = {"mae": float(np.mean(np.abs(predicted - y))), "rmse": float(np.sqrt(np.mean((predicted - y) ** 2)))}
    if target_scaling:
        std = target_scaling["std"]
        result["mae_original"] = result["mae"] * std
        result["rmse_original"] = result["rmse"] * std
    return result


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[dict[str, float], np.ndarray]:
    predicted = (scores >= threshold).astype(int)
    result = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "roc_auc": roc_auc(y, scores),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
    }
    return result, skm.confusion_matrix(y, predicted, labels=[0, 1])


def multiclass_metrics(y: np.ndarray, outputs: np.ndarray, n_classes: int) -> tuple[dict[str, float], np.ndarray]:
    predicted = outputs.argmax(axis=1)
    labels = list(range(n_classes))
    result = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "macro_f1": float(skm.f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
    }
    return result, skm.confusion_matrix(y, predicted, labels=labels)


def multilabel_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy over every (row, label) decision, the share of rows with every label right, micro and macro F1,
    and the mean ROC AUC of the labels that have both values in the split (NaN when none has)."""
    predicted = (scores >= threshold).astype(int)
    truth = np.asarray(y).astype(int)
    aucs = [roc_auc(truth[:, k], scores[:, k]) for k in range(truth.shape[1]) if len(np.unique(truth[:, k])) == 2]
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "subset_accuracy": float(skm.accuracy_score(truth, predicted)),
        "micro_f1": float(skm.f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(skm.f1_score(truth, predicted, average="macro", zero_division=0)),
        "roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
    }


def predicted_labels(task: str, outputs: np.ndarray, threshold: float) -> np.ndarray:
    if task == "multilabel":
        return (outputs >= threshold).astype(int)
    if task == "binary":
        return (positive_scores(outputs) >= threshold).astype(int)
    return outputs.argmax(axis=1)


def classification_reports(data, outputs: dict[str, np.ndarray], threshold: float) -> str:
    """Per-class precision, recall and F1 for every split (scikit-learn's classification_report)."""
    names = data.class_names or [str(c) for c in range(max(data.n_classes, 2))]
    labels = list(range(len(names)))
    sections = []
    for split in SPLITS:
        y = data.splits()[split].y
        y = y.astype(int) if data.task == "multilabel" else y  # a label indicator matrix
        report = skm.classification_report(
            y,
            predicted_labels(data.task, outputs[split], threshold),
            labels=labels,
            target_names=names,
            digits=4,
            zero_division=0,
        )
        with_threshold = data.task in ("binary", "multilabel")
        header = f"== {split} ({len(y)} rows" + (f", operating point {threshold}" if with_threshold else "")
        sections.append(f"{header}) ==\n{report}")
    return "\n".join(sections)
