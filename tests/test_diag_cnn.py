"""The diagnostics on a small convolutional image classifier: the whole suite runs on it, and the image
analyses (first-layer filters, Grad-CAM, activation maximisation) find what the generated images hold.

Data: 28x28x1 images whose left half (class 0) or right half (class 1) is bright, a task a CNN learns in an
epoch; the models are built here with Keras directly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from runner.diagnostics import DiagnosticData, DiagnosticOptions, analysis, diagnose
from runner.diagnostics.analysis import _shared
from runner.diagnostics.analysis.conv_features import _score_fn, _unit_weights, maximise
from runner.diagnostics.analysis.gradcam_focus import border_share, heat_maps, resize, score_weights
from runner.diagnostics.gradients import activation_gradients
from runner.diagnostics.introspect import logits_tap
from runner.diagnostics.report import PASS, SKIP

SIDE = 28
FIGURES = ("analysis/gradcam.png", "analysis/conv_filters.png", "analysis/activation_maximisation.png")


def halves(rows: int, seed: int = 0, side: int = SIDE, channels: int = 1):
    """Dim noise with the left (label 0) or right (label 1) half made bright."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    images = 0.1 * rng.random((rows, side, side, channels))
    images[labels == 0, :, : side // 2] += 0.8
    images[labels == 1, :, side // 2 :] += 0.8
    return images.astype("float32"), labels


def split(x, y, task="multiclass") -> DiagnosticData:
    cut = [len(x) * 3 // 5, len(x) * 4 // 5]
    (x_tr, x_va, x_te), (y_tr, y_va, y_te) = np.split(x, cut), np.split(y, cut)
    return DiagnosticData(task, x_tr, y_tr, x_va, y_va, x_te, y_te, class_names=["left", "right"])


def cnn(input_shape=(SIDE, SIDE, 1), units=2, activation="softmax", reshape=False) -> keras.Model:
    layers = [keras.layers.Reshape((SIDE, SIDE, 1))] if reshape else []
    layers += [
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation=activation),
    ]
    model = keras.Sequential([keras.Input(input_shape), *layers])
    loss = "sparse_categorical_crossentropy" if units > 1 else "binary_crossentropy"
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def data() -> DiagnosticData:
    return split(*halves(300))


@pytest.fixture(scope="module")
def trained(data) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = cnn()
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=32, verbose=0)
    assert model.evaluate(data.x_test, data.y_test, verbose=0)[1] == 1.0  # the task is learnt
    return model


# Checks that cannot apply to a 2-epoch, unregularised, dropout-free classifier without slices, each with its
# reason: a regression target, a failed one-batch overfit, sigmoid/tanh units, 3 or 6+ epochs, weight
# penalties, a sequence, slices, stochastic layers.
NOT_FOR_THIS_CNN = {
    "preflight.target_scale",
    "preflight.zeroed_inputs",
    "monitor.saturation",
    "monitor.overfitting",
    "monitor.underfitting",
    "monitor.regularization",
    "analysis.receptive_field",
    "analysis.slices",
    "analysis.dropout_consistency",
}


@pytest.mark.parametrize(
    "disabled",
    [
        # label_signal trains four clones for 150 steps each (10 s of the run's 25 s here); the zoo runs it
        # on Conv2D models by default, so the default run leaves it out and the extended one keeps it.
        {"preflight.label_signal"},
        pytest.param(set(), marks=[pytest.mark.slow, pytest.mark.extended], id="every-check"),
    ],
)
def test_the_full_suite_runs_on_a_cnn_and_draws_the_image_figures(data, tmp_path, disabled):
    keras.utils.set_random_seed(0)
    options = DiagnosticOptions(output_dir=tmp_path, seed=0, disabled=disabled)
    report = diagnose(cnn(), data, "full", options, {"epochs": 2, "batch_size": 32})
    crashed = [f"{r.check}: {r.evidence['error']}" for r in report.results if "error" in r.evidence]
    assert not crashed, "checks that crashed instead of judging:\n" + "\n".join(crashed)
    verdicts = report.verdicts()
    for name in ("analysis.gradcam_focus", "analysis.conv_features", "analysis.attributions"):
        assert verdicts[name] == PASS, report[name].message
    assert verdicts["analysis.constant_units"] != SKIP  # Conv2D channels are units too
    plots = {plot for result in report.results for plot in result.plots}
    for figure in FIGURES:
        assert figure in plots and (tmp_path / figure).stat().st_size > 0
    skipped = {r.check: r.message for r in report.results if r.verdict == SKIP}
    assert set(skipped) <= NOT_FOR_THIS_CNN, skipped
    assert all(message for message in skipped.values())


def test_gradcam_puts_the_heat_on_the_bright_half(trained, data):
    images, labels = data.x_test[:16], data.y_test[:16]
    tap, to_logits = logits_tap(trained, trained.layers[2].name, images)
    weights, predicted = score_weights(data, trained.predict(images, verbose=0))
    assert (predicted == labels).all()
    cams, maps = heat_maps(tap, to_logits, images, weights, (SIDE, SIDE))
    assert cams.shape == (16, 11, 11) and maps.shape == (16, SIDE, SIDE) and maps.min() >= 0
    left = maps[:, :, : SIDE // 2].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    assert (left[labels == 0] > 0.75).all() and (left[labels == 1] < 0.25).all(), left


def test_gradcam_result_counts_its_images_and_measures_against_the_band(trained, data, tmp_path):
    result = analysis.gradcam_focus(trained, data, DiagnosticOptions(output_dir=tmp_path, seed=0))
    assert result.verdict == PASS and result.plots == ["analysis/gradcam.png"]
    assert len(result.evidence["images"]) == 8 and result.evidence["flat_maps"] == 0
    assert result.evidence["band_px"] == 4 and 0.45 < result.evidence["band_area"] < 0.5
    # A half of the image holds the evidence: about as much heat in the band as the band's area.
    assert abs(result.value - result.evidence["band_area"]) < 0.2


def test_border_share_and_resize():
    heat = np.zeros((2, 16, 16))
    heat[0, :2] = 1.0  # all on the top rows
    heat[1, 6:10, 6:10] = 1.0  # all in the middle
    shares, band, area = border_share(heat)
    assert band == 2 and area == pytest.approx(1 - (12 / 16) ** 2)
    assert shares.tolist() == [1.0, 0.0]
    assert np.isnan(border_share(np.zeros((1, 8, 8)))[0][0])  # no heat, no share
    small = np.arange(4.0).reshape(2, 2)
    assert resize(small, (2, 2)) == pytest.approx(small)
    big = resize(small, (8, 8))
    assert big.shape == (8, 8) and big.min() == 0.0 and big.max() == 3.0 and big[0, 0] == 0.0


def test_activation_gradients_match_finite_differences(trained, data):
    images = data.x_test[:4]
    tap, to_logits = logits_tap(trained, trained.layers[2].name, images)
    weights = keras.ops.convert_to_tensor(np.eye(2, dtype="float32")[[0, 1, 0, 1]])

    def score(later):
        return keras.ops.sum(to_logits(later) * weights, axis=-1)

    activations, grads = activation_gradients(tap, images, score)
    head = keras.Model(tap.outputs[0], tap.outputs[1])
    step = 1e-2 * np.random.default_rng(0).standard_normal(activations.shape).astype("float32")

    def total(values):
        return float(keras.ops.sum(score(head(values))))

    central = (total(activations + step) - total(activations - step)) / 2
    assert (grads * step).sum() == pytest.approx(central, rel=1e-2, abs=1e-4)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "activation_layer", "linear"])
