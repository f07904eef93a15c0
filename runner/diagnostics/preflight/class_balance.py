"""preflight.class_balance: the smallest class's share of the training labels (single-label tasks)."""

from __future__ import annotations

import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

NAME = f"{STAGE}.class_balance"
# Minority share below 0.2 / k (k classes): below 10% for binary, below 2% for 10 classes.  At that point
# accuracy mostly measures the majority class (the seizure data's 20% positives is still fine).
MINORITY_SHARE_OF_BALANCED = 0.2
FIX = (
    "Use class weights or resampling, and judge the model by per-class metrics (recall, F1, ROC AUC) rather "
    "than accuracy."
)
FIX_MISSING = "Make sure every class occurs in the training split (stratify the split)."


def class_shares(data: DiagnosticData) -> tuple[np.ndarray, np.ndarray]:
    """Training rows per class and each class's share of them."""
    counts = np.bincount(data.labels("train"), minlength=data.n_classes)
    return counts, counts / max(1, counts.sum())


@check(
    NAME,
    what="the smallest class's share of the training labels",
    threshold=f"WARN below {MINORITY_SHARE_OF_BALANCED:g} / number of classes, FAIL at 0",
    fix=FIX,
    scope="data",
)
def check_class_balance(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    if not data.single_label:
        return result(NAME, SKIP, None, None, f"not a single-label classification task ({data.task})")
    counts, shares = class_shares(data)
    minority = int(shares.argmin())
    limit = options.threshold(NAME, MINORITY_SHARE_OF_BALANCED / data.n_classes)
    name = data.class_names[minority] if data.class_names and minority < len(data.class_names) else minority
    evidence = {"shares": [round(float(s), 4) for s in shares], "minority_class": str(name)}
    share = float(shares[minority])
    if counts[minority] == 0:
        return result(NAME, FAIL, share, limit, f"class {name} has no training samples", FIX_MISSING, evidence=evidence)
    if share < limit:
        return result(
            NAME,
            WARN,
            share,
            limit,
            f"very imbalanced classes: class {name} is {share:.1%} of the training rows",
            FIX,
            evidence=evidence,
        )
    return result(NAME, PASS, share, limit, f"smallest class share {share:.1%}", evidence=evidence)
