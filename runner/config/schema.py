"""Dataclass schemas for every config group, registered in Hydra's ConfigStore, with their declared ranges.

Types and unknown keys are checked by OmegaConf while Hydra composes the config (YAML and command line
alike).  Ranges and choices are declared next to each field with ``bounded``/``one_of`` and checked by
``validate`` (runner/config/validation.py) before anything is loaded or trained, because Hydra does not run
``__post_init__``.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from runner.config.dataset_schema import (  # noqa: F401 - importable from here as before
    ArraysDataset,
    DatasetFiles,
    HeldOutDataset,
    ImagesDataset,
    MnistDataset,
    OwnDataset,
    OwnTable,
    SeizureDataset,
    SequenceDataset,
    SyntheticDataset,
    TableDataset,
    WineDataset,
)
from runner.config.fields import _list, bounded, one_of, required  # noqa: F401
from runner.config.model_schema import (  # noqa: F401 - importable from here as before
    BiLstmModel,
    CnnModel,
    CustomModel,
    MlpModel,
    ModelBase,
    SavedModel,
    UserModelBase,
)

# ---------------------------------------------------------------- optimizer group


@dataclass
class ScheduleConfig:
    """Learning-rate schedule; ``none`` keeps the rate constant."""

    name: str = one_of("none", "none", "exponential", "cosine", "reduce_on_plateau")
    decay_steps: int = bounded(1000, 1)  # exponential, cosine
    decay_rate: float = bounded(0.96, 0.0, 1.0, lo_open=True)  # exponential
    alpha: float = bounded(0.0, 0.0, 1.0)  # cosine: final rate as a fraction of the initial one
    monitor: str = "val_loss"  # reduce_on_plateau
    factor: float = bounded(0.5, 0.0, 1.0, lo_open=True, hi_open=True)
    patience: int = bounded(5, 0)
    min_lr: float = bounded(0.0, 0.0)


@dataclass
class OptimizerBase:
    name: str = MISSING
    learning_rate: float = bounded(1e-3, 0.0, lo_open=True)
    clipnorm: Optional[float] = bounded(None, 0.0, lo_open=True)
    clipvalue: Optional[float] = bounded(None, 0.0, lo_open=True)
    global_clipnorm: Optional[float] = bounded(None, 0.0, lo_open=True)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class AdamOptimizer(OptimizerBase):
    name: str = one_of("adam", "adam")
    beta_1: float = bounded(0.9, 0.0, 1.0, hi_open=True)
    beta_2: float = bounded(0.999, 0.0, 1.0, hi_open=True)
    epsilon: float = bounded(1e-7, 0.0, lo_open=True)


@dataclass
class SgdOptimizer(OptimizerBase):
    name: str = one_of("sgd", "sgd")
    learning_rate: float = bounded(0.01, 0.0, lo_open=True)
    momentum: float = bounded(0.0, 0.0, 1.0, hi_open=True)
    nesterov: bool = False


@dataclass
class RmspropOptimizer(OptimizerBase):
    name: str = one_of("rmsprop", "rmsprop")
    rho: float = bounded(0.9, 0.0, 1.0, hi_open=True)
    momentum: float = bounded(0.0, 0.0, 1.0, hi_open=True)
    epsilon: float = bounded(1e-7, 0.0, lo_open=True)


@dataclass
class AdadeltaOptimizer(OptimizerBase):
    name: str = one_of("adadelta", "adadelta")
    learning_rate: float = bounded(1.0, 0.0, lo_open=True)
    rho: float = bounded(0.95, 0.0, 1.0, hi_open=True)
    epsilon: float = bounded(1e-7, 0.0, lo_open=True)


# ---------------------------------------------------------------- trainer, tracking, evaluation


@dataclass
class CheckpointConfig:
    """The best epoch by ``monitor`` is kept and used for the final evaluation."""

    monitor: str = "val_loss"
    mode: str = one_of("auto", "auto", "min", "max")
    resumable: bool = True  # after every epoch, the full training state trainer.resume continues from


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val_loss"
    mode: str = one_of("auto", "auto", "min", "max")
    patience: int = bounded(10, 0)
    min_delta: float = bounded(0.0, 0.0)


@dataclass
class TrainerConfig:
    epochs: int = bounded(10, 1)
    batch_size: int = bounded(32, 1)
    seed: int = bounded(42, 0)
    deterministic: bool = True  # bit-identical reruns on CPU, at some speed cost
    shuffle: bool = True
    verbose: Optional[int] = one_of(None, None, 0, 1, 2)  # None: progress bar on a terminal, else a line per epoch
    roc_auc_per_epoch: bool = True  # binary tasks: exact ROC AUC on train and val after every epoch
    threads: Optional[int] = bounded(None, 1)  # None: all cores for one run, cores // parallel jobs in a sweep
    gpu_memory_growth: bool = True  # GPUs: take memory as needed, so parallel jobs can share one
    # Execution settings (README, "Speed"): several steps per compiled call, XLA as Keras decides, and on
    # TensorFlow an input pipeline built once per run instead of once per epoch.
    steps_per_execution: int = bounded(32, 1)
    jit_compile: Any = one_of("auto", "auto", True, False)
    pipeline: str = one_of("auto", "auto", "arrays", "tf_data")
    # JAX: compiled XLA programs kept on disk for later runs of the same programs (runner/runtime/backend.py).
    compile_cache: bool = True
    # Keras's backend (runner/runtime/backend_choice.py); None: KERAS_BACKEND from the environment, else TensorFlow.
    backend: Optional[str] = one_of(None, None, "tensorflow", "jax", "torch")
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    resume: Optional[str] = None  # an interrupted run to continue: its folder or MLflow run id (runner/run/resume.py)
    tensorboard: bool = False  # TensorBoard logs (scalars, weight histograms, graph) in <run>/tensorboard


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str = "${dataset.name}"
    run_name: Optional[str] = None  # None: <preset>-<timestamp>
    artifact_location: Optional[str] = None  # None: mlartifacts/ beside a local SQLite store
    log_model: bool = True  # model/model.keras and an MLflow Model (runner/tracking_model.py)
    register_as: Optional[str] = None  # a registered model's name: each run adds a version of it
    system_metrics: bool = True  # CPU, memory, GPU... sampled into system/* metrics while the run lasts


@dataclass
class EvaluationConfig:
    threshold: float = bounded(0.5, 0.0, 1.0, lo_open=True, hi_open=True)  # binary operating point
    plots: bool = True


@dataclass
class ObjectiveConfig:
    """What a search optimises: a metric the run logs (per epoch or final) and whether lower is better."""

    metric: str = "${trainer.checkpoint.monitor}"
    direction: str = one_of("auto", "auto", "minimize", "maximize")  # auto: maximize accuracy/auc/f1/...


@dataclass
class TrialLink:
    """The Optuna trial a job is, set by the runner_optuna sweeper's overrides; all null outside a search."""

    number: Optional[int] = bounded(None, 0)
    id: Optional[int] = bounded(None, 0)
    study: Optional[str] = None
    storage: Optional[str] = None


