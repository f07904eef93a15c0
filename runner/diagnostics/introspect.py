"""What the checks need to know about any Keras model, in one place: built or not, its output shape, its
layers (nested models and wrappers included), their activations.

Sequential models that were never called have no ``outputs``; subclassed models never have them; so the
output shape is read from one forward pass, not from ``model.outputs``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

# Activations by what they do to the initialisation (He for the ReLU family, LeCun for SELU) and to the
# activations the monitors watch (units that can die; units that saturate).
RELU_FAMILY = {"relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "swish", "softplus", "mish"}
LECUN_FAMILY = {"selu"}
RELU_LAYERS = {"ReLU", "LeakyReLU", "ELU", "PReLU"}  # activation layers of the ReLU family
SQUASHING = {"sigmoid", "hard_sigmoid", "tanh", "hard_tanh"}
RECURRENT = {"LSTM", "GRU", "SimpleRNN"}

# Layers that compute an affine map of their input (or pass it through): a stack made only of these, with
# linear activations, is one linear model however deep it is.
LINEAR_LAYERS = set(
    "InputLayer Dense EinsumDense Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose Conv3DTranspose "
    "DepthwiseConv1D DepthwiseConv2D SeparableConv1D SeparableConv2D Flatten Reshape Permute "
    "RepeatVector Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianDropout "
    "GaussianNoise AlphaDropout BatchNormalization Rescaling Normalization Embedding Add Subtract "
    "Average Concatenate ZeroPadding1D ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D "
    "AveragePooling1D AveragePooling2D AveragePooling3D GlobalAveragePooling1D GlobalAveragePooling2D "
    "GlobalAveragePooling3D Identity TimeDistributed".split()
)
LINEAR_ACTIVATIONS = {"linear", "None", "identity"}


def ensure_built(model: keras.Model, x: np.ndarray) -> None:
    """Build ``model`` by one inference call on a row of ``x`` if it has no weights yet (a Sequential model
    without an Input, a subclassed model); ``fit`` would do the same on its first batch."""
    if not model.built or not model.weights:
        model(np.asarray(x[:1]), training=False)


def output_shape(model: keras.Model, x: np.ndarray) -> tuple:
    """The output shape for one row of ``x`` (single-output models), traced symbolically; by a forward pass
    where that cannot be done.  On JAX the forward pass compiles each op on its own: 0.5 s for the seizure MLP,
    against under 1 ms for the symbolic trace."""
    row = np.asarray(x[:1])
    try:
        outputs = model.compute_output_spec(keras.KerasTensor(row.shape, dtype=str(row.dtype)))
    except Exception:  # noqa: BLE001 - the forward pass below raises the error that matters, if there is one
        outputs = model(row, training=False)
    if isinstance(outputs, (list, tuple, dict)):
        raise TypeError("the diagnostics support single-output models; this one returns several outputs")
    return tuple(int(d) if d is not None else 1 for d in outputs.shape)


def output_units(model: keras.Model, x: np.ndarray) -> int:
    shape = output_shape(model, x)
    return int(shape[-1]) if len(shape) > 1 else 1


@dataclass
class LossInfo:
    """The compiled loss as the checks need it: a callable, its canonical name and its options."""

    fn: Callable
    name: str
    from_logits: bool
    reduction: str | None


def compiled_loss(model: keras.Model) -> LossInfo:
    """The compiled loss as a callable returning per-row losses, its canonical name and options."""
    loss = getattr(model, "loss", None)
    if loss is None:
        raise ValueError("the model is not compiled with a loss; compile it before the diagnostics")
    if isinstance(loss, (list, tuple, dict)):
        raise TypeError("the diagnostics support single-output models with one loss")
    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    if isinstance(fn, keras.losses.Loss):
        config = fn.get_config()
        name = snake_case(type(fn).__name__)
        if name == "loss_function_wrapper":
            name = getattr(getattr(fn, "fn", None), "__name__", config.get("name", name))
        return LossInfo(fn, name, bool(config.get("from_logits", False)), config.get("reduction"))
    return LossInfo(rank_aligned(fn), getattr(fn, "__name__", "custom"), False, None)


def rank_aligned(fn: Callable) -> Callable:
    """A bare loss function with (n,) targets for an (n, 1) output, as fit and Keras's Loss wrappers allow."""

    def loss(y_true, y_pred):
        y_true = keras.ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
            y_true = keras.ops.expand_dims(y_true, -1)
        return fn(y_true, y_pred)

    return loss


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def leaf_layers(model) -> list:
    """Layers in order, with nested models expanded and wrappers (Bidirectional, TimeDistributed) kept."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            found.extend(leaf_layers(layer))
        else:
            found.append(layer)
    return found


def activation_name(layer) -> str:
    """The snake_case name of a layer's activation ("linear" when it has none); wrappers (Bidirectional,
    TimeDistributed) report their inner layer's."""
    inner = getattr(layer, "forward_layer", None) or getattr(layer, "layer", None) or layer
    activation = getattr(inner, "activation", None)
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return snake_case(name) if name[0].isupper() else name


