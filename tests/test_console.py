"""The console: no library noise by default, progress per epoch and per trial, the end-of-run and end-of-sweep
summaries, verbosity=debug bringing the libraries' output back, and shell completion through Hydra."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.objective import Objective
from runner.runtime import console

TINY = [
    "+experiment=wine_mlp",
    "+debug=fast",
    "dataset=synthetic",
    "dataset.task=regression",
    "dataset.n_samples=200",
    "evaluation.plots=false",
    "tracking.log_model=false",
]
# What a run printed before this console work (TensorFlow 2.21, Keras 3.15, MLflow 3.17 on a new store).
NOISE = {
    "absl's notice": r"All log messages before absl::InitializeLog",
    "oneDNN notice": r"oneDNN custom operations",
    "CPU instructions notice": r"cpu_feature_guard|This TensorFlow binary is optimized",
    "a TensorFlow C++ log line": r"(?m)^[IWEF]\d{4} \d\d:\d\d:\d\d",
    "tf.data's attribute error": r"use_unbounded_threadpool",
    "MLflow INFO lines": r"INFO mlflow|Creating initial MLflow database tables|Updating database tables",
    "alembic": r"alembic|Context impl SQLiteImpl",
    "a Python warning": r"\w+Warning: ",
    "Optuna INFO lines": r"\[I \d{4}-\d\d-\d\d",
    "tf.function retracing": r"triggered tf\.function retracing",
}
EPOCH_LINE = re.compile(r"(?m)^epoch 1/2  loss \S+  val_loss \S+ \*  \d+\.\d\d s$")


def run_cli(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m runner ...`` in tmp_path, as a user starts it: no log-level variables set, output not a TTY."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL", "PYTHONWARNINGS")
    }
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # tests send nothing out
    return subprocess.run(
        [sys.executable, "-m", "runner", *args, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def noise_in(text: str) -> list[str]:
    return [name for name, pattern in NOISE.items() if re.search(pattern, text)]


# ---------------------------------------------------------------- runs


def test_default_run_prints_progress_and_summary_and_no_library_noise(tmp_path):
    done = run_cli(tmp_path, *TINY, f"hydra.run.dir={tmp_path}/run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert noise_in(done.stdout + done.stderr) == [], done.stdout + done.stderr
    assert done.stderr.strip() == ""
    # One line per epoch from the runner, and not Keras's own two (verbose=2) on top of it.
    assert len(EPOCH_LINE.findall(done.stdout)) == 1 and "epoch 2/2  loss" in done.stdout, done.stdout
    assert "Epoch 1/2" not in done.stdout and "ms/step" not in done.stdout
    assert "== wine_mlp: finished 2 epochs" in done.stdout
    assert re.search(r"(?m)^  metric +train +val +test$", done.stdout)
    assert re.search(r"(?m)^  mae +\d+\.\d{4} +\d+\.\d{4} +\d+\.\d{4}$", done.stdout)
    run_id = re.search(r"run id: +([0-9a-f]{32})", done.stdout)
    assert run_id, done.stdout
    assert re.search(
        rf"browse: +mlflow ui .*--backend-store-uri sqlite:///{re.escape(str(tmp_path))}/mlflow\.db", done.stdout
    ), done.stdout


def test_debug_verbosity_brings_tensorflow_and_mlflow_output_back(tmp_path):
    done = run_cli(tmp_path, *TINY, "verbosity=debug", f"hydra.run.dir={tmp_path}/run")
    assert done.returncode == 0, done.stderr[-3000:]
    found = noise_in(done.stdout + done.stderr)
    assert "a TensorFlow C++ log line" in found, done.stderr
    assert "MLflow INFO lines" in found, done.stderr  # a new store: MLflow says it creates its tables
    assert "== wine_mlp: finished 2 epochs" in done.stdout


@pytest.mark.slow  # 38-46 s measured on the shared 2-core machine
def test_grid_sweep_prints_each_job_and_the_best_with_its_config(tmp_path):
    done = run_cli(
        tmp_path,
        "-m",
        *TINY,
        "trainer.epochs=1",
        "optimizer.learning_rate=1e-3,3e-2",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert noise_in(done.stdout + done.stderr) == [], done.stdout + done.stderr
    lines = re.findall(
        r"(?m)^job (\d) \((\d)/2\) done: val_loss = \S+ \(optimizer\.learning_rate=(\S+)\); "
        r"best so far: job \d, val_loss = \S+$",
        done.stdout,
    )
    assert sorted(lines) == [("0", "1", "0.001"), ("1", "2", "0.03")], done.stdout
    check_sweep_summary(done.stdout, "optimizer.learning_rate=")


@pytest.mark.slow  # 34-57 s measured on the shared 2-core machine
def test_search_prints_each_trial_and_the_best_with_its_config(tmp_path):
    done = run_cli(
        tmp_path,
        "-m",
        "+experiment=wine_mlp",
        "+sweep=smoke",
        "hydra.sweeper.n_trials=2",
        "trainer.epochs=1",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert noise_in(done.stdout + done.stderr) == [], done.stdout + done.stderr
    for number in (0, 1):
        assert re.search(
            rf"(?m)^trial {number} \({number + 1}/2\) done: val_loss = \S+ \(optimizer\.learning_rate="
            rf".*model\.hidden_units=.*\); best so far: trial \d, val_loss = \S+$",
            done.stdout,
        ), done.stdout
    assert re.search(r"(?m)^trial \d: epoch 1/1  loss ", done.stdout)  # a trial's epochs say which trial
    check_sweep_summary(done.stdout, "model.hidden_units=")


def check_sweep_summary(stdout: str, param: str) -> None:
    """The sweep's summary, printed once: best trial with objective, run id, params and its config file."""
    assert stdout.count("== sweep ") == 1, stdout
    summary = stdout[stdout.index("== sweep ") :]
    assert re.search(r"best: +trial \d \(\S+\), val_loss = \S+, run id [0-9a-f]{32}", summary), summary
    assert re.search(rf"params: +.*{re.escape(param)}", summary), summary
    config = Path(re.search(r"its config: +(\S+)", summary).group(1))
    assert config.name == "config.yaml" and config.is_file(), summary
    assert "name: wine_mlp" in config.read_text()


