"""preflight.target_scale: are regression targets near unit scale?"""

from __future__ import annotations

import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

NAME = f"{STAGE}.target_scale"
# Largest |mean| or std of a regression target column: targets in the tens (house prices in k$) train fine
# with Adam; hundreds and more leave a fresh network, whose outputs start near 0, far behind.
TARGET_SCALE_WARN, TARGET_SCALE_FAIL = 100.0, 1e4
TARGET_SCALE_HINT = 10.0  # above this a PASS carries a hint the diagnosis uses when training goes wrong
FIX = (
    "Standardise the targets (fit mean and std on the training split; invert the scaling on predictions), "
    "or divide them by a known unit (e.g. prices in thousands)."
)


def target_column_scales(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(|mean|, std) of every target column (non-finite values counted as 0), and the finite targets."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    finite = np.where(np.isfinite(y), y, 0.0)
    return np.maximum(np.abs(finite.mean(axis=0)), finite.std(axis=0)), finite


@check(
    NAME,
    what="the largest |mean| or standard deviation of a regression target column",
    threshold=f"WARN > {TARGET_SCALE_WARN:g}, FAIL > {TARGET_SCALE_FAIL:g}",
    fix=FIX,
    scope="data",
)
def check_target_scale(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Regression targets far from unit scale (prices in dollars, counts in thousands): a fresh network
    outputs values near zero and needs many steps just to reach the targets' level, with gradients scaled
    by the targets' size.  Values in the tens (house prices in k$, wine quality 3-9) train fine."""
    if data.task != "regression":
        return result(NAME, SKIP, None, None, f"not a regression task ({data.task})")
    scale, finite = target_column_scales(data.y_train)
    largest = float(scale.max()) if scale.size else 0.0
    warn = options.threshold(NAME, TARGET_SCALE_WARN)
    fail = options.threshold(f"{NAME}.fail", TARGET_SCALE_FAIL)
    evidence = {
        "mean": [float(v) for v in finite.mean(axis=0)[:20]],
        "std": [float(v) for v in finite.std(axis=0)[:20]],
    }
    threshold = f"max(|mean|, std) of each target column <= {warn:g} (FAIL above {fail:g})"
    if largest > warn:
        return result(
            NAME,
            FAIL if largest > fail else WARN,
            largest,
            threshold,
            f"unscaled regression targets: a target column has |mean| or std {largest:.3g}",
            FIX,
            evidence=evidence,
        )
    if largest > TARGET_SCALE_HINT:
        # Targets in the tens train fine with a good optimiser, so this alone is no warning; but if training
        # then misbehaves, their scale is the likeliest root (the diagnosis reads the hint).
        evidence["hint"] = "unscaled_targets"
    return result(NAME, PASS, largest, threshold, f"targets are within {largest:.3g} of unit scale", evidence=evidence)