def test_logits_tap_returns_the_output_before_its_squashing(kind):
    keras.utils.set_random_seed(0)
    x = halves(8)[0]
    inputs = keras.Input((SIDE, SIDE, 1))
    hidden = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    if kind == "activation_layer":
        outputs = keras.layers.Activation("softmax")(keras.layers.Dense(3)(hidden))
    else:
        outputs = keras.layers.Dense(1 if kind == "sigmoid" else 3, activation=kind)(hidden)
    model = keras.Model(inputs, outputs)
    tap, to_logits = logits_tap(model, "conv", x)
    logits = keras.ops.convert_to_numpy(to_logits(tap(x)[1]))
    squash = {"softmax": keras.ops.softmax, "sigmoid": keras.ops.sigmoid, "activation_layer": keras.ops.softmax}
    expected = np.asarray(model.predict(x, verbose=0))
    got = keras.ops.convert_to_numpy(squash[kind](logits)) if kind in squash else logits
    assert got == pytest.approx(expected, abs=1e-5)
    if kind != "linear":
        assert not np.allclose(logits, expected)  # the scores are read before the squashing


def test_activation_maximisation_grows_each_class_on_its_own_half(trained, data):
    x = data.x_test
    tap, to_logits = logits_tap(trained, trained.layers[2].name, x)
    activations, later = tap(x[:16], training=False)
    logits = keras.ops.convert_to_numpy(to_logits(later))
    filters, classes, channel, logit = _unit_weights(keras.ops.convert_to_numpy(activations), logits, True)
    assert len(filters) == 4 and classes == [0, 1] and channel.shape == (6, 8) and logit.shape == (6, 2)
    start = np.full((6, SIDE, SIDE, 1), 0.5, dtype="float32")
    start += 0.05 * np.random.default_rng(0).standard_normal(start.shape).astype("float32")
    grown = maximise(tap, _score_fn(to_logits, channel, logit), start, 0.0, 1.0, 0.5)
    assert grown.shape == start.shape and grown.min() >= 0.0 and grown.max() <= 1.0
    left_minus_right = grown[:, :, : SIDE // 2].mean(axis=(1, 2, 3)) - grown[:, :, SIDE // 2 :].mean(axis=(1, 2, 3))
    assert left_minus_right[4] > 0.2 and left_minus_right[5] < -0.2  # class 0 bright left, class 1 right


def test_conv_features_draws_rgb_filters_and_reads_flat_rows(tmp_path):
    keras.utils.set_random_seed(0)
    rgb = split(*halves(60, side=8, channels=3))
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten()]
        + [keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile("adam", "binary_crossentropy")
    result = analysis.conv_features(model, rgb, DiagnosticOptions(output_dir=tmp_path))
    assert result.verdict == PASS and 0.0 <= result.value <= 1.0
    assert [unit["unit"] for unit in result.evidence["units"]][-2:] == ["class 0", "class 1"]  # +/- one logit
    assert all((tmp_path / plot).stat().st_size > 0 for plot in result.plots) and len(result.plots) == 2
    assert analysis.gradcam_focus(model, rgb, DiagnosticOptions(output_dir=tmp_path)).evidence["band_px"] == 1
    # MNIST-like flat rows that the model reshapes itself are images too, as for the saliency maps.
    x, y = halves(60)
    flat = split(x.reshape(60, -1), y)
    assert _shared._image_layout(flat.x_test) == (SIDE, SIDE, 1)
    reshaping = cnn(input_shape=(SIDE * SIDE,), reshape=True)
    assert analysis.gradcam_focus(reshaping, flat, DiagnosticOptions()).verdict == PASS


def test_models_without_conv2d_or_images_are_skipped_with_the_reason():
    keras.utils.set_random_seed(0)
    x, y = halves(40)
    dense = keras.Sequential([keras.Input((SIDE, SIDE, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    result = analysis.gradcam_focus(dense, split(x, y), DiagnosticOptions())
    assert result.verdict == SKIP and "no Conv2D" in result.message
    rows = np.random.default_rng(0).standard_normal((40, 6)).astype("float32")
    mlp = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    result = analysis.conv_features(mlp, split(rows, y), DiagnosticOptions())
    assert result.verdict == SKIP and "not images" in result.message
