"""MLflow record of a run: store and experiment set-up, params, tags, metrics, artifacts and final status.

All calls go through an explicit ``MlflowClient`` and run id (no global active run), so parallel jobs and
nested sweep runs cannot pick up each other's run. This module is the one door to MLflow: every param, tag,
metric, artifact and status change of any run (a job's, a sweep's parent, a pruned or stale trial) goes
through ``RunRecord``, which redacts secrets on the way (tests/test_mlflow_door.py holds the rest of
``runner`` to that). ``runner/tracking_model.py`` is the door's other half, called only from here: the data
set's splits as dataset inputs and the trained network as an MLflow Model. MLflow's system-metrics monitor
samples the machine into the run while it lasts (``RunRecord.monitor_system``, stopped when the run ends).
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from datasets import SPLITS
from runner.errors import TrackingError
from runner.runtime import liveness
from runner.runtime.security import redact_mapping, redact_text
from runner.runtime.sqlite_files import creation_lock, sqlite_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "jax",
    "jaxlib",
    "torch",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "mlflow",
    "hydra-core",
    "omegaconf",
    "numpy",
    "pandas",
    "scikit-learn",
    "keras-runner",
)
MAX_PARAM_LENGTH = 6000
BATCH = 100  # MLflow's limit of params (and a safe number of tags) per log_batch call
# Files log_artifact and log_folder redact like log_text (when redaction changes them; else uploaded as they are).
TEXT_SUFFIXES = {".log", ".txt", ".yaml", ".yml", ".json", ".csv", ".html"}
MAX_REDACTED_BYTES = 50 << 20
SYSTEM_METRICS_SECONDS = 2.0  # between samples: a short run still gets a curve (MLflow's default is 10 s)
# The process that runs a run (runner/runtime/liveness.py), set whenever the run becomes RUNNING.
PROCESS_TAGS = ("runner.process.host", "runner.process.pid", "runner.process.start")
ORPHAN_REASON = "the process died without closing the run"
log = logging.getLogger("runner")

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _client(uri: str) -> MlflowClient:
    # MLflow is imported on first use, not with this module: its import takes seconds, which a job spends
    # while it trains (runner/run/late_record.py) rather than before its first step.
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@dataclass
class Tracker:
    client: MlflowClient
    experiment_id: str
    uri: str


def connect(uri: str, experiment: str, artifact_location: str | None = None) -> Tracker:
    """Open the store and the experiment, or fail with a message that says what to fix, before training."""
    database = sqlite_path(uri)
    if database is not None:
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrackingError(f"cannot create the tracking store's folder {database.parent}: {error}") from error
        if artifact_location is None:
            artifact_location = (database.parent.resolve() / "mlartifacts" / experiment).as_uri()
    elif urlparse(uri).scheme in ("http", "https"):
        check_server(uri)
    try:
        with creation_lock(database):
            client = _client(uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                experiment_id = client.create_experiment(experiment, artifact_location=artifact_location)
            elif found.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"MLflow experiment {experiment!r} is deleted in {uri}; restore it in the UI "
                    f"or choose another name with tracking.experiment=..."
                )
            else:
                experiment_id = found.experiment_id
    except TrackingError:
        raise
    except Exception as error:
        raise TrackingError(redact_text(f"cannot use the tracking store {uri} (tracking.uri): {error}")) from error
    return Tracker(client=client, experiment_id=experiment_id, uri=uri)


def attach(uri: str, parent_run_id: str) -> Tracker:
    """The store and experiment of an existing parent run (a sweep's): its children are recorded beside it."""
    if urlparse(uri).scheme in ("http", "https"):
        check_server(uri)
    client = _client(uri)
    try:
        parent = client.get_run(parent_run_id)
    except Exception as error:
        raise TrackingError(
            f"the sweep's parent run {parent_run_id} is not in the tracking store {uri}: {error}"
        ) from error
    return Tracker(client=client, experiment_id=parent.info.experiment_id, uri=uri)


def store(uri: str, experiment_id: str) -> Tracker:
    """The store and experiment of runs that already exist (a sweep's parent and children), without checks."""
    return Tracker(client=_client(uri), experiment_id=experiment_id, uri=uri)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """MLflow's own client retries for minutes; a quick probe of /health fails fast instead."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"the tracking server {redact_text(uri)} (tracking.uri) is unreachable: {reason}. Start it "
            f"(mlflow server --host 127.0.0.1 --port 5000) or point tracking.uri elsewhere; "
            f"nothing was trained."
        ) from error


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys ("trainer.epochs") and string values, as MLflow params."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def config_params(resolved: dict) -> dict[str, str]:
    """Every group's settings, namespaced by group; the top-level name/description become tags instead."""
    return flatten({key: value for key, value in resolved.items() if isinstance(value, dict)})


def environment_tags() -> dict[str, str]:
    tags = {"runner.python": platform.python_version(), "runner.platform": platform.platform()}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"runner.version.{package}"] = metadata.version(package)
    keras = sys.modules.get("keras")
    if keras is not None:
        tags["runner.keras_backend"] = keras.backend.backend()
    tags.update(git_tags())
    return tags


