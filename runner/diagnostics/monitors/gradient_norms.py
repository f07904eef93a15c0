"""monitor.gradient_norms: per-layer gradient norms of the data loss on the probe batch, before training and
after every epoch; vanishing (the first layer starved while the loss is still high) or exploding."""

from __future__ import annotations

import math

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

CHECK = "monitor.gradient_norms"
# Vanishing: the first layer gets a thousandth of the last layer's gradient and almost none in absolute terms
# (both, so that a large last-layer gradient alone does not trigger it), or every weight gets next to nothing.
VANISHING_RATIO, VANISHING_FIRST_NORM, VANISHING_MEAN_ABS = 1e-3, 1e-4, 1e-7
# Tiny gradients are what a well-fitted network has: vanishing only counts while the loss is still this share
# of its start or more.
STILL_HIGH = 0.1
# Exploding: a first layer that gets 70x the last layer's gradient (and more than at the start), or a norm
# far beyond anything a scaled input and a sane learning rate produce.
EXPLODING_RATIO, EXPLODING_NORM = 70.0, 1e6
FIX = (
    "use ReLU-family activations with He initialisation in deep stacks, scale the inputs, add batch "
    "normalisation, or make the network shallower"
)
EXPLODING_FIX = "lower the learning rate, clip gradients (optimizer.clipnorm=1.0) and check the input scaling"
GROWING_FIX = "lower the learning rate or clip gradients (optimizer.clipnorm=1.0)"
THRESHOLD = (
    "vanishing: first/last layer norm ratio < 1e-3 with first-layer norm < 1e-4, or mean |grad| "
    "< 1e-7, while the loss is still >= 10% of its start; exploding: ratio > 70 and growing, "
    "a norm > 1e6, or NaN/Inf"
)


def first_last_ratios(grad_norms: dict[str, list[float]]) -> list[float]:
    """Per epoch, the first weighted layer's gradient norm over the last one's (NaN where the last is 0)."""
    layers = list(grad_norms)
    first, last = grad_norms[layers[0]], grad_norms[layers[-1]]
    return [f / l if l > 0 else math.nan for f, l in zip(first, last)]


def vanishing_epochs(records, ratios: list[float], ratio_limit: float) -> list[int]:
    # A well-fitted network legitimately has tiny gradients: only flag while the loss is still high.
    start = records.data_loss[0]
    first = records.grad_norms[next(iter(records.grad_norms))]
    epochs = []
    for i, epoch in enumerate(records.epochs):
        still_high = math.isfinite(start) and records.data_loss[i] >= STILL_HIGH * start
        tiny = (ratios[i] < ratio_limit and first[i] < VANISHING_FIRST_NORM) or records.grad_mean_abs[
            i
        ] < VANISHING_MEAN_ABS
        if still_high and tiny:
            epochs.append(epoch)
    return epochs


def exploding_epochs(records) -> list[int]:
    """Epochs whose gradient norm was NaN/Inf or where a layer's norm exceeded EXPLODING_NORM."""
    return [
        e
        for i, e in enumerate(records.epochs)
        if not math.isfinite(records.data_grad_norm[i])
        or any(norms[i] > EXPLODING_NORM for norms in records.grad_norms.values())
    ]


@check(
    CHECK,
    what="the ratio of the first to the last weighted layer's gradient norm on the probe batch, "
    "per epoch, with the norms themselves",
    threshold="vanishing ratio < 1e-3, exploding ratio > 70 or norm > 1e6",
    fix=FIX,
)
def check_gradient_norms(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records = observed.records
    layers = list(records.grad_norms)
    if not layers:
        return result(CHECK, SKIP, None, THRESHOLD, "no layer with a trainable kernel to measure")
    ratios = first_last_ratios(records.grad_norms)
    evidence = {
        "epochs": records.epochs,
        "layer_norms": records.grad_norms,
        "first_last_ratio": ratios,
        "mean_abs_grad": records.grad_mean_abs,
        "first_layer": layers[0],
        "last_layer": layers[-1],
    }
    end_ratio = ratios[-1]
    bad = exploding_epochs(records)
    if bad:
        return result(
            CHECK,
            FAIL,
            end_ratio,
            THRESHOLD,
            f"exploding gradients: a gradient norm was NaN/Inf or above {EXPLODING_NORM:g} (epochs {bad})",
            EXPLODING_FIX,
            **evidence,
        )
    vanishing = vanishing_epochs(records, ratios, options.threshold(CHECK, VANISHING_RATIO))
    if vanishing and vanishing[-1] == records.epochs[-1]:
        return result(
            CHECK,
            FAIL,
            end_ratio,
            THRESHOLD,
            f"vanishing gradients: the first layer ({layers[0]}) gets almost no gradient while the loss "
            f"is still high (epochs {vanishing})",
            FIX,
            **evidence,
        )
    if vanishing:
        return result(
            CHECK,
            WARN,
            end_ratio,
            THRESHOLD,
            f"gradients vanished in epochs {vanishing} (0 = before training) and recovered later",
            FIX,
            **evidence,
        )
    finite = [r for r in ratios if math.isfinite(r)]
    if finite and finite[-1] > EXPLODING_RATIO and finite[-1] > finite[0]:
        return result(
            CHECK,
            WARN,
            end_ratio,
            THRESHOLD,
            f"the first layer's gradient norm grew to {finite[-1]:.3g}x the last layer's",
            GROWING_FIX,
            **evidence,
        )
    return result(
        CHECK,
        PASS,
        end_ratio,
        THRESHOLD,
        f"gradient norms healthy; first/last layer ratio {end_ratio:.3g} at the end",
        **evidence,
    )