def output_layer(model):
    """The last layer that has an activation (None when none has)."""
    return next((layer for layer in reversed(leaf_layers(model)) if hasattr(layer, "activation")), None)


def output_activation(model) -> str:
    layer = output_layer(model)
    return activation_name(layer) if layer is not None else "linear"


def all_layers(model) -> list:
    """Every layer, also those nested in sub-models and wrappers (Bidirectional, TimeDistributed)."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(all_layers(layer))
        for attribute in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attribute, None)
            if isinstance(inner, keras.layers.Layer):
                found.append(inner)
    return found


def is_recurrent(layer) -> bool:
    inner = getattr(layer, "forward_layer", None) or layer
    return isinstance(inner, keras.layers.RNN) or type(inner).__name__ in RECURRENT


def is_nonlinear(layer) -> bool:
    """Whether a layer can bend its input: any activation but the identity, or any layer not known to be
    affine (recurrent cells, max pooling, attention, custom layers: given the benefit of the doubt)."""
    kind = type(layer).__name__
    if kind == "Activation":
        return activation_name(layer) not in LINEAR_ACTIVATIONS
    if kind not in LINEAR_LAYERS:
        return True
    if kind == "TimeDistributed":
        return is_nonlinear(layer.layer)
    return activation_name(layer) not in LINEAR_ACTIVATIONS


def weighted(layer) -> bool:
    return any(len(w.shape) >= 2 for w in getattr(layer, "trainable_weights", []))


# ------------------------------------------------------------------ layer questions of the analysis checks

# Layers that read a sequence step by step or through a window, so an input's time axis means something.
SEQUENCE_LAYERS = RECURRENT | {"Bidirectional", "Conv1D", "ConvLSTM1D"}
# Layers that behave differently in training and inference mode.
STOCHASTIC = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "BatchNormalization",
}


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def has_graph(model) -> bool:
    """Whether the model has symbolic inputs and outputs (Functional, or Sequential once built); a
    subclassed model has neither, so its layers' outputs cannot be tapped."""
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def unit_layers(model) -> list:
    """Hidden layers whose outputs are units: Dense or Conv2D (a unit per channel) with a non-linear
    activation, Activation, recurrent."""
    outputs = {id(tensor) for tensor in model.outputs}
    found = []
    for layer in model.layers:
        if any(id(tensor) in outputs for tensor in as_list(layer.output)):
            continue
        kind = type(layer).__name__
        dense_with_activation = kind in ("Dense", "Conv2D") and activation_name(layer) != "linear"
        if dense_with_activation or kind == "Activation" or kind in RECURRENT or kind == "Bidirectional":
            found.append(layer)
    return found


def has_layers(model, kinds) -> bool:
    """Whether any layer (nested ones included) is of one of the class names in ``kinds``."""
    return any(type(layer).__name__ in kinds for layer in all_layers(model))


def stochastic_layers(model) -> list[str]:
    """The sorted class names of the model's layers that act differently in training mode (STOCHASTIC)."""
    return sorted({type(layer).__name__ for layer in all_layers(model)} & STOCHASTIC)


def has_weight_penalty(layer) -> bool:
    inner = getattr(layer, "forward_layer", layer)  # a Bidirectional wrapper's penalties sit on its layers
    return any(
        getattr(inner, name, None) is not None
        for name in ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer")
    )


# ------------------------------------------------------------ losses, noise and weights of the preflight checks

# The loss families (which loss suits which task and output) are models/losses.py's.
# Layers with a dropout ``rate``: they switch units off (or scale them by noise) in training mode only.
NOISE_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


def fans(shape: tuple) -> tuple[int, int]:
    """Fans as Keras's initializers compute them (kernels: [receptive field...] x in x out)."""
    if len(shape) < 2:
        size = int(shape[0]) if shape else 1
        return size, size
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return int(shape[-2]) * receptive, int(shape[-1]) * receptive


# ------------------------------------------------------------------- layers the training monitors watch


def weighted_layers(model) -> dict[str, keras.layers.Layer]:
    """Layers with a trainable matrix (kernel), in graph order: the ones whose gradients are compared."""
    return {layer.name: layer for layer in model.layers if weighted(layer)}


