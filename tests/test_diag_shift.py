"""The split-shift and label-signal checks: seeded faults are caught, healthy data passes, odd inputs SKIP."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight import check_label_signal, check_split_shift
from runner.diagnostics.report import FAIL, PASS, SKIP

OPTIONS = DiagnosticOptions(seed=0)


# ------------------------------------------------------------------------------ generated inputs


def tabular(n: int, rng: np.random.Generator) -> np.ndarray:
    """Correlated features, one skewed, one categorical code, one in other units."""
    x = rng.standard_normal((n, 3)) @ rng.standard_normal((3, 10)) + 0.5 * rng.standard_normal((n, 10))
    x[:, 0] = np.exp(x[:, 0])
    x[:, 1] = rng.integers(0, 3, n)
    x[:, 2] = 50 + 10 * x[:, 2]
    return x


def sequences(n: int, rng: np.random.Generator, steps: int = 64, channels: int | None = None) -> np.ndarray:
    """AR(1) with skewed innovations (not reversible in time) plus a burst that decays."""
    noise = rng.exponential(1.0, (n, steps, channels or 1)) - 1
    x = np.zeros_like(noise)
    for t in range(1, steps):
        x[:, t] = 0.8 * x[:, t - 1] + noise[:, t]
    x += 3 * rng.standard_normal((n, 1, channels or 1)) * np.exp(-np.arange(steps) / 10)[None, :, None]
    return x[..., 0] if channels is None else x


def tokens(n: int, rng: np.random.Generator, steps: int = 40) -> np.ndarray:
    """Zipf-distributed token ids, zero-padded after a random length."""
    x = rng.zipf(1.3, (n, steps)) % 500
    x[np.arange(steps)[None, :] >= rng.integers(5, steps, n)[:, None]] = 0
    return x.astype("int32")


def images(n: int, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    """Bright discs on a dark background with sparse noise, values in [0, 1]."""
    yy, xx = np.mgrid[:side, :side]
    cx, cy, r = rng.uniform(8, 20, n), rng.uniform(8, 20, n), rng.uniform(3, 8, n)
    disc = np.hypot(xx - cx[:, None, None], yy - cy[:, None, None]) < r[:, None, None]
    speckle = rng.uniform(0, 0.2, disc.shape) * (rng.random(disc.shape) < 0.1)
    return np.clip(disc + speckle, 0, 1).astype("float32")


MAKERS = {
    "tabular": tabular,
    "sequences": sequences,
    "channels": lambda n, rng: sequences(n, rng, 50, 3),
    "tokens": tokens,
    "images": images,
}


def random_split(x: np.ndarray, rng: np.random.Generator, task: str = "binary") -> DiagnosticData:
    """A 70/15/15 random split with imbalanced labels (10% positives)."""
    n = len(x)
    y = (rng.random(n) < 0.1).astype(int)
    order = rng.permutation(n)
    train, val, test = np.split(order, [int(0.7 * n), int(0.85 * n)])
    return DiagnosticData(task, x[train], y[train], x[val], y[val], x[test], y[test])


def with_val(x_train: np.ndarray, x_val: np.ndarray) -> DiagnosticData:
    return DiagnosticData("binary", x_train, np.zeros(len(x_train), int), x_val, np.zeros(len(x_val), int))


def standardised(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    std = reference.std(axis=0)
    return (x - reference.mean(axis=0)) / np.where(std > 0, std, 1.0)


# ------------------------------------------------------------------------------------ split shift


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("rows", [50, 400])
def test_random_splits_of_one_data_set_pass(kind, rows):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        result = check_split_shift(random_split(MAKERS[kind](rows, rng), rng), DiagnosticOptions(seed=seed))
        # 50 rows leave 7-8 rows in val and test: too few to compare, and the check says so.
        expected = SKIP if rows == 50 else PASS
        assert result.verdict == expected, (kind, seed, result.message)


def test_small_splits_are_compared_without_warning():
    for seed in range(6):
        rng = np.random.default_rng(seed)
        result = check_split_shift(random_split(tabular(80, rng), rng), DiagnosticOptions(seed=seed))
        assert result.verdict == PASS, result.message
        assert set(result.evidence["splits"]) == {"val", "test"}


def shuffled_in_time(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    order = np.argsort(rng.random(x.shape[:2]), axis=1)
    return np.take_along_axis(x, order if x.ndim == 2 else order[..., None], axis=1)


def with_unit_change(x: np.ndarray, column: int, factor: float) -> np.ndarray:
    x = x.copy()
    x[:, column] *= factor
    return x


FAULTS = {
    "scaler_on_train_only": ("tabular", lambda train, val, rng: (standardised(train, train), val)),
    "feature_in_cm_not_m": ("tabular", lambda train, val, rng: (train, with_unit_change(val, 3, 100.0))),
    "feature_in_cm_not_inch": ("tabular", lambda train, val, rng: (train, with_unit_change(val, 3, 2.54))),
    "reversed_sequences": ("sequences", lambda train, val, rng: (train, val[:, ::-1])),
    "time_shuffled_sequences": ("sequences", lambda train, val, rng: (train, shuffled_in_time(val, rng))),
    "reversed_multichannel": ("channels", lambda train, val, rng: (train, val[:, ::-1])),
    "reversed_tokens": ("tokens", lambda train, val, rng: (train, val[:, ::-1])),
    "inverted_images": ("images", lambda train, val, rng: (train, 1.0 - val)),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_in_one_split_fails(fault):
    kind, apply = FAULTS[fault]
    rng = np.random.default_rng(1)
    x = MAKERS[kind](1500, rng).astype("float64")
    train, val = apply(x[:1000], x[1000:], rng)
    result = check_split_shift(with_val(train, val), OPTIONS)
    assert result.verdict == FAIL, result.message
    assert result.value > result.threshold
    assert result.fix and "val" in result.message
    assert result.evidence["worst_split"] == "val"


def test_the_worst_features_name_the_shifted_column():
    rng = np.random.default_rng(2)
    x = tabular(1500, rng)
    names = [f"f{i}" for i in range(x.shape[1])]
    data = with_val(x[:1000], with_unit_change(x[1000:], 3, 100.0))
    data.feature_names = names
    result = check_split_shift(data, OPTIONS)
    worst = result.evidence["splits"]["val"]["worst_features"][0]
    assert worst["feature"] == "f3" and worst["std_ratio"] > 10


@pytest.mark.parametrize("kind", ["tabular", "sequences"])
def test_a_scaler_fitted_on_each_split_separately_passes(kind):
    rng = np.random.default_rng(3)
    x = MAKERS[kind](1500, rng)
    result = check_split_shift(with_val(standardised(x[:1000], x[:1000]), standardised(x[1000:], x[1000:])), OPTIONS)
    assert result.verdict == PASS, result.message


def test_a_shifted_test_split_is_reported_even_when_val_is_fine():
    rng = np.random.default_rng(4)
    x = images(900, rng)
    data = DiagnosticData(
        "binary", x[:600], np.zeros(600, int), x[600:750], np.zeros(150, int), 1.0 - x[750:], np.zeros(150, int)
    )
    result = check_split_shift(data, OPTIONS)
    assert result.verdict == FAIL and result.evidence["worst_split"] == "test"
    assert result.evidence["splits"]["val"]["auc"] < 0.7


def test_split_shift_skips_without_held_out_data_or_with_tiny_splits():
    x = np.random.default_rng(5).standard_normal((100, 4))
    no_held_out = check_split_shift(DiagnosticData("regression", x, x[:, 0]), OPTIONS)
    tiny = check_split_shift(with_val(x[:95], x[95:]), OPTIONS)
    assert no_held_out.verdict == SKIP and "no validation or test split" in no_held_out.message
    assert tiny.verdict == SKIP and "fewer than" in tiny.message


@pytest.mark.parametrize(
    "case, reason", [("nan", "NaN/Inf"), ("shapes", "differ in shape"), ("strings", "not numeric")]
)
def test_split_shift_skips_inputs_it_cannot_measure(case, reason):
    x = np.random.default_rng(5).standard_normal((100, 4))
    with_nan = x.copy()
    with_nan[3, 2] = np.nan
    train, val = {
        "nan": (with_nan[:80], x[80:]),
        "shapes": (x[:80], x[80:, :3]),
        "strings": (x[:80].astype(str), x[80:].astype(str)),
    }[case]
    result = check_split_shift(with_val(train, val), OPTIONS)
    assert result.verdict == SKIP and reason in result.message


def test_split_shift_is_seeded_and_cheap_on_mnist_sized_inputs():
    rng = np.random.default_rng(6)
    x = ((rng.random((11000, 784)) < 0.2) * rng.random((11000, 784))).astype("float32")
    data = with_val(x[:10000], x[10000:])
    check_split_shift(data, OPTIONS)  # first call pays for importing scikit-learn
    started = time.perf_counter()
    first = check_split_shift(data, OPTIONS)
    seconds = time.perf_counter() - started
    assert first.verdict == PASS
    assert check_split_shift(data, OPTIONS).value == first.value
    assert seconds < 3.0  # measured 0.3-0.6 s; the margin absorbs a busy machine


# ----------------------------------------------------------------------------------- label signal


def mlp(
    features: int, units: int = 1, activation: str | None = "sigmoid", loss="binary_crossentropy", dropout: float = 0.0
) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((features,)), keras.layers.Dense(32, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers += [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(units, activation=activation)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    return model


def noisy_xor(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """XOR of two features among six, 10% of the labels flipped: learnable, not linearly."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype("float32")
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    flipped = rng.random(n) < 0.1
    y[flipped] = 1 - y[flipped]
    return x, y


