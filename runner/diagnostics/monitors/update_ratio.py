"""monitor.update_ratio: the size of one optimizer update relative to the weights, per layer (measured in
the first batch of every epoch)."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import (
    Observed,
    loss_fell,
    max_log10,
    median_log10,
    result,
)
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

CHECK = "monitor.update_ratio"
# Healthy log10(mean |delta w| / mean |w|) per update: the common rule of thumb is about 1e-3; a band of three
# decades around it leaves room for adaptive optimisers and small layers.
UPDATE_BAND = (-4.0, -1.0)
# Beyond these, updates are as large as the weights themselves (0) or a hundredth of the band's floor (-6).
UPDATE_EXTREME = (-6.0, 0.0)
EARLY_UPDATES = 3  # epochs whose first update judges "too large": a huge learning rate shows at once
LOSS_FELL = 0.5  # tiny updates are convergence, not a too-low learning rate, once the loss fell to half its start
FIX = "lower the learning rate (by 10x), or check for weights initialised at or near zero"
TOO_SMALL_FIX = "raise the learning rate (by 10x or more), or check that gradients reach these layers"


def update_ratio(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    """mean |delta w| / mean |w| over a layer's kernels."""
    delta = np.concatenate([np.abs(a - b).ravel() for a, b in zip(after, before)])
    size = np.concatenate([np.abs(b).ravel() for b in before])
    scale = float(size.mean())
    if scale == 0.0:
        return math.inf if delta.mean() > 0 else math.nan
    return float(delta.mean()) / scale


@check(
    CHECK,
    what="log10 of mean |delta w| / mean |w| for one update, per layer: the largest of the first "
    f"{EARLY_UPDATES} epochs and the median over training",
    threshold="WARN outside [-4, -1], FAIL below -6 or above 0",
    fix=FIX,
)
def check_update_ratio(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    """Size of one update relative to the weights, per layer.  Too large is judged on the first updates (a
    huge learning rate shows at once, and later epochs must not average it away); too small only while the
    loss has not fallen (tiny updates after convergence are what a converged model should make)."""
    records = observed.records
    low, high = UPDATE_BAND
    threshold = (
        f"per-layer log10(mean |dw| / mean |w|) per update: largest of the first {EARLY_UPDATES} <= "
        f"{high:g} (FAIL above {UPDATE_EXTREME[1]:g}); median >= {low:g} (FAIL below "
        f"{UPDATE_EXTREME[0]:g}) unless the loss fell by half"
    )
    if not records.update_ratio:
        return result(
            CHECK,
            SKIP,
            None,
            threshold,
            "no update was measured: Keras never called the batch hooks for the first batch",
        )
    early = {name: max_log10(ratios[:EARLY_UPDATES]) for name, ratios in records.update_ratio.items()}
    typical = {name: median_log10(ratios) for name, ratios in records.update_ratio.items()}
    evidence = {
        "update_epochs": records.update_epochs,
        "ratios": records.update_ratio,
        "early_max_log10": early,
        "median_log10": typical,
    }
    value = float(np.nanmax(list(early.values()))) if any(math.isfinite(v) for v in early.values()) else math.nan
    half = len(early) / 2
    learning = loss_fell(records, LOSS_FELL)
    huge = [n for n, v in early.items() if v > UPDATE_EXTREME[1]]
    big = [n for n, v in early.items() if v > high]
    tiny = [n for n, v in typical.items() if v < low]
    vanishing = [n for n, v in typical.items() if v < UPDATE_EXTREME[0]]
    if len(huge) > half:
        return result(
            CHECK,
            FAIL,
            value,
            threshold,
            f"updates larger than the weights from the first steps in "
            f"{len(huge)} of {len(early)} layers ({', '.join(huge)})",
            FIX,
            **evidence,
        )
    if len(big) > half:
        return result(
            CHECK,
            WARN,
            value,
            threshold,
            f"large updates in the first steps in {', '.join(big)} (log10 {', '.join(f'{early[n]:.1f}' for n in big)})",
            FIX,
            **evidence,
        )
    if len(tiny) > half and not learning:
        verdict = FAIL if len(vanishing) > half else WARN
        level = UPDATE_EXTREME[0] if verdict == FAIL else low
        return result(
            CHECK,
            verdict,
            float(np.nanmedian(list(typical.values()))),
            threshold,
            f"updates below 1e{level:g} of the weights in {', '.join(vanishing if verdict == FAIL else tiny)}"
            " while the loss has not fallen by half",
            TOO_SMALL_FIX,
            **evidence,
        )
    note = "; small later updates after the loss fell are convergence" if tiny and learning else ""
    return result(
        CHECK, PASS, value, threshold, f"first updates at most 10^{value:.1f} of the weights{note}", **evidence
    )
