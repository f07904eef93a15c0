"""preflight.constant_target: does the training target vary at all?  A constant target leaves nothing to
learn; it usually means the wrong column, or one overwritten by preprocessing."""

from __future__ import annotations

import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, CheckResult

NAME = f"{STAGE}.constant_target"
# Coefficient of variation (std / |mean|) of a regression target below which it is constant for training:
# a spread of 0.1% of its level is below the noise of any real measurement.
CONSTANT_TARGET_CV = 1e-3
MIN_CLASSES = 2  # a classifier needs two classes in its training labels
FIX = "Check that the right column is the target and that it was not overwritten by preprocessing."
FIX_LABELS = "Check the label columns: nothing varies, so nothing can be learned."
FIX_CLASSES = "Check the label column and the split: a single class leaves nothing to learn."


@check(
    NAME,
    what="how much the training target varies: its coefficient of variation (regression), the label "
    "columns that vary (multilabel) or the classes present (classification)",
    threshold=f"regression: coefficient of variation < {CONSTANT_TARGET_CV:g}; classification: fewer than "
    f"{MIN_CLASSES} classes",
    fix=FIX,
    scope="data",
)
def check_constant_target(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    if data.task == "regression":
        return _regression(data, options)
    if data.task == "multilabel":
        return _multilabel(data)
    present = np.unique(data.labels("train"))
    evidence = {"classes_present": [int(c) for c in present[:50]]}
    if present.size < MIN_CLASSES:
        return result(
            NAME,
            FAIL,
            present.size,
            MIN_CLASSES,
            f"every training label is class {present[0] if present.size else '?'}",
            FIX_CLASSES,
            evidence=evidence,
        )
    return result(
        NAME, PASS, present.size, MIN_CLASSES, f"{present.size} classes in the training labels", evidence=evidence
    )


def _regression(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    y = np.asarray(data.y_train, dtype=np.float64)
    std, mean = float(np.std(y)), float(abs(np.mean(y)))
    cv = std / max(mean, 1e-12)  # finite even for a zero-mean (standardised) target: MLflow metrics
    limit = options.threshold(NAME, CONSTANT_TARGET_CV)
    evidence = {"mean": float(np.mean(y)), "std": std}
    if cv < limit:
        return result(
            NAME,
            FAIL,
            cv,
            limit,
            f"the regression target is (nearly) constant: coefficient of variation {cv:.3g}",
            FIX,
            evidence=evidence,
        )
    return result(NAME, PASS, cv, limit, f"the target varies (coefficient of variation {cv:.3g})", evidence=evidence)


def _multilabel(data: DiagnosticData) -> CheckResult:
    y = np.asarray(data.y_train, dtype=np.float64).reshape(len(data.y_train), -1)
    constant = [int(j) for j in np.flatnonzero(y.std(axis=0) == 0)]
    evidence = {"constant_labels": constant[:50]}
    if len(constant) == y.shape[1]:
        return result(
            NAME,
            FAIL,
            len(constant),
            0,
            "every label column is constant in the training split",
            FIX_LABELS,
            evidence=evidence,
        )
    return result(
        NAME,
        PASS,
        len(constant),
        0,
        f"{y.shape[1] - len(constant)} of {y.shape[1]} label columns vary",
        evidence=evidence,
    )
