"""Data generators (numpy and sklearn's offline generators; nothing is downloaded) and the preparation that
turns one into train/val/test arrays: raw feature scales, the train-fitted scaler, label encoding."""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from bench.healthy_corpus.spec import Spec


def tabular_classification(rows, rng, features=10, informative=5, classes=2, weights=None, sep=1.0):
    x, y = datasets.make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=informative,
        n_redundant=0,
        n_classes=classes,
        weights=list(weights) if weights else None,
        class_sep=sep,
        flip_y=0.01,
        random_state=_seed(rng),
    )
    return x, y


def moons(rows, rng, noise=0.2):
    return datasets.make_moons(n_samples=rows, noise=noise, random_state=_seed(rng))


def circles(rows, rng, noise=0.1):
    return datasets.make_circles(n_samples=rows, noise=noise, factor=0.5, random_state=_seed(rng))


def blobs(rows, rng, classes=3, features=4, spread=1.5):
    return datasets.make_blobs(
        n_samples=rows, centers=classes, n_features=features, cluster_std=spread, random_state=_seed(rng)
    )


def linear_regression(rows, rng, features=8, informative=5, noise=5.0, mean=50.0, std=10.0):
    """A target in the tens (mean 50, sd 10 by default), like a price in k$."""
    x, y = datasets.make_regression(
        n_samples=rows, n_features=features, n_informative=informative, noise=noise, random_state=_seed(rng)
    )
    return x, mean + std * (y - y.mean()) / y.std()


def friedman(rows, rng, noise=0.5):
    """Friedman #1: a non-linear target between about 0 and 30."""
    return datasets.make_friedman1(n_samples=rows, n_features=6, noise=noise, random_state=_seed(rng))


def house_prices(rows, rng):
    """Living area (m^2), rooms, age (years), distance to centre (km) -> price in k$ (about 100-600)."""
    area = rng.uniform(40, 250, rows)
    rooms = np.clip(np.round(area / 35 + rng.normal(0, 0.7, rows)), 1, 8)
    age = rng.uniform(0, 80, rows)
    distance = rng.gamma(2.0, 4.0, rows)
    price = 60 + 1.8 * area + 12 * rooms - 0.9 * age - 25 * np.log1p(distance) + rng.normal(0, 15, rows)
    return np.stack([area, rooms, age, distance], axis=1), price


def digits(rows, rng, classes=10):
    """sklearn's bundled 8x8 digits, as 0-255 grey images of shape (8, 8, 1)."""
    bunch = datasets.load_digits(n_class=classes)
    order = rng.permutation(len(bunch.target))[:rows]
    return (bunch.images[order] * 16.0)[..., None], bunch.target[order]


