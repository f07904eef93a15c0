"""preflight.initial_weights: each kernel's initial scale against the standard rules, and dead ReLU units."""

from __future__ import annotations

import math

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    LECUN_FAMILY,
    RELU_FAMILY,
    activation_name,
    fans,
    is_recurrent,
    leaf_layers,
    output_layer,
)
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SEVERITY, WARN, CheckResult

NAME = f"{STAGE}.initial_weights"
# Kernel std vs the nearest standard rule, either way: Keras's default glorot_uniform under a ReLU is already
# 0.2-0.7x He and trains fine, so only 4x off is worth a look and 10x off breaks training.
INIT_WARN_RATIO, INIT_FAIL_RATIO = 4.0, 10.0
CONSTANT_INIT_RATIO = 1e-3  # kernel std this far below the reference: the units start identical
INIT_MIN_VALUES = 16  # fewer weights than this give no reliable std
DEEP_STACK = 3  # layers with too-small weights before the signal is lost on the way through
DEAD_BIAS_Z = 2.0  # a ReLU unit whose bias is this many pre-activation stds below zero is dead at start
DEAD_UNIT_SHARE = 0.5
KERNELS = ("kernel", "recurrent_kernel", "depthwise_kernel")
FIX = (
    "Use the initializer that matches the activation (he_normal for ReLU, glorot_uniform for tanh/sigmoid/"
    "linear, lecun_normal for SELU)."
)
FIXES = {
    "constant": "Use a random initializer (glorot_uniform, he_normal): identical weights give identical "
    "units, so symmetry never breaks.",
    "scale": FIX,
    "dead": "Initialise ReLU biases at zero (or slightly positive) so units start active.",
}


def kernel_statistics(layer, weight, activation: str) -> tuple[np.ndarray, dict[str, float], dict]:
    """A kernel's values, the std each standard rule (He, LeCun, Glorot) gives it, and its row of evidence:
    std and mean, the rule its activation calls for and the ratio of its std to that rule's."""
    values = keras.ops.convert_to_numpy(weight).astype(np.float64)
    fan_in, fan_out = fans(values.shape)
    recurrent = weight.name == "recurrent_kernel" or is_recurrent(layer)
    references = {
        "He": math.sqrt(2.0 / fan_in),
        "LeCun": math.sqrt(1.0 / fan_in),
        "Glorot": math.sqrt(2.0 / (fan_in + fan_out)),
    }
    if activation in RELU_FAMILY and not recurrent:
        rule = "He"
    elif activation in LECUN_FAMILY and not recurrent:
        rule = "LeCun"
    else:
        rule = "Glorot"
    std = float(values.std())
    row = {
        "std": std,
        "mean": float(values.mean()),
        "reference": references[rule],
        "rule": rule,
        "ratio": std / references[rule],
        "activation": activation,
        "verdict": PASS,
        "message": "",
        "kind": "",
    }
    return values, references, row


def dead_unit_share(layer, kernels, activation: str) -> tuple[float, float, np.ndarray, object] | None:
    """Share of ReLU units whose bias sits far below the spread of their pre-activation (unit-RMS inputs),
    that spread, the biases and the bias variable; None for layers without ReLU units and a bias."""
    bias = next((w for w in layer.weights if w.name == "bias"), None)
    if activation not in RELU_FAMILY or bias is None or not kernels or is_recurrent(layer):
        return None
    kernel = keras.ops.convert_to_numpy(kernels[0]).astype(np.float64)
    fan_in, _ = fans(kernel.shape)
    spread = float(kernel.std()) * math.sqrt(fan_in)
    values = keras.ops.convert_to_numpy(bias).astype(np.float64)
    return float(np.mean(values < -DEAD_BIAS_Z * max(spread, 1e-12))), spread, values, bias


