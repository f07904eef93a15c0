"""Training monitors: each seeded fault in a tiny synthetic run gets its diagnosis; a healthy run gets no FAIL."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.monitors import (
    Observed,
    Records,
    TrainingMonitor,
    check_dead_units,
    check_loss_oscillating,
    check_loss_stalled,
    check_overfitting,
    check_underfitting,
    check_update_ratio,
    dead_share,
    large_rises,
    largest_climb,
    saturated_share,
    window_means,
)
from runner.diagnostics.report import FAIL, PASS, SKIP, WARN

FEATURES = 16


def blobs(rows: int, seed: int, flip: float = 0.0):
    """A linearly separable binary task; ``flip`` of the labels are inverted (label noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype("float32")
    y = (x @ np.linspace(-1.0, 1.0, FEATURES) > 0).astype("float32")
    flipped = rng.random(rows) < flip
    y[flipped] = 1.0 - y[flipped]
    return x, y


@pytest.fixture(scope="module")
def data() -> DiagnosticData:
    x_train, y_train = blobs(512, seed=0)
    x_val, y_val = blobs(256, seed=1)
    return DiagnosticData("binary", x_train, y_train, x_val, y_val)


def mlp(units=(32, 16), activation="relu", **dense_options) -> keras.Model:
    keras.backend.clear_session()  # layer names restart at dense, dense_1, ...
    keras.utils.set_random_seed(0)  # the same initial weights whichever tests ran before
    inputs = keras.Input((FEATURES,))
    x = inputs
    for count in units:
        x = keras.layers.Dense(count, activation=activation, **dense_options)(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x))


def train(model, data, optimizer, epochs=3, batch_size=32, options=None, callbacks=()):
    keras.utils.set_random_seed(3)
    model.compile(optimizer, "binary_crossentropy", metrics=["accuracy"])
    monitor = TrainingMonitor(data, options or DiagnosticOptions(seed=0))
    validation = (data.x_val, data.y_val) if data.x_val is not None else None
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=[monitor, *callbacks],
    ).history
    return monitor.report(history), history


class LogKeys(keras.callbacks.Callback):
    """Records which keys the callbacks after the monitor see in ``logs``."""

    def __init__(self):
        super().__init__()
        self.batch_keys, self.epoch_keys = set(), set()

    def on_train_batch_end(self, batch, logs=None):
        self.batch_keys |= set(logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_keys |= set(logs or {})


# ------------------------------------------------------------------ runs with a seeded fault (or none)


def test_healthy_run_has_no_fail_leaves_logs_alone_and_writes_plots(data, tmp_path):
    keras.utils.set_random_seed(3)
    keys = LogKeys()
    checkpoint = keras.callbacks.ModelCheckpoint(
        tmp_path / "best.weights.h5", monitor="val_loss", save_best_only=True, save_weights_only=True
    )
    options = DiagnosticOptions(output_dir=tmp_path / "diag", seed=0)
    report, history = train(
        mlp(), data, keras.optimizers.Adam(1e-2), epochs=5, options=options, callbacks=[keys, checkpoint]
    )

    assert [r.check for r in report.results if r.verdict == FAIL] == []
    assert report["monitor.loss_stalled"].verdict == PASS
    assert report["monitor.gradient_norms"].verdict == PASS
    assert report["monitor.dead_units"].verdict == PASS
    assert report["monitor.saturation"].verdict == SKIP  # no sigmoid/tanh hidden layer
    assert report["monitor.regularization"].verdict == SKIP
    assert all(r.stage == "monitor" for r in report.results)
    # The monitor adds nothing to logs, so checkpointing and history see only Keras's own metrics.
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert keys.batch_keys <= {"loss", "accuracy"}
    assert keys.epoch_keys == set(history)
    assert (tmp_path / "best.weights.h5").exists()
    # Evidence per epoch: the start (0) plus 5 epochs, for each layer with a kernel.
    norms = report["monitor.gradient_norms"].evidence["layer_norms"]
    assert set(norms) == {"dense", "dense_1", "output"} and all(len(v) == 6 for v in norms.values())
    assert report["monitor.gradient_norms"].plots == ["monitor/gradient_norms.png"]
    for name in report.plots + report["monitor.gradient_norms"].plots:
        assert (tmp_path / "diag" / name).stat().st_size > 1000
    assert sorted(report.plots) == [
        "monitor/activations_histograms.png",
        "monitor/gradients_histograms.png",
        "monitor/weights_histograms.png",
    ]
    json.dumps(report.to_dict())  # report.json stays valid


def test_learning_rate_10_diverges(data):
    report, _ = train(mlp(), data, keras.optimizers.SGD(10.0))
    verdicts = report.verdicts()
    assert FAIL in (verdicts["monitor.loss_diverging"], verdicts["monitor.loss_numeric"])


def test_learning_rate_1e7_stalls(data):
    report, _ = train(mlp(), data, keras.optimizers.SGD(1e-7))
    assert report["monitor.loss_stalled"].verdict == FAIL
    assert report["monitor.loss_stalled"].value < 0.05
    assert report["monitor.update_ratio"].verdict == FAIL
    assert "below 1e-6" in report["monitor.update_ratio"].message


def test_very_negative_relu_biases_give_dead_units(data):
    model = mlp(bias_initializer=keras.initializers.Constant(-5.0))
    report, _ = train(model, data, keras.optimizers.Adam(1e-3))
    result = report["monitor.dead_units"]
    assert result.verdict == FAIL
    assert result.evidence["final"] == {"dense": 1.0, "dense_1": 1.0}


def test_std1_deep_sigmoid_saturates(data):
    model = mlp(units=(256,) * 5, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))
    report, _ = train(model, data, keras.optimizers.SGD(0.01), epochs=2)
    result = report["monitor.saturation"]
    assert result.verdict in (WARN, FAIL)
    assert result.value > 0.5
    assert report["monitor.dead_units"].verdict == SKIP