# ---------------------------------------------------------------- pieces


def test_keras_prints_nothing_twice_and_an_explicit_verbose_is_kept():
    assert console.progress_mode(None, "normal", on_terminal=False) == (0, True)  # the runner's line only
    assert console.progress_mode(None, "normal", on_terminal=True) == (1, False)  # Keras's bar only
    assert console.progress_mode(None, "quiet", on_terminal=False) == (0, False)
    assert console.progress_mode(2, "normal", on_terminal=False) == (2, False)


def test_epoch_and_trial_lines_name_the_monitor_and_the_best():
    line = console.epoch_line(
        3, 20, {"loss": 0.23141, "val_loss": 0.2, "val_mae": 0.22094, "epoch_seconds": 0.412}, "val_mae", improved=True
    )
    assert line == "epoch  3/20  loss 0.2314  val_loss 0.2  val_mae 0.2209 *  0.41 s"
    line = console.trial_line(
        "trial",
        4,
        10,
        3,
        "FAIL",
        "val_loss",
        None,
        {"model.dropout": 0.25},
        (1, 0.21),
        reason="TrainingError: the training loss became nan\nTraceback ...",
    )
    assert line == (
        "trial 3 (4/10) failed: TrainingError: the training loss became nan (model.dropout=0.25); "
        "best so far: trial 1, val_loss = 0.21"
    )


def test_grid_progress_counts_jobs_of_every_process_and_follows_the_direction(tmp_path):
    console.record_job(tmp_path, {"job": 1, "value": 0.5})
    console.record_job(tmp_path, {"job": 0, "value": None})  # a failed job
    entries = console.record_job(tmp_path, {"job": 2, "value": 0.7})
    assert len(entries) == 3
    assert console.best_entry(entries, Objective("val_loss", "minimize").best) == (1, 0.5)
    assert console.best_entry(entries, Objective("val_accuracy", "maximize").best) == (2, 0.7)


def test_tensorflow_start_up_notices_are_dropped_and_everything_else_kept(capfd):
    with console.native_log_filtered("normal"):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1795419615.156852    6014 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1795419615.2    6014 cuda_executor.cc:1] a real error\n")
        print("a Python message", file=sys.stderr)
    # (sorted: under capfd, Python's sys.stderr is captured apart from descriptor 2)
    assert sorted(capfd.readouterr().err.splitlines()) == [
        "E0000 00:00:1795419615.2    6014 cuda_executor.cc:1] a real error",
        "a Python message",
    ]
    with console.native_log_filtered("debug"):
        os.write(2, b"I0000 00:00:1795419615.156852    6014 port.cc:153] oneDNN custom operations are on.\n")
    assert "oneDNN" in capfd.readouterr().err


def test_unknown_verbosity_is_refused_before_anything_runs(tmp_path):
    done = run_cli(tmp_path, "+experiment=wine_mlp", "verbosity=loud", f"hydra.run.dir={tmp_path}/run")
    assert done.returncode == 1
    assert "verbosity='loud' is not allowed; choose one of: quiet, normal, debug" in done.stderr


# ---------------------------------------------------------------- shell completion


def complete(line: str, command: list[str]) -> list[str]:
    env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
    done = subprocess.run([*command, "-sc", "query=bash"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def runner_script() -> Path:
    script = Path(sys.executable).parent / "runner"
    if not script.exists():
        pytest.skip(f"no console script at {script}: the package is not installed in this environment")
    return script


def test_completion_offers_experiments_and_groups_through_the_runner_script():
    script = [str(runner_script())]
    assert "+experiment=wine_mlp" in complete("runner +experiment=wi", script)
    offered = complete("runner +experiment=wine_mlp ", script)
    assert {"model=", "optimizer=", "dataset=", "verbosity="} <= set(offered), offered
    assert not [word for word in offered if "schema" in word]  # the schemas are not options
    assert "+sweep=wine_search" in complete("runner -m +experiment=wine_mlp +sweep=wi", script)


def test_completion_works_through_python_dash_m():
    assert "+experiment=wine_mlp" in complete("python -m runner +experiment=wi", [sys.executable, "-m", "runner"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_installed_bash_completion_completes_an_experiment():
    script = runner_script()
    session = (
        'eval "$(runner -sc install=bash)"; COMP_LINE="runner +experiment=wine_m"; '
        "COMP_POINT=${#COMP_LINE}; COMP_WORDS=(runner +experiment=wine_m); COMP_CWORD=1; "
        'hydra_bash_completion; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", session], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["+experiment=wine_mlp"]
