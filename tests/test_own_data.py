"""A user's own data (dataset=table | arrays | sequence): loaders, their refusals, the saved preprocessing, runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasets import DataFormatError, DataNotFoundError, load_dataset
from datasets.arrays import transform as transform_arrays
from datasets.table import transform
from datasets.userdata import encode_target


def table_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Two numbers, a text category and a yes/no label that depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, n),
            "count": rng.integers(0, 9, n),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    frame["label"] = np.where(frame["size"] + (frame["colour"] == "red") * 3 > 11, "yes", "no")
    return frame


def write_csv(folder: Path, frame: pd.DataFrame, name: str = "data.csv", **options) -> Path:
    path = folder / name
    frame.to_csv(path, index=False, **options)
    return path


def load_table(path, **options):
    return load_dataset("table", path=str(path), cache=False, **options)


# ---------------------------------------------------------------- table


def test_table_loads_a_csv_with_categories_one_hot_and_the_auto_task_in_the_notes(tmp_path):
    path = write_csv(tmp_path, table_frame())
    data = load_table(path, target="label")
    assert data.task == "binary" and data.class_names == ["no", "yes"]
    assert data.feature_names == ["size", "count", "colour=blue", "colour=green", "colour=red"]
    assert [len(s) for s in data.splits().values()] == [96, 12, 12]
    assert any("task=auto" in note and "-> binary" in note for note in data.notes)
    assert data.files == {str(path.resolve()): hashlib.sha256(path.read_bytes()).hexdigest()}
    # Scaling fitted on train only: train is centred, the held-out splits are not exactly.
    assert np.allclose(data.train.x.mean(axis=0), 0, atol=1e-5)
    colours = data.train.x[:, 2:] * np.array(data.feature_scaling["std"][2:]) + data.feature_scaling["mean"][2:]
    assert np.allclose(colours.sum(axis=1), 1.0)  # exactly one colour per row
    assert set(np.unique(data.train.y)) == {0, 1}


@pytest.mark.parametrize(
    "values, task",
    [
        (np.linspace(0, 1, 30), "regression"),
        (np.tile([0, 1], 15), "binary"),
        (np.tile([0.0, 1.0, 2.0, 3.0, 4.0], 6), "multiclass"),
        (np.tile(["cat", "dog", "eel"], 10).astype(object), "multiclass"),
        (np.arange(30), "regression"),  # more whole numbers than AUTO_MAX_CLASSES
        (np.tile([True, False], 15), "binary"),
    ],
)
def test_auto_decides_the_task_from_the_target_values(values, task):
    target = encode_target(values, "auto", "t", lambda i: f"row {i}")
    assert target.task == task and "task=auto" in target.notes[0]
    if task != "regression":
        assert target.y.dtype == np.int64 and target.y.max() == len(target.classes) - 1


def test_a_given_task_must_fit_the_target(tmp_path):
    frame = table_frame()
    frame["label"] = np.tile(["a", "b", "c"], 40)
    path = write_csv(tmp_path, frame)
    with pytest.raises(DataFormatError, match="3 distinct values .* but dataset.task=binary needs exactly 2"):
        load_table(path, target="label", task="binary")
    with pytest.raises(DataFormatError, match=r"data row 1 \(line 2\): column 'label': target 'a' is not a number"):
        load_table(path, target="label", task="regression")
    with pytest.raises(DataFormatError, match="dataset.task=multilabel needs two or more 0/1 label columns"):
        load_table(path, target="label", task="multilabel")
    with pytest.raises(DataFormatError, match="label column 'label': value 'a' is not 0/1"):
        load_table(path, target=["label", "count"])
    assert load_table(path, target="count", task="regression").task == "regression"


def test_declared_categorical_columns_are_one_hot_even_when_numeric(tmp_path):
    path = write_csv(tmp_path, table_frame())
    data = load_table(path, target="label", categorical=["count", "colour"], features=["count", "colour"])
    assert data.feature_names[:2] == ["count=0", "count=1"] and "size" not in data.feature_names
    with pytest.raises(DataFormatError, match="dataset.categorical names 'size', which is not a feature"):
        load_table(path, target="label", categorical=["size"], features=["count"])


def test_missing_values_are_refused_by_default_naming_columns_and_rows(tmp_path):
    frame = table_frame()
    frame.loc[[3, 7], "size"] = np.nan
    frame.loc[5, "colour"] = None
    path = write_csv(tmp_path, frame)
    with pytest.raises(DataFormatError) as error:
        load_table(path, target="label")
    message = str(error.value)
    assert "'size' in 2 row(s), first" in message and "data row 4 (line 5)" in message
    assert "'colour' in 1 row(s)" in message and "data row 6 (line 7)" in message
    assert "dataset.missing=drop" in message and "dataset.missing=impute" in message


def test_missing_values_dropped_or_imputed_with_training_statistics(tmp_path):
    frame = table_frame()
    frame.loc[[3, 7], "size"] = np.nan
    frame.loc[5, "colour"] = None
    path = write_csv(tmp_path, frame)
    dropped = load_table(path, target="label", missing="drop")
    assert sum(len(s) for s in dropped.splits().values()) == 117
    assert any("dropped 3 row(s)" in note for note in dropped.notes)
    assert not np.isin([4, 6, 8], np.concatenate([s.meta["row_id"] for s in dropped.splits().values()])).any()

    imputed = load_table(path, target="label", missing="impute")
    prep = imputed.preprocessing
    train_rows = frame.iloc[imputed.train.meta["row_id"] - 1]
    assert prep["impute"]["size"] == pytest.approx(train_rows["size"].median())
    assert prep["impute"]["colour"] == train_rows["colour"].mode().sort_values().iloc[0]
    row = next(s for s in imputed.splits().values() if 4 in s.meta["row_id"])
    x = row.x[np.flatnonzero(row.meta["row_id"] == 4)[0]]
    mean, std = prep["scaling"]["mean"][0], prep["scaling"]["std"][0]
    assert x[0] * std + mean == pytest.approx(prep["impute"]["size"], rel=1e-5)


def test_split_column_gives_the_splits_and_is_not_a_feature(tmp_path):
    frame = table_frame(60)
    frame["fold"] = ["train"] * 40 + ["val"] * 10 + ["TEST"] * 10
    path = write_csv(tmp_path, frame)
    data = load_table(path, target="label", split_column="fold")
    assert [len(s) for s in data.splits().values()] == [40, 10, 10] and data.split_source == "fixed"
    assert list(data.test.meta["row_id"]) == list(range(51, 61)) and "fold" not in data.feature_names
    frame.loc[12, "fold"] = "holdout"
    write_csv(tmp_path, frame)
    with pytest.raises(DataFormatError, match=r"data row 13 \(line 14\): column 'fold' .* 'holdout' is not one of"):
        load_table(path, target="label", split_column="fold")


def test_a_glob_reads_several_files_with_the_same_columns(tmp_path):
    frame = table_frame(100)
    write_csv(tmp_path, frame.iloc[:60], "part-1.csv")
    write_csv(tmp_path, frame.iloc[60:], "part-2.csv")
    data = load_table(tmp_path / "part-*.csv", target="label")
    assert sum(len(s) for s in data.splits().values()) == 100 and len(data.files) == 2
    assert set(data.train.meta["source_file"]) == {"part-1.csv", "part-2.csv"}
    write_csv(tmp_path, frame.iloc[60:].rename(columns={"size": "width"}), "part-2.csv")
    with pytest.raises(DataFormatError, match=r"part-2.csv: its columns differ .*\(missing 'size'"):
        load_table(tmp_path / "part-*.csv", target="label")


def test_parquet_loads_like_the_same_csv(tmp_path):
    frame = table_frame()
    frame.to_parquet(tmp_path / "data.parquet")
    from_parquet = load_table(tmp_path / "data.parquet", target="label")
    from_csv = load_table(write_csv(tmp_path, frame), target="label")
    np.testing.assert_allclose(from_parquet.train.x, from_csv.train.x, rtol=1e-6)
    assert from_parquet.feature_names == from_csv.feature_names


def test_bad_files_and_options_are_named(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"dataset.path='nowhere.csv': no such file .*nowhere.csv"):
        load_table("nowhere.csv", target="x")
    with pytest.raises(DataNotFoundError, match="matches no file"):
        load_table(tmp_path / "*.csv", target="x")
    path = write_csv(tmp_path, table_frame(), sep=";")
    with pytest.raises(DataFormatError, match="no column 'label' \\(dataset.target\\).*dataset.sep=';'"):
        load_table(path, target="label")
    frame = table_frame()
    frame["size"] = frame["size"].map(lambda v: f"{v:.2f}".replace(".", ","))
    path = write_csv(tmp_path, frame, sep=";")
    with pytest.raises(DataFormatError, match="column 'size': value '.*' is not a number; .* set dataset.decimal=','"):
        load_table(path, target="label", sep=";")
    assert load_table(path, target="label", sep=";", decimal=",").feature_names[0] == "size"


def test_rows_with_the_wrong_number_of_fields_are_listed_with_the_likely_cause(tmp_path):
    from datasets.csv_rows import FieldCountError

    lines = table_frame(40).round(3).to_csv(index=False).splitlines()
    lines[12] = lines[12].rsplit(",", 1)[0]  # the label left out
    lines[20] = lines[20].replace(",", ";")
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FieldCountError) as err:
        load_table(tmp_path / "bad.csv", target="label")
    message = str(err.value)
    assert f"{tmp_path / 'bad.csv'}: 2 of 40 data rows have another number of fields than the header (4)" in message
    assert "data row 12 (line 13) has 3 fields, expected 4: short" in message and "column 'label'" not in message
    assert "data row 20 (line 21) has 1 field, expected 4: separated by ';' instead of ','" in message
    lines = table_frame(40).round(3).to_csv(index=False).splitlines()
    lines[30] += ",7"  # pandas refuses it, naming this line only
    (tmp_path / "extra.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FieldCountError, match=r"data row 30 \(line 31\) has 5 fields, expected 4: an extra field"):
        load_table(tmp_path / "extra.csv", target="label")
    lines = table_frame(12).round(3).to_csv(index=False).splitlines()
    rows = [line.replace(",", ";") for line in lines[1:]]
    (tmp_path / "header.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    with pytest.raises(FieldCountError, match=r"12 of 12 data rows .*; and 7 more\. No data row .*dataset.sep=','\?"):
        load_table(tmp_path / "header.csv", target="label")


def test_the_parse_is_cached_with_its_preprocessing(tmp_path):
    path = write_csv(tmp_path, table_frame())
    first = load_dataset("table", path=str(path), target="label")
    again = load_dataset("table", path=str(path), target="label")
    assert any("read from cache" in note for note in again.notes)
    assert again.preprocessing == first.preprocessing
    np.testing.assert_array_equal(again.train.x, first.train.x)


# ---------------------------------------------------------------- transform


@pytest.mark.parametrize("missing", ["drop", "impute"])
def test_transform_turns_raw_rows_into_the_training_features(tmp_path, missing):
    frame = table_frame()
    frame.loc[[3, 9], "size"] = np.nan
    path = write_csv(tmp_path, frame)
    data = load_table(path, target="label", missing=missing)
    prep = json.loads(json.dumps(data.preprocessing))  # as the run's preprocessing.json holds it
    raw = pd.read_csv(path)
    for split in data.splits().values():
        np.testing.assert_array_equal(transform(raw.iloc[split.meta["row_id"] - 1], prep), split.x)
    unseen = transform(pd.DataFrame({"size": [10.0], "count": [2], "colour": ["purple"]}), prep)
    assert unseen.shape == (1, 5)
    with pytest.raises(DataFormatError, match="lack the column\\(s\\) 'colour'"):
        transform(raw[["size", "count"]], prep)


# ---------------------------------------------------------------- arrays


def test_npz_with_given_splits_uses_them_and_cuts_a_missing_val(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {f"x_{s}": rng.normal(size=(n, 3)) for s, n in (("train", 50), ("val", 7), ("test", 9))}
    arrays |= {f"y_{s}": rng.integers(0, 3, len(arrays[f"x_{s}"])) for s in ("train", "val", "test")}
    np.savez(tmp_path / "given.npz", **arrays)
    data = load_dataset("arrays", path=str(tmp_path / "given.npz"), cache=False)
    assert [len(s) for s in data.splits().values()] == [50, 7, 9] and data.task == "multiclass"
    np.testing.assert_array_equal(data.test.y, arrays["y_test"])
    del arrays["x_val"], arrays["y_val"]
    np.savez(tmp_path / "no_val.npz", **arrays)
    data = load_dataset("arrays", path=str(tmp_path / "no_val.npz"), cache=False)
    assert [len(s) for s in data.splits().values()] == [45, 5, 9]
    assert any("val cut from the given training rows" in note for note in data.notes)
    np.savez(tmp_path / "half.npz", x_train=arrays["x_train"], y_train=arrays["y_train"], y_test=arrays["y_test"])
    with pytest.raises(DataFormatError, match="has 'y_test' but no 'x_test'"):
        load_dataset("arrays", path=str(tmp_path / "half.npz"), cache=False)


def test_npy_pair_keeps_image_shaped_inputs_and_transform_reproduces_them(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, size=(60, 6, 5, 3)).astype(np.uint8)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", rng.normal(size=60))
    data = load_dataset("arrays", path=str(tmp_path / "x.npy"), target_path=str(tmp_path / "y.npy"), cache=False)
    assert data.input_shape == (6, 5, 3) and data.task == "regression" and data.target_scaling
    np.testing.assert_array_equal(
        transform_arrays(images[data.train.meta["row_id"] - 1], data.preprocessing), data.train.x
    )
    with pytest.raises(DataFormatError, match="dataset.target_path"):
        load_dataset("arrays", path=str(tmp_path / "x.npy"), cache=False)
    np.savez(tmp_path / "named.npz", inputs=images, y=np.zeros((60, 4)))
    with pytest.raises(DataFormatError, match=r"no array 'x' \(dataset.x_key\); the file holds 'inputs', 'y'"):
        load_dataset("arrays", path=str(tmp_path / "named.npz"), cache=False)
    np.savez(tmp_path / "cube.npz", x=images, y=np.zeros((60, 4, 2)))
    with pytest.raises(DataFormatError, match="targets of shape \\(60, 4, 2\\).*one 0/1 column per label"):
        load_dataset("arrays", path=str(tmp_path / "cube.npz"), cache=False)


# ---------------------------------------------------------------- sequence


def sequence_frame(n: int = 90, steps: int = 12, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, steps))
    frame = pd.DataFrame(values, columns=[f"t{i}" for i in range(1, steps + 1)])
    frame.insert(0, "id", [f"s{i}" for i in range(n)])
    frame["y"] = (values[:, :3].sum(axis=1) > 0).astype(int)
    return frame[["id", "y"] + [f"t{i}" for i in range(steps, 0, -1)]]  # steps stored in reverse order


def test_sequence_columns_by_prefix_are_ordered_by_step_and_reshaped(tmp_path):
    frame = sequence_frame()
    path = write_csv(tmp_path, frame)
    data = load_dataset("sequence", path=str(path), target="y", feature_prefix="t", scale="none", cache=False)
    assert data.input_shape == (12, 1) and data.task == "binary"
    row = data.train.meta["row_id"][0] - 1
    np.testing.assert_allclose(data.train.x[0, :, 0], frame.loc[row, [f"t{i}" for i in range(1, 13)]], rtol=1e-6)
    prep = json.loads(json.dumps(data.preprocessing))
    np.testing.assert_array_equal(transform(frame.iloc[data.test.meta["row_id"] - 1], prep), data.test.x)
    with pytest.raises(DataFormatError, match="lack the column\\(s\\) 't5'"):
        load_dataset(
            "sequence", path=str(write_csv(tmp_path, frame.drop(columns="t5"))), target="y", feature_prefix="t"
        )


def test_sequence_steps_and_channels_from_a_first_column(tmp_path):
    path = write_csv(tmp_path, sequence_frame())
    data = load_dataset("sequence", path=str(path), target="y", first_column="t12", channels=3, cache=False)
    assert data.input_shape == (4, 3) and data.feature_names[:3] == ["t12", "t11", "t10"]
    short = load_dataset("sequence", path=str(path), target="y", first_column="t12", steps=2, channels=3, cache=False)
    assert short.input_shape == (2, 3)
    with pytest.raises(DataFormatError, match="12 step columns do not divide into dataset.channels=5"):
        load_dataset("sequence", path=str(path), target="y", first_column="t12", channels=5, cache=False)
    with pytest.raises(DataFormatError, match="column 'id': value 's0' is missing, not a number"):
        load_dataset("sequence", path=str(path), target="y", cache=False)


# ---------------------------------------------------------------- runs


def run(tmp_path: Path, *overrides):
    """One job through Hydra's compose API and run_job, recorded in a SQLite store under tmp_path."""
    from hydra import compose, initialize_config_dir

    from runner.cli import CONF_DIR
    from runner.run.job import run_job

    overrides = [*overrides, f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return run_job(cfg, tmp_path / "run", overrides=overrides)


def run_status(tmp_path: Path, result) -> tuple[str, dict]:
    from mlflow import MlflowClient

    record = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db").get_run(result.run_id)
    return record.info.status, record.data.tags


def test_table_run_with_auto_task_records_and_predicts_raw_rows(tmp_path):
    keras = pytest.importorskip("keras")
    path = write_csv(tmp_path, table_frame(150))
    result = run(
        tmp_path, "dataset=table", f"dataset.path={path}", "dataset.target=label", "model=mlp",
        "trainer.epochs=2", "diagnostics=none", "objective.metric=val_accuracy",
    )  # fmt: skip
    status, tags = run_status(tmp_path, result)
    assert status == "FINISHED" and tags["runner.data.task"] == "binary"
    assert result.objective == pytest.approx(result.metrics["val_accuracy"])  # checked after training (task=auto)
    notes = json.loads((result.output_dir / "reports" / "dataset.json").read_text())["notes"]
    assert any("task=auto" in note for note in notes)
    prep = json.loads((result.output_dir / "model" / "preprocessing.json").read_text())
    model = keras.saving.load_model(result.output_dir / "model" / "model.keras")
    raw = pd.read_csv(path)
    data = load_table(path, target="label")
    outputs = model.predict(transform(raw.iloc[data.test.meta["row_id"] - 1], prep), verbose=0)
    saved = pd.read_csv(result.output_dir / "reports" / "test_predictions.csv")
    np.testing.assert_allclose(outputs[:, 0], saved["output_0"], rtol=1e-5, atol=1e-6)


def test_sequence_run_with_the_bilstm(tmp_path):
    pytest.importorskip("keras")
    path = write_csv(tmp_path, sequence_frame(60))
    result = run(
        tmp_path, "dataset=sequence", f"dataset.path={path}", "dataset.target=y", "dataset.feature_prefix=t",
        "dataset.task=binary", "model=bilstm", "model.lstm_units=[4]", "model.hidden_units=[4]",
        "trainer.epochs=1", "diagnostics=none", "evaluation.plots=false",
    )  # fmt: skip
    assert run_status(tmp_path, result)[0] == "FINISHED"
    assert (
        np.isfinite(result.metrics["test_roc_auc"]) and (result.output_dir / "model" / "preprocessing.json").is_file()
    )


def test_arrays_regression_run_reports_the_original_unit(tmp_path):
    pytest.importorskip("keras")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(80, 4, 4, 1))
    np.savez(tmp_path / "data.npz", x=x, y=100 + 20 * x.mean(axis=(1, 2, 3)))
    result = run(
        tmp_path, "dataset=arrays", f"dataset.path={tmp_path / 'data.npz'}", "dataset.task=regression",
        "trainer.epochs=2", "diagnostics=none", "evaluation.plots=false",
    )  # fmt: skip
    data = load_dataset("arrays", path=str(tmp_path / "data.npz"), task="regression")
    assert data.input_shape == (4, 4, 1) and data.target_scaling["std"] > 1
    expected = result.metrics["test_mae"] * data.target_scaling["std"]
    assert result.metrics["test_mae_original"] == pytest.approx(expected, rel=1e-6)
    assert (result.output_dir / "model" / "preprocessing.json").is_file()


