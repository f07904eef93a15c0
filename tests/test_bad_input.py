"""Bad input through the command line (issue 17): one line that says what is wrong and where, soon after
launch, and nothing already recorded lost. Each test runs ``python -m runner`` in a fresh process and prints
the seconds from launch to the message (``pytest -s`` shows them).

MNIST files with other pixel types are checked through the loader: they are accepted, not refused.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import make_mnist_arrays

from datasets.errors import DataFormatError

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
SETPRIV = Path("/usr/bin/setpriv")
# `python -m runner`, with a note on stderr when TensorFlow starts to load: what came before it did not wait
# for TensorFlow.
WATCHED_RUNNER = (
    "import runpy, sys\n"
    "class Watch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'tensorflow' and 'tensorflow' not in sys.modules:\n"
    "            print('TENSORFLOW_LOADING', file=sys.stderr, flush=True)\n"
    "sys.meta_path.insert(0, Watch())\n"
    "sys.argv = ['runner', *sys.argv[1:]]\n"
    "runpy.run_module('runner', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class Launched:
    returncode: int
    stdout: str
    stderr: str
    message_seconds: float | None  # launch to the first line holding "Error:"


def launch(cwd: Path, *args: str, prefix: tuple[str, ...] = (), python_args=("-m", "runner")) -> Launched:
    """Run the CLI and time the first "Error:" line on stderr as it arrives."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [*prefix, sys.executable, *python_args, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, message_at = [], None
    for line in process.stderr:
        if message_at is None and "Error:" in line:
            message_at = time.perf_counter() - started
        lines.append(line)
    stdout = process.stdout.read()
    process.wait(timeout=300)
    return Launched(process.returncode, stdout, "".join(lines), message_at)


def report(what: str, launched: Launched) -> None:
    print(f"\n[bad input] {what}: {launched.message_seconds:.2f} s from launch to the message")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- 1. a config file PyYAML cannot read


BAD_YAML = {
    "mapping value": (
        "# @package _global_\ndefaults:\n  - override /dataset: wine\noptimizer:\n  lr: 0.1: x\n",
        'line 5, column 10: mapping values are not allowed here: "  lr: 0.1: x"',
    ),
    "unclosed quote": (
        '# @package _global_\nname: "wine\ntrainer:\n  epochs: 3\n',
        "found unexpected end of stream",
    ),
}


@pytest.mark.parametrize("case", list(BAD_YAML))
def test_a_yaml_syntax_error_is_one_line_with_file_line_and_text(tmp_path, case):
    text, expected = BAD_YAML[case]
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "bad.yaml").write_text(text)
    launched = launch(tmp_path, "--config-dir", "conf", "+experiment=bad", f"hydra.run.dir={tmp_path / 'run'}")
    report(f"YAML syntax error ({case})", launched)
    assert launched.returncode == 1
    (line,) = error_lines(launched.stderr)
    assert line.startswith("Error: conf/experiment/bad.yaml line ") and expected in line, line
    assert not (tmp_path / "run").exists()


def test_the_yaml_message_names_the_line_of_a_file_in_any_config_group(tmp_path):
    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    (tmp_path / "conf" / "optimizer" / "broken.yaml").write_text("name: adam\nlearning_rate: [0.1\n")
    launched = launch(tmp_path, "--config-dir", "conf", "+experiment=wine_mlp", "optimizer=broken", "--cfg", "job")
    assert launched.returncode == 1
    (line,) = error_lines(launched.stderr)
    assert line.startswith("Error: conf/optimizer/broken.yaml line 3, column 1: expected ',' or ']'"), line


# ---------------------------------------------------------------- 2. an output folder that cannot be written