@check(
    NAME,
    what="each kernel's standard deviation relative to the nearest standard initialisation (He, Glorot, "
    "LeCun), and the share of ReLU units dead from the start",
    threshold=f"WARN beyond {INIT_WARN_RATIO:g}x either way, FAIL above {INIT_FAIL_RATIO:g}x (or below "
    f"1/{INIT_FAIL_RATIO:g} in {DEEP_STACK}+ layers)",
    fix=FIX,
    scope="model",
)
def check_initial_weights(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Each kernel's std vs the He / Glorot / LeCun std for its layer's activation; dead ReLU biases."""
    findings, layers, output = [], {}, output_layer(model)
    for layer in leaf_layers(model):
        activation = activation_name(layer)
        kernels = [w for w in layer.weights if w.name in KERNELS]
        for weight in kernels:
            values, references, row = kernel_statistics(layer, weight, activation)
            _judge_kernel(row, values, references, weight.path, is_output=layer is output)
            layers[weight.path] = {k: v for k, v in row.items() if k not in ("verdict", "message")}
            if row["verdict"] != PASS:
                findings.append(row)
        dead = _dead_bias_finding(layer, kernels, activation)
        if dead:
            findings.append(dead)
    ratios = [row["ratio"] for row in layers.values() if row["ratio"] is not None]
    worst = max(ratios, key=lambda r: abs(math.log(max(r, 1e-12))), default=1.0)
    threshold = (
        f"kernel std within [1/{INIT_WARN_RATIO:g}, {INIT_WARN_RATIO:g}]x the nearest standard rule "
        f"(FAIL above {INIT_FAIL_RATIO:g}x, or below 1/{INIT_FAIL_RATIO:g} in {DEEP_STACK}+ layers)"
    )
    evidence = {"layers": layers}
    if not findings:
        return result(
            NAME,
            PASS,
            worst,
            threshold,
            f"initial weight scales match their activations (worst ratio {worst:.2f})",
            evidence=evidence,
        )
    small = [row for row in findings if row.get("small")]
    if len(small) >= DEEP_STACK and all(row["ratio"] < 1.0 / INIT_FAIL_RATIO for row in small):
        # Weights too small in one or two layers slow training down; through a deep stack the signal vanishes.
        for row in small:
            row["verdict"] = FAIL
    findings.sort(key=lambda row: -SEVERITY[row["verdict"]])
    evidence["problems"] = [row["message"] for row in findings]
    fix = " ".join(dict.fromkeys(FIXES[row["kind"]] for row in findings))
    return result(
        NAME, findings[0]["verdict"], worst, threshold, "; ".join(evidence["problems"]), fix, evidence=evidence
    )


def _judge_kernel(row: dict, values: np.ndarray, references: dict[str, float], name: str, is_output: bool) -> None:
    """Mark ``row`` constant (symmetry never breaks) or off-scale against the nearest rule, in place."""
    std = row["std"]
    units = int(values.shape[-1]) if values.ndim else 1
    if values.size < 2 or units < 2:
        return  # one unit (or one weight) has no symmetry to break and too few values to judge a spread
    if row["ratio"] < CONSTANT_INIT_RATIO:
        # A constant output kernel is harmless (its units get different gradients from different targets).
        if not is_output:
            row.update(
                verdict=FAIL,
                kind="constant",
                message=f"{name}: every weight is about {values.mean():.3g} "
                "(constant init): the units of this layer stay identical, symmetry never breaks",
            )
        return
    if values.size < INIT_MIN_VALUES:
        return
    # Any standard rule is a sound start (Keras's default glorot_uniform under a ReLU is 0.2-0.7x He): judge
    # the distance to the nearest one.
    nearest = min(references, key=lambda r: abs(math.log(std / references[r])))
    ratio_nearest = std / references[nearest]
    too_big, too_small = ratio_nearest > INIT_WARN_RATIO, ratio_nearest < 1.0 / INIT_WARN_RATIO
    if too_big or (too_small and not is_output):  # a small output layer only starts less confident
        failing = ratio_nearest > INIT_FAIL_RATIO
        row.update(
            verdict=FAIL if failing else WARN,
            kind="scale",
            ratio=ratio_nearest,
            small=too_small,
            message=f"{name}: std {std:.3g} is {ratio_nearest:.2g}x the {nearest} std "
            f"{references[nearest]:.3g} (the nearest standard initialisation)",
        )


def _dead_bias_finding(layer, kernels, activation: str) -> dict | None:
    measured = dead_unit_share(layer, kernels, activation)
    if measured is None or measured[0] <= DEAD_UNIT_SHARE:
        return None
    dead_share, spread, values, bias = measured
    return {
        "verdict": FAIL,
        "kind": "dead",
        "ratio": None,
        "message": f"{bias.path}: {dead_share:.0%} of the {activation} units start dead (bias mean "
        f"{values.mean():.3g} vs pre-activation spread {spread:.3g})",
    }
