"""Training: seeding, the network and optimizer from config, callbacks, and a fit that keeps the best epoch."""

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from models import build_model, output_head
from runner.config.objective import HIGHER_IS_BETTER, ONE_HOT_LOSSES
from runner.errors import ConfigError, TrainingError
from runner.run import resume
from runner.run.callbacks import EpochLogger, EpochProgress, RocAucHistory
from runner.runtime import backend, console

DEFAULT_LOSS = {
    "regression": "mean_absolute_error",  # the book's choice for the wine regression
    "binary": "binary_crossentropy",
    "multiclass": "sparse_categorical_crossentropy",
}
log = logging.getLogger("runner")
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adadelta": keras.optimizers.Adadelta,
}


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    best_value: float
    monitor: str
    epochs_run: int
    seconds: float
    first_step_at: float | None = None  # time.time() when the first training step began


def seed_everything(seed: int, deterministic: bool) -> None:
    """Same seed, same run: Python, NumPy and backend generators, and deterministic kernels on request."""
    backend.seed(seed, deterministic)


def build_network(model_cfg: dict, data) -> keras.Model:
    options = {k: v for k, v in model_cfg.items() if k not in ("architecture", "loss", "allow_unusual_output")}
    units, activation = output_head(data.task, data.n_classes)
    options["output_units"] = options.get("output_units") or units
    options["output_activation"] = options.get("output_activation") or activation
    return build_model(model_cfg["architecture"], input_shape=data.input_shape, name=data.name, **options)


def loss_name(model_cfg: dict, task: str) -> str:
    return model_cfg.get("loss") or DEFAULT_LOSS[task]


def build_optimizer(opt_cfg: dict) -> tuple[keras.optimizers.Optimizer, list]:
    """The optimizer, and any callbacks its schedule needs (reduce-on-plateau works between epochs)."""
    options = {k: v for k, v in opt_cfg.items() if k not in ("name", "schedule") and v is not None}
    schedule = opt_cfg["schedule"]
    callbacks = []
    if schedule["name"] == "exponential":
        options["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(
            opt_cfg["learning_rate"], schedule["decay_steps"], schedule["decay_rate"]
        )
    elif schedule["name"] == "cosine":
        options["learning_rate"] = keras.optimizers.schedules.CosineDecay(
            opt_cfg["learning_rate"], schedule["decay_steps"], alpha=schedule["alpha"]
        )
    elif schedule["name"] == "reduce_on_plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=schedule["monitor"],
                factor=schedule["factor"],
                patience=schedule["patience"],
                min_lr=schedule["min_lr"],
                verbose=0,
            )
        )
    return OPTIMIZERS[opt_cfg["name"]](**options), callbacks


def task_metrics(task: str, loss: str, threshold: float) -> list:
    if task == "regression":
        return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]
    if task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold)]
    if loss in ONE_HOT_LOSSES:
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def training_targets(y: np.ndarray, task: str, loss: str, n_classes: int) -> np.ndarray:
    """Labels in the form the loss expects: one-hot only for the categorical (non-sparse) losses."""
    if task == "multiclass" and loss in ONE_HOT_LOSSES:
        return np.eye(n_classes, dtype="float32")[y]
    return y


def logged_metric_names(metrics: list, task: str, roc_auc_per_epoch: bool) -> list[str]:
    """What each epoch logs: the loss, the compiled metrics, the ROC AUC callback's, their val_ twins, and
    the epoch's duration."""
    names = ["loss"] + [metric.name for metric in metrics]
    if task == "binary" and roc_auc_per_epoch:
        names.append("roc_auc")
    return names + [f"val_{name}" for name in names] + ["epoch_seconds"]


def compile_model(model: keras.Model, optimizer, loss: str, metrics: list, trainer_cfg: dict) -> None:
    """Compile with the execution settings: several steps per call amortise Keras's per-step overhead."""
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        steps_per_execution=trainer_cfg["steps_per_execution"],
        jit_compile=trainer_cfg["jit_compile"],
    )


def resolve_mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in HIGHER_IS_BETTER) else "min"


def check_monitors(trainer_cfg: dict, optimizer_cfg: dict, available: list[str]) -> None:
    """A typo in a monitored metric would otherwise surface only after the first epoch."""
    monitors = {"trainer.checkpoint.monitor": trainer_cfg["checkpoint"]["monitor"]}
    if trainer_cfg["early_stopping"]["enabled"]:
        monitors["trainer.early_stopping.monitor"] = trainer_cfg["early_stopping"]["monitor"]
    if optimizer_cfg["schedule"]["name"] == "reduce_on_plateau":
        monitors["optimizer.schedule.monitor"] = optimizer_cfg["schedule"]["monitor"]
    for key, monitor in monitors.items():
        if monitor not in available:
            raise ConfigError(f"{key}={monitor!r} is not a metric of this run; choose one of: {', '.join(available)}")


