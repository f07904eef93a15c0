"""The run's lineage in MLflow: the data set's splits as dataset inputs, the trained network as an MLflow Model.

Half of the one door to MLflow (with ``runner/tracking.py``, whose ``RunRecord.log_datasets`` and
``RunRecord.log_model`` are the only callers). Everything goes through the run's own client and ids, as the
rest of the record does. The model is created in the run's experiment with the run as its source, its files
are saved locally by ``mlflow.keras.save_model`` (explicit pip requirements, so nothing is inferred by loading
the model again) and uploaded as the model's artifacts; the run names it as an output (the UI's Models
column), the run's final metrics are linked to it (with the data set of each split), and ``register_as``
makes it a version of a registered model.
"""

import contextlib
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow.data
import mlflow.keras
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Dataset, LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from runner.runtime import compat
from runner.runtime.security import redact_text

log = logging.getLogger("runner")

MODEL_NAME = "mlflow_model"  # runs:/<run id>/mlflow_model; model/model.keras stays a plain artifact
EXAMPLE_ROWS = 5
# The distributions a Keras model needs to load and predict, by backend (the first installed of each group).
BACKEND_PACKAGES = {
    "tensorflow": (("tensorflow", "tensorflow-cpu"),),
    "jax": (("jax",), ("jaxlib",)),
    "torch": (("torch",),),
}
FINGERPRINT_ROWS = 64  # rows of a split hashed into its dataset digest, besides the files' SHA-256s
SPLIT_PREFIXES = {"train_": "train", "val_": "val", "test_": "test"}


_package_index: threading.Thread | None = None  # builds MLflow's installed-package index (one per process)


def start_package_index() -> None:
    """Build, in a daemon thread, the index of installed packages that ``save_model`` checks the model's
    requirements against (``compat.index_installed_packages``): seconds that the first ``log_model`` of every
    process paid, and that now overlap training. Once per process; ``log_keras_model`` waits for it."""
    global _package_index
    if _package_index is None:
        _package_index = threading.Thread(target=_index_packages, name="mlflow-package-index", daemon=True)
        _package_index.start()


def _index_packages() -> None:
    try:
        compat.index_installed_packages()
    except Exception as error:  # noqa: BLE001 - save_model then builds the index itself, and reports its errors
        log.warning("could not index the installed packages ahead of logging the model: %s", error)


@dataclass(frozen=True)
class LoggedKerasModel:
    model_id: str
    uri: str  # models:/<model id>
    run_uri: str  # runs:/<run id>/<name>
    registered: str | None = None  # "<name>/<version>" when registered


def split_dataset(data, split: str) -> Dataset:
    """One split as an MLflow dataset: the data set's name; a digest of the data files' SHA-256s, the split's
    name and shape and its first rows (no array is hashed whole); the file it was read from as its source
    (the generator for generated data); the schema and profile of its arrays (dtypes and shapes only)."""
    part = data.splits()[split]
    files = data.files
    source_file = next((path for path in files if split in Path(path).name), next(iter(files), None))
    digest = hashlib.sha256()
    for item in (*sorted(files.values()), split, data.split_source, str(part.x.shape), str(part.y.shape)):
        digest.update(item.encode() + b"\0")
    for array in (part.x[:FINGERPRINT_ROWS], part.y[:FINGERPRINT_ROWS]):
        digest.update(np.ascontiguousarray(array).tobytes())
    source = str(source_file) if source_file else CodeDatasetSource({"mlflow.source.name": "datasets.synthetic"})
    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow warns of it
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(
            part.x, source=source, targets=part.y, name=data.name, digest=digest.hexdigest()[:16]
        )
    entity = dataset.to_dict()
    return Dataset(**{**entity, "name": redact_text(entity["name"]), "source": redact_text(entity["source"])})


def pip_requirements() -> list[str]:
    """keras and the backend in use, pinned to the installed versions."""
    keras = sys.modules["keras"]
    pins = [f"keras=={metadata.version('keras')}"]
    for group in BACKEND_PACKAGES.get(keras.backend.backend(), ()):
        for package in group:
            with contextlib.suppress(metadata.PackageNotFoundError):
                pins.append(f"{package}=={metadata.version(package)}")
                break
    return pins


def log_keras_model(record, model, example: np.ndarray, options: dict) -> LoggedKerasModel:
    """Save ``model`` as an MLflow Model with ``example`` (a few input rows) and the signature inferred from
    them; ``options``: ``extra_files`` (copied beside MLmodel, text redacted), ``register_as``, ``metrics``
    (the run's final metrics, logged at ``step`` with ``stamp``) and ``datasets`` (split -> name, digest)."""
    client, run_id = record.client, record.run_id
    example = np.asarray(example)[:EXAMPLE_ROWS]
    if _package_index is not None:
        _package_index.join()  # else save_model would build the same index again, beside it
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    params = client.get_run(run_id).data.params  # the run's config, redacted already
    logged = client.create_logged_model(
        record.experiment_id, name=MODEL_NAME, source_run_id=run_id, params=params, model_type="keras"
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model"
            path.mkdir()  # save_model writes the input example before it makes the folder
            info = Model(
                artifact_path=logged.artifact_location,
                run_id=run_id,
                model_uuid=logged.model_id,
                model_id=logged.model_id,
            )
            mlflow.keras.save_model(
                model,
                str(path),
                mlflow_model=info,
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
            )
            for extra in options.get("extra_files", ()):
                _copy_redacted(Path(extra), path / Path(extra).name)
            client.log_model_artifacts(logged.model_id, str(path))
        step = options.get("step", 0)
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        _link_metrics(record, logged.model_id, options.get("metrics", {}), step, options)
    except BaseException:
        with contextlib.suppress(Exception):
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    registered = _register(client, logged, run_id, options.get("register_as"))
    return LoggedKerasModel(logged.model_id, f"models:/{logged.model_id}", f"runs:/{run_id}/{MODEL_NAME}", registered)


def _copy_redacted(source: Path, target: Path) -> None:
    if not source.is_file():
        return
    try:
        text = source.read_text()
    except UnicodeDecodeError:
        shutil.copyfile(source, target)
        return
    target.write_text(redact_text(text))


def _link_metrics(record, model_id: str, metrics: dict, step: int, options: dict) -> None:
    """The final metrics again, with the model and each split's data set: the Models tab's metric columns.
    Same key, step, value and time as the run's own points, which MLflow keeps once in the run's history."""
    stamp = options.get("stamp") or int(time.time() * 1000)
    datasets = options.get("datasets", {})
    items = []
    for key, value in metrics.items():
        split = next((name for prefix, name in SPLIT_PREFIXES.items() if key.startswith(prefix)), None)
        name, digest = datasets.get(split, (None, None))
        items.append(
            Metric(key, float(value), stamp, step, model_id=model_id, dataset_name=name, dataset_digest=digest)
        )
    for start in range(0, len(items), 1000):
        record.client.log_batch(record.run_id, metrics=items[start : start + 1000])


def _register(client, logged, run_id: str, name: str | None) -> str | None:
    """A new version of registered model ``name`` (created on first use), pointing at the logged model.
    Its source is the model's artifact location: a local store would resolve a models:/ source through the
    process's global tracking URI instead of this client's (MLflow 3.17's SQL registry store)."""
    if not name:
        return None
    name = redact_text(name)
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    model_id = logged.model_id
    version = client.create_model_version(name, logged.artifact_location, run_id=run_id, model_id=model_id)
    versions = [{"name": version.name, "version": version.version}]
    client.set_logged_model_tags(model_id, {"mlflow.modelVersions": json.dumps(versions)})
    return f"{version.name}/{version.version}"
