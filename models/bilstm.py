"""Recurrent classifier for sequences such as the 178-sample EEG segments."""

import keras

from models.layers import dense_head, initializer


def build_bilstm(
    input_shape,
    output_units: int,
    output_activation: str = "linear",
    lstm_units=(32,),
    bidirectional: bool = True,
    recurrent_dropout: float = 0.0,
    hidden_units=(16,),
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
    kernel_initializer_args: dict | None = None,
    bias_initializer: str = "zeros",
    bias_initializer_args: dict | None = None,
    dropout: float = 0.0,
    l2: float = 0.0,
    batch_norm: bool = False,
    name: str = "bilstm",
) -> keras.Model:
    """Input (steps,) or (steps, channels) -> stacked (Bi)LSTM -> Dense blocks -> output Dense.

    A 1-D input (one value per time step, as the EEG CSV stores it) gets a channel axis so the data
    layer can hand over the same arrays the MLP uses.
    """
    kernel_init = initializer(kernel_initializer, kernel_initializer_args)
    bias_init = initializer(bias_initializer, bias_initializer_args)
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = inputs
    if len(input_shape) == 1:
        x = keras.layers.Reshape((input_shape[0], 1), name="add_channel")(x)
    for index, units in enumerate(lstm_units, start=1):
        last = index == len(lstm_units)
        lstm = keras.layers.LSTM(
            units,
            return_sequences=not last,
            recurrent_dropout=recurrent_dropout,
            kernel_initializer=kernel_init,
            name=f"lstm_{index}",
        )
        x = keras.layers.Bidirectional(lstm, name=f"bilstm_{index}")(x) if bidirectional else lstm(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"lstm_dropout_{index}")(x)
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
