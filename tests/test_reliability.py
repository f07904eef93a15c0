"""Runs that survive interruptions, NaNs and parallel writers (issue 5, reliability of training): SIGTERM and
SIGINT end a run KILLED with its epochs and checkpoint kept, ``trainer.resume`` continues it to the result of
the uninterrupted run, a NaN trial fails alone in a search, and processes sharing one SQLite store lose nothing.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from runner.cli import CONF_DIR
from runner.errors import ConfigError
from runner.runtime import interrupts

# Small and quick, with what a checkpoint must carry: Adam's moments, dropout's generator, a learning-rate
# schedule's counters and the shuffled order of the training data.
TINY = [
    "dataset=synthetic",
    "dataset.task=regression",
    "dataset.n_samples=300",
    "model.hidden_units=[16]",
    "model.dropout=0.2",
    "optimizer.schedule.name=reduce_on_plateau",
    "optimizer.schedule.patience=1",
    "trainer.epochs=6",
    "trainer.batch_size=16",
    "trainer.verbose=0",
    "evaluation.plots=false",
    "tracking.log_model=false",
]
EPOCH_METRICS = ("loss", "val_loss", "mae", "val_mae", "rmse", "val_rmse", "learning_rate")
TIMINGS = ("train_seconds", "first_step_seconds", "epoch_seconds")


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def store_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store/mlflow.db"


def history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every per-epoch metric as (step, value) pairs in step order: a step logged twice shows twice."""
    return {name: sorted((p.step, p.value) for p in client.get_metric_history(run_id, name)) for name in EPOCH_METRICS}


def final_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    # Timings and the system/ metrics (CPU, memory... sampled while it ran) measure the machine, not the training.
    return {name: value for name, value in metrics.items() if name not in TIMINGS and not name.startswith("system/")}


def runner_process(tmp_path: Path, run_dir: str, *overrides: str, **popen) -> subprocess.Popen:
    """``python -m runner`` on TINY data, its run folder ``tmp_path/run_dir``, the store in ``tmp_path``."""
    command = [
        sys.executable,
        "-m",
        "runner",
        *TINY,
        f"tracking.uri={store_uri(tmp_path)}",
        f"hydra.run.dir={tmp_path / run_dir}",
        *overrides,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def checkpointed_epoch(run_dir: Path) -> int:
    state = run_dir / "checkpoints" / "resume" / "state.json"
    return json.loads(state.read_text())["epoch"] if state.is_file() else 0


def interrupt_after_epoch(
    process: subprocess.Popen, run_dir: Path, epoch: int, signum: int, timeout: float = 300
) -> tuple[str, str]:
    """Send ``signum`` once the run has checkpointed ``epoch`` (the checkpoint is renamed into place whole,
    so reading it never races the writer); returns the process's output after it ends.

    The run is frozen (SIGSTOP) while its checkpoint is read again and the signal is sent: on a loaded machine
    this process can lose the CPU between seeing the checkpoint and signalling, long enough for a short run
    to finish. A checkpoint still there while it is frozen means training has not ended (it is deleted when
    training ends), so the signal lands mid-run.
    """
    deadline = time.monotonic() + timeout
    while checkpointed_epoch(run_dir) < epoch:
        assert process.poll() is None, "the run ended before it could be interrupted:\n" + process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGSTOP)
    try:
        assert checkpointed_epoch(run_dir) >= epoch, "the run finished before it could be interrupted"
        process.send_signal(signum)
    finally:
        process.send_signal(signal.SIGCONT)
    return process.communicate(timeout=timeout)


def only_run(client: MlflowClient, name: str = "synthetic"):
    (run,) = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    return run


# ---------------------------------------------------------------- signals


def test_a_signal_during_a_checkpoint_waits_for_its_end():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set from the main thread")
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    written = []
    try:
        interrupts.install()
        with pytest.raises(interrupts.Interrupted) as stop:
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)  # Python runs the handler between two bytecodes: here, at the latest
                written.append("the whole checkpoint")
        assert written == ["the whole checkpoint"]
        assert stop.value.exit_code == 143 and str(stop.value) == "interrupted by SIGTERM"
        assert isinstance(stop.value, KeyboardInterrupt), "the unwind Ctrl-C takes"
        with pytest.raises(interrupts.Interrupted, match="SIGINT"):  # outside a checkpoint: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@pytest.mark.slow
