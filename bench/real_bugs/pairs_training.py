"""Pairs whose bug is in how the model is trained: learning rate, epochs, gradient clipping, over-training.
Facts and links: SOURCES.md."""

from __future__ import annotations

import numpy as np

from bench.real_bugs import data as gen
from bench.real_bugs.pairs_model import keras_seeded
from bench.real_bugs.registry import bug_pair


@bug_pair(
    name="sgd_lr_too_low",
    title="learning rate too small: the loss does not move",
    source="keras-team/keras#2711 ('Loss not changing when training'; comment: 'for me it is just the "
    "learning_rate is too small. Try with a bigger learning_rate')",
    url="https://github.com/keras-team/keras/issues/2711",
    bug_class="Humbatova: Training > Hyperparameters > suboptimal learning rate",
    causes=("lr_too_low", "too_few_epochs"),
    style="Sequential MLP, SGD, BCE",
    fix="SGD learning rate 0.05 instead of 1e-5",
    facts="With lr=1e-5 each step changes the weights by a millionth of the gradient: after the whole "
    "training the model is still at its initialisation and the loss flat.",
)
def sgd_lr_too_low(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("binary", *gen.tabular_binary(seed + 10), seed)
    model = keras.Sequential(
        [
            keras.Input((data.x_train.shape[1],)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e-5 if buggy else 0.05), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="adam_lr_too_high",
    title="Adam with learning rate 1.0: accuracy stuck at 0.5, constant loss",
    source="keras-team/keras#13006 ('training and validation accuracy always converges to 0.5', constant "
    "loss 7.97); keras-team/keras#2711 (comment: 'Lower the learning rate (0.1 converges too fast ...)')",
    url="https://github.com/keras-team/keras/issues/13006",
    bug_class="Humbatova: Training > Hyperparameters > suboptimal learning rate",
    causes=("lr_too_high", "dead_relu", "exploding_gradient"),
    style="Functional MLP, Adam, BCE",
    fix="Adam learning rate 1e-3 (the default)",
    facts="Steps of size 1.0 throw the ReLU layers out of their active range within a few batches; the "
    "network then outputs one constant and the loss stops changing.",
)
def adam_lr_too_high(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("binary", *gen.tabular_binary(seed + 11), seed)
    inputs = keras.Input((data.x_train.shape[1],))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(
        optimizer=keras.optimizers.Adam(1.0 if buggy else 1e-3), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="linear_regression_sgd_nan",
    title="one-neuron linear regression on raw x in 0..200 goes to NaN",
    source="keras-team/keras#3040 ('Simple Linear Regression Nan's after a few iterations', x = 0..199, "
    "y = 2x, SGD; the author: 'realized my learning rate was too high')",
    url="https://github.com/keras-team/keras/issues/3040",
    bug_class="Humbatova: Training > Hyperparameters > suboptimal learning rate",
    causes=("lr_too_high", "unscaled_inputs", "exploding_gradient", "unscaled_targets"),
    style="Sequential Dense(1), SGD, MSE",
    fix="standardise x and y, SGD learning rate 0.01",
    facts="With x up to 200 the MSE gradient is of order x^2 = 4e4 times the error: any step size that is "
    "not tiny overshoots, the weight oscillates with growing amplitude and becomes NaN.",
)
def linear_regression_sgd_nan(seed, buggy):
    keras = keras_seeded(seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 200, (800, 1)).astype("float32")
    y = (2 * x[:, 0] + rng.normal(0, 5, 800)).astype("float32")
    data = gen.split("regression", x, y, seed)
    if not buggy:
        data.x_train, data.x_val, data.x_test = gen.standardise(data.x_train, data.x_val, data.x_test)
        data.y_train, data.y_val, data.y_test = gen.standardise(data.y_train, data.y_val, data.y_test)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3 if buggy else 1e-2), loss="mse")
    return model, data, {"epochs": 5, "batch_size": 8}


@bug_pair(
    name="rnn_without_clipnorm",
    title="recurrent net without gradient clipping: loss becomes NaN",
    source="keras-team/keras#5127 ('why do the loss equal nan when i don't use clipnorm?': clipnorm fixes "
    "it; reply: 'the gradient gets really really large')",
    url="https://github.com/keras-team/keras/issues/5127",
    bug_class="Humbatova: Training > Optimiser / missing gradient clipping (exploding gradient)",
    causes=("exploding_gradient", "lr_too_high"),
    style="Sequential SimpleRNN(relu), SGD momentum, MSE",
    fix="clipnorm=1.0 on the optimiser",
    facts="Backpropagation through 40 steps of a ReLU recurrence multiplies the gradient by the recurrent "
    "matrix 40 times: occasional huge gradients throw the weights to Inf/NaN unless they are clipped.",
)
def rnn_without_clipnorm(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.sequences(seed, steps=40)
    data = gen.split("regression", x, y, seed)
    clip = {} if buggy else {"clipnorm": 1.0}
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.SimpleRNN(32, activation="relu", recurrent_initializer=keras.initializers.Orthogonal(1.3)),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9, **clip), loss="mse")
    return model, data, {"epochs": 6, "batch_size": 16}


@bug_pair(
    name="cnn_too_few_epochs",
    title="CNN trained for one epoch only",
    source="udacity/sdc-issue-reports#441 ('The solution code ... does not pass the test. You need more than 3 "
    "epochs'); udacity/sdc-issue-reports#343 ('2 epochs' should be '20 epochs')",
    url="https://github.com/udacity/sdc-issue-reports/issues/441",
    bug_class="Humbatova: Training > Hyperparameters > suboptimal number of epochs",
    causes=("too_few_epochs",),
    style="Sequential Conv2D, SGD, sparse_categorical_crossentropy",
    fix="20 epochs instead of 1",
    facts="One pass of plain SGD over a few hundred images is far from convergence: the loss is still "
    "falling steeply when training stops.",
)
def cnn_too_few_epochs(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.quadrant_images(seed)
    data = gen.split("multiclass", x / 255.0, y, seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 1 if buggy else 20, "batch_size": 32}


@bug_pair(
    name="overfit_small_data",
    title="large MLP trained long on a small data set, no regularisation",
    source="keras-team/keras#1971 ('Accuracy decreases as epoch increases', acc 1.0 and falling val_acc; "
    "reply: 'you are overfitting ... add regularizers and/or dropout'); keras-team/keras#3894",
    url="https://github.com/keras-team/keras/issues/1971",
    bug_class="Humbatova: Training > Regularisation > missing regularisation",
    causes=("overfitting",),
    style="Sequential 2x256 MLP, Adam, BCE",
    fix="dropout 0.5 and L2(1e-3) on both layers, 15 epochs instead of 40",
    facts="With 240 training rows and 40 mostly irrelevant features a 2x256 network memorises the training "
    "set (accuracy 1.0) while validation loss rises.",
)
def overfit_small_data(seed, buggy):
    keras = keras_seeded(seed)
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=400, n_features=40, n_informative=5, n_redundant=0, flip_y=0.15, random_state=seed + 12
    )
    data = gen.split("binary", x.astype("float32"), y.astype("float32"), seed)
    l2 = None if buggy else keras.regularizers.l2(1e-3)
    hidden = [
        keras.layers.Dense(256, activation="relu", kernel_regularizer=l2),
        keras.layers.Dropout(0.0 if buggy else 0.5),
        keras.layers.Dense(256, activation="relu", kernel_regularizer=l2),
        keras.layers.Dropout(0.0 if buggy else 0.5),
    ]
    model = keras.Sequential([keras.Input((40,)), *hidden, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 40 if buggy else 15, "batch_size": 16}
