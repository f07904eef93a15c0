"""preflight.nonlinearity: a non-linearity between stacked weighted layers."""

from __future__ import annotations

import keras

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    is_nonlinear,
    leaf_layers,
    output_layer,
    weighted,
)
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, WARN, CheckResult

NAME = f"{STAGE}.nonlinearity"
# One non-linear hidden layer is enough to make a stack of weighted layers more than one linear map.
MIN_NONLINEAR = 1
FIX = "Give the hidden layers a non-linear activation (relu, or gelu/tanh)."


def nonlinear_hidden_layers(model: keras.Model) -> tuple[list[str], list]:
    """The names of the hidden layers that can bend their input, and the layers with a weight matrix."""
    layers = leaf_layers(model)
    output = output_layer(model)
    hidden = [layer for layer in layers if layer is not output]
    return [layer.name for layer in hidden if is_nonlinear(layer)], [layer for layer in layers if weighted(layer)]


@check(
    NAME,
    what="the hidden layers with a non-linear activation in a stack of two or more weighted layers",
    threshold=MIN_NONLINEAR,
    fix=FIX,
    scope="model",
)
def check_nonlinearity(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """A stack of weighted layers with no non-linearity between them is one linear map however deep it is:
    the extra layers add parameters but no capacity."""
    bending, weighted_layers = nonlinear_hidden_layers(model)
    evidence = {"weighted_layers": len(weighted_layers), "nonlinear_layers": bending[:20]}
    threshold = "a non-linearity between stacked weighted layers"
    if len(weighted_layers) < 2:
        return result(
            NAME,
            PASS,
            len(bending),
            threshold,
            "a single weighted layer: a linear (or generalised linear) model by design",
            evidence=evidence,
        )
    if len(bending) >= MIN_NONLINEAR:
        return result(
            NAME,
            PASS,
            len(bending),
            threshold,
            f"{len(bending)} non-linear hidden layer(s), e.g. {bending[0]}",
            evidence=evidence,
        )
    return result(
        NAME,
        WARN,
        0,
        threshold,
        f"{len(weighted_layers)} weighted layers with no non-linearity between them: the network is "
        "a single linear map",
        FIX,
        evidence=evidence,
    )
