"""Spec -> compiled Keras model, DiagnosticData and fit kwargs; and the test score of a trained model.

Keras is imported inside the functions so that a worker process can limit TensorFlow's threads before the
first import."""

from __future__ import annotations

import re

import numpy as np

from bench.healthy_corpus.data import prepare
from bench.healthy_corpus.spec import Spec

# Initialisers a mutation may ask for by name, beyond Keras' own ("glorot_uniform", "he_normal", ...).
SPECIAL_INITIALIZERS = {"constant": ("Constant", {"value": 0.5}), "huge": ("RandomNormal", {"stddev": 10.0})}


def materialise(spec: Spec, seed: int):
    """(compiled untrained keras model, DiagnosticData, fit_kwargs) for ``spec`` at ``seed``."""
    import keras

    from runner.diagnostics import DiagnosticData

    keras.utils.set_random_seed(seed)
    splits = prepare(spec, seed)
    model = build_model(spec, splits["train"][0].shape[1:])
    model.compile(optimizer=_optimizer(spec), loss=_loss(spec))
    data = DiagnosticData(spec.task, *splits["train"], *splits["val"], *splits["test"])
    return model, data, {"epochs": spec.epochs, "batch_size": spec.batch_size}


def build_model(spec: Spec, input_shape: tuple):
    import keras

    inputs = keras.Input(shape=input_shape)
    layers = _layers(spec, len(input_shape))
    if not spec.functional:
        return keras.Sequential([inputs, *layers], name=_model_name(spec))
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name=_model_name(spec))


def _model_name(spec: Spec) -> str:
    # Mutant names hold operator names such as "dropout_0.9": keep Keras names to word characters.
    return re.sub(r"\W", "_", spec.name)


def _layers(spec: Spec, input_rank: int) -> list:
    import keras
    from keras import layers

    regularizer = keras.regularizers.L2(spec.l2) if spec.l2 else None
    dense = {"kernel_initializer": _initializer(spec), "kernel_regularizer": regularizer}
    stack = []
    if spec.arch == "cnn":
        for filters in spec.conv:
            stack += [
                layers.Conv2D(filters, 3, padding="same", activation=spec.hidden_activation, **dense),
                layers.MaxPooling2D(2),
            ]
    if spec.arch in ("lstm", "gru"):
        recurrent = layers.LSTM if spec.arch == "lstm" else layers.GRU
        for index, units in enumerate(spec.hidden):
            last = index == len(spec.hidden) - 1
            stack.append(recurrent(units, activation=spec.hidden_activation, return_sequences=not last, **dense))
            if spec.dropout:
                stack.append(layers.Dropout(spec.dropout))
    else:
        if input_rank > 1:
            stack.append(layers.Flatten())
        for units in spec.hidden:
            stack.append(layers.Dense(units, activation=spec.hidden_activation, **dense))
            if spec.dropout:
                stack.append(layers.Dropout(spec.dropout))
    stack.append(layers.Dense(spec.units, activation=spec.output_activation, kernel_initializer=_initializer(spec)))
    return stack


def _initializer(spec: Spec):
    import keras

    if spec.initializer in SPECIAL_INITIALIZERS:
        name, arguments = SPECIAL_INITIALIZERS[spec.initializer]
        return getattr(keras.initializers, name)(**arguments)
    return keras.initializers.get(spec.initializer)


def _optimizer(spec: Spec):
    import keras

    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(spec.learning_rate, momentum=spec.momentum)
    names = {"adam": "Adam", "rmsprop": "RMSprop", "adamw": "AdamW", "nadam": "Nadam"}
    return getattr(keras.optimizers, names[spec.optimizer])(spec.learning_rate)


def _loss(spec: Spec):
    import keras

    if spec.loss in ("mse", "mae"):
        return keras.losses.get(spec.loss)
    if spec.loss == "huber":
        return keras.losses.Huber()
    classes = {
        "binary_crossentropy": keras.losses.BinaryCrossentropy,
        "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
        "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    }
    return classes[spec.loss](from_logits=spec.from_logits)


def score_model(model, data, spec: Spec) -> float:
    """Balanced accuracy (classification) or R^2 (regression) on the test split; NaN when predictions are
    not finite.  Works for mutated heads too (any number of output columns)."""
    predictions = np.asarray(model.predict(data.x_test, verbose=0, batch_size=1024), dtype="float64")
    if not np.all(np.isfinite(predictions)):
        return float("nan")
    predictions = predictions.reshape(len(predictions), -1)
    if spec.task == "regression":
        truth = np.asarray(data.y_test, dtype="float64").reshape(-1)
        residual = ((truth - predictions[:, 0]) ** 2).sum()
        return float(1.0 - residual / max(((truth - truth.mean()) ** 2).sum(), 1e-12))
    truth = data.labels("test")
    if predictions.shape[1] == 1:
        cut = 0.0 if spec.output_activation == "linear" else 0.5
        guessed = (predictions[:, 0] > cut).astype(int)
    else:
        guessed = predictions.argmax(axis=1)
    return balanced_accuracy(truth, guessed)


def balanced_accuracy(truth: np.ndarray, guessed: np.ndarray) -> float:
    """Mean recall over the classes present: 1/classes for a constant guess, whatever the imbalance."""
    recalls = [float(np.mean(guessed[truth == label] == label)) for label in np.unique(truth)]
    return float(np.mean(recalls))
