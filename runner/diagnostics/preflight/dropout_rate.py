"""preflight.dropout_rate: the largest dropout rate in the model."""

from __future__ import annotations

import keras

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import NOISE_LAYERS, all_layers
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = f"{STAGE}.dropout_rate"
# Above 0.5 most of a layer is switched off at every step (UMLAUT's static rule); at 0.8 or more training
# sees mostly noise.
DROPOUT_WARN, DROPOUT_FAIL = 0.5, 0.8
FIX = "Use a dropout rate of 0.5 or less (0.2-0.5 is usual)."


def dropout_rates(model: keras.Model) -> dict[str, float]:
    """The rate of every dropout (or noise) layer, nested ones included, by layer name."""
    return {
        layer.name: float(getattr(layer, "rate", 0.0))
        for layer in all_layers(model)
        if isinstance(layer, NOISE_LAYERS) and isinstance(getattr(layer, "rate", None), (int, float))
    }


@check(
    NAME,
    what="the largest dropout rate in the model",
    threshold=f"WARN > {DROPOUT_WARN:g}, FAIL >= {DROPOUT_FAIL:g}",
    fix=FIX,
    scope="model",
)
def check_dropout_rate(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """The largest dropout rate in the model: above 0.5 most of each layer is switched off at every step
    (UMLAUT's static rule); at 0.8 or more training sees mostly noise."""
    warn = options.threshold(NAME, DROPOUT_WARN)
    fail = options.threshold(f"{NAME}.fail", DROPOUT_FAIL)
    rates = dropout_rates(model)
    threshold = f"largest dropout rate <= {warn:g} (FAIL at {fail:g} or more)"
    if not rates:
        return result(NAME, PASS, 0.0, threshold, "the model has no dropout layers")
    layer, rate = max(rates.items(), key=lambda item: item[1])
    if rate > warn:
        return result(
            NAME,
            FAIL if rate >= fail else WARN,
            rate,
            threshold,
            f"dropout rate {rate:g} in layer {layer}: {rate:.0%} of its units are dropped at every training step",
            FIX,
            evidence={"rates": rates},
        )
    return result(NAME, PASS, rate, threshold, f"largest dropout rate {rate:g} ({layer})", evidence={"rates": rates})
