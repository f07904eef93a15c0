"""The ``model`` group's schemas: one dataclass per option in conf/model/."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from runner.config.fields import _list, bounded, one_of, required


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


@dataclass
class CnnModel(ModelBase):  # conv blocks (models/cnn.py), then the dense hidden_units
    architecture: str = one_of("cnn", "cnn")
    hidden_units: List[int] = _list(128)
    conv_filters: List[int] = _list(32, 64)
    kernel_size: int = bounded(3, 1)
    pool_size: int = bounded(2, 1)
    global_pooling: bool = False  # global average pooling instead of Flatten before the dense layers


@dataclass
class UserModelBase:
    """A network the runner does not build from layer settings (docs/guide/own-model.md): only the settings
    it acts on itself apply; the output head is checked against the task when the network exists."""

    architecture: str = MISSING
    loss: Optional[str] = None  # None: the task's default loss, as for the built-in architectures
    allow_unusual_output: bool = False


@dataclass
class CustomModel(UserModelBase):
    """Built by the user's function ``build(input_shape=, output_units=, output_activation=, **options)``."""

    architecture: str = one_of("custom", "custom")
    builder: str = required("my_package.my_module:build")
    # Packages (or modules) whose code this config trusts; $RUNNER_TRUSTED_TARGETS prefixes are trusted too.
    trusted_modules: List[str] = field(default_factory=list)
    options: Dict[str, Any] = field(default_factory=dict)  # the builder's other keyword arguments


@dataclass
class SavedModel(UserModelBase):
    """A saved Keras file, loaded in safe mode without its training state: the run compiles it afresh."""

    architecture: str = one_of("saved", "saved")
    path: str = required("path/to/model.keras")