def test_sigint_marks_the_run_killed_and_keeps_its_epochs_and_checkpoint(tmp_path):
    process = runner_process(tmp_path, "run", "trainer.epochs=200")
    out, err = interrupt_after_epoch(process, tmp_path / "run", 2, signal.SIGINT)
    assert process.returncode == 130, err[-3000:]
    assert "Stopped: interrupted by SIGINT" in err
    assert "trainer.resume=" in out + err, "the console says how to continue"

    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    run = only_run(client)
    assert run.info.status == "KILLED"
    assert run.data.tags["runner.error"] == "Interrupted: interrupted by SIGINT"
    steps = [step for step, _ in history(client, run.info.run_id)["val_loss"]]
    kept = checkpointed_epoch(tmp_path / "run")
    assert kept >= 2 and steps[:kept] == list(range(1, kept + 1)), "every checkpointed epoch is in MLflow"
    files = {path.name for path in (tmp_path / "run" / "checkpoints" / "resume").iterdir()}
    assert files == {
        "state.json",
        f"epoch-{kept:04d}.npz",
        json.loads((tmp_path / "run" / "checkpoints" / "resume" / "state.json").read_text())["best_weights"],
    }
    assert (tmp_path / "run" / "checkpoints" / "best.weights.h5").is_file()


@pytest.mark.slow
def test_sigterm_then_resume_by_run_id_ends_as_the_uninterrupted_run(tmp_path):
    # Enough epochs that the signal lands mid-run however loaded the machine is; the data order of every
    # epoch is shuffled, so a resumed epoch that saw another order would change the result.
    longer = ["dataset.n_samples=2000", "trainer.epochs=20"]
    reference = runner_process(tmp_path, "reference", *longer, "tracking.experiment=reference")
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]

    interrupted = runner_process(tmp_path, "interrupted", *longer)
    out, err = interrupt_after_epoch(interrupted, tmp_path / "interrupted", 3, signal.SIGTERM)
    assert interrupted.returncode == 143, err[-3000:]
    assert "Stopped: interrupted by SIGTERM" in err
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    run = only_run(client)
    assert run.info.status == "KILLED"
    assert run.data.tags["runner.error"] == "Interrupted: interrupted by SIGTERM"
    kept = checkpointed_epoch(tmp_path / "interrupted")
    assert 3 <= kept < 20
    assert (tmp_path / "interrupted" / "checkpoints" / "resume" / f"epoch-{kept:04d}.npz").is_file()

    resumed = runner_process(tmp_path, "resumed", *longer, f"trainer.resume={run.info.run_id}")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resumed after epoch {kept}" in out + err

    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "runner.error" not in run.data.tags
    assert run.data.tags["runner.resumed"].startswith(f"after epoch {kept} from ")
    (expected,) = client.search_runs([client.get_experiment_by_name("reference").experiment_id])
    assert final_metrics(client, run.info.run_id) == final_metrics(client, expected.info.run_id)
    assert history(client, run.info.run_id) == history(client, expected.info.run_id)
    assert not (tmp_path / "resumed" / "checkpoints" / "resume").exists(), "a finished run keeps no checkpoint"
    assert (tmp_path / "interrupted" / "checkpoints" / "resume" / "state.json").is_file(), "left as it was"


# ---------------------------------------------------------------- resume, in one process


