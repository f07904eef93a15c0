"""Range and choice checks of a composed config, and the checks across groups that Hydra cannot express.

The dataclasses in ``schema.py`` declare each field's range or choices (``bounded``/``one_of``); ``validate``
checks them, and then the settings that only fail together: held-out fractions, monitored metrics the run does
not log, an output layer or loss that does not suit the task.  The CLI, the job and the sweep call ``validate``.
"""

import importlib.util
import math
from dataclasses import fields, is_dataclass

from omegaconf import DictConfig, OmegaConf

from datasets import spec_of
from models import losses
from runner.config import objective
from runner.config.model_source import model_source_problems
from runner.config.schema import (
    DiagnosticsConfig,
    EvaluationConfig,
    FaultConfig,
    ObjectiveConfig,
    RunConfig,
    TrackingConfig,
    TrainerConfig,
    TrialLink,
)
from runner.errors import ConfigError


def validate(cfg: DictConfig) -> None:
    """Check ranges and choices of a composed config; raise ConfigError naming every bad key."""
    problems = []
    for key in ("dataset", "model", "optimizer"):
        node = cfg.get(key)
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if not is_dataclass(schema):
            problems.append(f"{key}: no {key} selected or it has no schema; choose one with {key}=<option>")
            continue
        problems += _check_node(node, schema, key)
    for key, schema in (
        ("trainer", TrainerConfig),
        ("tracking", TrackingConfig),
        ("evaluation", EvaluationConfig),
        ("objective", ObjectiveConfig),
        ("trial", TrialLink),
        ("diagnostics", DiagnosticsConfig),
        ("fault", FaultConfig),
    ):
        problems += _check_node(cfg[key], schema, key)
    problems += [
        f"{spec.name}={cfg.get(spec.name)!r} is not allowed; choose one of: {', '.join(spec.metadata['choices'])}"
        for spec in fields(RunConfig)
        if "choices" in spec.metadata and cfg.get(spec.name, spec.default) not in spec.metadata["choices"]
    ]
    problems += _contradictions(cfg) + model_source_problems(cfg.get("model"))
    if not problems:  # the checks below read several groups at once and assume each is valid
        problems += _metric_problems(cfg) + _output_problems(cfg)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _contradictions(cfg: DictConfig) -> list[str]:
    """Settings that are each valid but cannot hold together."""
    problems = []
    dataset = cfg.dataset
    if "val_fraction" in dataset and dataset.val_fraction + dataset.test_fraction >= 1:
        problems.append(
            f"dataset.val_fraction + dataset.test_fraction = "
            f"{dataset.val_fraction + dataset.test_fraction:g} leaves no rows to train on; keep it below 1"
        )
    return problems + _record_problems(cfg)


def _record_problems(cfg: DictConfig) -> list[str]:
    """What the MLflow record and the TensorBoard logs need: a model to register, a usable name, the package."""
    problems = []
    name = cfg.tracking.get("register_as")
    if name is not None and not cfg.tracking.log_model:
        problems.append("tracking.register_as registers the logged model: it needs tracking.log_model=true")
    if name is not None and (not str(name).strip() or any(char in str(name) for char in "/:")):
        problems.append(f"tracking.register_as={name!r} cannot be a registered model's name (empty, '/' or ':')")
    if cfg.trainer.get("tensorboard") and importlib.util.find_spec("tensorboard") is None:
        problems.append(
            "trainer.tensorboard=true needs the tensorboard package, which Keras's TensorBoard callback writes "
            "with (on either backend); pip install 'keras-runner[tensorboard]', or leave trainer.tensorboard off"
        )
    return problems


def check_loaded_task(cfg, task: str) -> None:
    """The checks of the monitored metrics and the objective that a task not known before loading (task=auto)
    postponed, against the ``task`` the loaded data posed: refused before any model is built."""
    if objective.task_of(cfg) is not None:
        return  # known from the config, so validate() checked them
    problems = _metric_problems(cfg, task)
    if problems:
        raise ConfigError(
            f"the {cfg.dataset.name} data, once loaded, pose a {task} task (dataset.task=auto decides it from the "
            "target), and these settings name metrics that task does not log:\n  " + "\n  ".join(problems)
        )


