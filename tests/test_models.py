"""The model builders: the book's parameter counts and the config options that change the network."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models import build_model, output_head  # noqa: E402


def test_book_parameter_counts():
    seizure = build_model(
        "mlp", input_shape=(178,), output_units=1, output_activation="sigmoid", hidden_units=[128, 64, 64, 32, 16]
    )
    assert seizure.count_params() == 37_953
    mnist = build_model(
        "mlp", input_shape=(784,), output_units=10, output_activation="softmax", hidden_units=[512, 256, 128]
    )
    assert mnist.count_params() == 567_434
    wine = build_model("mlp", input_shape=(10,), output_units=1, hidden_units=[32, 32, 32, 32, 16])
    assert wine.count_params() == 4_065
    book_wine = build_model("mlp", input_shape=(9,), output_units=1, hidden_units=[32, 32, 32, 32, 16])
    assert book_wine.count_params() == 4_033  # the book sliced 9 of the 10 input columns


def test_images_are_flattened_with_the_same_parameter_count():
    model = build_model(
        "mlp", input_shape=(28, 28), output_units=10, output_activation="softmax", hidden_units=[512, 256, 128]
    )
    assert model.count_params() == 567_434


def test_dropout_and_l2_apply_to_every_hidden_layer():
    model = build_model(
        "mlp",
        input_shape=(20,),
        output_units=3,
        output_activation="softmax",
        hidden_units=[16, 8, 4],
        dropout=0.5,
        l2=0.01,
    )
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropouts] == [0.5, 0.5, 0.5]
    assert len(model.losses) == 3  # one L2 penalty per hidden kernel, none on the output


def test_batch_norm_replaces_dense_bias():
    model = build_model("mlp", input_shape=(5,), output_units=1, hidden_units=[4], batch_norm=True)
    assert model.get_layer("dense_1").use_bias is False
    assert isinstance(model.get_layer("batch_norm_1"), keras.layers.BatchNormalization)


def test_constant_initializer_sets_every_kernel_weight_alike():
    model = build_model(
        "mlp",
        input_shape=(10,),
        output_units=1,
        hidden_units=[32, 16],
        kernel_initializer="constant",
        kernel_initializer_args={"value": 0.05},
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            assert np.all(layer.kernel.numpy() == 0.05)


def test_bilstm_reads_a_flat_segment_as_a_sequence():
    model = build_model(
        "bilstm", input_shape=(178,), output_units=1, output_activation="sigmoid", lstm_units=[8], hidden_units=[4]
    )
    out = model.predict(np.zeros((3, 178), dtype="float32"), verbose=0)
    assert out.shape == (3, 1)
    assert model.get_layer("add_channel").output.shape == (None, 178, 1)
    assert isinstance(model.get_layer("bilstm_1"), keras.layers.Bidirectional)


def test_stacked_lstm_returns_sequences_between_layers():
    model = build_model(
        "bilstm", input_shape=(12, 2), output_units=1, lstm_units=[4, 3], hidden_units=[], bidirectional=False
    )
    assert model.get_layer("lstm_1").return_sequences is True
    assert model.get_layer("lstm_2").return_sequences is False


def test_output_heads_follow_the_task():
    assert output_head("regression", 1) == (1, "linear")
    assert output_head("binary", 2) == (1, "sigmoid")
    assert output_head("multiclass", 10) == (10, "softmax")
    with pytest.raises(ValueError, match="unknown task"):
        output_head("ranking", 2)


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match="unknown architecture 'transformer'; choose one of mlp, bilstm, cnn"):
        build_model("transformer", input_shape=(3,), output_units=1)
