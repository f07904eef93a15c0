"""analysis.confident_errors: the held-out rows the model gets wrong with the most confidence."""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import (
    STAGE,
    _class_probabilities,
    _evaluation_split,
    _flat_image_shape,
    _label_probabilities,
    _predict,
    _row_labels,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, WARN, CheckResult

NAME = "analysis.confident_errors"
# Wrong with probability above this is "confidently wrong".
CONFIDENT = 0.99
# WARN when such errors are the majority of the errors and more than 2% of all rows (a healthy 98%-accurate
# MNIST MLP stays below).
OVERCONFIDENT_SHARE_OF_ERRORS, OVERCONFIDENT_SHARE_OF_ROWS = 0.5, 0.02
# Rows listed per kind of error: enough to look at by hand.
TOP_ERRORS = 10
TABLE = "analysis/confident_errors.csv"
FIX = (
    "overconfident mistakes: look at these rows for label noise, add regularisation (dropout, L2, label "
    "smoothing) or calibrate the probabilities"
)
FIX_MULTILABEL = "overconfident mistakes: look at these rows for label noise, add regularisation or calibrate"


def _overconfident(confidence_of_errors, decisions):
    """(count of errors with confidence > CONFIDENT, their share of the errors, their share of decisions)."""
    overconfident = int(np.sum(confidence_of_errors > CONFIDENT))
    return overconfident, overconfident / max(len(confidence_of_errors), 1), overconfident / decisions


def _too_confident(share_of_errors, share_of_decisions) -> bool:
    return share_of_errors > OVERCONFIDENT_SHARE_OF_ERRORS and share_of_decisions > OVERCONFIDENT_SHARE_OF_ROWS


@check(
    NAME,
    threshold=f"WARN > {OVERCONFIDENT_SHARE_OF_ROWS:g} of the rows (and > "
    f"{OVERCONFIDENT_SHARE_OF_ERRORS:g} of the errors)",
    fix=FIX,
    what=f"the share of held-out rows predicted wrongly with probability above {CONFIDENT} (regression: "
    "the largest residual in target standard deviations, information only)",
)
def confident_errors(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """The most confident wrong predictions (binary: false positives and false negatives separately) or,
    for regression, the largest residuals, as a table in the evidence (and a CSV and image grid)."""
    split, x, y = _evaluation_split(data)
    outputs = _predict(model, x)
    if data.task == "regression":
        return _largest_residuals(options, split, y, outputs)
    if data.task == "multilabel":
        return _confident_label_errors(options, split, y, outputs)
    labels = _row_labels(data, split)
    probabilities = _class_probabilities(outputs)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    table = _error_table(wrong, labels, predicted, confidence, probabilities, data.task)
    overconfident, share_of_errors, share_of_rows = _overconfident(confidence[wrong], len(labels))
    verdict = WARN if _too_confident(share_of_errors, share_of_rows) else PASS
    message = (
        f"{len(wrong)} of {len(labels)} {split} rows wrong; {overconfident} of them with probability "
        f"> {CONFIDENT} ({share_of_errors:.0%} of the errors, {share_of_rows:.1%} of the rows)"
    )
    fix = "" if verdict == PASS else FIX
    drawn = _write_table(options, TABLE, table)
    drawn += plots.error_images(
        options, x, table, data.class_names, _flat_image_shape(x), "analysis/confident_errors.png"
    )
    evidence = {"split": split, "errors": len(wrong), "overconfident_errors": overconfident, "table": table}
    return CheckResult(NAME, verdict, share_of_rows, OVERCONFIDENT_SHARE_OF_ROWS, message, fix, STAGE, evidence, drawn)


def _confident_label_errors(options, split, y, outputs):
    """Multilabel: every (row, label) decision is a binary prediction; the same overconfidence rule as for
    single-label rows, counted over decisions."""
    actual = np.asarray(y).reshape(len(y), -1) > 0.5
    probabilities = _label_probabilities(outputs)[:, : actual.shape[1]]
    confidence = np.maximum(probabilities, 1.0 - probabilities)
    wrong_rows, wrong_labels = np.nonzero((probabilities > 0.5) != actual)
    order = np.argsort(-confidence[wrong_rows, wrong_labels])[:TOP_ERRORS]
    table = [
        {
            "kind": "wrong label",
            "index": int(wrong_rows[i]),
            "label": int(wrong_labels[i]),
            "predicted": float(probabilities[wrong_rows[i], wrong_labels[i]]),
            "score": float(confidence[wrong_rows[i], wrong_labels[i]]),
        }
        for i in order
    ]
    overconfident, share_of_errors, share_of_decisions = _overconfident(
        confidence[wrong_rows, wrong_labels], actual.size
    )
    verdict = WARN if _too_confident(share_of_errors, share_of_decisions) else PASS
    message = (
        f"{len(wrong_rows)} of {actual.size} {split} label decisions wrong; {overconfident} of them with "
        f"probability > {CONFIDENT} ({share_of_errors:.0%} of the errors)"
    )
    fix = "" if verdict == PASS else FIX_MULTILABEL
    evidence = {"split": split, "errors": len(wrong_rows), "overconfident_errors": overconfident, "table": table}
    return CheckResult(
        NAME,
        verdict,
        share_of_decisions,
        OVERCONFIDENT_SHARE_OF_ROWS,
        message,
        fix,
        STAGE,
        evidence,
        _write_table(options, TABLE, table),
    )


def _error_table(wrong, labels, predicted, confidence, probabilities, task):
    """Rows of {kind, index, label, predicted, score}, most confident first (binary: FP then FN)."""
    if task == "binary":
        score = probabilities[:, 1]
        positives = wrong[predicted[wrong] == 1]
        negatives = wrong[predicted[wrong] == 0]
        groups = [
            ("false positive", positives[np.argsort(-score[positives])][:TOP_ERRORS]),
            ("false negative", negatives[np.argsort(score[negatives])][:TOP_ERRORS]),
        ]
    else:
        score = confidence
        groups = [("wrong", wrong[np.argsort(-confidence[wrong])][:TOP_ERRORS])]
    return [
        {
            "kind": kind,
            "index": int(i),
            "label": int(labels[i]),
            "predicted": int(predicted[i]),
            "score": float(score[i]),
        }
        for kind, rows in groups
        for i in rows
    ]


def _largest_residuals(options, split, y, outputs):
    actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
    predicted = outputs.reshape(len(y), -1)[:, : actual.shape[1]]
    residual = np.abs(predicted - actual).max(axis=1)
    order = np.argsort(-residual)[:TOP_ERRORS]
    table = [
        {
            "kind": "largest residual",
            "index": int(i),
            "label": float(actual[i, 0]),
            "predicted": float(predicted[i, 0]),
            "score": float(residual[i]),
        }
        for i in order
    ]
    spread = float(actual.std()) or 1.0
    value = float(residual[order[0]] / spread)
    return CheckResult(
        NAME,
        PASS,
        value,
        None,
        f"largest {split} residual is {value:.2f} target standard deviations "
        f"(mean |residual| {residual.mean() / spread:.2f})",
        "",
        STAGE,
        {"split": split, "table": table},
        _write_table(options, TABLE, table),
    )


def _write_table(options, name, table) -> list[str]:
    """The error table as a CSV under the output folder (its name, or [] when there is none or no rows)."""
    path = options.plot_path(name)
    if path is None or not table:
        return []
    columns = list(table[0])
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in table]
    path.write_text("\n".join(lines) + "\n")
    return [name]
