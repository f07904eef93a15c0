"""preflight.loss_output_pairing: the loss, the output activation, the output units and the targets taken
together.  Each pairing below trains without an error and still cannot learn the task (or learns it badly)."""

from __future__ import annotations

import math

import keras
import numpy as np

from models.losses import BINARY_CE, CATEGORICAL_CE, CROSS_ENTROPY, REGRESSION_LOSSES, SPARSE_CE
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    LossInfo,
    compiled_loss,
    output_activation,
    output_units,
)
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, CheckResult

NAME = f"{STAGE}.loss_output_pairing"
# Ranges each output activation can produce; a target outside them can never be fitted.
OUTPUT_RANGES = {
    "sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, math.inf),
    "softplus": (0.0, math.inf),
    "exponential": (0.0, math.inf),
    "elu": (-1.0, math.inf),
}
# The commonest mismatch: a cross-entropy on a linear output (or probabilities fed to from_logits=True).
FIX = "Use a sigmoid/softmax output, or keep the linear output and set from_logits=True."
FIX_ONE_UNIT_PER_CLASS = "Give the output layer one unit per class."


@check(
    NAME,
    what="the number of mismatches between the loss, the output activation, the output units and the targets",
    threshold=0,
    fix=FIX,
    scope="model",
)
def check_loss_output_pairing(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    loss = compiled_loss(model)
    activation, units = output_activation(model), output_units(model, data.x_train)
    problems = pairing_problems(loss, activation, units, data)
    evidence = {
        "loss": loss.name,
        "from_logits": loss.from_logits,
        "activation": activation,
        "units": units,
        "task": data.task,
    }
    threshold = "0 problems"
    if not problems:
        return result(
            NAME,
            PASS,
            0,
            threshold,
            f"{activation} output with {units} unit(s) suits {loss.name} on a {data.task} task",
            evidence=evidence,
        )
    evidence["problems"] = [message for message, _ in problems]
    return result(
        NAME,
        FAIL,
        len(problems),
        threshold,
        "; ".join(evidence["problems"]),
        " ".join(dict.fromkeys(fix for _, fix in problems)),
        evidence=evidence,
    )


def pairing_problems(loss: LossInfo, activation: str, units: int, data: DiagnosticData) -> list[tuple]:
    """(message, fix) for every mismatch found."""
    return (
        _head_problems(loss, activation, units, data)
        + _unit_problems(loss, activation, units, data)
        + _target_range_problems(loss, activation, units, data)
    )


def _head_problems(loss: LossInfo, activation: str, units: int, data: DiagnosticData) -> list[tuple]:
    """The loss against the task and the output activation."""
    problems = []
    task, name = data.task, loss.name
    probabilities = activation in ("sigmoid", "softmax")
    if activation == "softmax" and units == 1:
        problems.append(
            (
                "softmax over a single unit always outputs 1.0",
                "Use sigmoid for one output unit, or softmax over one unit per class.",
            )
        )
    if task == "regression" and name in CROSS_ENTROPY:
        problems.append(
            (f"{name} on a regression task", "Use a regression loss (mean_absolute_error, mean_squared_error, huber).")
        )
    if task != "regression" and name in REGRESSION_LOSSES:
        problems.append(
            (
                f"regression loss {name} on a {task} classification task",
                "Use binary_crossentropy (sigmoid) or sparse_categorical_crossentropy (softmax).",
            )
        )
    if name in CATEGORICAL_CE | SPARSE_CE and activation == "sigmoid":
        problems.append(
            (
                f"sigmoid output with {name}: the outputs do not form a distribution over classes",
                "Use softmax with categorical cross-entropy (or sigmoid with binary_crossentropy).",
            )
        )
    if name in CROSS_ENTROPY and not loss.from_logits and not probabilities:
        problems.append((f"{activation} output with {name}: the loss expects probabilities", FIX))
    if name in CROSS_ENTROPY and loss.from_logits and probabilities:
        problems.append(
            (
                f"{activation} output with {name}(from_logits=True): probabilities squashed twice",
                "Remove the output activation or set from_logits=False.",
            )
        )
    return problems


def _unit_problems(loss: LossInfo, activation: str, units: int, data: DiagnosticData) -> list[tuple]:
    """The output units against the classes or labels."""
    problems = []
    name = loss.name
    if name in SPARSE_CE | CATEGORICAL_CE and units > 1 and data.single_label and units < data.n_classes:
        # More units than classes only wastes a few weights (and the labels may just miss a class); fewer
        # leaves classes that can never be predicted.
        problems.append((f"{units} output units for {data.n_classes} classes", FIX_ONE_UNIT_PER_CLASS))
    label_columns = int(np.asarray(data.y_train).reshape(len(data.y_train), -1).shape[1])
    if name in BINARY_CE and data.single_label and units > 1 and label_columns == 1:
        problems.append(
            (
                (
                    f"{units} output units under binary cross-entropy for one 0/1 label per row: each "
                    "unit is compared with the same label"
                ),
                (
                    f"Use one sigmoid unit with binary_crossentropy, or {units} softmax units with "
                    "sparse_categorical_crossentropy."
                ),
            )
        )
    if data.task == "multilabel":
        if activation == "softmax" or name in SPARSE_CE | CATEGORICAL_CE:
            problems.append(
                (
                    (
                        f"{activation} output with {name} on a multi-label task: the labels compete "
                        "for one unit of probability"
                    ),
                    "Use one sigmoid unit per label with binary_crossentropy.",
                )
            )
        if units != data.n_classes:
            problems.append(
                (
                    f"{units} output units for {data.n_classes} labels",
                    "Give the output layer one sigmoid unit per label.",
                )
            )
    return problems


def _target_range_problems(loss: LossInfo, activation: str, units: int, data: DiagnosticData) -> list[tuple]:
    """The targets' values against what the output and the loss accept."""
    y = np.asarray(data.y_train)
    if not np.issubdtype(y.dtype, np.number) or y.size == 0:
        return []
    low, high = float(np.nanmin(y)), float(np.nanmax(y))
    if data.task == "regression" and not loss.from_logits and activation in OUTPUT_RANGES:
        reach = OUTPUT_RANGES[activation]
        if low < reach[0] or high > reach[1]:
            span = f"[{reach[0]:g}, {reach[1]:g}]"
            return [
                (
                    f"targets span [{low:.3g}, {high:.3g}] but a {activation} output only reaches {span}",
                    "Use a linear output for regression (or rescale the targets into the output's range).",
                )
            ]
    if loss.name in BINARY_CE and (low < 0 or high > 1):
        return [
            (
                f"binary cross-entropy with labels in [{low:g}, {high:g}] (must be 0/1)",
                "Encode the two classes as 0 and 1.",
            )
        ]
    if loss.name in SPARSE_CE and units > 1 and high >= units:
        return [(f"sparse labels up to {high:g} but only {units} output units", FIX_ONE_UNIT_PER_CLASS)]
    if loss.name in CATEGORICAL_CE and (y.ndim < 2 or y.shape[-1] != units):
        return [
            (
                f"categorical cross-entropy needs one-hot targets of width {units}, got shape {y.shape}",
                "One-hot encode the labels, or use sparse_categorical_crossentropy with integer labels.",
            )
        ]
    return []