# ---------------------------------------------------------------- multilabel


def labels_frame(n: int = 160, seed: int = 5) -> pd.DataFrame:
    """Two numbers, a category, and three 0/1 labels that depend on them (one written as true/false)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)})
    frame["sports"] = (frame["a"] > 0).astype(int)
    frame["music"] = frame["b"] > 0.3
    frame["travel"] = ((frame["a"] + frame["b"] > 0) | (frame["c"] == "x")).astype(int)
    return frame


LABELS = ["sports", "music", "travel"]


def test_several_0_1_target_columns_are_detected_as_multilabel(tmp_path):
    frame = labels_frame()
    path = write_csv(tmp_path, frame)
    data = load_table(path, target=LABELS)
    assert data.task == "multilabel" and data.class_names == LABELS and data.n_classes == 3
    assert data.feature_names == ["a", "b", "c=x", "c=y"]  # the label columns are no features
    assert data.train.y.shape == (128, 3) and data.train.y.dtype == np.float32
    rows = np.concatenate([data.train.meta["row_id"], data.val.meta["row_id"], data.test.meta["row_id"]])
    y = np.concatenate([data.train.y, data.val.y, data.test.y])
    expected = frame[LABELS].to_numpy(dtype=np.float32)[rows - 1]
    np.testing.assert_array_equal(y, expected)  # each row keeps its own labels through the split
    assert any("task=auto: the 3 target columns 'sports', 'music', 'travel' hold only 0/1 -> multilabel" in note
               for note in data.notes)  # fmt: skip
    assert data.preprocessing["target"] == {"name": LABELS, "task": "multilabel", "classes": LABELS, "scaling": None}
    assert load_table(path, target=LABELS, task="multilabel").notes == [n for n in data.notes if "task=auto" not in n]


def test_multilabel_targets_that_do_not_fit_are_refused(tmp_path):
    frame = labels_frame()
    frame.loc[7, "travel"] = 2
    path = write_csv(tmp_path, frame)
    with pytest.raises(DataFormatError, match=r"data row 8 \(line 9\): label column 'travel': value 2 is not 0/1"):
        load_table(path, target=LABELS)
    with pytest.raises(
        DataFormatError, match="holds 2 columns .* but dataset.task=binary; set dataset.task=multilabel"
    ):
        load_table(path, target=["sports", "music"], task="binary")
    frame = labels_frame()
    frame["music"], frame["sports"] = False, 1
    with pytest.raises(DataFormatError, match="every label column .* has one value in every row"):
        load_table(write_csv(tmp_path, frame, "constant.csv"), target=["sports", "music"])
    with pytest.raises(DataFormatError, match="names a column more than once"):
        load_table(path, target=["sports", "sports"])
    with pytest.raises(DataFormatError, match="several 0/1 label columns .* are read by dataset=table"):
        load_dataset("sequence", path=str(path), target=["sports", "music"], first_column="a", steps=2, cache=False)
    frame = labels_frame()
    frame["music"] = frame["music"].astype(object)
    frame.loc[3, "music"] = None
    with pytest.raises(DataFormatError, match="missing values in 1 column.*'music'"):
        load_table(write_csv(tmp_path, frame, "gap.csv"), target=LABELS)
    dropped = load_table(tmp_path / "gap.csv", target=LABELS, missing="impute")  # rows without a target go
    assert sum(len(s) for s in dropped.splits().values()) == len(frame) - 1


def test_arrays_with_a_2d_0_1_target_are_multilabel(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 5))
    y = np.column_stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 2] > 1]).astype(np.int8)
    np.savez(tmp_path / "ml.npz", x=x, y=y)
    data = load_dataset("arrays", path=str(tmp_path / "ml.npz"), cache=False)
    assert data.task == "multilabel" and data.class_names == ["y_0", "y_1", "y_2"]
    assert data.train.y.shape == (80, 3) and set(np.unique(data.train.y)) == {0.0, 1.0}
    assert any("-> multilabel" in note for note in data.notes)
    with pytest.raises(DataFormatError, match="holds 3 columns .* but dataset.task=multiclass"):
        load_dataset("arrays", path=str(tmp_path / "ml.npz"), task="multiclass", cache=False)
    np.savez(tmp_path / "counts.npz", x=x, y=y * 3)
    with pytest.raises(DataFormatError, match="label column 'y_0': value 3 is not 0/1"):
        load_dataset("arrays", path=str(tmp_path / "counts.npz"), cache=False)
    np.savez(tmp_path / "given.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:, :2])
    with pytest.raises(DataFormatError, match=r"\['y_test'\]: targets of shape \(2,\) per row, y_train's are \(3,\)"):
        load_dataset("arrays", path=str(tmp_path / "given.npz"), cache=False)


def test_a_multilabel_config_is_checked_before_loading():
    from hydra import compose, initialize_config_dir

    from runner.cli import CONF_DIR
    from runner.config.validation import validate
    from runner.errors import ConfigError

    base = ["dataset=table", "dataset.path=x.csv", "dataset.target=[sports,music,travel]"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        validate(compose(config_name="config", overrides=[*base, "objective.metric=val_macro_f1"]))
        for override, reason in [
            ("model.output_units=1", "1 output units for 3 labels"),
            ("model.output_activation=softmax", "a softmax output makes the labels compete"),
            ("model.loss=sparse_categorical_crossentropy", "is a multiclass loss"),
            ("objective.metric=val_f1", "objective.metric='val_f1' is not a metric of this run"),
        ]:
            with pytest.raises(ConfigError, match=reason):
                validate(compose(config_name="config", overrides=[*base, override]))


def test_multilabel_table_run_logs_its_metrics_predictions_and_model(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    import mlflow.pyfunc
    from mlflow import MlflowClient

    path = write_csv(tmp_path, labels_frame(200))
    result = run(
        tmp_path, "dataset=table", f"dataset.path={path}", "dataset.target=[sports,music,travel]", "model=mlp",
        "trainer.epochs=3", "diagnostics=quick", "objective.metric=val_macro_f1",
    )  # fmt: skip
    status, tags = run_status(tmp_path, result)
    assert status == "FINISHED" and tags["runner.data.task"] == "multilabel"
    for name in ("accuracy", "subset_accuracy", "micro_f1", "macro_f1", "roc_auc"):
        assert 0 <= result.metrics[f"test_{name}"] <= 1, name
    assert result.metrics["test_subset_accuracy"] <= result.metrics["test_accuracy"]
    assert result.objective == pytest.approx(result.metrics["val_macro_f1"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    assert len(client.get_metric_history(result.run_id, "val_micro_f1")) == 4  # 3 epochs and the final value
    saved = pd.read_csv(result.output_dir / "reports" / "test_predictions.csv")
    assert list(saved.columns) == [f"y_true_{n}" for n in LABELS] + [f"output_{n}" for n in LABELS]
    assert len(saved) == 20 and saved.filter(like="output_").stack().between(0, 1).all()
    report = (result.output_dir / "reports" / "classification_report.txt").read_text()
    assert all(name in report for name in LABELS) and "micro avg" in report
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"  # MLflow's loaders resolve runs:/ through the global URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/mlflow_model")
    finally:
        mlflow.set_tracking_uri(None)
    assert [spec.shape for spec in loaded.metadata.signature.outputs.inputs] == [(-1, 3)]
    assert np.asarray(loaded.predict(np.zeros((2, 4), dtype=np.float32))).shape == (2, 3)
    diagnostics = json.loads((result.output_dir / "diagnostics" / "report.json").read_text())
    assert diagnostics and "Traceback" not in json.dumps(diagnostics)


def test_multilabel_arrays_run_trains_one_sigmoid_per_label(tmp_path):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 4))
    np.savez(tmp_path / "ml.npz", x=x, y=np.column_stack([x[:, 0] > 0, x[:, 1] > 0]))
    result = run(
        tmp_path, "dataset=arrays", f"dataset.path={tmp_path / 'ml.npz'}", "trainer.epochs=2", "diagnostics=none",
        "evaluation.plots=false", "tracking.log_model=true",
    )  # fmt: skip
    assert run_status(tmp_path, result)[1]["runner.data.task"] == "multilabel"
    model = keras.saving.load_model(result.output_dir / "model" / "model.keras")
    assert model.output_shape == (None, 2) and model.layers[-1].get_config()["activation"] == "sigmoid"
    assert np.isfinite(result.metrics["test_micro_f1"])


# ---------------------------------------------------------------- task=auto: the metrics checked once the task is known


def test_auto_task_metrics_are_checked_against_the_loaded_task():
    from hydra import compose, initialize_config_dir

    from runner.cli import CONF_DIR
    from runner.config.spec import prepare
    from runner.config.validation import check_loaded_task
    from runner.errors import ConfigError

    base = ["dataset=table", "dataset.path=x.csv", "dataset.target=y"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        spec = prepare(compose(config_name="config", overrides=[*base, "objective.metric=val_accuracy"]))
        wine_like = prepare(compose(config_name="config", overrides=[*base, "objective.metric=test_mae_original"]))
        stopping = prepare(
            compose(
                config_name="config",
                overrides=[*base, "trainer.early_stopping.enabled=true", "trainer.early_stopping.monitor=val_mae"],
            )
        )
    check_loaded_task(spec, "binary")
    check_loaded_task(spec, "multilabel")
    with pytest.raises(ConfigError, match=r"(?s)pose a regression task .*objective.metric='val_accuracy' .*val_mae"):
        check_loaded_task(spec, "regression")
    check_loaded_task(wine_like, "regression")  # a standardised regression target is also scored in its unit
    with pytest.raises(ConfigError, match="objective.metric='test_mae_original' is not a metric"):
        check_loaded_task(wine_like, "binary")
    with pytest.raises(
        ConfigError, match=r"(?s)multiclass task.*trainer.early_stopping.monitor='val_mae'.*val_accuracy"
    ):
        check_loaded_task(stopping, "multiclass")


def test_a_run_whose_metric_does_not_fit_the_detected_task_fails_before_building_a_model(tmp_path):
    from runner.errors import ConfigError

    frame = table_frame(60)
    frame["label"] = frame["size"] * 2.5  # a quantity: task=auto decides regression
    path = write_csv(tmp_path, frame)
    with pytest.raises(
        ConfigError, match=r"(?s)regression task .*objective.metric='val_accuracy'.*choose one of: loss"
    ):
        run(tmp_path, "dataset=table", f"dataset.path={path}", "dataset.target=label", "objective.metric=val_accuracy")
    assert not (tmp_path / "run" / "reports" / "model_summary.txt").exists()
