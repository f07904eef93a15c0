"""Resuming an interrupted run from its last completed epoch, so that it ends as the uninterrupted run would.

After every epoch ``TrainingState`` writes into ``<run folder>/checkpoints/resume/``: the model's weights,
the optimizer's variables (step count, moments, learning rate) and the layers' random-generator states
(dropout masks) as plain arrays (``.npz``, read without pickle), with the backend's global generator where
the data order depends on it (PyTorch); a copy of the best epoch's weights; and
``state.json``, which holds the epoch, the history so far, the checkpoint's, early stopping's and the
learning-rate schedule's counters, NumPy's and Python's generator states, the resolved config and the
MLflow run. ``state.json`` is replaced last, in one rename, so a checkpoint is whole or absent: it is the
commit point, and files it no longer names are then removed.

``trainer.resume=<run folder or MLflow run id>`` with the interrupted command's config continues that
MLflow run (see ``runner/run/job.py``); the data order of the resumed epochs comes from ``backend.skip_epochs``.
"""

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from runner.config.schema import RunConfig
from runner.config.spec import plain
from runner.errors import ConfigError
from runner.run.folder import RunFolder
from runner.runtime import backend

log = logging.getLogger("runner")

STATE_FILE = "state.json"
# Keys that may change between the interrupted command and the resuming one: they change no result.
FREE_KEYS = ("trainer.resume", "trainer.verbose")
# What each stateful callback counts between epochs (the attributes Keras resets in on_train_begin).
CALLBACK_STATE = {
    "ModelCheckpoint": ("best",),
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("best", "wait", "cooldown_counter"),
}


@dataclass
class Saved:
    """A checkpoint read back: its folder and the content of its state.json."""

    folder: Path
    state: dict

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    @property
    def run_id(self) -> str:
        return self.state["run_id"]


def load(target: str, tracking_uri: str) -> Saved:
    """The checkpoint of a run folder, or of an MLflow run id (found through its ``runner.output_dir`` tag)."""
    folder = RunFolder(_run_folder(target, tracking_uri)).resume_state
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise ConfigError(
            f"trainer.resume={target}: no checkpoint in {folder}. A run leaves one when it is "
            f"interrupted after at least one epoch; a run that finished has none."
        )
    saved = Saved(folder, json.loads(state_file.read_text()))
    _refuse_live_run(saved, tracking_uri)
    return saved


def _refuse_live_run(saved: Saved, tracking_uri: str) -> None:
    """Two processes must not train one run into one folder: a run still RUNNING in a live process is refused.
    A run left RUNNING by a process that died (SIGKILL, out of memory) is what resume is for."""
    from mlflow import MlflowClient

    from runner.runtime import liveness
    from runner.tracking import run_process

    try:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(saved.run_id)
    except Exception as error:
        raise ConfigError(
            f"trainer.resume: the checkpoint's MLflow run {saved.run_id} is not in the tracking store "
            f"{tracking_uri} (tracking.uri): {error}"
        ) from error
    owner = run_process(run)
    if run.info.status != "RUNNING" or owner is None:
        return
    alive = liveness.is_alive(owner)
    if alive:
        raise ConfigError(
            f"trainer.resume: run {saved.run_id} is still RUNNING in {owner}; stop it (kill {owner.pid}) "
            f"before continuing it"
        )
    if alive is None:
        log.warning(
            "run %s is RUNNING in %s, which this machine cannot see: make sure it has stopped", saved.run_id, owner
        )


def _run_folder(target: str, tracking_uri: str) -> Path:
    if Path(target).is_dir():
        return Path(target)
    from mlflow import MlflowClient

    try:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(target)
    except Exception as error:
        raise ConfigError(
            f"trainer.resume={target} is neither a run folder nor a run id in the tracking store "
            f"{tracking_uri}: {error}"
        ) from error
    folder = run.data.tags.get("runner.output_dir")
    if not folder:
        raise ConfigError(f"trainer.resume={target}: the run records no folder (tag runner.output_dir)")
    return Path(folder)


def check_config(saved: Saved, spec: RunConfig) -> None:
    """A resumed run must train what the interrupted one trained: every difference is listed, then refused."""
    from runner.tracking import (
        flatten,  # here: training imports this module, and needs no MLflow
    )

    before, now = flatten(saved.state["config"]), flatten(plain(spec))
    changed = [
        f"{key}: {before.get(key, '(absent)')} in the checkpoint, {now.get(key, '(absent)')} now"
        for key in sorted(set(before) | set(now))
        if key not in FREE_KEYS and before.get(key) != now.get(key)
    ]
    started_on = saved.state.get("keras_backend", backend.name())  # absent from checkpoints before it was kept
    if started_on != backend.name():
        changed.append(f"Keras backend: {started_on} in the checkpoint, {backend.name()} now (trainer.backend)")
    if changed:
        raise ConfigError(
            "trainer.resume continues a run with the config it started with; these settings "
            "differ (repeat the interrupted command, adding only trainer.resume=...):\n  " + "\n  ".join(changed)
        )
    if saved.epoch >= spec.trainer.epochs:
        raise ConfigError(
            f"trainer.resume: the checkpoint in {saved.folder} is of the last epoch "
            f"({saved.epoch}); nothing is left to train"
        )


def adopt(saved: Saved, output_dir: Path, best_path: Path) -> Saved:
    """Copy the checkpoint into this run's folder (so that it can be resumed from there too) and make its best
    weights the best checkpoint's starting point; the interrupted run's folder stays as it was."""
    folder = RunFolder(output_dir).resume_state
    if folder.resolve() != saved.folder.resolve():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(saved.folder, folder)
    best = saved.state["best_weights"]
    if best:
        best_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / best, best_path)
    return Saved(folder, saved.state)