def bars(rows, rng, size=12, classes=3, noise=40.0):
    """0-255 images holding one horizontal (0), vertical (1) or diagonal (2) bar at a random place."""
    labels = rng.integers(0, classes, rows)
    images = rng.normal(30.0, noise, (rows, size, size)).clip(0, 255)
    positions = rng.integers(1, size - 1, rows)
    for image, label, at in zip(images, labels, positions):
        if label == 0:
            image[at, :] = 220
        elif label == 1:
            image[:, at] = 220
        else:
            np.fill_diagonal(image, 220)
            image[:] = np.roll(image, at - size // 2, axis=1)
    return images[..., None], labels


def sequence_trend(rows, rng, steps=20, channels=2):
    """Noisy random walks; label 1 when the first channel trends up."""
    labels = rng.integers(0, 2, rows)
    slope = np.where(labels == 1, 0.15, -0.15)[:, None]
    walk = np.cumsum(rng.normal(0, 0.3, (rows, steps, channels)), axis=1)
    walk[:, :, 0] += slope * np.arange(steps)
    return walk, labels


def sequence_frequency(rows, rng, steps=24, classes=3):
    """A noisy sine whose frequency (one of ``classes``) is the label."""
    labels = rng.integers(0, classes, rows)
    phase = rng.uniform(0, 2 * np.pi, (rows, 1))
    t = np.arange(steps)[None, :]
    signal = np.sin(phase + t * (0.3 + 0.35 * labels[:, None])) + rng.normal(0, 0.3, (rows, steps))
    return signal[..., None], labels


def sequence_sum(rows, rng, steps=15, channels=3):
    """Target: 40 + 3 x the weighted sum of the sequence (a value in the tens)."""
    x = rng.normal(0, 1, (rows, steps, channels))
    weights = np.linspace(0.2, 1.0, steps)[None, :]
    return x, 40 + 3 * (x[:, :, 0] * weights).sum(axis=1) - 2 * x[:, -3:, 1].sum(axis=1)


GENERATORS = {
    f.__name__: f
    for f in (
        tabular_classification,
        moons,
        circles,
        blobs,
        linear_regression,
        friedman,
        house_prices,
        digits,
        bars,
        sequence_trend,
        sequence_frequency,
        sequence_sum,
    )
}


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def prepare(spec: Spec, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/val/test arrays exactly as the model is fed them."""
    rng = np.random.default_rng(seed)
    x, y = GENERATORS[spec.data](spec.rows, rng, **spec.option_dict)
    x = _raw_feature_scales(np.asarray(x, dtype="float64"), spec.feature_scale)
    order = rng.permutation(len(x))
    cut1, cut2 = int(0.6 * len(x)), int(0.8 * len(x))
    parts = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    splits = {name: (x[rows], np.asarray(y)[rows]) for name, rows in parts.items()}
    splits = _scale_inputs(splits, spec)
    splits = _scale_targets(splits, spec) if spec.task == "regression" else _encode_labels(splits, spec)
    if spec.shuffle_labels:
        x_train, y_train = splits["train"]
        splits["train"] = (x_train, y_train[rng.permutation(len(y_train))])
    return {
        name: (xs.astype("float32"), ys.astype("float32" if spec.label_encoding != "sparse" else "int64"))
        for name, (xs, ys) in splits.items()
    }


def _raw_feature_scales(x: np.ndarray, spread: float) -> np.ndarray:
    """Columns multiplied by 1..spread (log-spaced) and shifted, as raw tabular columns are."""
    if spread <= 1.0:
        return x
    columns = x.shape[-1]
    factors = np.logspace(0, np.log10(spread), columns)
    return x * factors + 3.0 * factors


def _scale_inputs(splits: dict, spec: Spec) -> dict:
    if spec.input_scaling == "none":
        return splits
    x_train = splits["train"][0]
    if spec.input_scaling == "max":
        shift, scale = 0.0, np.abs(x_train).max()
    else:  # standard: per feature (last axis) over every row and time step
        axes = tuple(range(x_train.ndim - 1))
        shift, scale = x_train.mean(axis=axes), x_train.std(axis=axes) + 1e-8
    scaled = {}
    for name, (x, y) in splits.items():
        applies = name == "train" or spec.scale_eval
        scaled[name] = ((x - shift) / scale if applies else x, y)
    return scaled


def _scale_targets(splits: dict, spec: Spec) -> dict:
    if not spec.target_scaling:
        return {name: (x, y.reshape(-1, 1)) for name, (x, y) in splits.items()}
    y_train = splits["train"][1]
    mean, std = y_train.mean(), y_train.std()
    return {name: (x, ((y - mean) / std).reshape(-1, 1)) for name, (x, y) in splits.items()}


def _encode_labels(splits: dict, spec: Spec) -> dict:
    encoding = spec.label_encoding
    if encoding == "sparse":
        return {name: (x, y.astype("int64")) for name, (x, y) in splits.items()}
    if encoding == "binary":
        return {name: (x, y.reshape(-1, 1).astype("float32")) for name, (x, y) in splits.items()}
    classes = max(2, spec.n_classes)
    return {name: (x, np.eye(classes, dtype="float32")[y.astype(int)]) for name, (x, y) in splits.items()}
