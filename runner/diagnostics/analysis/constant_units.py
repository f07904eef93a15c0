"""analysis.constant_units: hidden units whose activation does not vary over held-out samples."""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import (
    STAGE,
    _evaluation_split,
    _probe_rows,
    _row_labels,
    _skip,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    as_list,
    has_graph,
    has_weight_penalty,
    is_recurrent,
    unit_layers,
)
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = "analysis.constant_units"
# A unit is constant when its std over probe samples (and time steps) is below this, the level at which
# diagnostics-reference.md calls a unit dead.
CONSTANT_STD = 1e-5
# A layer is flagged when more than half of its units are constant (the reference's dead-layer rule); FAIL
# when nearly all are: the layer passes on almost no information.
CONSTANT_WARN, CONSTANT_FAIL = 0.5, 0.9
FIX = (
    "dead or stuck units: use LeakyReLU/ELU, lower the learning rate, check bias initialisation and L2 "
    "strength, or use fewer units"
)
# Put before FIX when the layer has a weight penalty, the likelier cause then.
FIX_PENALTY = "lower the L2 factor; "


def layer_outputs(model, layers, x):
    """Activations of ``layers`` on ``x``; recurrent layers always as (samples, time steps, units)."""
    tensors = [layer.input if is_recurrent(layer) else layer.output for layer in layers]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    values = keras.Model(inputs, tensors)(x, training=False)
    values = [keras.ops.convert_to_numpy(v) for v in as_list(values)]
    return [_sequence_outputs(layer, value) if is_recurrent(layer) else value for layer, value in zip(layers, values)]


def _sequence_outputs(layer, inputs):
    """A recurrent layer's output at every time step: the layer itself when it returns sequences, else a
    twin built from its config with return_sequences=True and the same weights."""
    config = layer.get_config()
    inner = [config["layer"]["config"]] if "layer" in config else [config]
    if config.get("backward_layer"):
        inner.append(config["backward_layer"]["config"])
    if all(part.get("return_sequences") for part in inner):
        return keras.ops.convert_to_numpy(layer(inputs, training=False))
    for part in inner:
        part["return_sequences"] = True
    twin = type(layer).from_config(config)
    twin(inputs[:1])
    twin.set_weights(layer.get_weights())
    return keras.ops.convert_to_numpy(twin(inputs, training=False))


def constant_share(values) -> float:
    """Share of the units (last axis) whose std over every other axis is below CONSTANT_STD."""
    flat = values.reshape(-1, values.shape[-1])
    return float(np.mean(flat.std(axis=0) < CONSTANT_STD))


@check(
    NAME,
    threshold=f"WARN > {CONSTANT_WARN:g}, FAIL >= {CONSTANT_FAIL:g}",
    fix=FIX,
    what=f"the largest share of a hidden layer's units whose activation is constant (std < {CONSTANT_STD:g}) "
    "over held-out probe samples (and time steps or image positions)",
)
def constant_units(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Share of each hidden layer's units whose activation does not vary over probe samples (dense), over
    samples and time steps (recurrent) or over samples and positions (Conv2D channels); heat maps of units x
    samples and units x time steps."""
    if not has_graph(model):
        return _skip(
            NAME,
            "the model is subclassed: its hidden layers' outputs are not reachable without "
            "its call() (use a Functional or Sequential model for this check)",
        )
    layers = unit_layers(model)
    if not layers:
        return _skip(NAME, "the model has no hidden Dense, Conv2D, Activation or recurrent layer")
    split, x, _ = _evaluation_split(data)
    rows = _probe_rows(data, split, options)
    activations = layer_outputs(model, layers, x[rows])
    labels = _row_labels(data, split)[rows]
    shares, ranks, drawn = {}, {}, []
    for layer, values in zip(layers, activations):
        shares[layer.name] = constant_share(values)
        ranks[layer.name] = values.ndim
        drawn += plots.activation_heatmap(options, layer.name, values, labels, type(layer).__name__ == "Bidirectional")
    worst = max(shares, key=shares.get)
    warn_at = options.threshold(NAME, CONSTANT_WARN)
    verdict = FAIL if shares[worst] >= CONSTANT_FAIL else WARN if shares[worst] > warn_at else PASS
    message = f"{shares[worst]:.0%} of the units of layer '{worst}' are constant over {len(rows)} {split} samples" + (
        {3: " and all time steps", 4: " and all image positions"}.get(ranks[worst], "")
    )
    fix = "" if verdict == PASS else FIX
    regularized = has_weight_penalty(next(layer for layer in layers if layer.name == worst))
    if verdict == FAIL and regularized:
        # A weight penalty switches whole units off on purpose (the book's mnist_l2: 94% of a layer), so the
        # loud verdict belongs to monitor.regularization; here it is a consequence, not a second bug.
        verdict = WARN
        message += "; the layer has a weight penalty, which can shrink units to zero (see monitor.regularization)"
        fix = FIX_PENALTY + fix
    return CheckResult(
        NAME,
        verdict,
        shares[worst],
        warn_at,
        message,
        fix,
        STAGE,
        {"constant_share": shares, "constant_std": CONSTANT_STD, "split": split},
        drawn,
    )