@pytest.fixture
def open_tmp():
    """A temporary folder other users can enter (pytest's own are private to the user running the tests)."""
    folder = Path(tempfile.mkdtemp(prefix="runner-bad-input-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):  # read-only folders inside would stop the removal
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def unprivileged(cwd: Path) -> tuple[str, ...]:
    """How to run a command as a user whom mode bits bind: this one, or `nobody` when the tests run as root."""
    if os.geteuid() != 0:
        return ()
    if not SETPRIV.exists():
        pytest.skip(f"running as root, and {SETPRIV} is missing to drop privileges: mode bits would not apply")
    prefix = (str(SETPRIV), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import runner.cli"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"user {NOBODY} cannot run the runner from {REPO} ({sys.executable}): {probe.stderr[-300:]}")
    return prefix


@pytest.mark.parametrize("target", ["read-only folder", "folder inside a read-only one"])
def test_an_output_folder_that_cannot_be_written_is_named_with_the_setting(open_tmp, target):
    locked = open_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    folder = locked if target == "read-only folder" else locked / "runs" / "today"
    prefix = unprivileged(open_tmp)
    launched = launch(
        open_tmp,
        "+experiment=wine_mlp",
        f"hydra.run.dir={folder}",
        f"tracking.uri=sqlite:///{open_tmp}/store/mlflow.db",
        prefix=prefix,
    )
    report(f"unwritable output folder ({target})", launched)
    assert launched.returncode == 1
    (line,) = error_lines(launched.stderr)
    assert line.startswith(f"Error: the output folder {folder} cannot be written: {locked} is not writable"), line
    assert "hydra.run.dir=DIR" in line
    assert not (open_tmp / "store").exists() and list(locked.iterdir()) == []


def test_an_unwritable_sweep_folder_names_hydra_sweep_dir(open_tmp):
    locked = open_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    launched = launch(
        open_tmp,
        "-m",
        "+experiment=wine_mlp",
        "trainer.epochs=1,2",
        f"hydra.sweep.dir={locked}/sweep",
        prefix=unprivileged(open_tmp),
    )
    assert launched.returncode == 1
    (line,) = error_lines(launched.stderr)
    assert f"the output folder {locked}/sweep cannot be written" in line and "hydra.sweep.dir=DIR" in line, line


# ---------------------------------------------------------------- 3. data errors, before TensorFlow


def damage_csv(fake):
    frame = fake.wine.astype(object)
    frame.loc[6, "pH"] = "abc"
    fake.write_wine_full(frame)


DATA_ERRORS = {
    "missing file": (lambda fake: fake.path("wine/winequality-white.csv").unlink(), "DataNotFoundError", "not found"),
    "corrupt CSV": (damage_csv, "DataFormatError", "column 'pH', data row 7"),
}


@pytest.mark.parametrize("case", list(DATA_ERRORS))
def test_a_data_error_shows_before_tensorflow_loads_and_the_run_is_still_recorded(fake_data, tmp_path, case):
    from mlflow import MlflowClient

    damage, error_type, expected = DATA_ERRORS[case]
    damage(fake_data)
    store = f"sqlite:///{tmp_path}/store/mlflow.db"
    launched = launch(
        tmp_path,
        "+experiment=wine_mlp",
        "+debug=fast",
        "dataset.split=random",
        f"dataset.data_dir={fake_data.root}",
        "dataset.download=false",
        "dataset.verify_checksum=false",
        "dataset.cache=false",
        f"tracking.uri={store}",
        "tracking.experiment=bad_input",
        f"hydra.run.dir={tmp_path / 'run'}",
        python_args=("-c", WATCHED_RUNNER),
    )
    report(f"data error ({case})", launched)
    assert launched.returncode == 1
    stderr = launched.stderr
    assert expected in stderr and stderr.count("Error:") == 1, stderr[-3000:]
    assert stderr.index("Error:") < stderr.index("TENSORFLOW_LOADING")

    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("bad_input").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["runner.error_type"] == error_type and expected in run.data.tags["runner.error"]
    assert run.data.params["trainer.epochs"] == "2" and run.data.params["dataset.data_dir"] == str(fake_data.root)
    assert run.data.tags["runner.preset"] == "wine_mlp"
    assert "loss" not in run.data.metrics


# ---------------------------------------------------------------- 4. a refused config leaves no folder


@pytest.mark.parametrize(
    "override, message",
    [
        ("+trainer.epochz=3", "trainer.epochz is not a setting of this run; did you mean trainer.epochs?"),
        ("trainer.epochs=-3", "trainer.epochs=-3 is out of range"),
    ],
)
def test_a_refused_config_leaves_no_run_folder_behind(tmp_path, override, message):
    folder = tmp_path / "outputs" / "runs" / "today"
    launched = launch(tmp_path, "+experiment=wine_mlp", override, f"hydra.run.dir={folder}")
    report(f"refused config ({override})", launched)
    assert launched.returncode == 1 and message in launched.stderr
    assert not folder.exists()
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_a_refused_config_keeps_a_folder_that_was_there_before(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    launched = launch(tmp_path, "+experiment=wine_mlp", "trainer.epochs=-3", f"hydra.run.dir={folder}")
    assert launched.returncode == 1
    assert (folder / ".hydra").is_dir()  # the user's folder: what Hydra wrote there stays, as the folder does


# ---------------------------------------------------------------- 5. MNIST pixels of another type or range


def mnist_with(fake_data, convert) -> dict:
    arrays = make_mnist_arrays()
    fake_data.write_mnist({**arrays, "x_train": convert(arrays["x_train"]), "x_test": convert(arrays["x_test"])})
    return arrays


@pytest.mark.parametrize(
    "convert, note",
    [
        (lambda x: x.astype(np.float64), "x_train pixels (float64, in [0, 255]) divided by 255"),
        (lambda x: x.astype(np.int64), "x_train pixels (int64, in [0, 255]) divided by 255"),
        (lambda x: (x / 255).astype(np.float32), "x_train pixels (float32) already in [0, 1], kept as they are"),
    ],
)
def test_mnist_pixels_of_any_numeric_type_in_a_known_range_are_used(fake_data, convert, note):
    arrays = mnist_with(fake_data, convert)
    data = fake_data.load("mnist", val_size=20, cache=False)
    expected = arrays["x_train"][:80].reshape(80, -1).astype(np.float32) / np.float32(255)
    np.testing.assert_allclose(data.train.x, expected, atol=1e-6)
    assert data.train.x.dtype == np.float32 and data.test.x.max() <= 1.0
    assert any(note in line for line in data.notes), data.notes


def test_the_keras_uint8_file_keeps_its_note(fake_data):
    data = fake_data.load("mnist", val_size=20, cache=False)
    assert any("pixels divided by 255; meta" in line for line in data.notes), data.notes


@pytest.mark.parametrize(
    "convert, found",
    [
        (lambda x: x.astype(np.float64) / 127.5 - 1, "[-1, 1]"),
        (lambda x: x.astype(np.float64) * 4, "[0, 1020]"),
    ],
)
def test_mnist_pixels_in_another_range_are_refused_naming_it(fake_data, convert, found):
    mnist_with(fake_data, convert)
    with pytest.raises(DataFormatError, match=r"array 'x_train' has pixel values in ") as refused:
        fake_data.load("mnist", val_size=20, cache=False)
    assert found in str(refused.value) and "expected [0, 255]" in str(refused.value)


def test_mnist_pixels_that_are_not_finite_are_refused(fake_data):
    mnist_with(fake_data, lambda x: np.where(x > 250, np.nan, x.astype(np.float64)))
    with pytest.raises(DataFormatError, match="NaN or infinite pixel values"):
        fake_data.load("mnist", val_size=20, cache=False)


# ---------------------------------------------------------------- 6. the MLflow run opens while training starts


def test_a_store_that_cannot_be_used_stops_the_training_with_its_message(tmp_path):
    """The run opens on a worker thread once training has begun (runner/run/late_record.py): a store it
    cannot use still ends the job with the store's message, and nothing is recorded in its place."""
    pytest.importorskip("keras")
    from hydra import compose, initialize_config_dir
    from mlflow import MlflowClient

    from runner.cli import CONF_DIR
    from runner.errors import TrackingError
    from runner.run.job import run_job

    store = f"sqlite:///{tmp_path}/store/mlflow.db"
    client = MlflowClient(tracking_uri=store)
    client.delete_experiment(client.create_experiment("gone"))
    overrides = ["dataset=synthetic", "trainer.epochs=3", f"tracking.uri={store}", "tracking.experiment=gone"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with pytest.raises(TrackingError, match="MLflow experiment 'gone' is deleted"):
        run_job(cfg, tmp_path / "run", overrides=overrides)
    assert client.search_runs([client.get_experiment_by_name("gone").experiment_id], run_view_type=3) == []
    assert not (tmp_path / "run" / "reports" / "metrics.json").exists()  # no evaluation after the failure
