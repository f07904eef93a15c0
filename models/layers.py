"""Small helpers shared by the builders: initialisers, regularisers and the hidden-layer block."""

import keras


def initializer(name: str, args: dict | None = None):
    """A Keras initializer from its name ("he_normal", "constant", ...) and optional arguments."""
    if not args:
        return keras.initializers.get(name)
    return keras.initializers.get({"class_name": name, "config": dict(args)})


def l2_regularizer(factor: float):
    return keras.regularizers.L2(factor) if factor > 0 else None


def dense_block(
    x,
    units: int,
    index: int,
    *,
    activation: str,
    kernel_initializer,
    bias_initializer,
    l2: float,
    dropout: float,
    batch_norm: bool,
):
    """Dense -> [BatchNorm] -> activation -> [Dropout], with stable layer names for diagnostics."""
    x = keras.layers.Dense(
        units,
        kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer,
        kernel_regularizer=l2_regularizer(l2),
        # Batch norm's shift makes the dense bias redundant.
        use_bias=not batch_norm,
        activation=None if batch_norm else activation,
        name=f"dense_{index}",
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"batch_norm_{index}")(x)
        x = keras.layers.Activation(activation, name=f"activation_{index}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"dropout_{index}")(x)
    return x


def output_layer(x, units: int, activation: str, kernel_initializer, bias_initializer):
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer,
        name="output",
    )(x)


def dense_head(
    x, hidden_units, output_units: int, output_activation: str, *, kernel_initializer, bias_initializer, **block
):
    """The dense layers every builder ends with, then the unregularised output layer; ``block`` holds
    ``dense_block``'s activation, l2, dropout and batch_norm settings."""
    for index, units in enumerate(hidden_units, start=1):
        x = dense_block(
            x, units, index, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer, **block
        )
    return output_layer(x, output_units, output_activation, kernel_initializer, bias_initializer)
