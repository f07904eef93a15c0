"""Dataclass schemas for every config group, registered in Hydra's ConfigStore, with their declared ranges.

Types and unknown keys are checked by OmegaConf while Hydra composes the config (YAML and command line
alike).  Ranges and choices are declared next to each field with ``bounded``/``one_of`` and checked by
``validate`` (runner/config/validation.py) before anything is loaded or trained, because Hydra does not run
``__post_init__``.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


def bounded(default, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """A numeric field whose value must lie in the given interval (None = unbounded side)."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open)})


def one_of(default, *choices):
    """A field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


def _list(*values):
    return field(default_factory=lambda: list(values))


# ---------------------------------------------------------------- dataset group


@dataclass
class DatasetFiles:
    """Options shared by the data sets read from files."""

    name: str = MISSING
    data_dir: Optional[str] = None  # None: $RUNNER_DATA_DIR, then the user cache (downloads go there)
    scale: str = one_of("standard", "standard", "none")
    max_samples: Optional[int] = bounded(None, 1)  # cap on rows per split, for quick runs
    split_seed: int = bounded(42, 0)  # seeds the random split and the max_samples subsample
    download: bool = True
    verify_checksum: bool = True
    cache: bool = True  # reuse the parsed arrays saved under <user cache>/parsed while the source files are unchanged


@dataclass
class HeldOutDataset(DatasetFiles):
    """Data sets shipped as one table: held-out splits are cut from it unless the book's split is present."""

    split: str = one_of("auto", "auto", "book", "random")  # auto: the book's split where present
    val_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    test_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)


@dataclass
class WineDataset(HeldOutDataset):
    name: str = "wine"
    target: str = "alcohol"
    scale_target: bool = True


@dataclass
class SeizureDataset(HeldOutDataset):
    name: str = "seizure"
    file: str = "auto"  # auto: the UCI layout, then the Kaggle layout


@dataclass
class MnistDataset(DatasetFiles):
    """The split is fixed by the file: the last ``val_size`` training images are the validation split."""

    name: str = "mnist"
    scale: str = one_of("none", "standard", "none")  # pixels are divided by 255 in any case
    flatten: bool = True
    val_size: int = bounded(5000, 1)


@dataclass
class SyntheticDataset:
    name: str = "synthetic"
    task: str = one_of("binary", "regression", "binary", "multiclass", "xor", "sequence")
    n_samples: int = bounded(1000, 10)
    n_features: int = bounded(8, 1)
    n_classes: int = bounded(3, 2)
    seq_len: int = bounded(32, 2)
    noise: float = bounded(0.1, 0.0)
    seed: int = bounded(0, 0)
    split_seed: int = bounded(42, 0)
    val_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    test_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    scale: str = one_of("standard", "standard", "none")
    max_samples: Optional[int] = bounded(None, 1)


# ---------------------------------------------------------------- model group


@dataclass
class ModelBase:
    architecture: str = MISSING
    hidden_units: List[int] = _list(32)
    activation: str = "relu"
    kernel_initializer: str = "glorot_uniform"
    kernel_initializer_args: Dict[str, Any] = field(default_factory=dict)
    bias_initializer: str = "zeros"
    bias_initializer_args: Dict[str, Any] = field(default_factory=dict)
    dropout: float = bounded(0.0, 0.0, 1.0, hi_open=True)
    l2: float = bounded(0.0, 0.0)
    batch_norm: bool = False
    # None: chosen from the task (1 linear / 1 sigmoid / k softmax; MSE-free defaults below)
    output_units: Optional[int] = bounded(None, 1)
    output_activation: Optional[str] = None
    loss: Optional[str] = None  # None: mae / binary_crossentropy / sparse_categorical_crossentropy
    # An output or loss that does not suit the task is refused unless this is true (the seeded-fault presets)
    allow_unusual_output: bool = False


@dataclass
class MlpModel(ModelBase):
    architecture: str = one_of("mlp", "mlp")


@dataclass
class BiLstmModel(ModelBase):
    architecture: str = one_of("bilstm", "bilstm")
    hidden_units: List[int] = _list(16)
    lstm_units: List[int] = _list(32)
    bidirectional: bool = True
    recurrent_dropout: float = bounded(0.0, 0.0, 1.0, hi_open=True)


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
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    resume: Optional[str] = None  # an interrupted run to continue: its folder or MLflow run id (runner/run/resume.py)


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str = "${dataset.name}"
    run_name: Optional[str] = None  # None: <preset>-<timestamp>
    artifact_location: Optional[str] = None  # None: mlartifacts/ beside a local SQLite store
    log_model: bool = True


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
    "dataset": {"wine": WineDataset, "seizure": SeizureDataset, "mnist": MnistDataset, "synthetic": SyntheticDataset},
    "model": {"mlp": MlpModel, "bilstm": BiLstmModel},
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
