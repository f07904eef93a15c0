"""What a run leaves in MLflow's Models, Dataset and System metrics tabs, and its TensorBoard logs: the trained
network as an MLflow Model (loadable, servable, registrable), each split as a dataset input, system metrics
while it runs (runner/tracking.py, runner/tracking_model.py)."""

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from datasets.containers import Dataset, Split
from runner.cli import CONF_DIR
from runner.errors import ConfigError
from runner.runtime.security import REDACTED
from runner.tracking import RunRecord, connect

keras = pytest.importorskip("keras")

from runner import tracking_model  # noqa: E402
from runner.run import architecture  # noqa: E402
from runner.run.job import run_job  # noqa: E402

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
SECRET = "abc123"


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def tiny_run(folder: Path, *overrides):
    overrides = [
        "dataset=synthetic",
        "dataset.task=binary",
        "dataset.n_samples=200",
        "trainer.epochs=2",
        "model.hidden_units=[8]",
        "name=tiny",
        f"tracking.uri=sqlite:///{folder}/store/mlflow.db",
        *overrides,
    ]
    return run_job(compose_config(*overrides), folder / "run", overrides=overrides)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One tiny run with everything on: the model registered as `tiny-registered`, TensorBoard when installed."""
    folder = tmp_path_factory.mktemp("lineage")
    extra = ["trainer.tensorboard=true"] if HAS_TENSORBOARD else []
    result = tiny_run(folder, "tracking.register_as=tiny-registered", *extra)
    uri = f"sqlite:///{folder}/store/mlflow.db"
    return result, MlflowClient(uri), uri


@pytest.fixture
def global_uri(monkeypatch):
    """runs:/ and models:/ URIs resolve through the process's tracking URI (MLflow's loaders take no other)."""

    def use(uri: str) -> None:
        import mlflow

        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)

    yield use
    import mlflow

    mlflow.set_tracking_uri(None)


def test_the_run_logs_its_model_as_an_mlflow_model_linked_to_it(full_run):
    result, client, _ = full_run
    run = client.get_run(result.run_id)
    (output,) = run.outputs.model_outputs
    epochs = int(run.data.metrics["epochs_run"])
    assert output.step == epochs + 1, "logged at the final metrics' step"
    model = client.get_logged_model(output.model_id)
    assert (model.name, model.source_run_id, str(model.status)) == ("mlflow_model", result.run_id, "READY")
    assert model.params["trainer.epochs"] == "2", "the run's config is the model's params"
    assert run.data.tags["runner.model.uri"] == f"models:/{output.model_id}"
    assert run.data.tags["runner.model.run_uri"] == f"runs:/{result.run_id}/mlflow_model"
    # The final metrics are the model's too, each tied to its split's dataset, and stay once in the run.
    metrics = {metric.key: metric for metric in model.metrics}
    digests = {dataset_input.tags[0].value: dataset_input.dataset.digest for dataset_input in run.inputs.dataset_inputs}
    assert metrics["test_accuracy"].value == pytest.approx(result.metrics["test_accuracy"])
    assert metrics["test_accuracy"].dataset_digest == digests["test"]
    assert metrics["train_f1"].dataset_digest == digests["train"] and metrics["best_epoch"].dataset_digest is None
    assert [point.step for point in client.get_metric_history(result.run_id, "val_accuracy")] == [1, 2, 3]
    assert "model/model.keras" in {item.path for item in client.list_artifacts(result.run_id, "model")}


def test_the_mlflow_model_loads_through_pyfunc_and_predicts_as_the_keras_file(full_run, global_uri):
    import mlflow.pyfunc

    result, client, uri = full_run
    global_uri(uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/mlflow_model")
    inputs = loaded.metadata.signature.inputs.inputs
    assert [(str(spec.type), spec.shape) for spec in inputs] == [("float32", (-1, 8))]
    assert loaded.metadata.saved_input_example_info["type"] == "ndarray"
    rows = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    reference = keras.saving.load_model(result.output_dir / "model" / "model.keras")
    np.testing.assert_allclose(loaded.predict(rows), reference.predict(rows, verbose=0), rtol=1e-6)
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/mlflow_model/requirements.txt"))
    pins = requirements.read_text().split()
    assert f"keras=={keras.__version__}" in pins and any(pin.startswith(("tensorflow", "jax")) for pin in pins)


def test_register_as_makes_the_model_a_version_of_a_registered_model(full_run, global_uri):
    import mlflow.pyfunc

    result, client, uri = full_run
    (version,) = client.search_model_versions("name='tiny-registered'")
    assert str(version.version) == "1" and version.run_id == result.run_id
    assert client.get_run(result.run_id).data.tags["runner.model.registered"] == "tiny-registered/1"
    global_uri(uri)
    assert mlflow.pyfunc.load_model("models:/tiny-registered/1").predict(np.zeros((1, 8), "float32")).shape == (1, 1)


def test_each_split_is_a_dataset_input_with_its_context(full_run):
    result, client, _ = full_run
    inputs = client.get_run(result.run_id).inputs.dataset_inputs
    contexts = {item.tags[0].value: item.dataset for item in inputs}
    assert [item.tags[0].key for item in inputs] == ["mlflow.data.context"] * 3
    assert set(contexts) == {"train", "val", "test"}
    assert {dataset.name for dataset in contexts.values()} == {"synthetic"}
    assert len({dataset.digest for dataset in contexts.values()}) == 3, "each split has its own digest"
    profile = json.loads(contexts["train"].profile)
    assert profile["features_shape"] == [160, 8] and profile["targets_shape"] == [160]
    schema = json.loads(contexts["train"].schema)["mlflow_tensorspec"]
    assert json.loads(schema["features"])[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 8]}
    assert contexts["test"].source_type == "code", "generated data has no file: its source is the generator"


def test_the_run_has_system_metrics(full_run):
    result, client, _ = full_run
    metrics = client.get_run(result.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    assert 0 < metrics["system/system_memory_usage_megabytes"]


@pytest.mark.skipif(architecture.missing_tool() is not None, reason="no Graphviz or pydot: nothing is drawn")
def test_the_run_draws_its_architecture_as_a_png_artifact(full_run, tmp_path):
    result, client, _ = full_run
    local = result.output_dir / "model" / "architecture.png"
    picture = local.read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and picture[12:16] == b"IHDR"
    width, height = int.from_bytes(picture[16:20], "big"), int.from_bytes(picture[20:24], "big")
    assert width > 300 and height > 300, "a drawing at Keras's 200 dpi, not an empty graph"
    uploaded = client.download_artifacts(result.run_id, "model/architecture.png", str(tmp_path))
    assert Path(uploaded).read_bytes() == picture


def test_without_graphviz_the_run_notes_it_and_keeps_the_text_summary(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no dot program on it (nor any other)
    with caplog.at_level(logging.INFO, logger="runner"):
        result = tiny_run(tmp_path, "tracking.log_model=false", "tracking.system_metrics=false", "trainer.epochs=1")
    notes = [record.getMessage() for record in caplog.records if "architecture.png" in record.getMessage()]
    assert notes == [
        "architecture.png not drawn: Graphviz's dot program was not found; install graphviz (apt-get install "
        "graphviz) — the text summary is in model_summary.txt"
    ]
    assert "Dense" in (result.output_dir / "reports" / "model_summary.txt").read_text()
    assert not (result.output_dir / "model").exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/store/mlflow.db")
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert not client.list_artifacts(result.run_id, "model")


def test_without_pydot_the_note_names_the_package(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pydot", None)  # its import fails
    with caplog.at_level(logging.INFO, logger="runner"):
        assert not architecture.draw(tiny_network(), tmp_path / "architecture.png")
    assert [record.getMessage() for record in caplog.records] == [
        "architecture.png not drawn: the Python package pydot is not installed; pip install pydot — the text "
        "summary is in model_summary.txt"
    ]
    assert not (tmp_path / "architecture.png").exists()


def test_a_model_not_built_before_training_is_noted_not_drawn(tmp_path, caplog):
    class Unbuilt(keras.Model):  # a subclassed model gets its weights, and shapes, from its first batch
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    with caplog.at_level(logging.INFO, logger="runner"):
        assert not architecture.draw(Unbuilt(), tmp_path / "model" / "architecture.png")
    assert [record.getMessage() for record in caplog.records] == [architecture.NOT_DRAWN % architecture.UNBUILT]
    assert not (tmp_path / "model").exists()


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="the tensorboard package is not installed")
def test_tensorboard_logs_scalars_histograms_and_the_graph_in_the_run_folder_and_artifacts(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, client, _ = full_run
    train = EventAccumulator(str(result.output_dir / "tensorboard" / "train"), size_guidance={"tensors": 0})
    train.Reload()
    tags = set(train.Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "keras"} <= tags, "scalars and the model's graph"
    assert any(tag.endswith("kernel/histogram") for tag in tags), tags
    uploaded = {item.path for item in client.list_artifacts(result.run_id, "tensorboard")}
    assert uploaded == {"tensorboard/train", "tensorboard/validation"}


@pytest.mark.slow
def test_mlflow_models_predict_serves_the_logged_model(full_run, tmp_path):
    result, _, uri = full_run
    request = tmp_path / "input.json"
    request.write_text(json.dumps({"inputs": [[0.0] * 8, [1.0] * 8]}))
    answer = tmp_path / "output.json"
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "predict", "--env-manager", "local"]
    command += ["-m", f"runs:/{result.run_id}/mlflow_model", "-i", str(request), "-t", "json", "-o", str(answer)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = np.asarray(json.loads(answer.read_text())["predictions"])
    reference = keras.saving.load_model(result.output_dir / "model" / "model.keras")
    np.testing.assert_allclose(predictions, reference.predict(np.array([[0.0] * 8, [1.0] * 8]), verbose=0), rtol=1e-5)


def test_switched_off_a_run_logs_no_model_and_no_system_metrics(tmp_path):
    result = tiny_run(tmp_path, "tracking.log_model=false", "tracking.system_metrics=false", "trainer.epochs=1")
    run = MlflowClient(f"sqlite:///{tmp_path}/store/mlflow.db").get_run(result.run_id)
    assert not run.outputs.model_outputs and "runner.model.uri" not in run.data.tags
    assert not [key for key in run.data.metrics if key.startswith("system/")]
    assert len(run.inputs.dataset_inputs) == 3, "the data sets are logged whatever the switches"
    assert not (result.output_dir / "tensorboard").exists()


# ---------------------------------------------------------------- RunRecord alone: no training


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    return connect(f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db", "lineage")


def tiny_network():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    return model


def test_each_run_adds_a_version_and_the_preprocessing_goes_beside_the_model_redacted(tracker, tmp_path, global_uri):
    import mlflow.artifacts

    preprocessing = tmp_path / "preprocessing.json"
    preprocessing.write_text(json.dumps({"features": {"mean": [0, 1, 2]}, "source": f"s3://u:{SECRET}@bucket/x"}))
    versions = []
    for number in range(2):
        record = RunRecord(tracker, f"run-{number}", {})
        logged = record.log_model(
            tiny_network(), np.ones((8, 3), "float32"), extra_files=[preprocessing], register_as="two"
        )
        record.finish()
        versions.append(logged.registered)
    assert versions == ["two/1", "two/2"]
    global_uri(tracker.uri)
    folder = Path(mlflow.artifacts.download_artifacts(f"{logged.run_uri}", dst_path=str(tmp_path / "download")))
    saved = json.loads((folder / "preprocessing.json").read_text())
    assert saved["features"] == {"mean": [0, 1, 2]} and saved["source"] == f"s3://u:{REDACTED}@bucket/x"
    assert json.loads((folder / "input_example.json").read_text()) == [[1.0, 1.0, 1.0]] * tracking_model.EXAMPLE_ROWS


def test_system_metrics_are_sampled_until_the_run_ends(tracker):
    record = RunRecord(tracker, "sampled", {})
    record.monitor_system()
    time.sleep(0.5)  # shorter than the sampling interval: the last sample, taken at the end, still counts
    record.finish()
    history = tracker.client.get_metric_history(record.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 1 and record._monitor is None
    assert tracker.client.get_run(record.run_id).info.status == "FINISHED"


def test_without_psutil_system_metrics_are_off_with_one_warning(tracker, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mlflow.system_metrics.system_metrics_monitor", None)  # import fails
    record = RunRecord(tracker, "no-psutil", {})
    with caplog.at_level(logging.WARNING, logger="runner"):
        record.monitor_system()
    record.finish()
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "runner"]
    assert warning.startswith("no system metrics:") and "pip install psutil" in warning
    assert not [key for key in tracker.client.get_run(record.run_id).data.metrics if key.startswith("system/")]


def book_split_data(file_digest: str) -> Dataset:
    rng = np.random.default_rng(0)
    splits = {
        name: Split(rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 2, n))
        for name, n in (("train", 20), ("val", 5), ("test", 5))
    }
    files = {f"/data/wine/book_split/{name}_data.csv": f"{file_digest}{name}" for name in splits}
    return Dataset(
        "wine",
        "binary",
        **splits,
        feature_names=list("abcd"),
        target_name="y",
        class_names=["0", "1"],
        split_source="book",
        files=files,
    )


def test_a_split_dataset_names_its_own_file_and_its_digest_follows_the_files():
    data = book_split_data("aaa")
    train = tracking_model.split_dataset(data, "train")
    assert json.loads(train.source) == {"uri": "/data/wine/book_split/train_data.csv"} and train.source_type == "local"
    assert train.name == "wine" and len(train.digest) == 16
    assert tracking_model.split_dataset(book_split_data("aaa"), "train").digest == train.digest, "stable"
    assert tracking_model.split_dataset(book_split_data("bbb"), "train").digest != train.digest, "file changed"
    assert tracking_model.split_dataset(data, "val").digest != train.digest


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tracking.register_as=wine", "tracking.log_model=false"], "needs tracking.log_model=true"),
        (["tracking.register_as=a/b"], "cannot be a registered model's name"),
    ],
)
def test_register_as_is_checked_before_anything_runs(overrides, message):
    from runner.config.spec import prepare

    with pytest.raises(ConfigError, match=message):
        prepare(compose_config("dataset=synthetic", *overrides))


def test_tensorboard_without_its_package_is_refused_with_the_reason(monkeypatch):
    from runner.config import validation
    from runner.config.spec import prepare

    real = importlib.util.find_spec
    monkeypatch.setattr(
        validation.importlib.util, "find_spec", lambda name: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(ConfigError, match="trainer.tensorboard=true needs the tensorboard package"):
        prepare(compose_config("dataset=synthetic", "trainer.tensorboard=true"))
