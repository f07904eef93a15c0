"""monitor.saturation: the share of sigmoid/tanh activations of each hidden layer that sit near an asymptote,
where their gradient is almost zero."""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, activation_check
from runner.diagnostics.registry import check
from runner.diagnostics.result import CheckResult

CHECK = "monitor.saturation"
# Saturated: as close to an asymptote as sigmoid(z) is at |z| = 5 (tanh(z) = 2 sigmoid(2z) - 1: |z| = 2.5).
SATURATION_EDGE = 1.0 / (1.0 + math.exp(5.0))
SHARE_LIMIT = 0.5  # more than half of a layer's activations in the flat tails: most of its gradient is gone
WHAT = "saturated activations (|z| > 5 for sigmoid, > 2.5 for tanh)"
FIX = (
    "use Glorot initialisation (smaller weights), scale the inputs, add batch normalisation, or switch hidden "
    "layers to ReLU"
)


def saturated_share(values: np.ndarray, kind: str) -> float:
    """Share of activations near an asymptote, measured in sigmoid units so that tanh compares alike."""
    values = values.ravel()
    distance = np.minimum(values, 1.0 - values) if kind == "sigmoid" else (1.0 - np.abs(values)) / 2.0
    return float(np.mean(distance < SATURATION_EDGE))


@check(
    CHECK,
    what="the share of each sigmoid/tanh hidden layer's activations on the probe batch as close to an "
    "asymptote as sigmoid(z) at |z| = 5, at the end of training",
    threshold=SHARE_LIMIT,
    fix=FIX,
)
def check_saturation(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    return activation_check(
        CHECK, observed.records.saturated, options.threshold(CHECK, SHARE_LIMIT), observed, "squashing", WHAT, FIX
    )
