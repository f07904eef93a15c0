"""Pairs whose bug is in the data the model sees: scaling, labels, splits, missing values, leaked features.
Facts and links: SOURCES.md."""

from __future__ import annotations

import numpy as np

from bench.real_bugs import data as gen
from bench.real_bugs.pairs_model import keras_seeded
from bench.real_bugs.registry import bug_pair


@bug_pair(
    name="unnormalised_pixels",
    title="CNN fed raw 0..255 pixels",
    source="keras-team/keras#6914 ('MNIST not learning', stuck below 30%; the author: 'I didn't normalized "
    "the input x_train /= 255 ... After that It's working')",
    url="https://github.com/keras-team/keras/issues/6914",
    bug_class="Humbatova: Training > Preprocessing of training data > missing normalisation",
    causes=("unscaled_inputs", "exploding_gradient", "dead_relu"),
    style="Sequential Conv2D, SGD momentum, sparse CE",
    fix="divide the pixels by 255",
    facts="Inputs of order 100 give first-layer activations and gradients about 100x larger than the "
    "initialisation assumes: SGD overshoots, ReLUs die or the loss blows up.",
)
def unnormalised_pixels(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.quadrant_images(seed)
    data = gen.split("multiclass", x if buggy else x / 255.0, y, seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model, data, {"epochs": 8, "batch_size": 32}


def unscaled_columns(x: np.ndarray, seed: int) -> np.ndarray:
    """Columns on wildly different scales and offsets, like raw counts, prices and addresses side by side."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(0, 5, x.shape[1])
    offset = 10.0 ** rng.uniform(0, 5, x.shape[1])
    return (x * scale + offset).astype("float32")


@bug_pair(
    name="unscaled_tabular_features",
    title="raw tabular features on scales from 1 to 1e5",
    source="keras-team/keras#2975 ('Keras model always predicts same output class'; comment: 'Try using "
    "StandardScaler ... this happens because the data is not normalized'); keras-team/keras#4171",
    url="https://github.com/keras-team/keras/issues/2975",
    bug_class="Humbatova: Training > Preprocessing of training data > missing normalisation",
    causes=("unscaled_inputs", "saturation", "dead_relu"),
    style="Sequential MLP, Adam, BCE",
    fix="StandardScaler-style standardisation fitted on the train split",
    facts="Features of order 1e4-1e5 saturate the first layer: the output is pinned at 0 or 1 for "
    "almost every row and the model predicts one class.",
)
def unscaled_tabular_features(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.tabular_binary(seed + 20)
    data = gen.split("binary", unscaled_columns(x, seed), y, seed)
    if not buggy:
        data.x_train, data.x_val, data.x_test = gen.standardise(data.x_train, data.x_val, data.x_test)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="unscaled_regression_target",
    title="regression target in the thousands, network's output near 0",
    source="keras-team/keras#2576 ('Keras no hidden layer != simple linear regression': targets -2000..2000, "
    "Keras predictions only -70..70 after 10 epochs of RMSprop)",
    url="https://github.com/keras-team/keras/issues/2576",
    bug_class="Humbatova: Training > Preprocessing of training data > missing normalisation (target)",
    causes=("unscaled_targets", "too_few_epochs", "lr_too_low"),
    style="Sequential Dense(1), RMSprop, MSE",
    fix="standardise the target (and de-standardise predictions)",
    facts="Adaptive optimisers move each weight by about the learning rate per step: reaching weights of "
    "order 100 needed for targets of order 1000 takes far more steps than 10 epochs give.",
)
def unscaled_regression_target(seed, buggy):
    keras = keras_seeded(seed)
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=1000, n_features=20, n_informative=20, noise=100, random_state=seed)
    data = gen.split("regression", x.astype("float32"), y.astype("float32"), seed)
    if not buggy:
        data.y_train, data.y_val, data.y_test = gen.standardise(data.y_train, data.y_val, data.y_test)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
    return model, data, {"epochs": 10, "batch_size": 16}


@bug_pair(
    name="house_price_mse_nan",
    title="house prices (~1e5) as raw MSE targets with SGD: NaN loss",
    source="rstudio-conf-2020/dl-keras-tf#9 ('train/valid loss = NAN when loss = mean_squared_error due to "
    "exploding values', sale prices up to ~755000, SGD lr 0.1)",
    url="https://github.com/rstudio-conf-2020/dl-keras-tf/issues/9",
    bug_class="Humbatova: Training > Preprocessing of training data > missing normalisation (target)",
    causes=("unscaled_targets", "exploding_gradient", "lr_too_high"),
    style="Functional MLP, SGD, MSE",
    fix="train on the log of the price, standardised",
    facts="Squared errors of order 1e10 give gradients of order 1e5: one SGD step at lr 0.1 sends the "
    "weights to Inf and the loss to NaN in the first epoch.",
)
def house_price_mse_nan(seed, buggy):
    keras = keras_seeded(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (1000, 8)).astype("float32")
    log_price = 12 + 0.3 * x[:, 0] + 0.2 * np.tanh(x[:, 1]) + 0.1 * x[:, 2] * x[:, 3] + rng.normal(0, 0.1, 1000)
    target = np.exp(log_price) if buggy else (log_price - 12) / 0.4
    data = gen.split("regression", x, target.astype("float32"), seed)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.1 if buggy else 0.01), loss="mse")
    return model, data, {"epochs": 8, "batch_size": 16}


@bug_pair(
    name="sorted_data_validation_split",
    title="data sorted by class, validation = last 20% (one whole class)",
    source="keras-team/keras#8346 ('splitting 20% of data for validation takes the last 20% of the data which "
    "is in this case the whole class 5'); keras-team/keras#3894 comment (validation split is taken "
    "before shuffling)",
    url="https://github.com/keras-team/keras/issues/8346",
    bug_class="Humbatova: Training > Training data quality / API > wrong position of data shuffle operation",
    causes=("split_shift",),
    style="Sequential MLP, Adam, sparse_categorical_crossentropy",
    fix="shuffle the rows before cutting train and validation",
    facts="validation_split (and a naive slice) takes the last rows; with rows sorted by label the last "
    "class never appears in training, so validation accuracy on it is 0.",
)
def sorted_data_validation_split(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.tabular_multiclass(seed + 30, classes=5)
    shuffled = np.random.default_rng(seed).permutation(len(x))
    # a stratified test split (40 rows per class) leaves 160 rows of each class for train + validation
    test = np.concatenate([shuffled[y[shuffled] == label][:40] for label in range(5)])
    rest = np.setdiff1d(shuffled, test)
    rest = np.random.default_rng(seed + 1).permutation(rest)
    if buggy:
        rest = rest[np.argsort(y[rest], kind="stable")]  # the user's file is sorted by class
    cut = int(0.8 * len(rest))
    from runner.diagnostics.context import DiagnosticData

    data = DiagnosticData("multiclass", x[rest[:cut]], y[rest[:cut]], x[rest[cut:]], y[rest[cut:]], x[test], y[test])
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="labels_shuffled_separately",
    title="features shuffled without their labels",
    source="dennybritz/cnn-text-classification-tf#136 (data shuffled with a permutation, labels not); "
    "udacity/sdc-issue-reports#1326 (features and labels can be shuffled in different orders)",
    url="https://github.com/dennybritz/cnn-text-classification-tf/issues/136",
    bug_class="Humbatova: Training > Training data quality > wrong labels for training data",
    causes=("wrong_labels",),
    style="Sequential MLP, Nadam, BCE",
    fix="apply one permutation to features and labels together",
    facts="After x_train = x_train[perm] with y_train untouched every training label belongs to a random "
    "row: there is nothing to learn and validation accuracy stays at chance.",
)
def labels_shuffled_separately(seed, buggy):
    keras = keras_seeded(seed)
    data = gen.split("binary", *gen.tabular_binary(seed + 40), seed)
    if buggy:
        data.x_train = data.x_train[np.random.default_rng(seed + 1).permutation(len(data.x_train))]
    model = keras.Sequential(
        [
            keras.Input((data.x_train.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="nadam", loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="nan_in_features",
    title="missing values (NaN) left in the feature matrix",
    source="danielegrattarola/keras-gat#14 ('citeseer dataset loss is nan'; fix: X[np.isnan(X)] = 0); "
    "prs-eth/Marigold#111 ('this happens when input batch contains NaN values')",
    url="https://github.com/danielegrattarola/keras-gat/issues/14",
    bug_class="Humbatova: Training > Training data quality > corrupt / missing values",
    causes=("bad_data",),
    style="Sequential MLP, Adagrad, sparse_categorical_crossentropy",
    fix="impute the missing values (train-split column means) before training",
    facts="One NaN in a batch makes that batch's loss and every gradient NaN; after the first update all "
    "weights are NaN and so is every prediction.",
)
def nan_in_features(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.tabular_multiclass(seed + 50)
    holes = np.random.default_rng(seed).random(x.shape) < 0.02  # 2% of cells missing, as in a raw export
    x = np.where(holes, np.nan, x).astype("float32")
    data = gen.split("multiclass", x, y, seed)
    if not buggy:
        means = np.nanmean(data.x_train, axis=0)
        data.x_train, data.x_val, data.x_test = [
            np.where(np.isnan(a), means, a).astype("float32") for a in (data.x_train, data.x_val, data.x_test)
        ]
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adagrad(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model, data, {"epochs": 10, "batch_size": 32}


@bug_pair(
    name="label_leaking_feature",
    title="a feature that is the label in disguise",
    source="dotnet/machinelearning#737 (maintainer: 'Label leaking means that you have a feature which is "
    "actually the label in disguise', e.g. a price logged only for sold items; the reporter confirmed "
    "and saw 'how poor the results are' without it)",
    url="https://github.com/dotnet/machinelearning/issues/737",
    bug_class="Humbatova: Training > Training data quality (information leak)",
    causes=("leakage",),
    style="Functional MLP, Adam, BCE",
    fix="drop the leaking column",
    facts="In the collected data the 'price' column is only filled in (non-zero) for positive rows, so train "
    "and validation look perfect; at deployment (test split) every row has a price and the model, "
    "which learnt nothing else, fails.",
)
def label_leaking_feature(seed, buggy):
    keras = keras_seeded(seed)
    x, y = gen.tabular_binary(seed + 60)
    rng = np.random.default_rng(seed)
    price = rng.uniform(10, 50, len(x)).astype("float32")
    data = gen.split("binary", np.column_stack([x, price * y]).astype("float32"), y, seed)
    data.x_test[:, -1] = rng.uniform(10, 50, len(data.x_test))  # in production every row has a price
    if not buggy:
        data.x_train, data.x_val, data.x_test = (a[:, :-1] for a in (data.x_train, data.x_val, data.x_test))
    inputs = keras.Input((data.x_train.shape[1],))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model, data, {"epochs": 10, "batch_size": 32}
