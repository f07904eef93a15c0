"""Tests for the datasets package: real data (marked real_data) and generated files in the real layouts."""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SEIZURE_FEATURES, make_mnist_arrays, make_wine_frame

from datasets import (
    DATASET_NAMES,
    ChecksumError,
    DataError,
    DataFormatError,
    DataNotFoundError,
    Dataset,
    Split,
    default_cache_dir,
    load_dataset,
    sources,
)
from datasets.csv_rows import FieldCountError

SHARED_MNIST_SHA = "38727c8ccfdb9fde55b8ff2dbf6fba5f26e2366bf8305b4661be9161596ec5cb"
KERAS_MNIST_SHA = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
WINE_FULL = "wine/winequality-white.csv"
SEIZURE_UCI = "seizure/epileptic_seizure_recognition.csv"


def real(name, data_dir, **options):
    return load_dataset(name, data_dir=str(data_dir), download=False, **options)


def rows_as_set(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.ascontiguousarray(x)}


# ================================================================ real data

real_data = pytest.mark.real_data


@pytest.fixture(scope="module")
def wine_book(real_data_dir):
    return real("wine", real_data_dir)


@pytest.fixture(scope="module")
def wine_random(real_data_dir):
    return real("wine", real_data_dir, split="random")


@pytest.fixture(scope="module")
def seizure_book(real_data_dir):
    return real("seizure", real_data_dir)


@pytest.fixture(scope="module")
def seizure_random_raw(real_data_dir):
    return real("seizure", real_data_dir, split="random", scale="none")


@pytest.fixture(scope="module")
def mnist_flat(real_data_dir):
    return real("mnist", real_data_dir)


@real_data
def test_wine_book_split_shapes(wine_book):
    assert wine_book.split_source == "book"
    assert [len(s) for s in wine_book.splits().values()] == [3918, 490, 490]
    assert wine_book.n_features == 10 and wine_book.input_shape == (10,)
    assert "alcohol" not in wine_book.feature_names and "quality" not in wine_book.feature_names
    assert wine_book.feature_names[0] == "fixed acidity" and wine_book.feature_names[-1] == "sulphates"
    assert wine_book.task == "regression" and wine_book.n_classes == 1 and wine_book.class_names is None
    assert wine_book.train.x.dtype == np.float32 and wine_book.train.y.dtype == np.float32
    assert set(np.unique(wine_book.train.meta["quality"])) <= set(range(3, 10))


@real_data
def test_wine_target_scaling_round_trips_to_percent_alcohol(wine_book, real_data_dir):
    ts = wine_book.target_scaling
    assert ts["unit"] == "% vol"
    original = wine_book.train.y * ts["std"] + ts["mean"]
    assert original.mean() == pytest.approx(10.51, abs=0.05)
    raw_train = pd.read_csv(real_data_dir / "wine/book_split/train_data.csv")
    np.testing.assert_allclose(original, raw_train["alcohol"], atol=1e-4)
    assert abs(wine_book.train.y.mean()) < 1e-5 and wine_book.train.y.std() == pytest.approx(1, abs=1e-4)


