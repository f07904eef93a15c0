"""preflight.input_scale: are the inputs on a unit scale?

Unscaled features (raw prices, pixel values 0-255) make the first layer's pre-activations huge and the
loss surface badly conditioned; inputs scaled twice (pixels / 255 / 255) carry almost no signal."""

from __future__ import annotations

import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = f"{STAGE}.input_scale"
# Largest per-feature RMS: about 1 for standardised features, <= 1 for pixels / 255.  Above 10 a feature
# dominates the first layer (WARN), above 100 it swamps the others (FAIL); below 0.01 the inputs look scaled
# twice (WARN), below half that (MNIST pixels / 255 twice: 0.0027) too small to learn from (FAIL).
# options.thresholds overrides them as "preflight.input_scale", ".fail" and ".tiny".
SCALE_TINY, SCALE_WARN, SCALE_FAIL = 1e-2, 10.0, 100.0
SAMPLE_ROWS = 10_000  # rows the RMS is measured on: plenty for a mean, cheap on wide inputs
FIX = "Standardise the inputs (fit mean and std on the training split) or divide by the known range, e.g. pixels / 255."
FIX_TINY = "Check that the inputs are scaled once (e.g. not / 255 after standardising)."


def feature_rms(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The root mean square of every flattened feature over (a sample of) the rows, with non-finite values
    counted as 0; also the sampled rows themselves."""
    rows = _as_rows(_sample_rows(np.asarray(x), SAMPLE_ROWS, seed))
    finite = np.where(np.isfinite(rows), rows, 0.0)
    return np.sqrt(np.mean(np.square(finite, dtype=np.float64), axis=0)), finite


def _sample_rows(x: np.ndarray, rows: int, seed: int) -> np.ndarray:
    if len(x) <= rows:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=rows, replace=False))]


def _as_rows(x) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float64, copy=False)


@check(
    NAME,
    what="the largest per-feature root mean square of the training inputs",
    threshold=f"WARN > {SCALE_WARN:g}, FAIL > {SCALE_FAIL:g}; WARN < {SCALE_TINY:g}, FAIL < {SCALE_TINY / 2:g}",
    fix=FIX,
    scope="data",
)
def check_input_scale(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """The largest per-feature root mean square: about 1 for standardised features, <= 1 for pixels / 255."""
    rms, finite = feature_rms(data.x_train, options.seed)
    largest = float(rms.max()) if rms.size else 0.0
    tiny = options.threshold(f"{NAME}.tiny", SCALE_TINY)
    warn = options.threshold(NAME, SCALE_WARN)
    fail = options.threshold(f"{NAME}.fail", SCALE_FAIL)
    evidence = {
        "largest_feature": int(rms.argmax()) if rms.size else None,
        "features_rms_above_warn": int(np.sum(rms > warn)),
        "median_feature_rms": float(np.median(rms)),
        "max_abs": float(np.max(np.abs(finite))) if finite.size else 0.0,
    }
    if data.feature_names and rms.size == len(data.feature_names):
        evidence["largest_feature"] = data.feature_names[int(rms.argmax())]
    threshold = f"{tiny} <= max feature RMS <= {warn} (FAIL above {fail} or below {tiny / 2:g})"
    if largest > warn:
        verdict = FAIL if largest > fail else WARN
        return result(
            NAME,
            verdict,
            largest,
            threshold,
            f"unscaled inputs: feature {evidence['largest_feature']} has RMS {largest:.3g} "
            f"({evidence['features_rms_above_warn']} features above {warn:g})",
            FIX,
            evidence=evidence,
        )
    if largest < tiny:
        return result(
            NAME,
            FAIL if largest < tiny / 2 else WARN,
            largest,
            threshold,
            f"inputs are nearly zero (largest feature RMS {largest:.3g}): scaled twice?",
            FIX_TINY,
            evidence=evidence,
        )
    return result(
        NAME, PASS, largest, threshold, f"inputs are on a unit scale (max RMS {largest:.3g})", evidence=evidence
    )
