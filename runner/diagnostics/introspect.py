"""What the checks need to know about any Keras model, in one place: built or not, its output shape, its
layers (nested models and wrappers included), their activations.

Sequential models that were never called have no ``outputs``; subclassed models never have them; so the
output shape is read from one forward pass, not from ``model.outputs``.
"""

from __future__ import annotations

import keras
import numpy as np

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
    """The name of a layer's activation ("linear" when it has none); wrappers report their inner layer's."""
    inner = getattr(layer, "forward_layer", None) or getattr(layer, "layer", None) or layer
    activation = getattr(inner, "activation", None)
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return name


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
