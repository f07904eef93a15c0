"""Preflight checks on tiny synthetic models: a healthy setup gives no FAIL, each seeded fault its own."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from runner.diagnostics import preflight
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._trainer import CHUNK_STEPS
from runner.diagnostics.report import FAIL, PASS, SKIP, WARN

OPTIONS = DiagnosticOptions(seed=0)


def learnable(task: str = "binary", n: int = 300, features: int = 6, seed: int = 0, classes: int = 3):
    """Standardised inputs with a target that depends on them; split 200/50/50."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype("float32")
    score = x[:, 0] + 0.5 * x[:, 1]
    if task == "regression":
        y = (score + 0.1 * rng.standard_normal(n)).astype("float32")
    elif task == "binary":
        y = (score > 0).astype("int64")
    else:
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype("int64")
    return DiagnosticData(task, x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:])


def mlp(
    features: int,
    units: int = 1,
    activation: str = "sigmoid",
    loss="binary_crossentropy",
    *,
    hidden=(16, 16),
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    optimizer=None,
    extra_layer=None,
) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((features,))]
    for size in hidden:
        layers.append(
            keras.layers.Dense(
                size, activation="relu", kernel_initializer=kernel_initializer, bias_initializer=bias_initializer
            )
        )
        if extra_layer is not None:
            layers.append(extra_layer())
    layers.append(keras.layers.Dense(units, activation=activation, kernel_initializer="glorot_uniform"))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2), loss=loss)
    return model


def verdict(result) -> str:
    return result.verdict


# ------------------------------------------------------------------------------------------- healthy


def test_healthy_binary_mlp_has_no_fail_and_keeps_its_weights():
    data = learnable("binary")
    model = mlp(6)
    before = [w.copy() for w in model.get_weights()]
    optimizer_state = [keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables]

    report = preflight.run(model, data, OPTIONS)

    assert report.worst != FAIL, [(r.check, r.message) for r in report.problems()]
    assert {r.check for r in report.results} >= {
        "preflight.data_finite",
        "preflight.input_scale",
        "preflight.constant_target",
        "preflight.class_balance",
        "preflight.split_leakage",
        "preflight.loss_output_pairing",
        "preflight.initial_loss",
        "preflight.loss_reduction",
        "preflight.initial_weights",
        "preflight.gradient_check",
        "preflight.overfit_batch",
        "preflight.zeroed_inputs",
    }
    assert report["preflight.gradient_check"].verdict == PASS
    assert report["preflight.gradient_check"].evidence["float64"] is True
    assert report["preflight.overfit_batch"].verdict == PASS
    assert report["preflight.zeroed_inputs"].verdict == SKIP
    assert all(r.stage == "preflight" and r.seconds >= 0 for r in report.results)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    after = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    assert all(np.array_equal(a, b) for a, b in zip(optimizer_state, after))


def test_healthy_regression_and_multiclass_pairings_pass():
    regression = learnable("regression")
    model = mlp(6, 1, "linear", "mean_absolute_error")
    assert preflight.check_loss_output_pairing(model, regression, OPTIONS).verdict == PASS
    initial = preflight.check_initial_loss(model, regression, OPTIONS)
    assert initial.verdict == PASS and "zeros" in initial.evidence["reference"]

    multiclass = learnable("multiclass")
    model = mlp(6, 3, "softmax", "sparse_categorical_crossentropy")
    assert preflight.check_loss_output_pairing(model, multiclass, OPTIONS).verdict == PASS
    initial = preflight.check_initial_loss(model, multiclass, OPTIONS)
    assert initial.verdict == PASS and initial.evidence["expected"] == pytest.approx(np.log(3))


def test_disabled_checks_are_not_run():
    data = learnable("binary")
    options = DiagnosticOptions(seed=0, disabled={"preflight.overfit_batch", "preflight.gradient_check"})
    report = preflight.run(mlp(6), data, options)
    names = {r.check for r in report.results}
    assert "preflight.gradient_check" not in names and "preflight.overfit_batch" not in names
    assert "preflight.zeroed_inputs" not in names and "preflight.initial_loss" in names


# ---------------------------------------------------------------------------------------------- data


def test_nan_in_a_split_fails_data_finite():
    data = learnable("binary")
    data.x_val[3, 2] = np.nan
    data.x_test[0, 0] = np.inf
    result = preflight.check_data_finite(data, OPTIONS)
    assert result.verdict == FAIL and result.value == 2
    assert result.evidence["x_val"] == 1 and result.evidence["x_test"] == 1


