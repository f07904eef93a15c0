"""The declarative description of one training setup: everything a mutation operator may change."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("regression", "binary", "multiclass")
ARCHS = ("mlp", "cnn", "lstm", "gru")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adamw", "nadam")
LOSSES = ("mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")
INPUT_SCALINGS = ("standard", "max", "none")


@dataclass(frozen=True)
class Spec:
    """One small, healthy training setup.  Frozen so mutations are ``dataclasses.replace`` copies.

    Data: ``data`` names a generator in data.py, ``options`` its keyword options (a tuple of pairs, to stay
    hashable); ``rows`` are split 60/20/20 into train/val/test.  ``feature_scale`` > 1 spreads the raw
    feature columns over scales 1..feature_scale with offsets (real tabular data), which ``input_scaling``
    (fitted on train) undoes; ``scale_eval`` False applies that scaler to train only.  ``target_scaling``
    standardises regression targets with train statistics.  ``output_units`` 0: derived from task and loss.
    ``min_score`` is the floor a healthy run reaches (balanced accuracy, or R^2 for regression).
    """

    name: str
    task: str
    data: str
    rows: int
    options: tuple = ()
    feature_scale: float = 1.0
    input_scaling: str = "standard"
    scale_eval: bool = True
    target_scaling: bool = False
    shuffle_labels: bool = False
    arch: str = "mlp"
    conv: tuple = ()
    hidden: tuple = (32,)
    hidden_activation: str = "relu"
    output_activation: str = "sigmoid"
    output_units: int = 0
    loss: str = "binary_crossentropy"
    from_logits: bool = False
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 32
    epochs: int = 20
    initializer: str = "glorot_uniform"
    dropout: float = 0.0
    l2: float = 0.0
    functional: bool = False
    min_score: float = 0.8

    def __post_init__(self):
        for value, allowed in (
            (self.task, TASKS),
            (self.arch, ARCHS),
            (self.optimizer, OPTIMIZERS),
            (self.loss, LOSSES),
            (self.input_scaling, INPUT_SCALINGS),
        ):
            if value not in allowed:
                raise ValueError(f"{self.name}: {value!r} not in {allowed}")

    @property
    def option_dict(self) -> dict:
        return dict(self.options)

    @property
    def n_classes(self) -> int:
        return 1 if self.task == "regression" else int(self.option_dict.get("classes", 2))

    @property
    def label_encoding(self) -> str:
        """How y is fed to the loss: ``float`` (regression), ``binary`` (0/1 column), ``sparse``, ``onehot``."""
        if self.task == "regression":
            return "float"
        if self.loss == "sparse_categorical_crossentropy":
            return "sparse"
        if self.loss == "categorical_crossentropy" and self.task == "multiclass":
            return "onehot"
        return "binary" if self.task == "binary" else "onehot"

    @property
    def units(self) -> int:
        if self.output_units:
            return self.output_units
        if self.task == "binary" and self.label_encoding == "binary":
            return 1
        return max(2, self.n_classes) if self.task != "regression" else 1

    @property
    def train_steps(self) -> int:
        """Optimizer steps of one training run: a proxy of its CPU cost."""
        train_rows = int(self.rows * 0.6)
        return -(-train_rows // self.batch_size) * self.epochs