@real_data
def test_wine_scaler_is_fitted_on_train_rows_only(wine_book, real_data_dir):
    scaling = wine_book.feature_scaling
    assert scaling["method"] == "standard"
    assert np.allclose(wine_book.train.x.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(wine_book.train.x.std(axis=0), 1, atol=1e-4)
    raw_train = pd.read_csv(real_data_dir / "wine/book_split/train_data.csv")[wine_book.feature_names]
    whole = pd.read_csv(real_data_dir / WINE_FULL, sep=";")[wine_book.feature_names]
    np.testing.assert_allclose(scaling["mean"], raw_train.mean(), rtol=1e-6)
    np.testing.assert_allclose(scaling["std"], raw_train.std(ddof=0), rtol=1e-5)
    assert not np.allclose(scaling["mean"], whole.mean(), rtol=1e-6)
    # Val/test are transformed with the train statistics, so their means are not exactly 0.
    assert np.abs(wine_book.val.x.mean(axis=0)).max() > 1e-3


@real_data
def test_wine_random_split_sizes_and_disjoint_rows(wine_random):
    assert wine_random.split_source == "random"
    ids = {name: s.meta["row_id"] for name, s in wine_random.splits().items()}
    assert [len(v) for v in ids.values()] == [3918, 490, 490]
    # The white-wine file has repeated rows, so disjointness is checked on file row numbers.
    assert sorted(np.concatenate(list(ids.values()))) == list(range(1, 4899))
    assert any("duplicate" in note for note in wine_random.notes)


@real_data
def test_wine_random_split_is_stratified_on_alcohol(wine_random, real_data_dir):
    alcohol = pd.read_csv(real_data_dir / WINE_FULL, sep=";")["alcohol"].to_numpy()
    edges = np.quantile(alcohol, np.linspace(0, 1, 11)[1:-1])
    for split in (wine_random.val, wine_random.test):
        bins = np.bincount(np.searchsorted(np.unique(edges), alcohol[split.meta["row_id"] - 1], side="right"))
        full = np.bincount(np.searchsorted(np.unique(edges), alcohol, side="right"))
        np.testing.assert_allclose(bins / len(split), full / len(alcohol), atol=0.01)


@real_data
def test_wine_random_split_depends_only_on_seed(wine_random, real_data_dir):
    again = real("wine", real_data_dir, split="random")
    other = real("wine", real_data_dir, split="random", split_seed=7)
    assert np.array_equal(again.test.meta["row_id"], wine_random.test.meta["row_id"])
    np.testing.assert_array_equal(again.train.x, wine_random.train.x)
    assert not np.array_equal(other.test.meta["row_id"], wine_random.test.meta["row_id"])


@real_data
def test_seizure_book_split_shapes_and_positives(seizure_book):
    assert seizure_book.split_source == "book" and seizure_book.task == "binary"
    assert [len(s) for s in seizure_book.splits().values()] == [9200, 1150, 1150]
    assert seizure_book.input_shape == (178,) and seizure_book.feature_names == SEIZURE_FEATURES
    assert [int(s.y.sum()) for s in seizure_book.splits().values()] == [1828, 217, 255]
    assert seizure_book.class_names == ["non-seizure", "seizure"] and seizure_book.n_classes == 2
    assert seizure_book.train.y.dtype == np.int64 and seizure_book.train.x.dtype == np.float32


@real_data
def test_seizure_book_recovers_original_class(seizure_book):
    total = np.zeros(6, int)
    for split in seizure_book.splits().values():
        original = split.meta["original_class"]
        assert np.array_equal(original == 1, split.y == 1)
        total += np.bincount(original, minlength=6)
    assert total.tolist() == [0, 2300, 2300, 2300, 2300, 2300]
    ids = np.concatenate([s.meta["segment_id"] for s in seizure_book.splits().values()])
    assert len(set(ids)) == 11500
    assert any("recovered" in note for note in seizure_book.notes)


@real_data
def test_seizure_random_split_is_stratified_and_disjoint(seizure_random_raw):
    assert [len(s) for s in seizure_random_raw.splits().values()] == [9200, 1150, 1150]
    for split, per_class in zip(seizure_random_raw.splits().values(), (1840, 230, 230)):
        assert np.bincount(split.meta["original_class"])[1:].tolist() == [per_class] * 5
    train, val, test = (rows_as_set(s.x) for s in seizure_random_raw.splits().values())
    assert len(train) == 9200 and not (train & val) and not (train & test) and not (val & test)
    assert seizure_random_raw.feature_scaling is None
    assert np.array_equal(seizure_random_raw.train.x, np.round(seizure_random_raw.train.x))


@real_data
def test_seizure_uci_and_kaggle_layouts_load_identical_arrays(seizure_random_raw, real_data_dir):
    kaggle = real(
        "seizure", real_data_dir, split="random", scale="none", file="kaggle_epileptic_seizure_recognition.csv"
    )
    assert list(kaggle.files)[0].endswith("kaggle_epileptic_seizure_recognition.csv")
    assert list(seizure_random_raw.files)[0].endswith("/epileptic_seizure_recognition.csv")
    for name, split in seizure_random_raw.splits().items():
        other = kaggle.splits()[name]
        np.testing.assert_array_equal(split.x, other.x)
        np.testing.assert_array_equal(split.y, other.y)
        for key in ("original_class", "segment_id", "row_id"):
            np.testing.assert_array_equal(split.meta[key], other.meta[key])


@real_data
def test_mnist_fixed_split(mnist_flat):
    assert mnist_flat.split_source == "fixed" and mnist_flat.task == "multiclass"
    assert [len(s) for s in mnist_flat.splits().values()] == [55000, 5000, 10000]
    assert mnist_flat.input_shape == (784,) and mnist_flat.n_classes == 10
    assert mnist_flat.class_names == [str(d) for d in range(10)]
    x = mnist_flat.train.x
    assert x.dtype == np.float32 and x.max() == 1.0 and x.min() == 0.0
    assert mnist_flat.feature_scaling is None
    # Validation = the last 5000 rows of the training file.
    assert mnist_flat.val.meta["index"].tolist() == list(range(55000, 60000))
    assert np.bincount(mnist_flat.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@real_data
def test_mnist_accepts_the_shared_digest(mnist_flat):
    assert list(mnist_flat.files.values()) == [SHARED_MNIST_SHA]
    assert {SHARED_MNIST_SHA, KERAS_MNIST_SHA} <= sources.SHA256["mnist/mnist.npz"]


@real_data
def test_mnist_without_flatten(real_data_dir, mnist_flat):
    images = real("mnist", real_data_dir, flatten=False, max_samples=500)
    assert images.input_shape == (28, 28) and images.train.x.shape == (500, 28, 28)
    row = images.train.meta["index"][0]
    np.testing.assert_array_equal(images.train.x[0].ravel(), mnist_flat.train.x[row])


@real_data
def test_real_max_samples_caps_each_split_stratified(real_data_dir):
    small = real("seizure", real_data_dir, split="random", max_samples=200)
    assert [len(s) for s in small.splits().values()] == [200, 200, 200]
    assert [int(s.y.sum()) for s in small.splits().values()] == [40, 40, 40]


@real_data
def test_real_files_are_recorded_with_digests(wine_book, seizure_book):
    assert len(wine_book.files) == 3 and len(seizure_book.files) == 4
    for path, digest in {**wine_book.files, **seizure_book.files}.items():
        assert Path(path).is_absolute()
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest


# ================================================================ generated files: loaders


def test_fake_wine_book_and_random(fake_data):
    book = fake_data.load("wine")
    assert book.split_source == "book" and [len(s) for s in book.splits().values()] == [160, 20, 20]
    rand = fake_data.load("wine", split="random")
    assert rand.split_source == "random" and [len(s) for s in rand.splits().values()] == [160, 20, 20]
    ids = np.concatenate([s.meta["row_id"] for s in rand.splits().values()])
    assert sorted(ids) == list(range(1, 201))
    original = rand.test.y * rand.target_scaling["std"] + rand.target_scaling["mean"]
    np.testing.assert_allclose(original, fake_data.wine["alcohol"].to_numpy()[rand.test.meta["row_id"] - 1], atol=1e-5)
    np.testing.assert_array_equal(
        rand.test.meta["quality"], fake_data.wine["quality"].to_numpy()[rand.test.meta["row_id"] - 1]
    )


def test_wine_other_target_and_unscaled(fake_data):
    ds = fake_data.load("wine", target="pH", scale_target=False, scale="none", split="random")
    assert ds.target_name == "pH" and ds.n_features == 10 and "alcohol" in ds.feature_names
    assert ds.target_scaling is None and ds.feature_scaling is None
    rows = ds.train.meta["row_id"] - 1
    np.testing.assert_allclose(ds.train.y, fake_data.wine["pH"].to_numpy()[rows], rtol=1e-6)
    np.testing.assert_allclose(ds.train.x[:, 0], fake_data.wine["fixed acidity"].to_numpy()[rows], rtol=1e-6)
    with pytest.raises(ValueError, match="target='colour'"):
        fake_data.load("wine", target="colour")


def test_constant_feature_gets_std_one(fake_data):
    fake_data.write_wine_full(fake_data.wine.assign(chlorides=0.05))
    ds = fake_data.load("wine", split="random")
    column = ds.feature_names.index("chlorides")
    assert ds.feature_scaling["std"][column] == 1.0
    assert np.isfinite(ds.train.x).all() and np.abs(ds.train.x[:, column]).max() < 1e-6


def test_split_auto_falls_back_to_random_without_book_files(fake_data):
    for name in ("train", "val", "test"):
        fake_data.path(f"wine/book_split/{name}_data.csv").unlink()
    ds = fake_data.load("wine")
    assert ds.split_source == "random" and any("random split" in n for n in ds.notes)
    with pytest.raises(DataNotFoundError) as err:
        fake_data.load("wine", split="book")
    assert str(fake_data.path("wine/book_split/train_data.csv")) in str(err.value)
    assert "never downloaded" in str(err.value)


def test_book_split_with_missing_sibling_is_an_error(fake_data):
    fake_data.path("seizure/book_split/val_data.csv").unlink()
    with pytest.raises(DataNotFoundError, match="missing .*val_data.csv") as err:
        fake_data.load("seizure")
    assert "test_data.csv" not in str(err.value).split("missing")[1]


def test_fake_seizure_book_recovers_original_class(fake_data):
    ds = fake_data.load("seizure")
    truth = fake_data.seizure.set_index("id")["y"]
    for split in ds.splits().values():
        assert np.array_equal(split.meta["original_class"], truth.loc[split.meta["segment_id"]].to_numpy())
        assert np.array_equal(split.meta["original_class"] == 1, split.y == 1)


def test_seizure_book_without_full_file_loads_without_original_class(fake_data):
    fake_data.path(SEIZURE_UCI).unlink()
    fake_data.path("seizure/kaggle_epileptic_seizure_recognition.csv").unlink()
    ds = fake_data.load("seizure")
    assert ds.split_source == "book" and "original_class" not in ds.train.meta
    assert any("absent" in note for note in ds.notes)
    assert len(ds.files) == 3


def test_seizure_book_row_missing_from_full_file(fake_data):
    book = pd.read_csv(fake_data.path("seizure/book_split/test_data.csv"))
    book.loc[4, "X7"] = 12345
    book.to_csv(fake_data.path("seizure/book_split/test_data.csv"), index=False)
    with pytest.raises(DataFormatError, match=r"test_data.csv: data row 5 .*does not occur"):
        fake_data.load("seizure")


def test_seizure_book_label_disagreeing_with_full_file(fake_data):
    path = fake_data.path("seizure/book_split/val_data.csv")
    book = pd.read_csv(path)
    book.loc[2, "y"] = 1 - book.loc[2, "y"]
    book.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"val_data.csv: data row 3 has y="):
        fake_data.load("seizure")


def test_fake_seizure_layouts_identical_and_random_split_stratified(fake_data):
    uci = fake_data.load("seizure", split="random", file="epileptic_seizure_recognition.csv", scale="none")
    kaggle = fake_data.load("seizure", split="random", file="kaggle_epileptic_seizure_recognition.csv", scale="none")
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(uci.splits()[name].x, kaggle.splits()[name].x)
        np.testing.assert_array_equal(uci.splits()[name].meta["segment_id"], kaggle.splits()[name].meta["segment_id"])
    assert np.bincount(uci.test.meta["original_class"])[1:].tolist() == [4] * 5
    train, test = rows_as_set(uci.train.x), rows_as_set(uci.test.x)
    assert not train & test


def test_unknown_file_name_is_not_checksummed(fake_data):
    fake_data.write_seizure_kaggle(fake_data.seizure, relpath="seizure/my_eeg.csv")
    ds = fake_data.load("seizure", split="random", file="my_eeg.csv", verify_checksum=True)
    assert list(ds.files) == [str(fake_data.path("seizure/my_eeg.csv"))]


def test_fake_mnist_split_and_options(fake_data):
    ds = fake_data.load("mnist", val_size=20)
    assert [len(s) for s in ds.splits().values()] == [80, 20, 30]
    np.testing.assert_allclose(ds.val.x[0], fake_data.mnist["x_train"][80].ravel() / 255, rtol=1e-6)
    scaled = fake_data.load("mnist", val_size=20, scale="standard", flatten=False)
    assert scaled.train.x.shape == (80, 28, 28) and len(scaled.feature_scaling["mean"]) == 784
    assert abs(scaled.train.x.mean()) < 1e-5
    assert len(fake_data.load("mnist", val_size=20, val_fraction=0.1, test_fraction=0.1).val) == 20
    with pytest.raises(ValueError, match="val_size"):
        fake_data.load("mnist", val_fraction=0.2)
    with pytest.raises(ValueError, match="fixed split"):
        fake_data.load("mnist", split="random")
    with pytest.raises(ValueError, match="val_size=100"):
        fake_data.load("mnist", val_size=100)


def test_max_samples_caps_each_split_stratified(fake_data):
    ds = fake_data.load("seizure", split="random", max_samples=50)
    assert [len(s) for s in ds.splits().values()] == [50, 20, 20]
    assert int(ds.train.y.sum()) == 10
    assert np.all(np.diff(ds.train.meta["row_id"]) > 0)
    assert ds.feature_scaling["mean"] == pytest.approx(ds_raw_mean(fake_data, ds.train.meta["row_id"]))


def ds_raw_mean(fake_data, row_ids):
    return fake_data.seizure[SEIZURE_FEATURES].to_numpy(float)[row_ids - 1].mean(axis=0).tolist()


# ================================================================ generated files: format errors


def _write_wine_cell(fake_data, row: int, column: str, value) -> Path:
    frame = fake_data.wine.astype(object)
    frame.loc[row - 1, column] = value
    return fake_data.write_wine_full(frame)


@pytest.mark.parametrize("value, shown", [("", "(empty or NA)"), ("abc", "'abc'"), ("inf", "inf")])
def test_bad_numeric_cell_names_file_column_and_row(fake_data, value, shown):
    _write_wine_cell(fake_data, 7, "pH", value)
    with pytest.raises(DataFormatError) as err:
        fake_data.load("wine", split="random")
    message = str(err.value)
    assert WINE_FULL in message and "column 'pH'" in message and "data row 7" in message
    assert shown in message


def test_empty_file(fake_data):
    fake_data.path(WINE_FULL).write_text("")
    with pytest.raises(DataFormatError, match=r"winequality-white.csv: the file is empty"):
        fake_data.load("wine", split="random")


def test_header_without_rows(fake_data):
    fake_data.write_wine_full(fake_data.wine.iloc[:0])
    with pytest.raises(DataFormatError, match="header but no data rows"):
        fake_data.load("wine", split="random")


def test_rows_with_extra_fields_are_listed_with_their_counts(fake_data):
    path = fake_data.path(WINE_FULL)
    lines = path.read_text().splitlines()
    lines[4] += ";1;2"
    lines[9] += ";3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FieldCountError) as err:
        fake_data.load("wine", split="random")
    message = str(err.value)
    assert "winequality-white.csv: 2 of 200 data rows have another number of fields than the header (12)" in message
    assert "data row 4 (line 5) has 14 fields, expected 12: an extra field" in message
    assert "data row 9 (line 10) has 13 fields, expected 12" in message


def _damage_lines(path: Path, damage) -> None:
    lines = path.read_text().splitlines()
    for index, change in damage.items():
        lines[index] = change(lines[index])
    path.write_text("\n".join(lines) + "\n")


def test_a_short_seizure_row_is_named_not_blamed_on_the_last_column(fake_data):
    _damage_lines(fake_data.path(SEIZURE_UCI), {12: lambda line: line.rsplit(",", 1)[0]})
    with pytest.raises(FieldCountError) as err:
        fake_data.load("seizure", split="random")
    message = str(err.value)
    assert "epileptic_seizure_recognition.csv: 1 of 200 data rows" in message
    assert "data row 12 (line 13) has 179 fields, expected 180: short: truncated, or fields left out" in message
    assert "column 'y'" not in message


def test_a_wine_row_with_another_separator_is_named_among_the_first_five(fake_data):
    semicolons_to_commas = {index: lambda line: line.replace(";", ",") for index in (3, 5, 8, 20, 30, 40, 50)}
    _damage_lines(fake_data.path(WINE_FULL), semicolons_to_commas)
    with pytest.raises(FieldCountError) as err:
        fake_data.load("wine", split="random")
    message = str(err.value)
    assert "7 of 200 data rows" in message and "and 2 more" in message
    assert "data row 3 (line 4) has 1 field, expected 12: separated by ',' instead of ';'" in message
    assert "data row 30 (line 31)" in message and "data row 40 (line 41)" not in message


def test_missing_and_extra_columns_are_listed(fake_data):
    fake_data.write_wine_full(fake_data.wine.drop(columns=["pH", "density"]).assign(colour="white"))
    with pytest.raises(DataFormatError) as err:
        fake_data.load("wine", split="random")
    message = str(err.value)
    assert "missing column(s) 'density', 'pH'" in message and "unexpected column(s) 'colour'" in message
    assert WINE_FULL in message


def test_seizure_full_file_label_outside_1_to_5(fake_data):
    frame = fake_data.seizure.copy()
    frame.loc[11, "y"] = 7
    fake_data.write_seizure_uci(frame)
    with pytest.raises(DataFormatError, match=r"epileptic_seizure_recognition.csv: column 'y', data row 12 .*'?7"):
        fake_data.load("seizure", split="random")


def test_seizure_book_label_outside_0_1(fake_data):
    path = fake_data.path("seizure/book_split/train_data.csv")
    book = pd.read_csv(path)
    book.loc[0, "y"] = 2
    book.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"train_data.csv: column 'y', data row 1 .*\[0, 1\]"):
        fake_data.load("seizure")


