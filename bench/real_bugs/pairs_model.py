"""Pairs whose bug is in the model or its loss: output activation vs loss, hidden activations, initialisation,
capacity and regularisation.  Facts and links: SOURCES.md."""

from __future__ import annotations

import numpy as np

from bench.real_bugs import data as gen
from bench.real_bugs.registry import bug_pair


def keras_seeded(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return keras


@bug_pair(
    name="softmax_single_unit",
    title="softmax on a one-unit binary output",
    source="keras-team/keras#2134 (maintainer reply: 'You can't use softmax with only a single output unit'); "
    "dnouri/nolearn#178",
    url="https://github.com/keras-team/keras/issues/2134",
    bug_class="Humbatova: Model > Layers > Activation function > wrong type of activation",
    causes=("loss_output_mismatch",),
    style="Sequential MLP, Adam, binary_crossentropy",
    fix="sigmoid instead of softmax on the single output unit",
    facts="A softmax over one unit is exp(z)/exp(z) = 1 for every input: the model always says class 1 and "
    "no gradient reaches the weights.",
)
def softmax_single_unit(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("binary", *gen.tabular_binary(seed), seed)
    model = keras.Sequential(
        [
            keras.Input((data.x_train.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="softmax" if buggy else "sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="logits_without_from_logits",
    title="linear (logit) output trained with a probability loss",
    source="keras-team/keras-hub#1008 (maintainers add an error: a probability loss on logits 'will not "
    "converge!'); keras-team/keras#15271",
    url="https://github.com/keras-team/keras-hub/pull/1008",
    bug_class="Humbatova: Model > Loss function > wrong loss / missing softmax",
    causes=("loss_output_mismatch",),
    style="Functional MLP, Adam, sparse_categorical_crossentropy",
    fix="SparseCategoricalCrossentropy(from_logits=True) for the linear output",
    facts="The last Dense has no activation but the loss expects probabilities (from_logits=False): Keras "
    "renormalises and clips raw scores, so negative scores get no useful gradient and training stalls.",
)
def logits_without_from_logits(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("multiclass", *gen.tabular_multiclass(seed), seed)
    inputs = keras.Input((data.x_train.shape[1],))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    logits = keras.layers.Dense(4)(hidden)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not buggy), metrics=["accuracy"]
    )
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="zero_kernel_init",
    title="all-zero weight initialisation of a hidden layer stack",
    source="wagonhelm/NaNmnist#2 ('Highly improper way of weight initialization', CS231n's all-zero pitfall); "
    "Humbatova et al. ICSE 2020, 'wrong weight initialization'",
    url="https://github.com/wagonhelm/NaNmnist/issues/2",
    bug_class="Humbatova: Model > Model type & properties > wrong weight initialization",
    causes=("bad_init", "dead_relu"),
    style="Sequential MLP, SGD momentum, categorical_crossentropy (one-hot)",
    fix="default (Glorot uniform) kernel initialiser",
    facts="With every weight zero all hidden units compute the same value and receive the same gradient "
    "(with ReLU: none at all), so the network never breaks the symmetry and learns only the biases.",
)
def zero_kernel_init(seed, buggy):
    keras = keras_seeded(seed)
    x, labels = gen.tabular_multiclass(seed)
    data = gen.split("multiclass", x, np.eye(4, dtype="float32")[labels], seed)
    init = "zeros" if buggy else "glorot_uniform"
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(32, activation="relu", kernel_initializer=init),
            keras.layers.Dense(32, activation="relu", kernel_initializer=init),
            keras.layers.Dense(4, activation="softmax", kernel_initializer=init),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    return model, data, {"epochs": 12, "batch_size": 32}


@bug_pair(
    name="relu_final_regression_lstm",
    title="ReLU on the final regression layer of an LSTM",
    source="ProteomicsML/ProteomicsML#203 ('Do not use ReLU activation for the final regression layer': the "
    "LSTM returned 0 for every peptide); keras-team/keras#3687 ('Predictions are all zero')",
    url="https://github.com/ProteomicsML/ProteomicsML/pull/203",
    bug_class="Humbatova: Model > Layers > Activation function > wrong type of activation (output layer)",
    causes=("dead_relu", "loss_output_mismatch", "saturation"),
    style="Sequential LSTM, Adam, MSE",
    fix="linear output layer",
    facts="A ReLU output cannot produce the negative half of a standardised target, and once its input is "
    "negative for all rows it outputs 0 with zero gradient: predictions collapse to a constant.",
)
def relu_final_regression_lstm(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("regression", *gen.sequences(seed), seed)
    model = keras.Sequential(
        [
            keras.Input(data.x_train.shape[1:]),
            keras.layers.LSTM(16),
            keras.layers.Dense(1, activation="relu" if buggy else None),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model, data, {"epochs": 8, "batch_size": 32}


@bug_pair(
    name="deep_sigmoid_stack",
    title="deep stack of sigmoid layers stops learning",
    source="microsoft/CNTK#476 (a 7-hidden-layer sigmoid DNN 'stucked at the beginning', 6 layers trained)",
    url="https://github.com/microsoft/CNTK/issues/476",
    bug_class="Humbatova: Model > Layers > Activation function > wrong type of activation (vanishing gradient)",
    causes=("vanishing_gradient", "saturation"),
    style="Sequential 8x32 MLP, SGD, BCE",
    fix="ReLU hidden activations with He initialisation",
    facts="Each sigmoid multiplies the backpropagated gradient by at most 0.25: through 8 layers the first "
    "layers receive almost nothing and the loss stays at its initial value.",
)
def deep_sigmoid_stack(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("binary", *gen.tabular_binary(seed + 2), seed)
    layers = [keras.Input((data.x_train.shape[1],))]
    for _ in range(8):
        layers.append(
            keras.layers.Dense(32, activation="sigmoid")
            if buggy
            else keras.layers.Dense(32, activation="relu", kernel_initializer="he_normal")
        )
    model = keras.Sequential([*layers, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 12, "batch_size": 32}


@bug_pair(
    name="conv_without_activation",
    title="convolution and dense layers with no activation",
    source="keras-team/keras#1597 (comment: a CNN stuck until 'applying activation to my convolutional layer "
    "... I hadn't used any activation at first')",
    url="https://github.com/keras-team/keras/issues/1597",
    bug_class="Humbatova: Model > Layers > Activation function > missing activation",
    causes=("missing_nonlinearity", "underfitting_capacity"),
    style="Sequential Conv1D, Adam, BCE",
    fix="ReLU on the Conv1D and hidden Dense layers",
    facts="Without activations conv -> dense -> dense is one linear map; the classes differ only in signal "
    "amplitude, which no linear function of the samples can separate.",
)
def conv_without_activation(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("binary", *gen.amplitude_signals(seed), seed)
    activation = None if buggy else "relu"
    model = keras.Sequential(
        [
            keras.Input(data.x_train.shape[1:]),
            keras.layers.Conv1D(8, 3, activation=activation),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(16, activation=activation),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="negative_bias_dead_relu",
    title="ReLU units dead from the start (negative bias initialisation)",
    source="keras-team/keras#7057 (proposal to detect dead ReLUs: 'Some ReLU neurons never fire during "
    "entire training epoch due to their unlucky weights'); Lu et al. 2019 'Dying ReLU and "
    "Initialization' (arXiv:1903.06733)",
    url="https://github.com/keras-team/keras/issues/7057",
    bug_class="Humbatova: Model > Model type & properties > wrong weight initialization (dead ReLU)",
    causes=("dead_relu", "bad_init"),
    style="Functional MLP, RMSprop, sparse_categorical_crossentropy",
    fix="zero bias initialisation (the default)",
    facts="A ReLU whose pre-activation is negative for every row outputs 0 and gets zero gradient: it never "
    "recovers.  A strongly negative bias puts most units there from the first step.",
)
def negative_bias_dead_relu(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("multiclass", *gen.tabular_multiclass(seed + 3), seed)
    bias = keras.initializers.Constant(-4.0) if buggy else "zeros"
    inputs = keras.Input((data.x_train.shape[1],))
    hidden = keras.layers.Dense(32, activation="relu", bias_initializer=bias)(inputs)
    hidden = keras.layers.Dense(32, activation="relu", bias_initializer=bias)(hidden)
    outputs = keras.layers.Dense(4, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="one_unit_bottleneck",
    title="too small a network for a non-linear multiclass task",
    source="keras-team/keras#15727 ('Keras Accuracy stuck at 50-60%'; maintainer: 'your model is very simple, "
    "please ... add more layers'); Humbatova et al. 'wrong number of neurons in layer'",
    url="https://github.com/keras-team/keras/issues/15727",
    bug_class="Humbatova: Model > Layer properties > wrong number of neurons in layer",
    causes=("underfitting_capacity",),
    style="Sequential MLP, Adam, sparse_categorical_crossentropy",
    fix="two hidden layers of 64 units instead of one of 1 unit",
    facts="A single hidden unit squeezes every row to one number: six classes whose clusters are not on "
    "one line cannot all be told apart.",
)
def one_unit_bottleneck(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.tabular_multiclass(seed + 4, classes=6)
    data = gen.split("multiclass", x, y, seed)
    hidden = (
        [keras.layers.Dense(1, activation="relu")]
        if buggy
        else [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(64, activation="relu")]
    )
    model = keras.Sequential([keras.Input((x.shape[1],)), *hidden, keras.layers.Dense(6, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 15, "batch_size": 32}


@bug_pair(
    name="heavy_l2_and_dropout",
    title="L2(0.5) weight penalty and 70% dropout on every layer",
    source="keras-team/keras#2134 (model with W_regularizer=l2(0.5) and Dropout(0.7) on 800-unit layers); "
    "keras-team/keras#1013 (reply: 'the weight decay regularization parameter/s ... is/are too large')",
    url="https://github.com/keras-team/keras/issues/2134",
    bug_class="Humbatova: Training > Hyperparameters / regularisation (too strong)",
    causes=("regularization_too_strong", "underfitting_capacity"),
    style="Sequential MLP, Adam, sparse CE",
    fix="L2(1e-4) and Dropout(0.1)",
    facts="A penalty of 0.5 per squared weight outweighs the data loss: weights shrink towards zero, the "
    "model underfits the training set and predicts the majority class.",
)
def heavy_l2_and_dropout(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("multiclass", *gen.tabular_multiclass(seed + 5), seed)
    l2, rate = (0.5, 0.7) if buggy else (1e-4, 0.1)
    model = keras.Sequential(
        [
            keras.Input((data.x_train.shape[1],)),
            keras.layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.l2(l2)),
            keras.layers.Dropout(rate),
            keras.layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.l2(l2)),
            keras.layers.Dropout(rate),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 12, "batch_size": 32}
