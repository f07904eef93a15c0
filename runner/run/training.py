"""Training: the network and optimizer from their typed settings, callbacks, and a fit that keeps the best epoch."""

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import keras
import numpy as np

from models import build_model
from models.losses import DEFAULT_LOSS, ONE_HOT_LOSSES, output_head
from runner.config.objective import best_index, monitor_mode
from runner.config.schema import ModelBase, OptimizerBase, TrainerConfig
from runner.errors import TrainingError
from runner.run import resume, user_models
from runner.run.callbacks import EpochLogger, EpochProgress, RocAucHistory
from runner.run.folder import RunFolder
from runner.runtime import backend, console

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


@dataclass
class Compiled:
    """A network compiled for its task, and what its training needs to know of the build."""

    model: keras.Model
    loss: str  # the configured loss, or the task's default
    metric_names: list[str]  # what every epoch logs
    learning_rate: float  # named when the loss diverges
    callbacks: list  # the optimizer schedule's (reduce-on-plateau works between epochs)


@dataclass
class Hooks:
    """What the caller adds to a training: where each epoch's metrics go, its own callbacks, and what a
    checkpoint records besides the training state."""

    log_epoch: Callable[[dict, int], None]
    callbacks: list = field(default_factory=list)
    checkpoint_context: dict = field(default_factory=dict)
    saved: resume.Saved | None = None  # a checkpoint to continue from (trainer.resume)
    label: str = ""  # the console's prefix for every epoch line (a trial's number)
    verbosity: str = "normal"


def build(data, model: ModelBase, optimizer: OptimizerBase, trainer: TrainerConfig, threshold: float) -> Compiled:
    """The network for ``data``'s task, compiled with its loss, metrics and the trainer's execution settings."""
    loss = model.loss or DEFAULT_LOSS[data.task]
    metrics = task_metrics(data.task, loss, threshold)
    network = build_network(model, data)
    keras_optimizer, callbacks = build_optimizer(optimizer)
    # Several steps per call amortise Keras's per-step overhead (where the backend allows it).
    network.compile(
        optimizer=keras_optimizer,
        loss=loss,
        metrics=metrics,
        **backend.compile_settings(trainer.steps_per_execution, trainer.jit_compile),
    )
    names = logged_metric_names(metrics, data.task, trainer.roc_auc_per_epoch)
    return Compiled(network, loss, names, optimizer.learning_rate, callbacks)


def build_network(model: ModelBase, data) -> keras.Model:
    if isinstance(model, user_models.USER_MODELS):  # model=custom, model=saved: no layer settings to build from
        return user_models.build_user_network(model, data)
    options = {name: value for name, value in _fields(model).items() if name not in MODEL_ONLY_IN_RUNNER}
    units, activation = output_head(data.task, data.n_classes)
    options["output_units"] = options.get("output_units") or units
    options["output_activation"] = options.get("output_activation") or activation
    return build_model(model.architecture, input_shape=data.input_shape, name=data.name, **options)


# Model settings the runner acts on itself; the rest are the builder's keyword arguments.
MODEL_ONLY_IN_RUNNER = ("architecture", "loss", "allow_unusual_output")


def build_optimizer(optimizer: OptimizerBase) -> tuple[keras.optimizers.Optimizer, list]:
    """The optimizer, and any callbacks its schedule needs (reduce-on-plateau works between epochs)."""
    options = {
        name: value
        for name, value in _fields(optimizer).items()
        if name not in ("name", "schedule") and value is not None
    }
    schedule = optimizer.schedule
    callbacks = []
    if schedule.name == "exponential":
        options["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(
            optimizer.learning_rate, schedule.decay_steps, schedule.decay_rate
        )
    elif schedule.name == "cosine":
        options["learning_rate"] = keras.optimizers.schedules.CosineDecay(
            optimizer.learning_rate, schedule.decay_steps, alpha=schedule.alpha
        )
    elif schedule.name == "reduce_on_plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=schedule.monitor,
                factor=schedule.factor,
                patience=schedule.patience,
                min_lr=schedule.min_lr,
                verbose=0,
            )
        )
    return OPTIMIZERS[optimizer.name](**options), callbacks


def _fields(settings) -> dict:
    return {item.name: getattr(settings, item.name) for item in fields(settings)}


def task_metrics(task: str, loss: str, threshold: float) -> list:
    if task == "regression":
        return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]
    if task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold)]
    if task == "multilabel":
        return multilabel_metrics(threshold)
    if loss in ONE_HOT_LOSSES:
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def multilabel_metrics(threshold: float) -> list:
    """Every (row, label) decision's accuracy, F1 pooled over the labels (micro) and averaged per label (macro),
    and the labels' mean ROC AUC; the names are those of objective.EPOCH_METRICS."""
    return [
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold),
        keras.metrics.F1Score(average="micro", threshold=threshold, name="micro_f1"),
        keras.metrics.F1Score(average="macro", threshold=threshold, name="macro_f1"),
        keras.metrics.AUC(multi_label=True, name="roc_auc"),
    ]


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


