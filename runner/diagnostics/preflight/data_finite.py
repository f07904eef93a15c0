"""preflight.data_finite: NaN and Inf values anywhere in the inputs or targets.

One NaN poisons every loss and gradient it touches, so the model checks that follow are skipped when this
check fails (they would only measure NaN)."""

from __future__ import annotations

import numpy as np

from datasets import SPLITS
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, CheckResult

NAME = f"{STAGE}.data_finite"
FIX = (
    "Find where they come from (missing values, a division by zero in preprocessing) and impute or drop "
    "those rows before training."
)


def non_finite_counts(data: DiagnosticData) -> dict[str, int]:
    """NaN/Inf values per floating-point array (``x_train``, ``y_val``, ...); integer arrays hold none."""
    counts = {}
    for split in SPLITS:
        x, y = data.split(split)
        for kind, array in (("x", x), ("y", y)):
            if array is not None and np.issubdtype(np.asarray(array).dtype, np.floating):
                counts[f"{kind}_{split}"] = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    return counts


@check(
    NAME,
    what="the number of NaN/Inf values in the inputs and targets of every split",
    threshold=0,
    fix=FIX,
    scope="data",
)
def check_data_finite(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    counts = non_finite_counts(data)
    bad = {name: count for name, count in counts.items() if count}
    total = sum(bad.values())
    if total:
        where = ", ".join(f"{name}: {count}" for name, count in bad.items())
        return result(NAME, FAIL, total, 0, f"{total} NaN/Inf values in the data ({where})", FIX, evidence=counts)
    return result(NAME, PASS, 0, 0, "no NaN or Inf in any split", evidence=counts)