def test_seizure_full_file_without_id_column(fake_data):
    fake_data.seizure.drop(columns="id").to_csv(fake_data.path(SEIZURE_UCI), index=False)
    with pytest.raises(DataFormatError, match="id column first"):
        fake_data.load("seizure", split="random")


def test_seizure_missing_feature_column(fake_data):
    fake_data.write_seizure_uci(fake_data.seizure.drop(columns="X100"))
    with pytest.raises(DataFormatError, match="missing column\\(s\\) 'X100'"):
        fake_data.load("seizure", split="random")


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("text", "not a zip"),
        ("truncate", "not a zip"),
    ],
)
def test_mnist_corrupt_archive(fake_data, damage, expected):
    path = fake_data.path("mnist/mnist.npz")
    if damage == "text":
        path.write_text("<html>Service unavailable</html>")
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=expected) as err:
        fake_data.load("mnist", val_size=20)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda a: a.pop("y_test"), r"missing array\(s\) \['y_test'\]"),
        (lambda a: a.update(x_train=a["x_train"].reshape(100, 784)), r"'x_train' has shape \(100, 784\)"),
        (  # float pixels in [0, 255] are used (tests/test_bad_input.py); booleans are not numbers of a range
            lambda a: a.update(x_test=a["x_test"].astype(bool)),
            r"'x_test' has shape \(30, 28, 28\) and dtype bool",
        ),
        (lambda a: a.update(y_train=a["y_train"][:50]), "'x_train' has 100 images but 'y_train' has 50"),
        (lambda a: a["y_test"].__setitem__(3, 11), r"'y_test'\[3\] = 11 is not a digit"),
    ],
)
def test_mnist_bad_arrays(fake_data, change, expected):
    arrays = make_mnist_arrays()
    change(arrays)
    fake_data.write_mnist(arrays)
    with pytest.raises(DataFormatError, match=expected) as err:
        fake_data.load("mnist", val_size=20)
    assert "mnist.npz" in str(err.value)