def git_tags() -> dict[str, str]:
    """Commit of the runner's source tree (and whether it had uncommitted changes), if it is a git checkout."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "runner.git.commit": commit, "runner.git.dirty": str(dirty).lower()}


def data_tags(data) -> dict[str, str]:
    """Where the data came from and the SHA-256 of every file read."""
    tags = {
        "runner.data.split": data.split_source,
        "runner.data.task": data.task,
        "runner.data.rows": "/".join(str(len(data.splits()[s].y)) for s in SPLITS),
    }
    for path, digest in data.files.items():
        tags[f"runner.data.sha256.{Path(path).parent.name}/{Path(path).name}"] = digest
    return tags


class RunRecord:
    """One MLflow run: log as you go; ``finish``/``fail`` (or ``terminate``) set the final status."""

    def __init__(self, tracker: Tracker, run_name: str, tags: dict[str, str], parent_run_id: str | None = None):
        self.client = tracker.client
        if parent_run_id is not None:  # the tag MLflow's UI nests child runs by
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        tags = {**tags, **process_tags()}
        # Every param, tag and text artifact goes through redaction: secrets never reach the store.
        run = self.client.create_run(tracker.experiment_id, run_name=redact_text(run_name), tags=redact_mapping(tags))
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri
        self.experiment_id = tracker.experiment_id
        self._set_session(tracker)

    def _set_session(self, tracker: Tracker) -> None:
        """What this process keeps of the run besides its ids."""
        self.tracking_uri = tracker.uri
        self.datasets: dict[str, tuple[str, str]] = {}  # split -> (name, digest) of its dataset input
        self._monitor = None  # the system metrics' sampling thread
        self._metric_times: dict[int, int] = {}  # step -> time of its last log_metrics

    @classmethod
    def existing(cls, tracker: Tracker, run_id: str, artifact_uri: str | None = None) -> "RunRecord":
        """A run that is already in the store, as it is (no read, no change): to log onto it or end it."""
        record = cls.__new__(cls)
        record.client, record.run_id = tracker.client, run_id
        record.artifact_uri, record.experiment_id = artifact_uri, tracker.experiment_id
        record._set_session(tracker)
        return record

    @classmethod
    def reopen(cls, tracker: Tracker, run_id: str, tags: dict[str, str]) -> "RunRecord":
        """A run stopped before its end, RUNNING again with ``tags`` added: a resumed training continues it."""
        run = tracker.client.get_run(run_id)
        if run.info.status == "FINISHED":
            raise TrackingError(f"run {run_id} has finished: there is nothing to resume")
        record = cls.existing(tracker, run_id, run.info.artifact_uri)
        record.experiment_id = run.info.experiment_id
        record.set_status("RUNNING")
        record.set_tags(tags)
        return record

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in redact_mapping(params).items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, value) for key, value in redact_mapping(tags).items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + BATCH])

    def delete_tag(self, key: str) -> None:
        self.client.delete_tag(self.run_id, key)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = self._metric_times[step] = int(time.time() * 1000)
        from mlflow.entities import Metric

        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def metric_steps(self, key: str) -> set[int]:
        """The steps at which the run has a value of metric ``key`` (a read)."""
        return {point.step for point in self.client.get_metric_history(self.run_id, key)}

    def log_artifact(self, path: Path, folder: str) -> None:
        path = Path(path)
        if _needs_redaction(path):
            self.log_text(path.read_text(errors="replace"), f"{folder}/{path.name}")
            return
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_folder(self, path: Path, folder: str) -> None:
        """Every file under ``path``, at the same relative place under ``folder``; text files are redacted
        like ``log_artifact``'s (one upload of the whole folder when none needs it)."""
        path = Path(path)
        files = sorted(file for file in path.rglob("*") if file.is_file())
        if not any(_needs_redaction(file) for file in files):
            self.client.log_artifacts(self.run_id, str(path), folder)
            return
        for file in files:
            self.log_artifact(file, "/".join([folder, *file.relative_to(path).parent.parts]))

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, redact_text(text), artifact_file)

    def log_json(self, data, artifact_file: str) -> None:
        self.log_text(json.dumps(data, indent=2, default=str), artifact_file)

    def log_datasets(self, data) -> None:
        """Each split as a dataset input of the run (the UI's Dataset column), its context tag the split."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.exceptions import MlflowException
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from runner.tracking_model import split_dataset

        inputs = []
        for split in SPLITS:
            dataset = split_dataset(data, split)
            self.datasets[split] = (dataset.name, dataset.digest)
            inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)]))
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as error:
                # Parallel jobs of one sweep insert the same data set at once; the loser's transaction is
                # rolled back, and on a retry the store finds the row the winner wrote.
                if "UNIQUE constraint" not in str(error) or attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def prepare_model_logging(self) -> None:
        """Start, in the background, what this process's first ``log_model`` would otherwise wait for
        (runner/tracking_model.py): called before training, whose seconds it then overlaps."""
        from runner import tracking_model

        tracking_model.start_package_index()

    def log_model(self, model, example, *, extra_files=(), register_as=None, metrics=None, step=0):
        """``model`` as an MLflow Model (keras flavour) linked to this run, its ``metrics`` (logged at
        ``step``) linked to it, and registered as a new version of ``register_as`` when given
        (runner/tracking_model.py)."""
        from runner import tracking_model

        options = {"extra_files": extra_files, "register_as": register_as, "metrics": metrics or {}, "step": step}
        options.update(datasets=self.datasets, stamp=self._metric_times.get(step))
        logged = tracking_model.log_keras_model(self, model, example, options)
        tags = {"runner.model.uri": logged.uri, "runner.model.run_uri": logged.run_uri}
        self.set_tags({**tags, **({"runner.model.registered": logged.registered} if logged.registered else {})})
        return logged

    def monitor_system(self, resume: bool = False) -> None:
        """Sample CPU, memory, disk, network (and NVIDIA GPUs, with nvidia-ml-py) into ``system/...`` metrics
        every SYSTEM_METRICS_SECONDS until the run ends (the UI's System metrics tab). Needs psutil."""
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as error:
            log.warning("no system metrics: %s (pip install psutil, or tracking.system_metrics=false)", error)
            return
        self._monitor = SystemMetricsMonitor(
            self.run_id, SYSTEM_METRICS_SECONDS, resume_logging=resume, tracking_uri=self.tracking_uri
        )
        self._monitor.start()

    def _stop_monitor(self) -> None:
        """Stop sampling, with one last sample of the time since the previous one (a run shorter than the
        interval gets a point too)."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        monitor.finish()
        with contextlib.suppress(Exception):
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()

    def set_status(self, status: str) -> None:
        """Change the status without ending the run. ``RUNNING`` again (a resumed run, a resumed search's
        parent) makes this process its owner and drops the tags that said why it had stopped."""
        if status == "RUNNING":
            stale = self.client.get_run(self.run_id).data.tags.keys() & {"runner.error", "runner.error_type"}
            for key in sorted(stale):
                self.delete_tag(key)
            self.set_tags(process_tags())
        self.client.update_run(self.run_id, status=status)

    def terminate(self, status: str) -> None:
        """End the run with ``status`` (FINISHED, FAILED or KILLED)."""
        self._stop_monitor()
        self.client.set_terminated(self.run_id, status)

    def finish(self) -> None:
        self.terminate("FINISHED")

    def fail(self, error: BaseException) -> None:
        """Record why the run stopped; everything logged before stays."""
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        message = f"{type(error).__name__}: {error}"
        with contextlib.suppress(Exception):
            self.set_tags({"runner.error": message[:5000], "runner.error_type": type(error).__name__})
            self.log_text("".join(traceback.format_exception(error)), "error/traceback.txt")
        self.terminate(status)


def _needs_redaction(path: Path) -> bool:
    """A text file (by suffix, of a size worth reading) that redaction would change."""
    if path.suffix not in TEXT_SUFFIXES or path.stat().st_size > MAX_REDACTED_BYTES:
        return False
    text = path.read_text(errors="replace")
    return redact_text(text) != text


def process_tags() -> dict[str, str]:
    """This process as a run's owner (``PROCESS_TAGS``)."""
    here = liveness.current()
    return dict(zip(PROCESS_TAGS, (here.host, str(here.pid), here.start), strict=True))


def run_process(run) -> liveness.Process | None:
    """The process that last made ``run`` (an MLflow ``Run``) RUNNING, when its tags record it."""
    host, pid, start = (run.data.tags.get(key) for key in PROCESS_TAGS)
    if not host or not (pid or "").isdigit():
        return None
    return liveness.Process(host, int(pid), start or "")


def end_orphaned_runs(
    client: MlflowClient, experiment_ids: list[str], reason: str = ORPHAN_REASON, keep=()
) -> list[str]:
    """End as KILLED every RUNNING run of ``experiment_ids`` whose process is known to have died, and return
    their ids.

    Any run qualifies (a job's, a sweep's parent or trial): what counts is its ``PROCESS_TAGS``, set when it
    starts or becomes RUNNING again. A run is ended only when ``liveness.is_alive`` says False: a process of this
    machine whose pid is free, a zombie or reused. Runs of live processes (a sweep's parallel workers), of other
    machines or containers, runs without those tags, and the ids in ``keep`` (a run about to be resumed) stay as
    they are. Each ended run gets ``runner.error`` = "<reason>: found RUNNING with no live process on <host> pid
    <n>" and ``runner.error_type`` = ``ProcessDied``; ``trainer.resume`` of it clears both.
    """
    tracker = Tracker(client=client, experiment_id="", uri=client.tracking_uri)
    ended = []
    for run in _running_runs(client, experiment_ids):
        owner = run_process(run)
        if run.info.run_id in keep or owner is None or liveness.is_alive(owner) is not False:
            continue
        record = RunRecord.existing(tracker, run.info.run_id, run.info.artifact_uri)
        record.experiment_id = run.info.experiment_id
        message = f"{reason}: found RUNNING with no live process on {owner}"
        record.set_tags({"runner.error": message, "runner.error_type": "ProcessDied"})
        record.terminate("KILLED")
        log.warning(
            "run %s (%s) was left RUNNING by %s, which died: marked KILLED (trainer.resume=%s continues it if it "
            "left a checkpoint)",
            run.info.run_id,
            run.info.run_name,
            owner,
            run.info.run_id,
        )
        ended.append(run.info.run_id)
    return ended


def _running_runs(client: MlflowClient, experiment_ids: list[str]) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            list(experiment_ids), filter_string="attributes.status = 'RUNNING'", max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs
