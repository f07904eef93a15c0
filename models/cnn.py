"""Convolutional classifier for images such as MNIST digits or a folder of photos."""

import keras

from models.layers import dense_head, initializer, l2_regularizer


def build_cnn(
    input_shape,
    output_units: int,
    output_activation: str = "linear",
    conv_filters=(32, 64),
    kernel_size: int = 3,
    pool_size: int = 2,
    global_pooling: bool = False,
    hidden_units=(128,),
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    kernel_initializer_args: dict | None = None,
    bias_initializer: str = "zeros",
    bias_initializer_args: dict | None = None,
    dropout: float = 0.0,
    l2: float = 0.0,
    batch_norm: bool = False,
    name: str = "cnn",
) -> keras.Model:
    """Input (height, width) or (height, width, channels) -> conv blocks -> Flatten or global average
    pooling -> [Dropout] -> Dense blocks -> output Dense.

    One conv block per ``conv_filters`` entry: Conv2D (same padding) -> [BatchNorm] -> activation -> MaxPool.
    A 2-D input (MNIST as the loader gives it with flatten=false) gets a channel axis. ``dropout`` applies to
    the pooled features and after every dense hidden layer; ``l2`` to every conv and dense kernel, never the
    output layer.
    """
    shape = tuple(int(size) for size in input_shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"build_cnn needs image inputs of shape (height, width) or (height, width, channels), not {shape}; "
            "for MNIST set dataset.flatten=false"
        )
    kernel_init = initializer(kernel_initializer, kernel_initializer_args)
    bias_init = initializer(bias_initializer, bias_initializer_args)
    inputs = keras.Input(shape=shape, name="inputs")
    x = keras.layers.Reshape((*shape, 1), name="add_channel")(inputs) if len(shape) == 2 else inputs
    for index, filters in enumerate(conv_filters, start=1):
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            kernel_regularizer=l2_regularizer(l2),
            use_bias=not batch_norm,  # batch norm's shift makes the bias redundant
            activation=None if batch_norm else activation,
            name=f"conv_{index}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"conv_batch_norm_{index}")(x)
            x = keras.layers.Activation(activation, name=f"conv_activation_{index}")(x)
        # Same padding keeps a 1-pixel map at 1 pixel, so more blocks than the image has halvings still build.
        x = keras.layers.MaxPooling2D(pool_size, padding="same", name=f"pool_{index}")(x)
    if global_pooling:
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="features_dropout")(x)
    outputs = dense_head(
        x,
        hidden_units,
        output_units,
        output_activation,
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
        activation=activation,
        l2=l2,
        dropout=dropout,
        batch_norm=batch_norm,
    )
    return keras.Model(inputs, outputs, name=name)