# ================================================================ locating, checksums, downloads


def test_local_checksum_mismatch(fake_data):
    with pytest.raises(ChecksumError) as err:
        fake_data.load("wine", split="random", verify_checksum=True)
    message = str(err.value)
    assert str(fake_data.path(WINE_FULL)) in message
    assert next(iter(sources.SHA256[WINE_FULL])) in message
    assert hashlib.sha256(fake_data.path(WINE_FULL).read_bytes()).hexdigest() in message
    assert "dataset.verify_checksum=false" in message
    accepted = fake_data.load("wine", split="random", verify_checksum=False)
    assert any("verify_checksum=false" in note for note in accepted.notes)


def test_not_found_lists_every_place(tmp_path, isolated_env, monkeypatch):
    monkeypatch.setenv("RUNNER_DATA_DIR", str(tmp_path / "env-dir"))
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "cache-dir"))
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("wine", data_dir=str(tmp_path / "option-dir"), download=False)
    message = str(err.value)
    for root in ("option-dir", "env-dir", "cache-dir"):
        assert str(tmp_path / root / WINE_FULL) in message
    assert "download=False" in message and "dataset.data_dir=" in message and "RUNNER_DATA_DIR" in message


def test_not_found_for_both_seizure_layouts(tmp_path, isolated_env):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("seizure", data_dir=str(tmp_path), download=False)
    message = str(err.value)
    assert str(tmp_path / SEIZURE_UCI) in message
    assert str(tmp_path / "seizure/kaggle_epileptic_seizure_recognition.csv") in message
    assert str(isolated_env / SEIZURE_UCI) in message and "RUNNER_DATA_DIR is not set" in message


