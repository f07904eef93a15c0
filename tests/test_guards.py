"""Bad input, seen by the user: a specific message, and nothing already recorded lost.

Config errors are refused before any MLflow run exists; data errors fail the run they happen in, which keeps
its params and tags and says why in `runner.error`. (Schema errors, unknown keys and wrong types are in
tests/test_config.py; every loader error in tests/test_datasets.py.)
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from datasets.errors import ChecksumError, DataError, DataFormatError, DataNotFoundError
from runner.cli import CONF_DIR
from runner.config.validation import validate
from runner.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
WINE_FULL = "wine/winequality-white.csv"


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_cli(cwd: Path, *args):
    code = (
        "import sys; from runner.cli import main; sys.argv = ['runner', *sys.argv[1:]]\n"
        "try:\n    main()\nfinally:\n"
        "    print('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'TENSORFLOW_NOT_IMPORTED')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


# ---------------------------------------------------------------- config: before any run exists


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["objective.metric=val_acc"],
            (
                "objective.metric='val_acc' is not a metric of this run; choose one of: loss, "
                "mae, rmse, val_loss, val_mae"
            ),
        ),
        (["model.output_activation=softmax"], "softmax over one output unit always outputs 1.0"),
    ],
)
def test_cli_refuses_bad_settings_before_tensorflow_and_before_any_run(tmp_path, overrides, message):
    result = run_cli(tmp_path, "+experiment=wine_mlp", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert message in result.stderr
    assert "TENSORFLOW_NOT_IMPORTED" in result.stdout
    assert not (tmp_path / "outputs").exists()  # the default store was never opened: no run
    assert not (tmp_path / "run").exists()  # nor is the empty folder Hydra made for the run left behind


@pytest.mark.parametrize(
    "experiment, overrides, reason",
    [
        ("wine_mlp", ["model.output_activation=softmax"], "softmax over one output unit always outputs 1.0"),
        (
            "wine_mlp",
            ["model.output_activation=sigmoid", "model.loss=mse"],
            "a sigmoid output cannot reach regression targets outside (0, 1)",
        ),
        ("wine_mlp", ["model.loss=binary_crossentropy"], "binary_crossentropy is a binary loss"),
        (
            "mnist_mlp",
            ["model.output_activation=linear", "model.loss=categorical_crossentropy"],
            "a linear output gives the cross-entropy loss no probabilities",
        ),
        ("mnist_mlp", ["model.output_activation=sigmoid"], "sigmoid outputs are no distribution over the classes"),
        ("mnist_mlp", ["model.output_units=5"], "5 output units for 10 classes"),
        ("seizure_dnn", ["model.loss=mse"], "mse is a regression loss"),
        ("seizure_dnn", ["model.loss=sparse_categorical_crossentropy"], "is a multiclass loss"),
        ("seizure_dnn", ["model.output_units=2"], "2 output units for one target"),
    ],
)
def test_output_and_loss_that_contradict_the_task_need_an_explicit_override(experiment, overrides, reason):
    with pytest.raises(ConfigError) as refused:
        validate(compose_config(f"+experiment={experiment}", *overrides))
    assert reason in str(refused.value) and "model.allow_unusual_output=true" in str(refused.value)
    validate(compose_config(f"+experiment={experiment}", *overrides, "model.allow_unusual_output=true"))


@pytest.mark.parametrize(
    "experiment, overrides",
    [
        ("wine_mlp", ["model.output_activation=linear", "model.loss=mean_squared_error"]),
        ("wine_mlp", ["model.loss=huber"]),
        ("seizure_dnn", ["model.output_activation=sigmoid", "model.loss=BinaryCrossentropy"]),
        (
            "mnist_mlp",
            ["model.output_activation=softmax", "model.loss=categorical_crossentropy", "model.output_units=10"],
        ),
        ("mnist_mlp", ["model.loss=my_custom_loss"]),  # a loss we do not know is not second-guessed
    ],
)
def test_conventional_heads_and_unknown_losses_pass(experiment, overrides):
    validate(compose_config(f"+experiment={experiment}", *overrides))


@pytest.mark.parametrize(
    "fault",
    [
        "mnist_sigmoid_sparse_ce",
        "seizure_linear_output_ce",
        "seizure_sigmoid_categorical_ce",
        "seizure_softmax_single_unit",
    ],
)
def test_seeded_output_faults_opt_in_and_would_otherwise_be_refused(fault):
    validate(compose_config(f"+experiment=faults/{fault}"))
    with pytest.raises(ConfigError, match="allow_unusual_output"):
        validate(compose_config(f"+experiment=faults/{fault}", "model.allow_unusual_output=false"))


def test_every_misnamed_monitor_is_listed_before_any_run():
    cfg = compose_config(
        "+experiment=seizure_dnn",
        "trainer.early_stopping.enabled=true",
        "trainer.early_stopping.monitor=val_acc",
        "optimizer.schedule.name=reduce_on_plateau",
        "optimizer.schedule.monitor=val_auc",
        "objective.metric=test_auc",
    )
    with pytest.raises(ConfigError) as refused:
        validate(cfg)
    message = str(refused.value)
    assert "trainer.early_stopping.monitor='val_acc' is not a metric of this run" in message
    assert "optimizer.schedule.monitor='val_auc' is not a metric of this run" in message
    assert "objective.metric='test_auc' is not a metric of this run" in message and "test_roc_auc" in message


# ---------------------------------------------------------------- data: the run fails, its record stays


def damage_wine_cell(fake, value):
    frame = fake.wine.astype(object)
    frame.loc[6, "pH"] = value
    fake.write_wine_full(frame)


def damage_seizure_label(fake):
    frame = fake.seizure.copy()
    frame.loc[11, "y"] = 7
    fake.write_seizure_uci(frame)


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


WINE = ["+experiment=wine_mlp", "dataset.split=random"]
DATA_CASES = {
    # case: (experiment overrides, damage, error type, what the message must say)
    "missing folder": (
        WINE + ["dataset.data_dir=MISSING"],
        None,
        DataNotFoundError,
        ["winequality-white.csv", "this folder does not exist", "dataset.data_dir=<DIR>"],
    ),
    "missing file": (
        WINE,
        lambda fake: fake.path(WINE_FULL).unlink(),
        DataNotFoundError,
        ["Data file 'wine/winequality-white.csv' not found", "download=False"],
    ),
    "empty file": (
        WINE,
        lambda fake: fake.path(WINE_FULL).write_text(""),
        DataFormatError,
        ["winequality-white.csv: the file is empty"],
    ),
    "NaN in a CSV": (
        WINE,
        lambda fake: damage_wine_cell(fake, ""),
        DataFormatError,
        ["column 'pH'", "data row 7", "(empty or NA)"],
    ),
    "text in a numeric column": (
        WINE,
        lambda fake: damage_wine_cell(fake, "abc"),
        DataFormatError,
        ["column 'pH'", "data row 7", "'abc'"],
    ),
    "missing and extra columns": (
        WINE,
        lambda fake: fake.write_wine_full(fake.wine.drop(columns=["pH"]).assign(colour="white")),
        DataFormatError,
        ["missing column(s) 'pH'", "unexpected column(s) 'colour'"],
    ),
    "label outside the task's set": (
        ["+experiment=seizure_dnn", "dataset.split=random"],
        damage_seizure_label,
        DataFormatError,
        ["epileptic_seizure_recognition.csv: column 'y', data row 12"],
    ),
    "truncated mnist.npz": (
        ["+experiment=mnist_dropout"],
        lambda fake: truncate(fake.path("mnist/mnist.npz")),
        DataFormatError,
        ["mnist.npz", "not a zip"],
    ),
    "digest mismatch": (
        WINE + ["dataset.verify_checksum=true"],
        None,
        ChecksumError,
        ["sha256 mismatch for known file 'wine/winequality-white.csv'", "dataset.verify_checksum=false"],
    ),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_fails_the_run_with_a_specific_message_and_keeps_its_record(fake_data, tmp_path, case):
    pytest.importorskip("keras")
    from runner.run.job import run_job

    experiment, damage, error_type, expected = DATA_CASES[case]
    if damage:
        damage(fake_data)
    data_dir = str(tmp_path / "nonexistent") if "dataset.data_dir=MISSING" in experiment else str(fake_data.root)
    store = f"sqlite:///{tmp_path}/store/mlflow.db"
    overrides = [
        *[o for o in experiment if o != "dataset.data_dir=MISSING"],
        "+debug=fast",
        f"dataset.data_dir={data_dir}",
        "dataset.download=false",
        "dataset.cache=false",
        f"tracking.uri={store}",
        "tracking.experiment=guards",
    ]
    if "dataset.verify_checksum=true" not in overrides:
        overrides.append("dataset.verify_checksum=false")  # generated files never match the published digests
    with pytest.raises(DataError) as failure:
        run_job(compose_config(*overrides), tmp_path / "run", overrides=overrides)
    assert isinstance(failure.value, error_type)
    for part in expected:
        assert part in str(failure.value), part

    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("guards").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["runner.error"].startswith(f"{error_type.__name__}: ")
    assert expected[0] in run.data.tags["runner.error"]
    assert run.data.params["trainer.epochs"] == "2" and run.data.params["dataset.data_dir"] == data_dir
    assert run.data.tags["runner.preset"] == experiment[0].split("=")[1]
    assert "loss" not in run.data.metrics  # nothing trained on bad data


def test_a_file_changed_after_caching_is_read_again_and_refused(fake_data):
    """The parsed-data cache is keyed on the files' digests: it can never hide a file damaged later."""
    first = fake_data.load("wine", split="random", cache=True)
    again = fake_data.load("wine", split="random", cache=True)
    assert any("read from cache" in note for note in again.notes)
    np.testing.assert_array_equal(first.train.x, again.train.x)
    damage_wine_cell(fake_data, "abc")
    with pytest.raises(DataFormatError, match="column 'pH'"):
        fake_data.load("wine", split="random", cache=True)