def test_unscaled_inputs_fail_and_pixels_in_unit_range_pass():
    data = learnable("binary")
    data.x_train = data.x_train * 1000
    result = preflight.check_input_scale(data, OPTIONS)
    assert result.verdict == FAIL and "unscaled" in result.message

    pixels = np.random.default_rng(0).integers(0, 256, (200, 64)).astype("float32") / 255
    image_data = DiagnosticData("binary", pixels, np.arange(200) % 2)
    assert preflight.check_input_scale(image_data, OPTIONS).verdict == PASS
    image_data.x_train = pixels / 255  # scaled twice
    twice = preflight.check_input_scale(image_data, OPTIONS)
    assert twice.verdict == FAIL and "twice" in twice.message
    image_data.x_train = pixels / 80  # small, not vanishing: worth a look only
    assert preflight.check_input_scale(image_data, OPTIONS).verdict == WARN


def test_constant_targets_fail():
    data = learnable("regression")
    data.y_train = np.full_like(data.y_train, 11.2)
    assert preflight.check_constant_target(data, OPTIONS).verdict == FAIL
    single_class = learnable("binary")
    single_class.y_train = np.ones_like(single_class.y_train)
    assert preflight.check_constant_target(single_class, OPTIONS).verdict == FAIL
    assert preflight.check_constant_target(learnable("regression"), OPTIONS).verdict == PASS


def test_class_balance_passes_twenty_percent_and_warns_below_ten():
    data = learnable("binary")
    y = np.zeros(200, dtype="int64")
    y[:40] = 1  # 20% positives, like the seizure data
    data.y_train = y
    assert preflight.check_class_balance(data, OPTIONS).verdict == PASS
    y = np.zeros(200, dtype="int64")
    y[:10] = 1
    data.y_train = y
    result = preflight.check_class_balance(data, OPTIONS)
    assert result.verdict == WARN and result.value == pytest.approx(0.05)
    assert preflight.check_class_balance(learnable("regression"), OPTIONS).verdict == SKIP


def test_rows_copied_from_train_into_test_fail_split_leakage():
    data = learnable("binary")
    assert preflight.check_split_leakage(data, OPTIONS).verdict == PASS
    data.x_test = np.concatenate([data.x_test[:30], data.x_train[:20]])
    result = preflight.check_split_leakage(data, OPTIONS)
    assert result.verdict == FAIL and result.value == pytest.approx(20 / 100)


def test_overlap_explained_by_duplicates_in_the_data_itself_passes_with_the_reason():
    rng = np.random.default_rng(1)
    distinct = rng.standard_normal((140, 4)).astype("float32")
    rows = np.concatenate([distinct, distinct[:60]])[rng.permutation(200)]  # 30% of rows repeated
    data = DiagnosticData("regression", rows[:160], rows[:160, 0], rows[160:], rows[160:, 0])
    result = preflight.check_split_leakage(data, OPTIONS)
    assert result.value > preflight.LEAKAGE_FAIL
    assert result.verdict == PASS and "data set itself" in result.message


# ------------------------------------------------------------------------------------ loss and output


@pytest.mark.parametrize(
    "units, activation, loss, task, expected",
    [
        (1, "softmax", "binary_crossentropy", "binary", "single unit"),
        (3, "sigmoid", "sparse_categorical_crossentropy", "multiclass", "sigmoid output"),
        (1, "linear", "binary_crossentropy", "binary", "expects probabilities"),
        (1, "linear", "binary_crossentropy", "regression", "regression task"),
        (1, "sigmoid", "mean_squared_error", "binary", "regression loss"),
        (1, "sigmoid", "mean_absolute_error", "regression", "only reaches"),
        (1, "relu", "mean_absolute_error", "regression", "only reaches"),
        (2, "softmax", "sparse_categorical_crossentropy", "multiclass", "2 output units for 3 classes"),
    ],
)
def test_wrong_loss_output_pairings_fail(units, activation, loss, task, expected):
    data = learnable(task)
    if task == "regression":
        data.y_train = data.y_train * 3  # spans negative values and values above 1
    result = preflight.check_loss_output_pairing(mlp(6, units, activation, loss), data, OPTIONS)
    assert result.verdict == FAIL
    assert expected in result.message


def test_sigmoid_with_categorical_crossentropy_fails_but_logits_with_from_logits_pass():
    data = learnable("multiclass")
    data.y_train = np.eye(3, dtype="float32")[data.y_train]
    result = preflight.check_loss_output_pairing(mlp(6, 3, "sigmoid", "categorical_crossentropy"), data, OPTIONS)
    assert result.verdict == FAIL and "sigmoid" in result.message
    binary = learnable("binary")
    logits = mlp(6, 1, "linear", keras.losses.BinaryCrossentropy(from_logits=True))
    assert preflight.check_loss_output_pairing(logits, binary, OPTIONS).verdict == PASS


