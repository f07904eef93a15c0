"""Multi-layer perceptrons: the book's wine, seizure and MNIST networks are configurations of this."""

import keras

from models.layers import dense_head, initializer


def build_mlp(
    input_shape,
    output_units: int,
    output_activation: str = "linear",
    hidden_units=(32,),
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    kernel_initializer_args: dict | None = None,
    bias_initializer: str = "zeros",
    bias_initializer_args: dict | None = None,
    dropout: float = 0.0,
    l2: float = 0.0,
    batch_norm: bool = False,
    name: str = "mlp",
) -> keras.Model:
    """Input -> [Flatten] -> Dense blocks -> output Dense.

    ``dropout`` and ``l2`` apply to every hidden layer (the book's MNIST variants); the output layer is
    never regularised.  Inputs with more than one axis (e.g. 28x28 images) are flattened first.
    """
    kernel_init = initializer(kernel_initializer, kernel_initializer_args)
    bias_init = initializer(bias_initializer, bias_initializer_args)
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
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
