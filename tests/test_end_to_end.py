"""Tiny end-to-end runs that check the MLflow record every run must leave (the contract later work relies on)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from omegaconf import OmegaConf

from runner.cli import CONF_DIR
from runner.errors import TrainingError

keras = pytest.importorskip("keras")

from runner.run.job import load_data, run_job  # noqa: E402

FINAL_METRICS = {
    "regression": ("mae", "rmse"),
    "binary": ("accuracy", "roc_auc", "precision", "recall", "f1"),
    "multiclass": ("accuracy", "macro_f1"),
}
EPOCH_METRICS = {
    "regression": ("loss", "val_loss", "mae", "val_mae", "rmse", "val_rmse"),
    "binary": ("loss", "val_loss", "accuracy", "val_accuracy", "roc_auc", "val_roc_auc"),
    "multiclass": ("loss", "val_loss", "accuracy", "val_accuracy"),
}
SYNTHETIC_TASK = {"regression": "regression", "binary": "binary", "multiclass": "multiclass"}


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run(tmp_path: Path, *overrides, name="run"):
    store = tmp_path / "store"
    overrides = [*overrides, f"tracking.uri=sqlite:///{store}/mlflow.db"]
    cfg = compose_config(*overrides)
    return run_job(cfg, tmp_path / name, overrides=overrides), cfg


def client_for(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def check_record(tmp_path: Path, result, cfg, task: str) -> None:
    """The MLflow record of issue 2: status, params, per-epoch and final metrics, tags, artifacts."""
    client = client_for(tmp_path)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == cfg.tracking.experiment

    params = run.data.params
    assert params["trainer.epochs"] == str(cfg.trainer.epochs)
    assert params["dataset.name"] == cfg.dataset.name
    assert params["optimizer.learning_rate"] == str(cfg.optimizer.learning_rate)
    assert all("." in key for key in params), "every param is namespaced by its config group"

    epochs = int(run.data.metrics["epochs_run"])
    final = {f"{split}_{name}" for name in FINAL_METRICS[task] for split in ("train", "val", "test")}
    for name in EPOCH_METRICS[task]:
        steps = [point.step for point in client.get_metric_history(result.run_id, name)]
        # A final val_<m> shares the per-epoch name and is logged one step after the last epoch.
        assert steps == list(range(1, epochs + 1)) + ([epochs + 1] if name in final else []), name
    for name in final:
        assert np.isfinite(run.data.metrics[name]), name
        assert run.data.metrics[name] == pytest.approx(result.metrics[name]), "the latest value is the final one"

    tags = run.data.tags
    assert tags["runner.preset"] == cfg.name
    assert tags["runner.version.keras"] == keras.__version__
    assert "runner.version.mlflow" in tags and "runner.python" in tags
    assert tags["runner.data.task"] == task

    artifacts = artifact_paths(client, result.run_id)
    expected = {
        "config/config.yaml",
        "config/overrides.yaml",
        "model/model.keras",
        "plots/learning_curves.png",
        "reports/metrics.json",
        "reports/history.csv",
        "reports/test_predictions.csv",
        "reports/model_summary.txt",
        "reports/dataset.json",
    }
    expected |= (
        {"plots/predicted_vs_actual.png"}
        if task == "regression"
        else {"plots/confusion_matrix.png", "reports/classification_report.txt"}
    )
    expected |= {"plots/roc_curve.png"} if task == "binary" else set()
    assert expected <= artifacts, expected - artifacts


def check_model_reloads(tmp_path: Path, result, cfg) -> None:
    """model/model.keras, reloaded from the store, reproduces the test predictions and the logged test metric."""
    local = download_artifacts(
        run_id=result.run_id,
        artifact_path="model/model.keras",
        dst_path=str(tmp_path / "download"),
        tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db",
    )
    model = keras.saving.load_model(local)
    data = load_data(OmegaConf.to_object(cfg.dataset))
    outputs = model.predict(data.test.x, verbose=0)
    saved = np.genfromtxt(result.output_dir / "reports" / "test_predictions.csv", delimiter=",", names=True)
    np.testing.assert_allclose(outputs[:, 0], saved["output_0"], rtol=1e-6, atol=1e-7)
    if data.task == "regression":
        mae = float(np.mean(np.abs(outputs[:, 0] - data.test.y)))
        assert mae == pytest.approx(result.metrics["test_mae"], rel=1e-5)
    else:
        labels = outputs.argmax(axis=1) if data.task == "multiclass" else (outputs[:, 0] >= 0.5).astype(int)
        assert float(np.mean(labels == data.test.y)) == pytest.approx(result.metrics["test_accuracy"])


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_tiny_synthetic_run_leaves_the_full_record(tmp_path, task):
    result, cfg = run(
        tmp_path,
        "dataset=synthetic",
        f"dataset.task={SYNTHETIC_TASK[task]}",
        "dataset.n_samples=300",
        "trainer.epochs=3",
        "model.hidden_units=[8]",
        "name=tiny",
    )
    check_record(tmp_path, result, cfg, task)
    check_model_reloads(tmp_path, result, cfg)


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path):
    common = (
        "dataset=synthetic",
        "dataset.task=binary",
        "dataset.n_samples=400",
        "trainer.epochs=3",
        "model.hidden_units=[16,8]",
        "model.dropout=0.2",
    )
    first, _ = run(tmp_path, *common, name="a")
    second, _ = run(tmp_path, *common, name="b")
    other, _ = run(tmp_path, *common, "trainer.seed=7", name="c")
    keys = [key for key in first.metrics if key not in ("train_seconds", "first_step_seconds")]
    assert {k: first.metrics[k] for k in keys} == {k: second.metrics[k] for k in keys}
    assert first.metrics["val_loss" if "val_loss" in keys else "val_accuracy"] is not None
    assert any(first.metrics[k] != other.metrics[k] for k in keys)


def test_best_epoch_weights_are_used_for_the_final_evaluation(tmp_path):
    result, _ = run(
        tmp_path,
        "dataset=synthetic",
        "dataset.task=regression",
        "dataset.n_samples=300",
        "trainer.epochs=6",
        "model.hidden_units=[8]",
        "optimizer.learning_rate=0.05",
    )
    client = client_for(tmp_path)
    history = {p.step: p.value for p in client.get_metric_history(result.run_id, "val_loss")}
    best_epoch = min(history, key=lambda step: (history[step], step))
    assert result.metrics["best_epoch"] == best_epoch
    # MAE is the loss here, so the final val_mae must equal the best epoch's val_loss.
    assert result.metrics["val_mae"] == pytest.approx(history[best_epoch], rel=1e-4)


def test_nan_loss_fails_the_run_and_keeps_earlier_records(tmp_path):
    healthy, _ = run(
        tmp_path,
        "dataset=synthetic",
        "dataset.task=regression",
        "dataset.n_samples=200",
        "trainer.epochs=2",
        name="healthy",
    )
    overrides = (
        "dataset=synthetic",
        "dataset.task=regression",
        "dataset.n_samples=200",
        "trainer.epochs=5",
        "optimizer=sgd",
        "optimizer.learning_rate=1e30",
        "model.loss=mean_squared_error",
    )
    with pytest.raises(TrainingError, match="loss became .* in epoch 1"):
        run(tmp_path, *overrides, name="broken")
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "TrainingError" in failed[0].data.tags["runner.error"]
    assert "error/traceback.txt" in artifact_paths(client, failed[0].info.run_id)
    assert [p.step for p in client.get_metric_history(failed[0].info.run_id, "loss")] == [1]
    assert client.get_run(healthy.run_id).info.status == "FINISHED"
    assert client.get_run(healthy.run_id).data.metrics["test_mae"] == healthy.metrics["test_mae"]


def test_missing_data_fails_the_run_with_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNNER_DATA_DIR", raising=False)
    monkeypatch.setenv("RUNNER_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception) as error:
        run(tmp_path, "+experiment=wine_mlp", f"dataset.data_dir={empty}", "dataset.download=false")
    assert str(empty) in str(error.value) and str(tmp_path / "cache") in str(error.value)
    client = client_for(tmp_path)
    (failed,) = client.search_runs([client.get_experiment_by_name("wine").experiment_id])
    assert failed.info.status == "FAILED"
    assert failed.data.params["trainer.epochs"] == "200"  # the config was recorded before the failure


def test_unknown_checkpoint_monitor_is_refused_before_training(tmp_path):
    with pytest.raises(Exception, match="trainer.checkpoint.monitor='val_acc' is not a metric of this run"):
        run(tmp_path, "dataset=synthetic", "trainer.checkpoint.monitor=val_acc")


def test_command_line_run_prints_a_summary(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "+experiment=wine_mlp",
            "+debug=fast",
            "dataset=synthetic",
            "dataset.task=regression",
            "dataset.n_samples=200",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== wine_mlp: finished 2 epochs" in result.stdout
    assert "run id:" in result.stdout
    assert "mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///outputs/mlflow.db" in result.stdout
    assert (tmp_path / "outputs" / "mlflow.db").is_file()
    run_dirs = list((tmp_path / "outputs" / "runs").glob("*/*_wine_mlp"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "model" / "model.keras").is_file()


REAL_PRESETS = {
    "wine_mlp": "regression",
    "wine_deep_mlp": "regression",
    "seizure_dnn": "binary",
    "seizure_bilstm": "binary",
    "mnist_dropout": "multiclass",
}


@pytest.mark.real_data
@pytest.mark.parametrize("experiment", sorted(REAL_PRESETS))
def test_tiny_run_on_real_data(tmp_path, real_data_dir, experiment):
    result, cfg = run(
        tmp_path,
        f"+experiment={experiment}",
        "+debug=fast",
        f"dataset.data_dir={real_data_dir}",
        "model.lstm_units=[4]" if "bilstm" in experiment else "trainer.seed=1",
    )
    check_record(tmp_path, result, cfg, REAL_PRESETS[experiment])
    tags = client_for(tmp_path).get_run(result.run_id).data.tags
    digests = {key: value for key, value in tags.items() if key.startswith("runner.data.sha256.")}
    assert digests and all(len(value) == 64 for value in digests.values())
    if experiment == "mnist_dropout":
        check_model_reloads(tmp_path, result, cfg)


def test_unreachable_tracking_server_fails_fast_before_training(tmp_path):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = compose_config("dataset=synthetic", f"tracking.uri=http://127.0.0.1:{port}")
    from runner.errors import TrackingError

    with pytest.raises(TrackingError, match=f"tracking server http://127.0.0.1:{port} .* is unreachable"):
        run_job(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_unwritable_output_folder_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = compose_config("dataset=synthetic", f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db")
    from runner.errors import TrackingError

    with pytest.raises(TrackingError, match="output folder .* is not writable"):
        run_job(cfg, blocker / "run")


def test_runner_console_script_is_installed():
    script = Path(sys.executable).parent / "runner"
    if not script.exists():
        pytest.skip(f"no console script at {script}: the package is not installed in this environment")
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "+experiment=NAME" in shown.stdout and "mnist_dropout" in shown.stdout


@pytest.fixture
def tracking_server(tmp_path, mlflow_server):
    """A real `mlflow server` on a free loopback port, with its own store and proxied artifacts."""
    root = tmp_path / "server"
    root.mkdir()
    uri = mlflow_server(f"sqlite:///{root}/mlflow.db", root / "artifacts")
    return uri, root


def test_a_tracking_server_works_by_changing_only_the_uri(tmp_path, tracking_server):
    uri, root = tracking_server
    cfg = compose_config("dataset=synthetic", "dataset.n_samples=200", "trainer.epochs=2", f"tracking.uri={uri}")
    result = run_job(cfg, tmp_path / "run")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["trainer.epochs"] == "2"
    assert [p.step for p in client.get_metric_history(result.run_id, "val_loss")] == [1, 2]
    assert {"model/model.keras", "config/config.yaml"} <= artifact_paths(client, result.run_id)
    assert list((root / "artifacts").rglob("model.keras")), "artifacts went to the server's store"


def test_interrupted_run_is_marked_killed_and_keeps_its_epochs(tmp_path, monkeypatch):
    from runner.tracking import RunRecord

    original = RunRecord.log_metrics

    def interrupt_in_epoch_three(self, metrics, step=0):
        if step == 3 and "val_loss" in metrics:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of fit()
        original(self, metrics, step)

    monkeypatch.setattr(RunRecord, "log_metrics", interrupt_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "dataset=synthetic", "dataset.n_samples=200", "trainer.epochs=5")
    client = client_for(tmp_path)
    (killed,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert killed.info.status == "KILLED"
    assert [p.step for p in client.get_metric_history(killed.info.run_id, "val_loss")] == [1, 2]
    assert (tmp_path / "run" / "checkpoints" / "best.weights.h5").is_file()  # the best epoch so far is kept