@pytest.mark.slow
def test_resume_refuses_another_config_then_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    from runner.run.job import run_job
    from runner.tracking import RunRecord

    # Early stopping that counts every epoch after the first as no improvement: it stops the run after epoch 4
    # only if the resumed run gets its counters back.
    overrides = [
        *TINY,
        f"tracking.uri={store_uri(tmp_path)}",
        "trainer.early_stopping.enabled=true",
        "trainer.early_stopping.patience=3",
        "trainer.early_stopping.min_delta=10",
    ]
    reference = run_job(compose_config(*overrides, "tracking.experiment=reference"), tmp_path / "reference")

    log_metrics = RunRecord.log_metrics
    stops = []

    def interrupt_in_epoch_three(self, metrics, step=0):
        if step == 3 and "val_loss" in metrics and not stops:
            stops.append(step)
            raise KeyboardInterrupt  # after the epoch's checkpoint, before MLflow has the epoch
        log_metrics(self, metrics, step)

    monkeypatch.setattr(RunRecord, "log_metrics", interrupt_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        run_job(compose_config(*overrides), tmp_path / "interrupted")
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    killed = only_run(client)
    assert killed.info.status == "KILLED"
    assert [step for step, _ in history(client, killed.info.run_id)["loss"]] == [1, 2]

    with pytest.raises(
        ConfigError,
        match=r"trainer.epochs: 6 in the checkpoint, 7 now(.|\n)*"
        r"trainer.seed: 42 in the checkpoint, 1 now",
    ):
        run_job(
            compose_config(
                *overrides, "trainer.epochs=7", "trainer.seed=1", f"trainer.resume={tmp_path / 'interrupted'}"
            ),
            tmp_path / "refused",
        )
    with pytest.raises(ConfigError, match="neither a run folder nor a run id"):
        run_job(compose_config(*overrides, f"trainer.resume={tmp_path / 'nowhere'}"), tmp_path / "refused")
    assert client.get_run(killed.info.run_id).info.status == "KILLED", "a refused resume changes nothing"

    result = run_job(compose_config(*overrides, f"trainer.resume={tmp_path / 'interrupted'}"), tmp_path / "resumed")
    assert result.run_id == killed.info.run_id, "the resumed training continues the same MLflow run"
    assert client.get_run(result.run_id).info.status == "FINISHED"
    resumed = history(client, result.run_id)
    steps = {name: [step for step, _ in points] for name, points in resumed.items()}
    # Each epoch once (epoch 3 was checkpointed, not logged, when it stopped); a final val_<m> is at step 5.
    assert all(points[:4] == [1, 2, 3, 4] and len(set(points)) == len(points) for points in steps.values())
    assert resumed == history(client, reference.run_id)
    assert final_metrics(client, result.run_id) == final_metrics(client, reference.run_id)
    assert result.metrics["epochs_run"] == 4, "early stopping kept its count across the interruption"
    assert (tmp_path / "resumed" / "reports" / "history.csv").read_text().count("\n") == 5, "header + 4 epochs"

    with pytest.raises(ConfigError, match="no checkpoint"):  # finished: nothing to resume
        run_job(compose_config(*overrides, f"trainer.resume={tmp_path / 'resumed'}"), tmp_path / "again")


# ---------------------------------------------------------------- NaN in a search, parallel writers


@pytest.mark.slow
def test_a_nan_trial_fails_with_its_diagnosis_and_the_search_goes_on(tmp_path):
    # The grid sampler, seeded by trainer.seed, asks the three rates in one order every time, the NaN one not last.
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        "+experiment=wine_mlp",
        "+sweep=smoke",
        *TINY[:3],
        "trainer.epochs=3",
        "trainer.verbose=0",
        "evaluation.plots=false",
        "tracking.log_model=false",
        "optimizer=sgd",
        "model.loss=mean_squared_error",
        "hydra.sweeper.sampler.name=grid",
        "optimizer.learning_rate=choice(0.01,1e30,0.02)",
        "model.hidden_units=[8]",
        f"tracking.uri={store_uri(tmp_path)}",
    ]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if r.data.tags.get("runner.sweep") == "true"]
    trials = [r for r in runs if "runner.trial" in r.data.tags]
    assert len(trials) == 3
    (failed,) = [r for r in trials if r.info.status == "FAILED"]
    assert failed.data.params["optimizer.learning_rate"] == "1e+30"
    diagnosis = failed.data.tags["runner.error"]
    assert "TrainingError: the training loss became" in diagnosis
    assert "in epoch 1" in diagnosis and "optimizer.clipnorm" in diagnosis, "when, and what to try"
    assert [step for step, _ in history(client, failed.info.run_id)["loss"]] == [1], "its epoch is kept"
    after = [r for r in trials if int(r.data.tags["runner.trial"]) > int(failed.data.tags["runner.trial"])]
    assert after and all(r.info.status == "FINISHED" for r in after), "the trials after it ran"
    assert sorted(r.info.status for r in trials) == ["FAILED", "FINISHED", "FINISHED"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_failed"] == 1 and parent.data.metrics["trials_finished"] == 2


@pytest.mark.slow
def test_four_processes_on_one_new_sqlite_store_record_every_run_and_metric(tmp_path):
    # Four separate commands, not a sweep: nobody creates the store or the experiment before they start.
    processes = [runner_process(tmp_path, f"run{i}", "trainer.epochs=3", f"trainer.seed={i}") for i in range(4)]
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["trainer.seed"] for r in runs) == ["0", "1", "2", "3"]
    for run in runs:
        for name, points in history(client, run.info.run_id).items():
            final = [4] if name in ("val_mae", "val_rmse") else []  # the kept weights' value, after the epochs
            assert [step for step, _ in points] == [1, 2, 3, *final], (run.info.run_name, name)
        assert run.data.metrics["epochs_run"] == 3 and "test_mae" in run.data.metrics