def test_softmax_on_one_unit_fails_the_initial_loss_and_cannot_memorise():
    # Keras trains this head on the logits behind the softmax (the loss looks like a sigmoid's and falls),
    # but the predictions are always 1.0: the checks judge the loss of what the model actually outputs.
    data = learnable("binary")
    model = mlp(6, 1, "softmax")
    initial = preflight.check_initial_loss(model, data, OPTIONS)
    assert initial.verdict == FAIL and initial.value >= 1.0
    options = DiagnosticOptions(seed=0, thresholds={"preflight.overfit_batch.max_steps": 30})
    overfit = preflight.check_overfit_batch(model, data, options)
    assert overfit.verdict == FAIL and overfit.value < 0.95


def test_summed_loss_fails_loss_reduction():
    data = learnable("binary")
    summed = mlp(6, loss=keras.losses.BinaryCrossentropy(reduction="sum"))
    result = preflight.check_loss_reduction(summed, data, OPTIONS)
    assert result.verdict == FAIL and result.value == pytest.approx(2.0, rel=1e-3)
    assert preflight.check_loss_reduction(mlp(6), data, OPTIONS).verdict == PASS


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="counts the traces of a tf.function")
def test_loss_reduction_predicts_on_the_initial_losss_batch_without_a_new_trace():
    data = learnable("binary")
    model = mlp(6)
    assert preflight.check_initial_loss(model, data, OPTIONS).verdict == PASS
    traced = model.predict_function.experimental_get_tracing_count()
    assert preflight.check_loss_reduction(model, data, OPTIONS).verdict == PASS
    assert model.predict_function.experimental_get_tracing_count() == traced  # the same input shape


# -------------------------------------------------------------------------------------------- weights


def test_constant_init_fails_initial_weights():
    model = mlp(6, kernel_initializer=keras.initializers.Constant(0.05))
    result = preflight.check_initial_weights(model, learnable("binary"), OPTIONS)
    assert result.verdict == FAIL and "symmetry" in result.message
    assert "dense" in result.message  # names the layer


def test_oversized_init_fails_initial_weights_and_initial_loss():
    model = mlp(6, 1, "sigmoid", hidden=(64, 64), kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))
    data = learnable("binary")
    weights = preflight.check_initial_weights(model, data, OPTIONS)
    assert weights.verdict == FAIL and weights.value > preflight.INIT_FAIL_RATIO
    assert preflight.check_initial_loss(model, data, OPTIONS).verdict == FAIL


def test_very_negative_relu_biases_are_dead_units_and_the_batch_cannot_be_memorised():
    data = learnable("binary")
    model = mlp(6, bias_initializer=keras.initializers.Constant(-10.0))
    weights = preflight.check_initial_weights(model, data, OPTIONS)
    assert weights.verdict == FAIL and "dead" in weights.message
    options = DiagnosticOptions(seed=0, thresholds={"preflight.overfit_batch.max_steps": 200})
    report = preflight.run(model, data, options)
    assert report["preflight.overfit_batch"].verdict in (WARN, FAIL)  # only the output bias learns
    zeroed = report["preflight.zeroed_inputs"]
    assert zeroed.verdict == FAIL and "ignores its inputs" in zeroed.message


def test_bidirectional_lstm_recurrent_kernels_are_judged_sensibly():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 1)),
            keras.layers.Bidirectional(keras.layers.LSTM(8)),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).standard_normal((40, 12, 1)).astype("float32")
    data = DiagnosticData("binary", x, (x[:, -1, 0] > 0).astype("int64"))
    result = preflight.check_initial_weights(model, data, OPTIONS)
    assert result.verdict == PASS
    assert any("recurrent_kernel" in path for path in result.evidence["layers"])


# ------------------------------------------------------------------------------------------ gradients


class WrongGradient(keras.layers.Layer):
    """Identity in the forward pass whose backward pass doubles the gradient: a deliberately wrong
    custom gradient, as a hand-written op with a bug would have.  Written with keras.ops (2x - x with the
    second x cut off from backprop), so it is the same fault on every backend."""

    def call(self, inputs):
        return 2.0 * inputs - keras.ops.stop_gradient(inputs)


def test_a_wrong_custom_gradient_fails_the_gradient_check():
    model = mlp(6, hidden=(8,), extra_layer=WrongGradient)
    result = preflight.check_gradients(model, learnable("binary"), OPTIONS)
    assert result.verdict == FAIL
    assert result.evidence["max_relative_error"][model.layers[-1].kernel.path] < 1e-4  # after the fault: right
    assert result.value == pytest.approx(0.5, abs=0.05)  # |2g - g| / |2g|


# ---------------------------------------------------------------------------------------- overfitting


