"""A zoo of Keras models and data the diagnostics did not see when they were written: every one must run
through ``diagnose(suite="full")`` without raising and without a check that crashed (a SKIP whose evidence
holds "error" is a bug in the check, not a verdict on the model).

Data are tiny and generated; models have a few units and train for 2 epochs, so the whole zoo stays small.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from runner.diagnostics import DiagnosticData, DiagnosticOptions, diagnose
from runner.diagnostics.diagnosis import CAUSES

ROWS = 120
FEATURES = 6
SEQ_STEPS, SEQ_CHANNELS = 12, 2
TOKENS, VOCABULARY = 10, 20
IMAGE_SIDE = 16

# ---------------------------------------------------------------------------------------------- inputs


def make_inputs(kind: str, rows: int, rng) -> np.ndarray:
    if kind == "flat":
        return rng.standard_normal((rows, FEATURES)).astype("float32")
    if kind == "float64":
        return rng.standard_normal((rows, FEATURES))  # float64 on purpose
    if kind == "tokens":
        return rng.integers(0, VOCABULARY, (rows, TOKENS)).astype("int32")
    if kind == "sequence":
        return rng.standard_normal((rows, SEQ_STEPS, SEQ_CHANNELS)).astype("float32")
    if kind == "image":
        return rng.random((rows, IMAGE_SIDE, IMAGE_SIDE, 1)).astype("float32")
    if kind == "rgb":
        return rng.random((rows, 8, 8, 3)).astype("float32")
    if kind == "raw":  # unscaled pixel-like values for the Rescaling / Normalization layers
        return rng.integers(0, 256, (rows, FEATURES)).astype("float32")
    raise ValueError(kind)


def input_shape(kind: str) -> tuple:
    return {
        "flat": (FEATURES,),
        "float64": (FEATURES,),
        "raw": (FEATURES,),
        "tokens": (TOKENS,),
        "sequence": (SEQ_STEPS, SEQ_CHANNELS),
        "image": (IMAGE_SIDE, IMAGE_SIDE, 1),
        "rgb": (8, 8, 3),
    }[kind]


def signal(x: np.ndarray) -> np.ndarray:
    """A learnable score per row, centred so classes come out roughly balanced."""
    flat = np.asarray(x, dtype="float64").reshape(len(x), -1)
    score = flat[:, : max(1, flat.shape[1] // 2)].mean(axis=1) - flat[:, flat.shape[1] // 2 :].mean(axis=1)
    return score - np.median(score)


def make_targets(target: str, x: np.ndarray, rng) -> np.ndarray:
    """``target``: binary | sparse<k> | onehot<k> | multilabel<k> | regression<c> | constant | single."""
    score = signal(x)
    if target == "binary":
        return (score > 0).astype("int64")
    if target == "single":  # every row in one class
        return np.zeros(len(x), dtype="int64")
    if target.startswith(("sparse", "onehot")):
        k = int(target.removeprefix("sparse").removeprefix("onehot"))
        edges = np.quantile(score, np.linspace(0, 1, k + 1)[1:-1])
        labels = np.digitize(score, edges).astype("int64")
        return labels if target.startswith("sparse") else np.eye(k, dtype="float32")[labels]
    if target.startswith("multilabel"):
        k = int(target[len("multilabel") :])
        thresholds = np.linspace(-0.3, 0.3, k)
        return (score[:, None] + 0.3 * rng.standard_normal((len(x), k)) > thresholds).astype("float32")
    if target == "constant":
        return np.full(len(x), 3.0, dtype="float32")
    if target.startswith("regression"):
        columns = int(target[len("regression") :])
        y = np.stack([score * (c + 1) + 0.1 * rng.standard_normal(len(x)) for c in range(columns)], axis=1)
        return (y[:, 0] if columns == 1 else y).astype("float32")
    raise ValueError(target)


def make_data(
    task: str, inputs: str, target: str, splits: str = "all", rows: int = ROWS, seed: int = 0
) -> DiagnosticData:
    """``splits``: all (train/val/test), val (no test), test (no val), train (train only)."""
    rng = np.random.default_rng(seed)
    x = make_inputs(inputs, rows, rng)
    y = make_targets(target, x, rng)
    if splits == "train":
        return DiagnosticData(task, x, y)
    cut = [int(rows * 0.6), int(rows * 0.8)]
    (x_tr, x_va, x_te), (y_tr, y_va, y_te) = np.split(x, cut), np.split(y, cut)
    if splits == "val":
        return DiagnosticData(task, x_tr, y_tr, x_va, y_va)
    if splits == "test":
        return DiagnosticData(task, x_tr, y_tr, x_test=x_te, y_test=y_te)
    return DiagnosticData(task, x_tr, y_tr, x_va, y_va, x_te, y_te)


# ---------------------------------------------------------------------------------------------- models


def body(inputs: str) -> list:
    """Hidden layers that suit the input kind (no Input layer)."""
    if inputs == "tokens":
        return [
            keras.layers.Embedding(VOCABULARY, 4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(8, activation="relu"),
        ]
    if inputs == "sequence":
        return [keras.layers.Conv1D(4, 3, activation="relu"), keras.layers.GlobalMaxPooling1D()]
    if inputs in ("image", "rgb"):
        return [keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten()]
    return [keras.layers.Dense(8, activation="relu")]


def sequential(inputs: str, head: list, with_input: bool = True, hidden: list | None = None) -> keras.Model:
    layers = (hidden if hidden is not None else body(inputs)) + head
    return keras.Sequential(([keras.Input(shape=input_shape(inputs))] if with_input else []) + layers)


def functional(inputs: str, head: list, hidden: list | None = None) -> keras.Model:
    tensor = first = keras.Input(shape=input_shape(inputs))
    for layer in (hidden if hidden is not None else body(inputs)) + head:
        tensor = layer(tensor)
    return keras.Model(first, tensor)


class Stack(keras.Model):
    """A subclassed model: layers held as attributes, no config, never built until called."""

    def __init__(self, hidden: list, head: list, **kwargs):
        super().__init__(**kwargs)
        self.hidden_layers = hidden
        self.head_layers = head

    def call(self, x, training=False):
        for layer in self.hidden_layers + self.head_layers:
            x = layer(x, training=training)
        return x


def subclassed(inputs: str, head: list, hidden: list | None = None) -> keras.Model:
    return Stack(hidden if hidden is not None else body(inputs), head)


def dense(units: int, activation: str | None = None) -> list:
    return [keras.layers.Dense(units, activation=activation)]


def recurrent(kind: str) -> list:
    cell = {
        "lstm": lambda: keras.layers.LSTM(4),
        "gru": lambda: keras.layers.GRU(4),
        "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(3)),
        "bigru_seq": lambda: keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)),
    }[kind]()
    return [cell] + ([keras.layers.GlobalAveragePooling1D()] if kind.endswith("_seq") else [])


def normalization(x: np.ndarray) -> list:
    layer = keras.layers.Normalization()
    layer.adapt(x)
    return [layer, keras.layers.Dense(8, activation="relu")]


# ------------------------------------------------------------------------------------------------ cases

BCE, SCCE, CCE, MSE = "binary_crossentropy", "sparse_categorical_crossentropy", "categorical_crossentropy", "mse"


# The slowest entries (recurrent layers trace slowly) and near-duplicates: the other 50 keep every kind of
# model, layer, label encoding and split in the default run; these run with `pytest -m extended`.
SLOW = {
    "multi-bilstm",
    "regression-lstm",
    "multi-gru-noinput",
    "binary-batchnorm",
    "multi-conv2d",
    "binary-noinput-lossobj",
    "binary-logits1-noinput",
    "binary-single-class-softmax2",
    "multi-onehot-subclassed",
}


def case(name, task, inputs, target, build, loss, metrics=None, splits="all", rows=ROWS):
    """One zoo entry: ``build(data)`` returns an uncompiled model; compiled here with ``loss``/``metrics``."""
    marks = [pytest.mark.extended] if name in SLOW else []
    return pytest.param(task, inputs, target, build, loss, metrics, splits, rows, id=name, marks=marks)


def plain(head, style="sequential"):
    builders = {
        "sequential": lambda inputs, h: sequential(inputs, h),
        "noinput": lambda inputs, h: sequential(inputs, h, with_input=False),
        "functional": functional,
        "subclassed": subclassed,
    }
    return lambda data, inputs: builders[style](inputs, head())


def with_hidden(hidden, head, style="sequential"):
    """A model with custom hidden layers (``hidden(data)`` builds them, e.g. an adapted Normalization)."""

    def build(data, inputs):
        layers = hidden(data)
        if style == "functional":
            return functional(inputs, head(), layers)
        if style == "subclassed":
            return subclassed(inputs, head(), layers)
        return sequential(inputs, head(), with_input=style != "noinput", hidden=layers)

    return build


def sigmoid1():
    return dense(1, "sigmoid")


def softmax(k):
    return lambda: dense(k, "softmax")


def linear(k):
    return lambda: dense(k)


def dropout_body(data):
    return [keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.3)]


def batchnorm_body(data):
    return [keras.layers.Dense(8), keras.layers.BatchNormalization(), keras.layers.Activation("relu")]


def recurrent_body(kind):
    return lambda data: recurrent(kind)


def embedding_gru_body(data):
    return [keras.layers.Embedding(VOCABULARY, 4), keras.layers.GRU(4)]


CASES = [
    # binary: one sigmoid unit, every way of building a model
    case("binary-seq-input", "binary", "flat", "binary", plain(sigmoid1), BCE, ["accuracy"]),
    case("binary-seq-noinput", "binary", "flat", "binary", plain(sigmoid1, "noinput"), BCE),
    case(
        "binary-functional-lossobj",
        "binary",
        "flat",
        "binary",
        plain(sigmoid1, "functional"),
        lambda: keras.losses.BinaryCrossentropy(),
        lambda: ["accuracy", keras.metrics.AUC()],
    ),
    case("binary-subclassed", "binary", "flat", "binary", plain(sigmoid1, "subclassed"), BCE),
    case(
        "binary-noinput-lossobj",
        "binary",
        "flat",
        "binary",
        plain(sigmoid1, "noinput"),
        lambda: keras.losses.BinaryCrossentropy(),
        ["accuracy"],
    ),
    # binary: two softmax units, sparse and one-hot labels
    case("binary-softmax2-sparse", "binary", "flat", "binary", plain(softmax(2)), SCCE, ["accuracy"]),
    case("binary-softmax2-onehot", "binary", "flat", "onehot2", plain(softmax(2), "functional"), CCE),
    case("binary-softmax2-subclassed", "binary", "flat", "binary", plain(softmax(2), "subclassed"), SCCE),
    # binary: logits
    case(
        "binary-logits1",
        "binary",
        "flat",
        "binary",
        plain(linear(1)),
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    ),
    case(
        "binary-logits2-sparse",
        "binary",
        "flat",
        "binary",
        plain(linear(2), "functional"),
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ["accuracy"],
    ),
    case(
        "binary-logits1-noinput",
        "binary",
        "flat",
        "binary",
        plain(linear(1), "noinput"),
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    ),
    # binary: odd data
    case("binary-single-class", "binary", "flat", "single", plain(sigmoid1), BCE),
    case("binary-single-class-softmax2", "binary", "flat", "single", plain(softmax(2)), SCCE),
    case("binary-float64", "binary", "float64", "binary", plain(sigmoid1), BCE, ["accuracy"]),
    case("binary-tiny-train-only", "binary", "flat", "binary", plain(sigmoid1), BCE, splits="train", rows=24),
    case("binary-val-only", "binary", "flat", "binary", plain(sigmoid1, "functional"), BCE, splits="val"),
    case("binary-test-only", "binary", "flat", "binary", plain(sigmoid1), BCE, splits="test"),
    # binary: layers
    case("binary-dropout", "binary", "flat", "binary", with_hidden(dropout_body, sigmoid1), BCE),
    case("binary-batchnorm", "binary", "flat", "binary", with_hidden(batchnorm_body, sigmoid1, "functional"), BCE),
    case(
        "binary-normalization",
        "binary",
        "raw",
        "binary",
        with_hidden(lambda data: normalization(data.x_train), sigmoid1),
        BCE,
    ),
    case(
        "binary-rescaling",
        "binary",
        "raw",
        "binary",
        with_hidden(
            lambda data: [keras.layers.Rescaling(1 / 255), keras.layers.Dense(8, activation="relu")],
            sigmoid1,
            "functional",
        ),
        BCE,
    ),
    case("binary-embedding-gru", "binary", "tokens", "binary", with_hidden(embedding_gru_body, sigmoid1), BCE),
    case("binary-bigru-seq", "binary", "sequence", "binary", with_hidden(recurrent_body("bigru_seq"), sigmoid1), BCE),
    case("binary-conv2d", "binary", "image", "binary", plain(sigmoid1, "functional"), BCE),
    # multiclass
    case("multi-sparse-seq", "multiclass", "flat", "sparse3", plain(softmax(3)), SCCE, ["accuracy"]),
    case("multi-sparse-noinput", "multiclass", "flat", "sparse3", plain(softmax(3), "noinput"), SCCE),
    case(
        "multi-onehot-functional", "multiclass", "flat", "onehot4", plain(softmax(4), "functional"), CCE, ["accuracy"]
    ),
    case(
        "multi-onehot-subclassed",
        "multiclass",
        "flat",
        "onehot3",
        plain(softmax(3), "subclassed"),
        lambda: keras.losses.CategoricalCrossentropy(),
    ),
    case(
        "multi-sparse-logits",
        "multiclass",
        "flat",
        "sparse3",
        plain(linear(3), "functional"),
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ),
    case(
        "multi-onehot-logits",
        "multiclass",
        "flat",
        "onehot3",
        plain(linear(3)),
        lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
        ["accuracy"],
    ),
    case("multi-3units-5classes", "multiclass", "flat", "sparse5", plain(softmax(3)), SCCE),
    case("multi-3units-5classes-onehot", "multiclass", "flat", "onehot5", plain(softmax(3), "functional"), CCE),
    case("multi-10units-3classes", "multiclass", "flat", "sparse3", plain(softmax(10)), SCCE),
    case("multi-single-class", "multiclass", "flat", "single", plain(softmax(3)), SCCE),
    case("multi-embedding", "multiclass", "tokens", "sparse3", plain(softmax(3)), SCCE),
    case("multi-conv1d", "multiclass", "sequence", "sparse3", plain(softmax(3), "functional"), SCCE),
    case("multi-conv2d", "multiclass", "image", "sparse3", plain(softmax(3)), SCCE, ["accuracy"]),
    case("multi-conv2d-rgb-onehot", "multiclass", "rgb", "onehot3", plain(softmax(3), "subclassed"), CCE),
    case("multi-lstm", "multiclass", "sequence", "sparse3", with_hidden(recurrent_body("lstm"), softmax(3)), SCCE),
    case(
        "multi-gru-noinput",
        "multiclass",
        "sequence",
        "sparse3",
        with_hidden(recurrent_body("gru"), softmax(3), "noinput"),
        SCCE,
    ),
    case(
        "multi-bilstm",
        "multiclass",
        "sequence",
        "onehot3",
        with_hidden(recurrent_body("bilstm"), softmax(3), "functional"),
        CCE,
    ),
    case(
        "multi-dropout-val-only",
        "multiclass",
        "flat",
        "sparse3",
        with_hidden(dropout_body, softmax(3)),
        SCCE,
        splits="val",
    ),
    # multilabel
    case(
        "multilabel-seq",
        "multilabel",
        "flat",
        "multilabel4",
        plain(lambda: dense(4, "sigmoid")),
        BCE,
        ["binary_accuracy"],
    ),
    case("multilabel-noinput", "multilabel", "flat", "multilabel3", plain(lambda: dense(3, "sigmoid"), "noinput"), BCE),
    case(
        "multilabel-functional-lossobj",
        "multilabel",
        "flat",
        "multilabel3",
        plain(lambda: dense(3, "sigmoid"), "functional"),
        lambda: keras.losses.BinaryCrossentropy(),
    ),
    case(
        "multilabel-subclassed",
        "multilabel",
        "flat",
        "multilabel3",
        plain(lambda: dense(3, "sigmoid"), "subclassed"),
        BCE,
    ),
    case(
        "multilabel-logits",
        "multilabel",
        "flat",
        "multilabel3",
        plain(linear(3)),
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    ),
    # regression
    case("regression-seq", "regression", "flat", "regression1", plain(linear(1)), MSE, ["mae"]),
    case("regression-noinput", "regression", "flat", "regression1", plain(linear(1), "noinput"), MSE),
    case("regression-3cols-functional", "regression", "flat", "regression3", plain(linear(3), "functional"), MSE),
    case(
        "regression-3cols-subclassed",
        "regression",
        "flat",
        "regression3",
        plain(linear(3), "subclassed"),
        lambda: keras.losses.MeanAbsoluteError(),
    ),
    case("regression-constant-target", "regression", "flat", "constant", plain(linear(1)), MSE),
    case(
        "regression-huber-obj",
        "regression",
        "flat",
        "regression1",
        plain(linear(1), "functional"),
        lambda: keras.losses.Huber(),
        lambda: [keras.metrics.RootMeanSquaredError()],
    ),
    case("regression-float64", "regression", "float64", "regression1", plain(linear(1)), MSE),
    case(
        "regression-tiny-train-only",
        "regression",
        "flat",
        "regression1",
        plain(linear(1)),
        MSE,
        splits="train",
        rows=24,
    ),
    case(
        "regression-lstm",
        "regression",
        "sequence",
        "regression1",
        with_hidden(recurrent_body("lstm"), linear(1), "functional"),
        MSE,
    ),
    case("regression-conv1d-subclassed", "regression", "sequence", "regression1", plain(linear(1), "subclassed"), MSE),
    case(
        "regression-batchnorm-dropout",
        "regression",
        "flat",
        "regression1",
        with_hidden(lambda data: batchnorm_body(data) + [keras.layers.Dropout(0.2)], linear(1)),
        "mae",
    ),
    case(
        "regression-normalization-test-only",
        "regression",
        "raw",
        "regression1",
        with_hidden(lambda data: normalization(data.x_train), linear(1), "functional"),
        MSE,
        splits="test",
    ),
]


def compile_model(model, loss, metrics):
    loss = loss() if callable(loss) else loss
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=metrics)
    return model


@pytest.mark.parametrize("task, inputs, target, build, loss, metrics, splits, rows", CASES)
def test_diagnose_full_never_crashes(task, inputs, target, build, loss, metrics, splits, rows):
    keras.utils.set_random_seed(0)
    data = make_data(task, inputs, target, splits, rows)
    model = compile_model(build(data, inputs), loss, metrics() if callable(metrics) else metrics)
    report = diagnose(
        model, data, suite="full", options=DiagnosticOptions(seed=0), fit_kwargs={"epochs": 2, "batch_size": 16}
    )
    crashed = [f"{r.check}: {r.evidence['error']}" for r in report.results if "error" in r.evidence]
    assert not crashed, "checks that crashed instead of judging:\n" + "\n".join(crashed)
    assert report.results, "diagnose returned no results"
    assert report.diagnosis.cause in CAUSES  # the ranked diagnosis is built from whatever the checks said


def test_zoo_is_large_enough():
    default_run = [param for param in CASES if not param.marks]
    assert len(default_run) >= 50 and SLOW <= {param.id for param in CASES}