def train(compiled: Compiled, data, trainer: TrainerConfig, folder: RunFolder, hooks: Hooks) -> TrainResult:
    """Fit with the best epoch (by the checkpoint monitor) restored into the model at the end."""
    model, saved = compiled.model, hooks.saved
    best_path = folder.best_weights
    best_path.parent.mkdir(parents=True, exist_ok=True)
    monitor = trainer.checkpoint.monitor
    mode = monitor_mode(monitor, trainer.checkpoint.mode)
    callbacks = _callbacks(compiled, data, trainer, best_path, hooks)
    if trainer.tensorboard:  # per-epoch scalars, weight histograms, the graph: tensorboard --logdir <run>/tensorboard
        callbacks.append(keras.callbacks.TensorBoard(folder.tensorboard, histogram_freq=1))
    state = None
    if trainer.checkpoint.resumable or saved:
        if saved:
            saved = resume.adopt(saved, folder.root, best_path)
        # After the callbacks whose counters it restores: Keras resets them when training begins.
        state = resume.TrainingState(folder.resume_state, best_path, callbacks, hooks.checkpoint_context, saved)
        callbacks.append(state)
    logger = EpochLogger(hooks.log_epoch, checkpoint=state.save if state else None)
    callbacks.append(logger)
    verbose, epoch_lines = console.progress_mode(trainer.verbose, hooks.verbosity, sys.stdout.isatty())
    if epoch_lines:  # after the logger: the line shows its epoch_seconds
        earlier_best = best_of(saved.state["history"].get(monitor, []), mode)[1] if saved else math.nan
        callbacks.append(
            EpochProgress(monitor, mode, label=hooks.label, best=None if math.isnan(earlier_best) else earlier_best)
        )

    task, loss = data.task, compiled.loss
    inputs = backend.fit_inputs(
        data.train.x,
        training_targets(data.train.y, task, loss, data.n_classes),
        data.val.x,
        training_targets(data.val.y, task, loss, data.n_classes),
        batch_size=trainer.batch_size,
        shuffle=trainer.shuffle,
        seed=trainer.seed,
        pipeline=trainer.pipeline,
    )
    if saved and not backend.skip_epochs(inputs, saved.epoch):
        log.warning(
            "the resumed epochs may see the training data in another order than an uninterrupted run "
            "would: Keras's own pipeline shuffles the arrays (trainer.pipeline=%s)",
            trainer.pipeline,
        )
    started = time.perf_counter()
    history = model.fit(
        **inputs.fit_kwargs(),
        epochs=trainer.epochs,
        callbacks=callbacks,
        verbose=verbose,
        initial_epoch=saved.epoch if saved else 0,
    ).history
    seconds = time.perf_counter() - started
    if saved:  # this fit's history starts after the checkpoint's epoch
        history = {name: saved.state["history"].get(name, []) + values for name, values in history.items()}

    _refuse_diverged(history["loss"], compiled.learning_rate)
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
        epochs_run=len(history["loss"]),
        seconds=seconds,
        first_step_at=logger.first_step_at,
    )


def _callbacks(compiled: Compiled, data, trainer: TrainerConfig, best_path: Path, hooks: Hooks) -> list:
    """ROC AUC first (the checkpoint, early stopping and the logger all read it), then checkpoint, NaN guard,
    the schedule's and the caller's callbacks, and early stopping."""
    callbacks = []
    if data.task == "binary" and trainer.roc_auc_per_epoch:
        callbacks.append(RocAucHistory(data.train.x, data.train.y, data.val.x, data.val.y))
    checkpoint = trainer.checkpoint
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            best_path,
            monitor=checkpoint.monitor,
            mode=monitor_mode(checkpoint.monitor, checkpoint.mode),
            save_best_only=True,
            save_weights_only=True,
            verbose=0,
        ),
        keras.callbacks.TerminateOnNaN(),
        *compiled.callbacks,
        *hooks.callbacks,
    ]
    stopping = trainer.early_stopping
    if stopping.enabled:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stopping.monitor,
                mode=monitor_mode(stopping.monitor, stopping.mode),
                patience=stopping.patience,
                min_delta=stopping.min_delta,
            )
        )
    return callbacks


def _refuse_diverged(losses: list[float], learning_rate: float) -> None:
    bad_epoch = next((i + 1 for i, value in enumerate(losses) if not math.isfinite(value)), None)
    if bad_epoch is not None:
        raise TrainingError(
            f"the training loss became {losses[bad_epoch - 1]} in epoch {bad_epoch}; training was "
            f"stopped. Common causes: a learning rate too high (optimizer.learning_rate="
            f"{learning_rate}), unscaled inputs, or exploding gradients "
            f"(try optimizer.clipnorm=1.0). Metrics up to that epoch are recorded."
        )


def best_of(values: list[float], mode: str) -> tuple[int, float]:
    """1-based epoch of the first best finite value: the epoch ModelCheckpoint(save_best_only) kept."""
    best = best_index(values, "maximize" if mode == "max" else "minimize")
    if best is None:
        return len(values), float("nan")
    return best + 1, float(values[best])