def activation_kind(layer) -> str | None:
    """'relu' (ReLU family), 'sigmoid' or 'tanh' for a layer whose output is an activation, else None."""
    class_name = type(layer).__name__
    if class_name == "Bidirectional":
        return activation_kind(layer.forward_layer)
    if class_name in RECURRENT:
        return "tanh"  # h = o * tanh(c) for an LSTM: bounded by the tanh's asymptotes
    if class_name in RELU_LAYERS:
        return "relu"
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    if name in RELU_FAMILY or name in LECUN_FAMILY:
        return "relu"
    if name in SQUASHING:
        return "sigmoid" if "sigmoid" in name else "tanh"
    return None


def watched_layers(model) -> dict[str, str]:
    """Hidden layers whose activations are checked, with their kind.  Output layers are left out: a
    confident sigmoid or softmax output is saturated by design."""
    layers = list(getattr(model, "layers", []))
    if not layers:
        return {}
    try:
        outputs = {id(t) for t in model.outputs}

        def is_output(layer):
            return _single_output_id(layer) in outputs
    except (AttributeError, ValueError):
        # A Sequential model that was never called symbolically: its last layer is the output.

        def is_output(layer):
            return layer is layers[-1]

    return {
        layer.name: kind for layer in layers if (kind := activation_kind(layer)) is not None and not is_output(layer)
    }


def feature_extractor(model, names: list[str], x: np.ndarray):
    """One Keras model over the watched layers' outputs, built once; (extractor, None) or (None, reason).

    A Functional model is read through its graph; a Sequential one (called or not, with an Input or not) is
    re-traced through its own layers from a fresh Input shaped like ``x``; a subclassed model has no graph."""
    if not names:
        return None, None
    try:
        if isinstance(model, keras.Sequential):
            inputs = keras.Input(shape=tuple(np.asarray(x).shape[1:]), dtype=str(np.asarray(x).dtype))
            tensor, found = inputs, {}
            for layer in model.layers:
                tensor = layer(tensor)
                found[layer.name] = tensor
            return keras.Model(inputs, [found[name] for name in names]), None
        return keras.Model(model.input, [model.get_layer(name).output for name in names]), None
    except (AttributeError, ValueError, TypeError) as error:
        kind = (
            "a subclassed model has no layer graph"
            if not isinstance(model, keras.Model) or type(model).__name__ not in ("Functional", "Sequential")
            else f"{type(error).__name__}: {error}"
        )
        return None, f"hidden activations cannot be read: {kind}"


def _single_output_id(layer):
    try:
        return id(layer.output)
    except (AttributeError, ValueError):
        return None


# ------------------------------------------------------------ convolutional layers of the image analyses

SQUASHING_OUTPUTS = {"softmax", "sigmoid"}


def conv2d_layers(model) -> list:
    """The model's own channels-last Conv2D layers in graph order; those inside a nested model cannot be
    tapped through ``feature_extractor``, so they are not listed."""
    return [
        layer
        for layer in getattr(model, "layers", [])
        if type(layer).__name__ == "Conv2D" and getattr(layer, "data_format", "channels_last") == "channels_last"
    ]


def logits_tap(model, layer_name: str, x: np.ndarray):
    """(tap, to_logits) or (None, reason).  ``tap`` maps the inputs to [the layer's output, the input of the
    model's last layer], and ``to_logits`` turns the latter into the model's output before a final softmax or
    sigmoid.  Class scores are read as logits because a probability's gradient vanishes once the prediction
    is confident (float32 rounds p to 1).  Without a squashing last layer ``tap`` ends at the output itself."""
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    if not layers:
        return None, "the model has no layers"
    last = layers[-1]
    feeding = _feeding_layer(model, layers, last) if activation_name(last) in SQUASHING_OUTPUTS else None
    tap, reason = feature_extractor(model, [layer_name, (feeding or last).name], x)
    if tap is None or feeding is None or type(last).__name__ == "Activation":
        return (tap, _identity) if tap is not None else (None, reason)
    try:
        twin = type(last).from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
        twin(tap(np.asarray(x[:1]), training=False)[1])  # builds its weights, then takes the trained ones
        twin.set_weights(last.get_weights())
    except (TypeError, ValueError):
        # A custom output layer that cannot be rebuilt without its activation: read the probabilities.
        tap, reason = feature_extractor(model, [layer_name, last.name], x)
        return (tap, _identity) if tap is not None else (None, reason)
    return tap, lambda tensor: twin(tensor, training=False)


def _feeding_layer(model, layers, last):
    """The layer whose output alone feeds ``last`` (None when there is none, e.g. several inputs)."""
    if isinstance(model, keras.Sequential):
        return layers[-2] if len(layers) > 1 else None
    source = id(getattr(last, "input", None))
    return next((layer for layer in layers[:-1] if _single_output_id(layer) == source), None)


def _identity(tensor):
    return tensor