def test_learnable_labels_pass_and_the_model_keeps_its_weights():
    x, y = noisy_xor(600, 0)
    model = mlp(6, dropout=0.3)
    before = [w.copy() for w in model.get_weights()]
    result = check_label_signal(model, DiagnosticData("binary", x, y), OPTIONS)
    assert result.verdict == PASS, result.message
    assert result.evidence["skill_real_labels"] > result.evidence["skill_permuted_labels"] + 0.15
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_permuted_labels_fail():
    x, y = noisy_xor(600, 1)
    y = y[np.random.default_rng(7).permutation(len(y))]
    result = check_label_signal(mlp(6), DiagnosticData("binary", x, y), OPTIONS)
    assert result.verdict == FAIL, result.message
    assert "unrelated" in result.message and result.fix


def test_learnable_regression_passes_and_permuted_targets_fail():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 6)).astype("float32")
    y = (np.sin(2 * x[:, 0]) + x[:, 1] + 0.3 * rng.standard_normal(600)).astype("float32")
    model = mlp(6, activation=None, loss="mse")
    healthy = check_label_signal(model, DiagnosticData("regression", x, y), OPTIONS)
    permuted = check_label_signal(model, DiagnosticData("regression", x, rng.permutation(y)), OPTIONS)
    assert healthy.verdict == PASS, healthy.message
    assert permuted.verdict == FAIL, permuted.message
    assert healthy.evidence["metric"] == "Spearman correlation"


def test_too_few_rows_cannot_fail_only_say_it_cannot_tell():
    x, y = noisy_xor(40, 3)
    y = y[np.random.default_rng(8).permutation(len(y))]
    result = check_label_signal(mlp(6), DiagnosticData("binary", x, y), OPTIONS)
    assert result.verdict in (SKIP, PASS) and not result.evidence["powered"]
    assert result.verdict == PASS or "inconclusive" in result.message


def test_a_model_that_barely_moves_is_inconclusive_not_a_label_fault():
    # Plain SGD at 1e-5 learns nothing in the budget: real and permuted labels look alike for that reason only.
    x, y = noisy_xor(400, 3)
    model = mlp(6)
    model.compile(optimizer=keras.optimizers.SGD(1e-5), loss="binary_crossentropy")
    result = check_label_signal(model, DiagnosticData("binary", x, y), OPTIONS)
    assert result.verdict == SKIP and "barely changed" in result.message


@pytest.mark.parametrize(
    "case, reason", [("few_rows", "fewer than 32"), ("one_class", "single class"), ("constant_target", "constant")]
)
def test_label_signal_skips_with_its_reason(case, reason):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((200, 6)).astype("float32")
    data = {
        "few_rows": DiagnosticData("binary", x[:20], (x[:20, 0] > 0).astype(int)),
        "one_class": DiagnosticData("binary", x, np.ones(200, int)),
        "constant_target": DiagnosticData("regression", x, np.full(200, 3.0, "float32")),
    }[case]
    result = check_label_signal(mlp(6), data, OPTIONS)
    assert result.verdict == SKIP and reason in result.message


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_the_shared_tensorflow_graph_trains_exactly_as_keras_fit(task, monkeypatch):
    # On TensorFlow label_signal trains on overfit_batch's trainer through its multi-step graph; the weights,
    # and so the predictions, must be those of Keras's own fit over the same batches (the other backends' path).
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the shared graph is TensorFlow's")
    from runner.diagnostics.preflight import label_signal
    from runner.diagnostics.preflight._trainer import Probes

    x, y = noisy_xor(300, 4)
    if task == "regression":
        y = (x[:, 0] + np.sin(x[:, 1])).astype("float32")
        model = mlp(6, activation=None, loss="mse", dropout=0.2)
    else:
        model = mlp(6, dropout=0.2)
    data = DiagnosticData(task, x, y)
    probes = Probes()
    overfit = probes.one_batch_trainer(model, data, OPTIONS)
    overfit.memorise(overfit.x)  # overfit_batch first, as in the preflight: the reset must undo it
    shared = label_signal.StepTrainer(model, data, OPTIONS, probes, np.random.default_rng(0))
    assert shared.clone is overfit.clone
    monkeypatch.setattr(label_signal, "shares_overfit_graph", lambda: False)  # the other backends' path
    fitted = label_signal.StepTrainer(model, data, OPTIONS, Probes(), np.random.default_rng(0))
    assert fitted.shared is None
    outputs = [[t.train_and_predict(x[:200], y[:200], x[200:]) for _ in range(2)] for t in (shared, fitted)]
    for through_graph, through_fit in zip(*outputs):
        np.testing.assert_allclose(through_graph, through_fit, rtol=1e-6, atol=1e-7)
    assert not np.allclose(outputs[0][0], outputs[0][1])  # each run took other batches: a real comparison