def fit(
    model: keras.Model,
    data,
    cfg: dict,
    output_dir: Path,
    log_epoch,
    extra_callbacks=(),
    *,
    saved: resume.Saved | None = None,
    context: dict | None = None,
) -> TrainResult:
    """Fit with the best epoch (by the checkpoint monitor) restored into ``model`` at the end.

    ``saved``: a checkpoint to continue from (``trainer.resume``); ``context``: what every checkpoint records
    besides the training state (the config, the MLflow run).
    """
    trainer = cfg["trainer"]
    task, loss = data.task, loss_name(cfg["model"], data.task)
    y_train = training_targets(data.train.y, task, loss, data.n_classes)
    y_val = training_targets(data.val.y, task, loss, data.n_classes)
    monitor = trainer["checkpoint"]["monitor"]
    mode = resolve_mode(monitor, trainer["checkpoint"]["mode"])
    best_path = output_dir / "checkpoints" / "best.weights.h5"
    best_path.parent.mkdir(parents=True, exist_ok=True)

    callbacks = []
    if task == "binary" and trainer["roc_auc_per_epoch"]:
        # First, so that the checkpoint, early stopping and the logger all see roc_auc.
        callbacks.append(RocAucHistory(data.train.x, data.train.y, data.val.x, data.val.y))
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            best_path, monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True, verbose=0
        ),
        keras.callbacks.TerminateOnNaN(),
        *extra_callbacks,
    ]
    stopping = trainer["early_stopping"]
    if stopping["enabled"]:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stopping["monitor"],
                mode=resolve_mode(stopping["monitor"], stopping["mode"]),
                patience=stopping["patience"],
                min_delta=stopping["min_delta"],
            )
        )
    state = None
    if trainer["checkpoint"]["resumable"] or saved:
        if saved:
            saved = resume.adopt(saved, output_dir, best_path)
        # After the callbacks whose counters it restores: Keras resets them when training begins.
        state = resume.TrainingState(output_dir / resume.FOLDER, best_path, callbacks, context or {}, saved)
        callbacks.append(state)
    logger = EpochLogger(log_epoch, checkpoint=state.save if state else None)
    callbacks.append(logger)
    verbose, epoch_lines = console.progress_mode(
        trainer["verbose"], cfg.get("verbosity", "normal"), sys.stdout.isatty()
    )
    if epoch_lines:  # after the logger: the line shows its epoch_seconds
        trial = (cfg.get("trial") or {}).get("number")
        earlier_best = best_of(saved.state["history"].get(monitor, []), mode)[1] if saved else math.nan
        callbacks.append(
            EpochProgress(
                monitor,
                mode,
                label=f"trial {trial}: " if trial is not None else "",
                best=None if math.isnan(earlier_best) else earlier_best,
            )
        )

    inputs = backend.fit_inputs(
        data.train.x,
        y_train,
        data.val.x,
        y_val,
        batch_size=trainer["batch_size"],
        shuffle=trainer["shuffle"],
        seed=trainer["seed"],
        pipeline=trainer["pipeline"],
    )
    if saved and not backend.skip_epochs(inputs, saved.epoch):
        log.warning(
            "the resumed epochs may see the training data in another order than an uninterrupted run "
            "would: Keras's own pipeline shuffles the arrays (trainer.pipeline=%s)",
            trainer["pipeline"],
        )
    started = time.perf_counter()
    history = model.fit(
        **inputs.fit_kwargs(),
        epochs=trainer["epochs"],
        callbacks=callbacks,
        verbose=verbose,
        initial_epoch=saved.epoch if saved else 0,
    ).history
    seconds = time.perf_counter() - started
    if saved:  # this fit's history starts after the checkpoint's epoch
        history = {name: saved.state["history"].get(name, []) + values for name, values in history.items()}

    epochs_run = len(history["loss"])
    bad_epoch = next((i + 1 for i, value in enumerate(history["loss"]) if not math.isfinite(value)), None)
    if bad_epoch is not None:
        raise TrainingError(
            f"the training loss became {history['loss'][bad_epoch - 1]} in epoch {bad_epoch}; training was "
            f"stopped. Common causes: a learning rate too high (optimizer.learning_rate="
            f"{cfg['optimizer']['learning_rate']}), unscaled inputs, or exploding gradients "
            f"(try optimizer.clipnorm=1.0). Metrics up to that epoch are recorded."
        )
    best_epoch, best_value = best_of(history.get(monitor, []), mode)
    if state:
        state.discard()  # the training ended: nothing is left to resume
    if best_path.exists():
        model.load_weights(best_path)
    return TrainResult(
        history=history,
        best_epoch=best_epoch,
        best_value=best_value,
        monitor=monitor,
        epochs_run=epochs_run,
        seconds=seconds,
        first_step_at=logger.first_step_at,
    )


def best_of(values: list[float], mode: str) -> tuple[int, float]:
    """1-based epoch of the first best finite value: the epoch ModelCheckpoint(save_best_only) kept."""
    best_epoch, best_value = len(values), float("nan")
    for epoch, value in enumerate(values, start=1):
        if not math.isfinite(value):
            continue
        if math.isnan(best_value) or (value > best_value if mode == "max" else value < best_value):
            best_epoch, best_value = epoch, value
    return best_epoch, best_value
