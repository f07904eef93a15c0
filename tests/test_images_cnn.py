"""The images data set (a folder of class sub-folders, decoded into memory-mapped arrays) and the cnn builder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import DataFormatError, DataNotFoundError, load_dataset, spec_for
from datasets.cache import parsed_dir
from datasets.image_cache import files_digest

CLASSES = ("cat", "dog", "fox")


def class_value(label: int, index: int) -> int:
    """Each class its own grey level (and a little per image), so a row's pixels tell its label."""
    return 30 + 80 * label + index % 5


def write_folder(root: Path, classes=CLASSES, per_class: int = 12, size=(8, 8), suffix: str = ".png") -> Path:
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = np.full((*size, 3), class_value(label, index), dtype=np.uint8)
            pixels[..., 1] //= 2  # colour, so that grayscale differs from any one channel
            Image.fromarray(pixels).save(root / name / f"{index:03d}{suffix}")
    return root


def load(root: Path, **options):
    return load_dataset("images", path=str(root), image_size=[8, 8], **options)


def row_labels_from_pixels(x: np.ndarray, scale: float) -> np.ndarray:
    red = np.asarray(x[..., 0]).reshape(len(x), -1).mean(axis=1) * scale
    return np.rint((red - 30) / 80).astype(int)


# ---------------------------------------------------------------- the loader


def test_rgb_folder_loads_as_memory_mapped_unit_scaled_splits(tmp_path):
    root = write_folder(tmp_path / "pets")
    data = load(root)
    assert data.task == "multiclass" and data.class_names == list(CLASSES) and data.split_source == "random"
    assert [len(data.train), len(data.val), len(data.test)] == [28, 4, 4]
    for part in data.splits().values():
        assert isinstance(part.x, np.memmap) and part.x.dtype == np.float32 and part.x.shape[1:] == (8, 8, 3)
        assert 0.0 <= part.x.min() and part.x.max() <= 1.0
        np.testing.assert_array_equal(row_labels_from_pixels(part.x, 255), part.y)  # rows keep their labels
        assert all(name.split("/")[0] == CLASSES[label] for name, label in zip(part.meta["file"], part.y))
    assert sorted(np.bincount(data.val.y)) == [1, 1, 2]  # stratified: no class left out of a held-out split
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    assert sorted(np.concatenate([p.meta["file"] for p in data.splits().values()])) == files
    expected = files_digest(
        [(n, (root / n).stat().st_size, hashlib.sha256((root / n).read_bytes()).hexdigest()) for n in files]
    )
    assert data.files == {str(root.absolute()): expected}
    assert data.input_shape == (8, 8, 3) and len(data.feature_names) == 8 * 8 * 3


def test_second_load_reads_the_cache_and_a_changed_file_decodes_again(tmp_path):
    root = write_folder(tmp_path / "pets")
    first = load(root)
    again = load(root)
    assert "read from cache" in again.notes[-1]
    np.testing.assert_array_equal(first.train.x, again.train.x)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "cat" / "000.png", format="BMP")  # new bytes
    changed = load(root)
    assert "decoded once" in changed.notes[-1] and changed.files != first.files


def test_grayscale_unscaled_and_mixed_sizes(tmp_path):
    root = write_folder(tmp_path / "pets")
    Image.fromarray(np.full((5, 13, 3), 110, np.uint8)).save(root / "dog" / "odd_size.jpg")
    data = load(root, color_mode="grayscale", scale="none", split_seed=3, cache=False)
    assert data.train.x.shape[1:] == (8, 8, 1) and data.train.x.dtype == np.uint8
    assert data.feature_scaling is None and len(data.feature_names) == 64
    everything = np.concatenate([p.meta["file"] for p in data.splits().values()])
    assert "dog/odd_size.jpg" in everything and len(everything) == 37
    assert not list(parsed_dir().glob(".images-uncached*"))  # mapped, then deleted: nothing left on disk