@dataclass
class DiagnosticsConfig:
    """Which diagnostic checks run (runner/run/diagnostics_session.py): none, quick (before training) or full (+ during/after)."""

    suite: str = one_of("none", "none", "quick", "full")
    disable: List[str] = field(default_factory=list)  # check names (preflight.gradient_check) or stages (monitor)
    thresholds: Dict[str, float] = field(default_factory=dict)  # check name -> threshold override
    probe_samples: int = bounded(256, 8)
    slices: Optional[str] = "auto"  # auto: the data set's natural slice; null: none; else a Split.meta column
    stop_on_fail: bool = False  # a preflight FAIL stops the run before training
    prune_on_cause: bool = False  # a sweep trial whose diagnosis is a FAIL-level cause is pruned (before training
    # on a preflight diagnosis, after epoch 1 when the loss blows up)
    seed: int = bounded(0, 0)


@dataclass
class FaultConfig:
    """A seeded bug injected into the loaded arrays (runner/run/faults.py); the fault presets set it."""

    name: Optional[str] = None
    description: str = ""
    expect: List[str] = field(default_factory=list)  # checks that must trip (WARN/FAIL) on this fault
    # the diagnosis (runner/diagnostics/causes.py CAUSES) the fault should get: one cause or a list of them
    cause: Any = None
    shuffle_labels: bool = False  # permute the training targets: no signal left
    input_scale: float = bounded(1.0, 0.0, lo_open=True)  # multiply every input (x1000, or 1/255 twice)
    duplicate_into_test: float = bounded(0.0, 0.0, 1.0)  # share of test rows replaced by training rows
    seed: int = bounded(0, 0)


@dataclass
class RunConfig:
    name: str = "custom"  # the experiment preset; presets set it
    description: str = ""
    # What the console shows (runner/runtime/console.py): quiet (warnings, errors, summaries), normal, or debug
    # (also TensorFlow's C++ log, every Python warning, the libraries' INFO lines).
    verbosity: str = one_of("normal", "quiet", "normal", "debug")
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    trial: TrialLink = field(default_factory=TrialLink)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)


GROUP_SCHEMAS = {
    "dataset": {
        "wine": WineDataset,
        "seizure": SeizureDataset,
        "mnist": MnistDataset,
        "synthetic": SyntheticDataset,
        "images": ImagesDataset,
        "table": TableDataset,
        "sequence": SequenceDataset,
        "arrays": ArraysDataset,
    },
    "model": {"mlp": MlpModel, "bilstm": BiLstmModel, "cnn": CnnModel, "custom": CustomModel, "saved": SavedModel},
    "optimizer": {
        "adam": AdamOptimizer,
        "sgd": SgdOptimizer,
        "rmsprop": RmspropOptimizer,
        "adadelta": AdadeltaOptimizer,
    },
}


def register_configs() -> None:
    """Store the schemas where the YAML files' defaults lists refer to them (``/schema/<group>/<name>``)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=schema)


# ---------------------------------------------------------------- validation