def test_strong_l2_is_flagged(data):
    model = mlp(kernel_regularizer=keras.regularizers.L2(1.0))
    report, _ = train(model, data, keras.optimizers.Adam(1e-3))
    result = report["monitor.regularization"]
    assert result.verdict == FAIL
    assert result.evidence["share"][0] > 0.9
    assert "lower the L2" in result.fix


def test_tiny_noisy_train_set_overfits(data):
    x_train, y_train = blobs(24, seed=5, flip=0.3)
    small = DiagnosticData("binary", x_train, y_train, data.x_val, data.y_val)
    report, history = train(mlp(units=(64, 64)), small, keras.optimizers.Adam(1e-2), epochs=60, batch_size=8)
    result = report["monitor.overfitting"]
    assert result.verdict == WARN
    best = result.evidence["best_epoch"]
    assert best == int(np.argmin(history["val_loss"])) + 1 and best < 48
    assert result.evidence["train_loss_end"] < result.evidence["train_loss_at_best"]


def test_sparse_batch_hooks_with_steps_per_execution(data):
    keras.backend.clear_session()
    keras.utils.set_random_seed(3)
    model = mlp()
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", steps_per_execution=4)
    monitor = TrainingMonitor(data, DiagnosticOptions(seed=0))
    history = model.fit(data.x_train, data.y_train, epochs=3, batch_size=32, verbose=0, callbacks=[monitor]).history
    report = monitor.report(history)
    assert monitor.records.update_epochs == [1, 2, 3]  # one update measurement per epoch, over 4 steps
    assert len(monitor.records.window_losses) == 3 * 4  # 16 batches per epoch = 4 executions
    assert report["monitor.update_ratio"].verdict == PASS
    assert report["monitor.overfitting"].verdict == SKIP  # no validation data


def test_bidirectional_lstm_output_is_checked_for_saturation():
    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = (x.mean(axis=1) > 0).astype("float32")
    inputs = keras.Input((12,))
    h = keras.layers.Reshape((12, 1))(inputs)
    h = keras.layers.Bidirectional(keras.layers.LSTM(4), name="bilstm")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    report, _ = train(model, DiagnosticData("binary", x, y), keras.optimizers.Adam(1e-3), epochs=1)
    result = report["monitor.saturation"]
    assert result.verdict == PASS and list(result.evidence["final"]) == ["bilstm"]
    assert report["monitor.dead_units"].verdict == SKIP


def test_subclassed_model_skips_activation_checks(data):
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(1, activation="sigmoid")

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    keras.backend.clear_session()
    report, _ = train(Tiny(), data, keras.optimizers.Adam(1e-2), epochs=2)
    assert report["monitor.dead_units"].verdict == SKIP
    assert "subclassed" in report["monitor.dead_units"].message
    assert report["monitor.gradient_norms"].verdict == PASS


def test_report_needs_a_fit(data):
    with pytest.raises(RuntimeError, match="recorded nothing"):
        TrainingMonitor(data).report({"loss": [1.0]})