def _metric_problems(cfg, task: str | None = None) -> list[str]:
    """Monitored metrics and the objective must be logged by the run: refused here, before any run exists.
    ``task``: the loaded data's task when the config does not tell it (task=auto)."""
    if task is None and objective.task_of(cfg) is None:
        return []
    per_epoch = [name for name in objective.epoch_metric_names(cfg, task) if name != "learning_rate"]
    trainer, schedule = cfg.trainer, cfg.optimizer.schedule
    monitors = {"trainer.checkpoint.monitor": trainer.checkpoint.monitor}
    if trainer.early_stopping.enabled:
        monitors["trainer.early_stopping.monitor"] = trainer.early_stopping.monitor
    if schedule.name == "reduce_on_plateau":
        monitors["optimizer.schedule.monitor"] = schedule.monitor
    problems = [
        f"{key}={monitor!r} is not a metric of this run; choose one of: {', '.join(per_epoch)}"
        for key, monitor in monitors.items()
        if monitor not in per_epoch
    ]
    metric, logged = cfg.objective.metric, objective.metric_names(cfg, task)
    if metric not in logged and metric != trainer.checkpoint.monitor:  # else reported as the monitor above
        problems.append(f"objective.metric={metric!r} is not a metric of this run; choose one of: {', '.join(logged)}")
    return problems


def _output_problems(cfg: DictConfig) -> list[str]:
    """An output layer or loss that cannot suit the task trains without error but learns nothing useful."""
    spec, model = spec_of(cfg.dataset), cfg.model
    if spec is None or spec.task is None or model.allow_unusual_output:
        return []
    task, classes = spec.task, spec.n_classes
    default_units, default_activation = losses.output_head(task, classes)
    # model=custom and model=saved have no head settings: their network's head is checked once it exists
    activation = (model.get("output_activation") or default_activation).lower()
    loss_task = losses.loss_task(model.loss) if model.loss else task
    units = model.get("output_units") or default_units
    reasons = []
    if activation == "softmax" and units == 1:
        reasons.append("softmax over one output unit always outputs 1.0")
    if task == "regression" and activation in ("sigmoid", "softmax"):
        reasons.append(f"a {activation} output cannot reach regression targets outside (0, 1)")
    if not losses.loss_suits(loss_task, task):
        reasons.append(f"{model.loss} is a {loss_task} loss")
    if loss_task in ("binary", "multiclass") and activation not in ("sigmoid", "softmax"):
        reasons.append(f"a {activation} output gives the cross-entropy loss no probabilities")
    if loss_task == "multiclass" and activation == "sigmoid":
        reasons.append("sigmoid outputs are no distribution over the classes, as the loss expects")
    reasons += _unit_problems(task, classes, units, activation)
    if not reasons:
        return []
    loss = f"loss {model.loss}" if model.loss else "the default loss"
    return [
        f"model output {activation} x{units} with {loss} on a {task} task: "
        f"{'; '.join(reasons)}. Set model.allow_unusual_output=true to train it anyway."
    ]


def _unit_problems(task: str, classes: int | None, units: int | None, activation: str) -> list[str]:
    if task == "multilabel":
        reasons = []
        if classes and units != classes:  # the labels are counted before loading only for a list of columns
            reasons.append(f"{units} output units for {classes} labels")
        if activation == "softmax":
            reasons.append("a softmax output makes the labels compete; each label needs its own sigmoid")
        return reasons
    if task == "multiclass":
        return [f"{units} output units for {classes} classes"] if classes and units != classes else []
    return [f"{units} output units for one target"] if units != 1 else []


def _check_node(node: DictConfig, schema, path: str) -> list[str]:
    problems = []
    for spec in fields(schema):
        key = f"{path}.{spec.name}"
        if OmegaConf.is_missing(node, spec.name):
            problems.append(f"{key} is not set: set it, e.g. {key}={spec.metadata.get('example', '<value>')}")
            continue
        value = node[spec.name]
        if is_dataclass(spec.type):
            problems += _check_node(value, spec.type, key)
            continue
        if value is None:
            continue
        if "choices" in spec.metadata and value not in spec.metadata["choices"]:
            allowed = ", ".join(str(c) for c in spec.metadata["choices"] if c is not None)
            problems.append(f"{key}={value!r} is not allowed; choose one of: {allowed}")
        if "range" in spec.metadata and not _in_range(value, *spec.metadata["range"]):
            problems.append(f"{key}={value!r} is out of range: must be {_describe(*spec.metadata['range'])}")
    return problems


def _in_range(value, lo, hi, lo_open, hi_open) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return False
    if hi is not None and (value > hi or (hi_open and value == hi)):
        return False
    return True


def _describe(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"{'<' if hi_open else '<='} {hi}"