def hint(output_dir: Path, run_id: str) -> str | None:
    """How to continue an interrupted run, when it left a checkpoint."""
    state_file = RunFolder(Path(output_dir)).resume_state / STATE_FILE
    if not state_file.is_file():
        return None
    epoch = json.loads(state_file.read_text())["epoch"]
    return (
        f"the checkpoint of epoch {epoch} is kept; to continue, repeat the command with "
        f"trainer.resume={run_id} (or trainer.resume={Path(output_dir).resolve()})"
    )


def random_variables(model: keras.Model) -> list:
    """The model's variables that are not weights: the random-generator states of its layers (dropout)."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


class TrainingState(keras.callbacks.Callback):
    """Writes the resumable state with ``save`` after every epoch (``EpochLogger`` calls it) and, given a
    checkpoint (``saved``), puts it back when training begins, after the callbacks in ``stateful`` have reset.

    ``context`` (the resolved config, the run id, the tracking URI) is stored with every checkpoint.
    """

    def __init__(self, folder: Path, best_path: Path, stateful: list, context: dict, saved: Saved | None = None):
        super().__init__()
        self.folder = folder
        self.best_path = best_path
        self.stateful = [callback for callback in stateful if type(callback).__name__ in CALLBACK_STATE]
        self.context = context
        self.saved = saved
        self.history = {name: list(values) for name, values in saved.state["history"].items()} if saved else {}
        self.best_weights = saved.state["best_weights"] if saved else None
        self.checkpoint = next((c for c in stateful if isinstance(c, keras.callbacks.ModelCheckpoint)), None)
        self._best_seen = None  # the checkpoint's best value when its file was last copied

    def on_train_begin(self, logs=None):
        if self.saved is not None:
            self._restore(self.saved)

    def save(self, epoch: int, logs: dict, metrics: dict) -> None:
        """Checkpoint the state after ``epoch`` (1-based): ``logs`` are the epoch's Keras logs (its history),
        ``metrics`` what MLflow records for it."""
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch:04d}.npz"
        _replace(self.folder / weights, lambda file: np.savez(file, **self._arrays()))
        # ModelCheckpoint sets a new best value exactly when it rewrites its file.
        best = self.checkpoint.best if self.checkpoint else None
        if best is not self._best_seen and self.best_path.is_file():
            self.best_weights = f"best-{epoch:04d}.weights.h5"
            _replace(self.folder / self.best_weights, lambda file: file.write(self.best_path.read_bytes()))
            self._best_seen = best
        state = {
            "version": 1,
            "epoch": epoch,
            "weights": weights,
            "best_weights": self.best_weights,
            "history": self.history,
            "metrics": metrics,
            "callbacks": [_callback_state(c) for c in self.stateful],
            "numpy_random": _numpy_state(),
            "python_random": random.getstate(),
            "keras_backend": backend.name(),
            **self.context,
        }
        _replace(self.folder / STATE_FILE, lambda file: file.write(json.dumps(state).encode()))
        for path in self.folder.iterdir():
            if path.name not in (STATE_FILE, weights, self.best_weights):
                path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Training is over: nothing is left to resume."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _arrays(self) -> dict:
        arrays = {f"model_{i}": value for i, value in enumerate(self.model.get_weights())}
        arrays |= {f"optimizer_{i}": _numpy(v) for i, v in enumerate(self.model.optimizer.variables)}
        arrays |= {f"random_{i}": _numpy(v) for i, v in enumerate(random_variables(self.model))}
        return arrays | backend.random_state()

    def _restore(self, saved: Saved) -> None:
        with np.load(saved.folder / saved.state["weights"], allow_pickle=False) as arrays:
            self.model.set_weights([arrays[f"model_{i}"] for i in range(len(self.model.weights))])
            optimizer = self.model.optimizer
            if not optimizer.built:  # TensorFlow builds it at the first step, after this
                optimizer.build(self.model.trainable_variables)
            optimizer.set_weights([arrays[f"optimizer_{i}"] for i in range(len(optimizer.variables))])
            for i, variable in enumerate(random_variables(self.model)):
                variable.assign(arrays[f"random_{i}"])
            backend.set_random_state(arrays)
        for callback, values in zip(self.stateful, saved.state["callbacks"], strict=True):
            for name, value in values.items():
                if name != "type":
                    setattr(callback, name, value)
        self._best_seen = self.checkpoint.best if self.checkpoint else None
        name, keys, *rest = saved.state["numpy_random"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        version, internal, gauss = saved.state["python_random"]
        random.setstate((version, tuple(internal), gauss))
        log.info("resumed after epoch %d from %s", saved.epoch, saved.folder)


def _callback_state(callback) -> dict:
    values = {name: getattr(callback, name) for name in CALLBACK_STATE[type(callback).__name__]}
    return {
        "type": type(callback).__name__,
        **{name: value if value is None or isinstance(value, int) else float(value) for name, value in values.items()},
    }


def _numpy_state() -> list:
    name, keys, *rest = np.random.get_state()
    return [name, keys.tolist(), *rest]


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _replace(path: Path, write) -> None:
    """Write through a temporary file renamed into place: a reader sees the old file or the new one, whole."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        write(file)
    os.replace(partial, path)


def log_missing_epoch(record, saved: Saved) -> None:
    """The checkpoint's epoch, when MLflow lacks it (the process stopped between saving and logging it, which
    only a SIGKILL or a failed upload can do): logged now, so the run's curves hold every epoch once."""
    if saved.epoch not in record.metric_steps("loss"):
        record.log_metrics(saved.state["metrics"], step=saved.epoch)