# ------------------------------------------------------------------ the measured quantities and rules


def test_dead_share_counts_units_silent_on_95_percent_of_rows():
    values = np.ones((100, 4))
    values[:, 0] = 0.0  # always silent
    values[:96, 1] = 0.0  # fires on 4% of rows: dead by the 95th percentile
    values[:90, 2] = 0.0  # fires on 10%: alive
    assert dead_share(values) == 0.25 * 2


def test_saturated_share_uses_sigmoid_equivalent_edges():
    sigmoid = 1.0 / (1.0 + np.exp(-np.array([-6.0, -4.0, 0.0, 6.0])))
    assert saturated_share(sigmoid, "sigmoid") == 0.5
    assert saturated_share(np.tanh(np.array([-3.0, -2.0, 0.0, 3.0])), "tanh") == 0.5


def test_window_means_and_climbs():
    assert window_means([1.0, 3.0, 5.0, 7.0], 2) == [2.0, 6.0]
    assert window_means([1.0], 10) == [1.0]
    assert largest_climb([2.0, 1.0, 4.0, 0.5, 1.0]) == 3.0
    assert largest_climb([3.0, 2.0, 1.0]) == 0.0


def test_batch_loss_is_recovered_from_the_running_mean(data):
    monitor = TrainingMonitor(data)
    monitor.on_epoch_begin(0)
    for step, mean in enumerate([4.0, 3.0, 8.0 / 3.0]):  # batch losses 4, 2, 2
        monitor._keep_batch_loss(step, {"loss": mean})
    monitor._keep_batch_loss(4, {"loss": 2.0})  # steps_per_execution=2: steps 4 and 5 averaged
    assert np.allclose(monitor._batch_losses, [4.0, 2.0, 2.0, 1.0])


def test_large_rises_ignore_small_late_noise():
    noisy_descent = [2.3, 1.0, 0.5, 0.3, 0.02, 0.035, 0.02, 0.04, 0.018, 0.03]
    assert large_rises(noisy_descent, scale=2.3) == []
    bouncing = [0.7, 1.6, 0.6, 1.5, 0.7, 1.8, 0.6, 1.4]
    assert len(large_rises(bouncing, scale=0.7)) == 4


def records_with(start=1.0, windows=()):
    records = Records(epochs=[0], data_loss=[start], reg_loss=[0.0])
    records.window_losses = list(windows)
    return records


def test_oscillation_needs_many_large_swings():
    options = DiagnosticOptions()
    bouncing = records_with(0.7, [0.7, 1.6, 0.6, 1.5, 0.7, 1.8, 0.6, 1.4, 0.6, 1.5])
    assert check_loss_oscillating(Observed(bouncing), options).verdict == WARN
    smooth = records_with(0.7, np.linspace(0.7, 0.1, 20))
    assert check_loss_oscillating(Observed(smooth), options).verdict == PASS
    assert check_loss_oscillating(Observed(records_with(0.7, [0.7, 0.6])), options).verdict == SKIP


def test_stalled_distinguishes_no_drop_slow_start_and_early_plateau():
    options = DiagnosticOptions()
    assert check_loss_stalled(Observed(records_with(1.0), {"loss": [0.99, 0.98, 0.97]}), options).verdict == FAIL
    slow = {"loss": [0.99, 0.98, 0.97, 0.97, 0.5, 0.3]}
    assert check_loss_stalled(Observed(records_with(1.0), slow), options).verdict == WARN
    plateau = {"loss": [0.2, 0.19, 0.19, 0.19, 0.19, 0.19]}
    assert check_loss_stalled(Observed(records_with(1.0), plateau), options).verdict == PASS


def test_overfitting_rule():
    options = DiagnosticOptions()
    train_loss = [0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01]
    rising = {"loss": train_loss, "val_loss": [0.5, 0.35, 0.3, 0.32, 0.36, 0.42, 0.48, 0.54]}
    result = check_overfitting(Observed(records_with(0.7), rising), options)
    assert result.verdict == WARN and result.evidence["best_epoch"] == 3
    assert math.isclose(result.value, 0.54 / 0.3 - 1)
    noisy = {"loss": train_loss, "val_loss": [0.5, 0.35, 0.3, 0.32, 0.36, 0.4, 0.45, 0.5]}  # 1.67x: small-data noise
    assert check_overfitting(Observed(records_with(0.7), noisy), options).verdict == PASS
    flat = {"loss": train_loss, "val_loss": [0.5, 0.35, 0.3, 0.31, 0.3, 0.32, 0.31, 0.33]}
    assert check_overfitting(Observed(records_with(0.7), flat), options).verdict == PASS
    assert check_overfitting(Observed(records_with(0.7), {"loss": train_loss}), options).verdict == SKIP