def test_shuffled_labels_can_still_be_memorised_so_zeroed_inputs_is_skipped():
    # 16 samples with random labels are memorisable by any network with more parameters than samples:
    # the overfit test passes, and zeroed inputs (which cannot tell 16 samples apart) are not needed.
    # Shuffled labels show up after training instead (validation at chance level).
    data = learnable("binary")
    data.y_train = np.random.default_rng(3).permutation(data.y_train)
    report = preflight.run(mlp(6), data, DiagnosticOptions(seed=0, disabled={"preflight.gradient_check"}))
    assert report["preflight.overfit_batch"].verdict == PASS
    assert report["preflight.zeroed_inputs"].verdict == SKIP


@pytest.mark.parametrize(
    "task, units, activation, loss, optimizer",
    [
        ("regression", 1, "linear", "mean_squared_error", lambda: keras.optimizers.SGD(1e-2)),
        ("multiclass", 3, "softmax", "sparse_categorical_crossentropy", lambda: keras.optimizers.Adam(1e-3)),
    ],
)
def test_several_steps_per_call_memorise_exactly_as_one_step_per_call(task, units, activation, loss, optimizer):
    # TensorFlow runs the compiled steps in chunks and drops the steps after the target: the same steps,
    # losses and scores as one train_on_batch per step, on a memorisation that takes some hundred steps.
    data = learnable(task)
    model = mlp(6, units, activation, loss, optimizer=optimizer(), hidden=(8,))
    outcomes = []
    for chunked in (False, True):
        trainer = preflight.OneBatchTrainer(model, data, OPTIONS)
        trainer.chunked = chunked
        runs = [trainer.memorise(trainer.x), trainer.memorise(np.zeros_like(trainer.x), max_steps=45)]
        outcomes.append([(r.reached, r.steps, r.score, r.loss_before, r.loss_after, r.score_first) for r in runs])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][1] > 2 * CHUNK_STEPS  # several chunks, ending inside one


def test_a_tiny_learning_rate_fails_overfit_and_zeroed_inputs_cannot_judge():
    data = learnable("regression")
    model = mlp(6, 1, "linear", "mean_squared_error", optimizer=keras.optimizers.SGD(3e-5), hidden=(32,))
    options = DiagnosticOptions(seed=0, thresholds={"preflight.overfit_batch.max_steps": 200})
    probes = preflight.Probes(preflight.OneBatchTrainer(model, data, options))
    overfit = probes.add(preflight.check_overfit_batch(model, data, options, probes))
    assert overfit.verdict == FAIL and overfit.evidence["steps"] == 200
    assert overfit.evidence["loss_after"] < overfit.evidence["loss_before"]
    zeroed = preflight.check_zeroed_inputs(model, data, options, probes)
    assert zeroed.verdict == SKIP and "inconclusive" in zeroed.message  # nothing moved: no evidence either way


def test_non_finite_data_skips_the_model_checks_instead_of_measuring_nan():
    data = learnable("binary")
    data.x_train[0, 0] = np.nan
    report = preflight.run(mlp(6), data, OPTIONS)
    assert report["preflight.data_finite"].verdict == FAIL
    for name in ("initial_loss", "gradient_check", "overfit_batch", "zeroed_inputs"):
        assert report[f"preflight.{name}"].verdict == SKIP
        assert "NaN" in report[f"preflight.{name}"].message


def test_a_slow_but_learning_optimiser_passes_the_overfit_test():
    # Plain SGD at 0.01 is a usual, healthy choice that needs more than the step budget to memorise 16 rows.
    model = mlp(6, optimizer=keras.optimizers.SGD(0.01))
    report = preflight.run(model, learnable("binary"), DiagnosticOptions(seed=0))
    assert report["preflight.overfit_batch"].verdict == PASS, report["preflight.overfit_batch"].message
    assert report["preflight.zeroed_inputs"].verdict == SKIP


def test_the_overfit_verdict_has_no_time_budget():
    # Budgets are steps: a machine so slow that every step takes "forever" still gets the same verdict.
    import time

    options = DiagnosticOptions(seed=0, disabled={"preflight.gradient_check"})
    idle = preflight.run(mlp(6), learnable("binary"), options).verdicts()
    clock = iter(range(0, 10**9, 3600))
    real = time.perf_counter
    try:
        time.perf_counter = lambda: float(next(clock))  # an hour passes between any two readings
        loaded = preflight.run(mlp(6), learnable("binary"), options).verdicts()
    finally:
        time.perf_counter = real
    assert loaded == idle


@pytest.mark.parametrize("rate, expected", [(0.0, PASS), (0.5, PASS), (0.6, WARN), (0.9, FAIL)])
def test_dropout_rate_warns_above_one_half_and_fails_at_extreme_rates(rate, expected):
    model = mlp(6, extra_layer=lambda: keras.layers.Dropout(rate))
    assert preflight.check_dropout_rate(model, learnable("binary"), OPTIONS).verdict == expected