def test_search_order_data_dir_before_env_before_cache(fake_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_DATA_DIR", str(fake_data.root))
    ds = load_dataset("wine", split="random", download=False, verify_checksum=False)
    assert list(ds.files) == [str(fake_data.path(WINE_FULL))]
    other = tmp_path / "other"
    (other / "wine").mkdir(parents=True)
    (other / WINE_FULL).write_bytes(fake_data.path(WINE_FULL).read_bytes())
    ds = load_dataset("wine", split="random", data_dir=str(other), download=False, verify_checksum=False)
    assert list(ds.files) == [str(other / WINE_FULL)]


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("RUNNER_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "x" / "keras-runner" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "keras-runner" / "data"


@pytest.fixture
def wine_source(tmp_path, monkeypatch):
    """A generated wine file served from a file:// URL, registered with its own digest."""
    source = tmp_path / "remote" / "winequality-white.csv"
    source.parent.mkdir()
    frame = make_wine_frame(60, 3)
    header = ";".join(f'"{c}"' for c in frame.columns)
    source.write_text(header + "\n" + frame.to_csv(sep=";", index=False, header=False))
    monkeypatch.setitem(sources.URLS, WINE_FULL, source.as_uri())
    return source


def test_download_verifies_and_reuses_cache(wine_source, isolated_env, tmp_path, monkeypatch):
    digest = hashlib.sha256(wine_source.read_bytes()).hexdigest()
    monkeypatch.setitem(sources.SHA256, WINE_FULL, frozenset({digest}))
    first = load_dataset("wine", data_dir=str(tmp_path / "empty"))
    cached = isolated_env / WINE_FULL
    assert cached.is_file() and first.files == {str(cached): digest}
    assert sorted(p.name for p in cached.parent.iterdir()) == ["winequality-white.csv"]
    wine_source.unlink()  # a second download would now fail
    second = load_dataset("wine", data_dir=str(tmp_path / "empty"))
    np.testing.assert_array_equal(first.train.x, second.train.x)


def test_download_with_wrong_checksum_leaves_nothing(wine_source, isolated_env, tmp_path):
    with pytest.raises(ChecksumError, match="nothing was saved"):
        load_dataset("wine", data_dir=str(tmp_path / "empty"))
    leftovers = list(isolated_env.rglob("*")) if isolated_env.exists() else []
    assert [p for p in leftovers if p.is_file()] == []


def test_download_failure_is_reported(isolated_env, tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere" / "winequality-white.csv").as_uri()
    monkeypatch.setitem(sources.URLS, WINE_FULL, missing)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("wine")
    message = str(err.value)
    assert f"tried {missing} and it failed" in message and str(isolated_env / WINE_FULL) in message


def test_download_over_local_http(wine_source, isolated_env, monkeypatch):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(wine_source.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setitem(sources.URLS, WINE_FULL, f"http://127.0.0.1:{server.server_port}/winequality-white.csv")
        digest = hashlib.sha256(wine_source.read_bytes()).hexdigest()
        monkeypatch.setitem(sources.SHA256, WINE_FULL, frozenset({digest}))
        ds = load_dataset("wine")
    finally:
        server.shutdown()
        server.server_close()
    assert ds.files == {str(isolated_env / WINE_FULL): digest} and len(ds.train) == 48


# ================================================================ API, options, synthetic


def test_unknown_option_and_dataset():
    with pytest.raises(TypeError, match="unknown option\\(s\\) colour"):
        load_dataset("wine", colour="red")
    with pytest.raises(TypeError, match="unknown option\\(s\\) flatten"):
        load_dataset("seizure", flatten=True)
    with pytest.raises(ValueError, match="unknown data set 'iris'"):
        load_dataset("iris")
    assert {"wine", "seizure", "mnist", "synthetic", "table", "arrays", "sequence"} <= set(DATASET_NAMES)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"split": "book"}, "book split"),
        ({"scale": "minmax"}, "scale='minmax'"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "must be below 1"),
        ({"max_samples": 0}, "max_samples=0"),
        ({"task": "ranking"}, "task='ranking'"),
    ],
)
def test_bad_option_values(options, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("synthetic", **options)


def test_split_and_dataset_containers():
    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        Split(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="meta\\['row_id'\\]"):
        Split(np.zeros((3, 2)), np.zeros(3), {"row_id": np.arange(4)})
    assert issubclass(DataNotFoundError, DataError) and issubclass(ChecksumError, DataError)
    ds = load_dataset("synthetic", task="multiclass", n_classes=4, n_features=5)
    assert isinstance(ds, Dataset) and ds.n_classes == 4 and ds.n_features == 5
    assert list(ds.splits()) == ["train", "val", "test"] and ds.split_source == "generated"


@pytest.mark.parametrize(
    "task, kind, shape, dtype",
    [
        ("regression", "regression", (8,), np.float32),
        ("binary", "binary", (8,), np.int64),
        ("multiclass", "multiclass", (8,), np.int64),
        ("xor", "binary", (2,), np.int64),
        ("sequence", "regression", (32,), np.float32),
    ],
)
def test_synthetic_tasks(task, kind, shape, dtype):
    ds = load_dataset("synthetic", task=task)
    again = load_dataset("synthetic", task=task)
    other = load_dataset("synthetic", task=task, seed=1)
    assert ds.task == kind and ds.input_shape == shape and ds.train.y.dtype == dtype
    assert ds.train.x.dtype == np.float32
    assert [len(s) for s in ds.splits().values()] == [800, 100, 100]
    np.testing.assert_array_equal(ds.train.x, again.train.x)
    assert not np.array_equal(ds.train.x, other.train.x)
    if kind != "regression":
        assert set(np.unique(ds.train.y)) == set(range(ds.n_classes))


def test_synthetic_xor_and_sequence_targets():
    xor = load_dataset("synthetic", task="xor", scale="none", noise=0.05)
    bits = np.round(xor.train.x).astype(int)
    assert np.array_equal(bits[:, 0] ^ bits[:, 1], xor.train.y)
    seq = load_dataset("synthetic", task="sequence", seq_len=10, noise=0.0, scale="none")
    x = seq.test.x.astype(np.float64)
    np.testing.assert_allclose(seq.test.y, x[:, :5].std(axis=1) - x[:, 5:].std(axis=1), atol=1e-4)


def test_synthetic_split_stratified_and_capped():
    ds = load_dataset("synthetic", task="binary", n_samples=400, max_samples=50, split_seed=3)
    assert [len(s) for s in ds.splits().values()] == [50, 40, 40]
    positives = load_dataset("synthetic", task="binary", n_samples=400).train.y.mean()
    assert abs(ds.train.y.mean() - positives) < 0.03
    ids = [set(s.meta["row_id"]) for s in ds.splits().values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_package_imports_no_framework():
    code = (
        "import sys, datasets; banned = ['keras', 'tensorflow', 'hydra', 'omegaconf', 'mlflow'];"
        "print([m for m in banned if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