def test_update_ratio_band():
    options = DiagnosticOptions()
    healthy = Records(update_epochs=[1, 2], update_ratio={"a": [1e-3, 2e-3], "b": [1e-2, 1e-2]})
    assert check_update_ratio(Observed(healthy), options).verdict == PASS
    slow = Records(update_epochs=[1], update_ratio={"a": [1e-5], "b": [1e-5], "c": [1e-2]}, data_loss=[1.0, 0.9])
    assert check_update_ratio(Observed(slow), options).verdict == WARN  # small updates and the loss barely moved
    converged = Records(
        update_epochs=[1, 2], update_ratio={"a": [1e-3, 1e-7], "b": [1e-3, 1e-8]}, data_loss=[1.0, 0.01]
    )
    assert check_update_ratio(Observed(converged), options).verdict == PASS  # tiny late updates after the loss fell
    late_huge = Records(
        update_epochs=[1, 2, 3, 4, 5],
        data_loss=[1.0, 5.0],
        update_ratio={"a": [2.0, 1e-3, 1e-3, 1e-3, 1e-3], "b": [3.0, 1e-3, 1e-3, 1e-3, 1e-3]},
    )
    assert check_update_ratio(Observed(late_huge), options).verdict == FAIL  # the median would have hidden it
    huge = Records(update_epochs=[1], update_ratio={"a": [3.0], "b": [5.0], "c": [1e-2]})
    result = check_update_ratio(Observed(huge), options)
    assert result.verdict == FAIL and "larger than the weights" in result.message
    assert check_update_ratio(Observed(Records()), options).verdict == SKIP


def test_underfitting_needs_plateau_no_gap_and_a_loss_far_from_zero():
    options = DiagnosticOptions()
    plateau = {"loss": [1.1, 0.5, 0.4, 0.35, 0.33, 0.32, 0.315, 0.312, 0.31]}
    regularised = records_with(2.3)
    regularised.end_losses = {"train": 0.144, "val": 0.129}  # measured on mnist_l2 after 50 epochs
    result = check_underfitting(Observed(regularised, plateau, chance=2.30), options)
    assert result.verdict == WARN and math.isclose(result.value, 0.144 / 2.30)
    fits_train = records_with(2.3)
    fits_train.end_losses = {"train": 0.01, "val": 0.19}  # the plain MLP: a large generalisation gap
    assert check_underfitting(Observed(fits_train, plateau, chance=2.30), options).verdict == PASS
    still_falling = {"loss": [1.1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]}
    assert check_underfitting(Observed(regularised, still_falling, chance=2.30), options).verdict == PASS
    assert check_underfitting(Observed(regularised, {"loss": [1.0, 0.5]}, chance=2.30), options).verdict == SKIP


def test_dead_units_from_a_dominating_regulariser_warn_instead_of_fail():
    watched = {"dense": "relu", "dense_1": "relu"}
    records = Records(
        epochs=[0, 1], data_loss=[2.3, 0.2], reg_loss=[0.0, 0.0], dead={"dense": [0.0, 0.9], "dense_1": [0.0, 0.95]}
    )
    assert check_dead_units(Observed(records, watched=watched), DiagnosticOptions()).verdict == FAIL
    records.reg_loss = [11.0, 0.3]
    result = check_dead_units(Observed(records, watched=watched), DiagnosticOptions())
    assert result.verdict == WARN and "regulariser" in result.message


def test_compiled_probe_functions_match_the_eager_gradients_and_follow_the_weights():
    from runner.diagnostics.gradients import loss_and_gradients, probe_gradients_function, probe_outputs_function

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype("float32")
    y = rng.standard_normal((64, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    gradients, outputs = probe_gradients_function(model, x, y), probe_outputs_function(model, x)
    for _ in range(2):  # the second time after the weights changed: they must not be constants of the trace
        loss, grads = gradients()
        eager_loss, eager_grads = loss_and_gradients(model, x, y, training=False, include_regularization=False)
        assert loss == pytest.approx(eager_loss, rel=1e-5)
        for compiled, eager in zip(grads, eager_grads, strict=True):
            np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(outputs()[0], keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)
        model.set_weights([w + 0.5 for w in model.get_weights()])
