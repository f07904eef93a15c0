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
LINEAR_LAYERS = {"InputLayer", "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
                 "Conv2DTranspose", "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                 "SeparableConv2D", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout", "SpatialDropout1D",
                 "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                 "BatchNormalization", "Rescaling", "Normalization", "Embedding", "Add", "Subtract", "Average",
                 "Concatenate", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
                 "Cropping3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                 "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "Identity",
                 "TimeDistributed"}
LINEAR_ACTIVATIONS = {"linear", "None", "identity"}


def ensure_built(model: keras.Model, x: np.ndarray) -> None:
    """Build ``model`` by one inference call on a row of ``x`` if it has no weights yet (a Sequential model
    without an Input, a subclassed model); ``fit`` would do the same on its first batch."""
    if not model.built or not model.weights:
        model(np.asarray(x[:1]), training=False)


def output_shape(model: keras.Model, x: np.ndarray) -> tuple:
    """The output shape for one row of ``x`` (single-output models), from a forward pass."""
    outputs = model(np.asarray(x[:1]), training=False)
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