def test_given_split_folders_are_the_split_and_a_missing_one_is_cut_from_train(tmp_path):
    root = tmp_path / "given"
    write_folder(root / "train", per_class=10)
    write_folder(root / "val", per_class=2)
    write_folder(root / "test", per_class=3)
    data = load(root)
    assert data.split_source == "fixed" and [len(p) for p in data.splits().values()] == [30, 6, 9]
    assert all(name.startswith("test/") for name in data.test.meta["file"])
    assert spec_for("images", {"path": str(root)}).n_classes == 3

    partial = tmp_path / "partial"
    write_folder(partial / "train", per_class=10)
    write_folder(partial / "test", per_class=3)
    data = load(partial, val_fraction=0.2)
    assert data.split_source == "random" and [len(p) for p in data.splits().values()] == [24, 6, 9]
    assert all(name.startswith("train/") for name in data.val.meta["file"])
    pooled = load(root, split="random")
    assert pooled.split_source == "random" and sum(len(p) for p in pooled.splits().values()) == 45


def test_max_samples_caps_each_split_before_decoding(tmp_path):
    data = load(write_folder(tmp_path / "pets", per_class=20), max_samples=9)
    assert [len(p) for p in data.splits().values()] == [9, 6, 6]
    assert sorted(np.bincount(data.train.y)) == [3, 3, 3]


