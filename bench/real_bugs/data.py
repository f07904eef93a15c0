"""Generated data sets for the pairs (NumPy / scikit-learn generators, small enough to train in seconds),
the train/val/test split, and the score that says whether a fix helped."""

from __future__ import annotations

import numpy as np

from runner.diagnostics.context import DiagnosticData

SPLIT = (0.6, 0.2, 0.2)  # train, val, test


def split(task: str, x: np.ndarray, y: np.ndarray, seed: int, shuffle: bool = True) -> DiagnosticData:
    """Train/val/test in SPLIT proportions; ``shuffle=False`` cuts the rows in their given order."""
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    x, y = x[order], y[order]
    a, b = int(SPLIT[0] * len(x)), int((SPLIT[0] + SPLIT[1]) * len(x))
    return DiagnosticData(task, x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


def tabular_binary(seed: int, n: int = 1000, features: int = 10) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n, n_features=features, n_informative=6, n_redundant=2, class_sep=1.2, random_state=seed
    )
    return x.astype("float32"), y.astype("float32")


def tabular_multiclass(seed: int, n: int = 1200, features: int = 12, classes: int = 4):
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n,
        n_features=features,
        n_informative=8,
        n_redundant=2,
        n_classes=classes,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=seed,
    )
    return x.astype("float32"), y.astype("int32")


def nonlinear_regression(seed: int, n: int = 1000):
    """Friedman #1 (a sine, a square and linear terms of 5 of 10 uniform features), standardised target."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n, n_features=10, noise=0.3, random_state=seed)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype("float32"), ((y - y.mean()) / y.std()).astype("float32")


def quadrant_images(seed: int, n: int = 900, size: int = 12, classes: int = 4):
    """8-bit grey images (0..255) of noise with a bright square in one of four quadrants: the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 90, (n, size, size, 1)).astype("float32")
    half = size // 2
    for i, label in enumerate(y):
        row, col = divmod(int(label), 2)
        top, left = row * half + 1, col * half + 1
        x[i, top : top + half - 2, left : left + half - 2, 0] += rng.integers(120, 166)
    return np.clip(x, 0, 255), y.astype("int32")


def sequences(seed: int, n: int = 900, steps: int = 20):
    """Noisy random walks; target: a smooth nonlinear function of the walk (its last value and its mean)."""
    rng = np.random.default_rng(seed)
    walks = np.cumsum(rng.normal(0, 0.3, (n, steps)), axis=1)
    target = np.tanh(walks[:, -1]) + 0.5 * walks.mean(axis=1)
    target = (target - target.mean()) / target.std()
    return walks[..., None].astype("float32"), target.astype("float32")


def amplitude_signals(seed: int, n: int = 900, steps: int = 32):
    """Zero-mean noise signals; class 1 has three times the amplitude: no linear function of the samples
    separates the classes (the means are equal), a squared or rectified one does."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scale = np.where(y == 1, 1.5, 0.5)[:, None]
    return (rng.normal(0, 1, (n, steps)) * scale)[..., None].astype("float32"), y.astype("float32")


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every array with the train split's mean and standard deviation (per column)."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-8
    return [((a - mean) / std).astype("float32") for a in (train, *others)]


def score(model, data: DiagnosticData) -> float:
    """Test accuracy (classification) or test R^2 (regression) of a trained model; NaN output scores NaN.

    A one-unit output is read as a probability (> 0.5 means class 1), as its author meant it."""
    prediction = np.asarray(model.predict(data.x_test, verbose=0), dtype="float64")
    if not np.all(np.isfinite(prediction)):
        return float("nan")
    if data.task == "regression":
        truth = np.asarray(data.y_test, dtype="float64").reshape(prediction.shape)
        return float(1 - ((truth - prediction) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())
    labels = data.labels("test")
    if prediction.ndim == 1 or prediction.shape[-1] == 1:
        predicted = (prediction.reshape(-1) > 0.5).astype(int)
    else:
        predicted = prediction.argmax(axis=-1)
    return float((predicted == labels).mean())


def train_and_score(model, data: DiagnosticData, fit_kwargs: dict) -> float:
    """Fit as diagnose() does (train split, val split as validation data), then score on the test split."""
    kwargs = {"x": data.x_train, "y": data.y_train, "verbose": 0, **fit_kwargs}
    if data.x_val is not None and "validation_data" not in kwargs:
        kwargs["validation_data"] = (data.x_val, data.y_val)
    model.fit(**kwargs)
    return score(model, data)