def test_bad_folders_get_errors_that_name_the_place(tmp_path):
    with pytest.raises(DataNotFoundError, match="path is not set"):
        load_dataset("images")
    with pytest.raises(DataNotFoundError, match="nowhere.* is not a folder"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty has 0 class sub-folder\(s\)"):
        load(tmp_path / "empty")
    root = write_folder(tmp_path / "pets")
    (root / "owl").mkdir()
    (root / "owl" / "notes.txt").write_text("no images here")
    with pytest.raises(DataFormatError, match=r"class folder .*owl holds no image files"):
        load(root)
    (root / "owl" / "notes.txt").unlink()
    (root / "owl" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataFormatError, match=r"owl/broken\.png is not a readable image"):
        load(root)
    with pytest.raises(ValueError, match=r"image_size=\[8\]: expected two positive integers"):
        load_dataset("images", path=str(root), image_size=[8])
    with pytest.raises(ValueError, match="color_mode='cmyk'"):
        load(root, color_mode="cmyk")


def test_unknown_class_in_a_given_split_is_refused(tmp_path):
    root = tmp_path / "given"
    write_folder(root / "train", classes=("cat", "dog"))
    write_folder(root / "val", classes=("cat", "eel"))
    with pytest.raises(DataFormatError, match=r"val/eel is a class with no folder in .*train"):
        load(root)


def test_spec_reads_the_task_from_the_class_folders(tmp_path):
    assert spec_for("images", {"path": str(tmp_path / "missing")}).task is None
    two = write_folder(tmp_path / "two", classes=("no", "yes"))
    assert (spec_for("images", {"path": str(two)}).task, spec_for("images", {"path": str(two)}).n_classes) == (
        "binary",
        2,
    )
    assert load(two).task == "binary"
    assert spec_for("images", {"path": str(write_folder(tmp_path / "three"))}).task == "multiclass"


# ---------------------------------------------------------------- the runner on memory-mapped arrays


def test_batches_and_predictions_from_a_memmap_match_the_in_memory_array(tmp_path):
    keras = pytest.importorskip("keras")
    from runner.runtime import backend

    data = load(write_folder(tmp_path / "pets"))
    x = data.train.x
    assert isinstance(x, np.memmap)
    in_memory = np.array(x)
    kwargs = dict(batch_size=5, shuffle=True, seed=3, pipeline="auto")
    mapped = backend.fit_inputs(x, data.train.y, data.val.x, data.val.y, **kwargs)
    plain = backend.fit_inputs(in_memory, data.train.y, np.array(data.val.x), data.val.y, **kwargs)
    if backend.name() == "tensorflow":
        for (xa, ya), (xb, yb) in zip(mapped.x, plain.x, strict=True):
            np.testing.assert_array_equal(np.asarray(xa), np.asarray(xb))
            np.testing.assert_array_equal(np.asarray(ya), np.asarray(yb))
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    expected = model.predict(in_memory, verbose=0)
    calls, predict = [], model.predict
    model.predict = lambda rows, **kwargs: calls.append(len(rows)) or predict(rows, **kwargs)
    backend.MAPPED_CHUNK_BYTES, saved = 5 * 8 * 8 * 3 * 4, backend.MAPPED_CHUNK_BYTES  # 5 rows: 4, whole batches
    try:
        chunked = backend.predict(model, x, batch_size=2)
    finally:
        backend.MAPPED_CHUNK_BYTES = saved
    assert calls == [4] * 7 and isinstance(x, np.memmap)  # 28 rows, never all at once
    np.testing.assert_allclose(chunked, expected, rtol=1e-5, atol=1e-6)  # batch sizes change the rounding


# ---------------------------------------------------------------- the cnn builder


@pytest.mark.parametrize(
    "shape, options, units, parameters",
    [
        # conv 3x3x1x32+32, conv 3x3x32x64+64, dense 7*7*64*128+128, output 128*10+10
        ((28, 28), {}, 10, 320 + 18496 + 401536 + 1290),
        ((28, 28, 1), {}, 10, 320 + 18496 + 401536 + 1290),
        # 8 -> 4 -> 2 pixels: 2*2*64 features
        ((8, 8, 3), {}, 3, 896 + 18496 + 32896 + 387),
        ((8, 8, 3), {"global_pooling": True}, 3, 896 + 18496 + 8320 + 387),
        # batch norm: no conv bias, 4 values per filter; blocks past a 1-pixel map still build
        # 8 -> 4 -> 2 -> 1 -> 1 pixels: 3*3*3*4 + 3 * 3*3*4*4 kernels, 4 * 4*4 batch norm, output 4+1
        ((8, 8, 3), {"batch_norm": True, "conv_filters": [4, 4, 4, 4], "hidden_units": []}, 1, 108 + 432 + 64 + 5),
    ],
)
def test_cnn_shapes_and_parameter_counts(shape, options, units, parameters):
    keras = pytest.importorskip("keras")
    from models import build_model

    model = build_model("cnn", input_shape=shape, output_units=units, output_activation="softmax", **options)
    assert model.output_shape == (None, units)
    assert model.count_params() == parameters
    assert model.get_layer("conv_1").output.shape[1:3] == shape[:2]
    if len(shape) == 2:
        assert isinstance(model.get_layer("add_channel"), keras.layers.Reshape)


def test_cnn_regularises_every_kernel_and_refuses_flat_inputs():
    keras = pytest.importorskip("keras")
    from models.cnn import build_cnn

    model = build_cnn((8, 8, 1), 2, "softmax", conv_filters=[4], hidden_units=[6], l2=0.01, dropout=0.3)
    regularised = [layer.name for layer in model.layers if getattr(layer, "kernel_regularizer", None) is not None]
    assert regularised == ["conv_1", "dense_1"]
    dropouts = [(layer.name, layer.rate) for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [("features_dropout", 0.3), ("dropout_1", 0.3)]
    with pytest.raises(ValueError, match=r"\(784,\); for MNIST set dataset.flatten=false"):
        build_cnn((784,), 10)


# ---------------------------------------------------------------- a run


@pytest.mark.slow  # ~30 s on 2 shared cores: TensorFlow's first compile, MLflow's store
def test_one_epoch_cnn_run_on_an_image_folder(tmp_path):
    pytest.importorskip("keras")
    from hydra import compose, initialize_config_dir

    from runner.cli import CONF_DIR
    from runner.run.job import run_job

    root = write_folder(tmp_path / "pets", per_class=16)
    overrides = [
        "dataset=images",
        f"dataset.path={root}",
        "dataset.image_size=[8,8]",
        "model=cnn",
        "model.conv_filters=[4,8]",
        "model.hidden_units=[8]",
        "trainer.epochs=1",
        "trainer.batch_size=8",
        f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    result = run_job(cfg, tmp_path / "run", overrides=overrides)
    assert np.isfinite(result.metrics["test_accuracy"]) and result.metrics["epochs_run"] == 1
    record = json.loads((tmp_path / "run" / "reports" / "dataset.json").read_text())
    assert record["task"] == "multiclass" and record["input_shape"] == [8, 8, 3]
    assert record["rows"] == {"train": 38, "val": 5, "test": 5} and len(next(iter(record["files"].values()))) == 64
