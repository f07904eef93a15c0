"""Networks the runner does not build from layer settings: a user's builder function (``model=custom``) or a
saved Keras file (``model=saved``), refused unless they fit the data and the task as the built-in ones do.

The builder contract (docs/guide/own-model.md)::

    def build(input_shape: tuple[int, ...], output_units: int, output_activation: str, **options) -> keras.Model

``input_shape`` is one row's shape (no batch axis); ``output_units`` and ``output_activation`` are the task's
output head (1 linear, 1 sigmoid, k softmax: models/losses.py); ``options`` are ``model.options``. The run
compiles the returned network with its own optimizer and loss, as it does a loaded one.

The builder's package is checked against the trusted ones (runner/runtime/security.py) when the command line
composes the config, before TensorFlow loads, and again here just before the import: programs that hand
``run_job`` a config go through this check alone.
"""

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from models.losses import output_head
from runner.config.model_source import BUILDER_FORMAT
from runner.config.schema import CustomModel, SavedModel
from runner.errors import ConfigError
from runner.run import model_io
from runner.runtime.security import untrusted_builder

USER_MODELS = (CustomModel, SavedModel)
SHOWN_PATH_ENTRIES = 6  # of sys.path, in the error for a builder module that is not found


def build_user_network(model: CustomModel | SavedModel, data) -> keras.Model:
    """The network of a ``model=custom`` or ``model=saved`` spec, checked against ``data``'s rows and task."""
    units, activation = output_head(data.task, data.n_classes)
    if isinstance(model, CustomModel):
        network = call_builder(model, tuple(data.input_shape), units, activation)
        source = f"model.builder={model.builder}"
    else:
        network = load_saved(model.path)
        source = f"model.path={model.path}"
    check_fit(network, source, data, units, model.allow_unusual_output)
    return network


def import_builder(builder: str, trusted_modules=()) -> Callable:
    """The function ``package.module:function`` names, imported only once its package is trusted."""
    match = BUILDER_FORMAT.fullmatch(str(builder))
    if not match:
        raise ConfigError(f"model.builder={builder!r} is not of the form package.module:function")
    refusal = untrusted_builder(builder, trusted_modules)
    if refusal:
        raise ConfigError(refusal)
    module_name, function = match["module"], match["function"]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(_not_found(builder, module_name, error)) from error
    found = getattr(module, function, None)
    if not callable(found):
        where = getattr(module, "__file__", None) or module_name
        raise ConfigError(f"model.builder={builder}: {where} has no function {function!r}")
    return found


def _not_found(builder: str, module_name: str, error: ModuleNotFoundError) -> str:
    missing = error.name or module_name
    if module_name != missing and not module_name.startswith(f"{missing}."):
        # The builder's module was found; something it imports is not installed.
        return f"model.builder={builder}: importing {module_name} failed: {error}"
    top = module_name.split(".")[0]
    shown = ", ".join(entry or "." for entry in sys.path[:SHOWN_PATH_ENTRIES])
    more = ", ..." if len(sys.path) > SHOWN_PATH_ENTRIES else ""
    return (
        f"model.builder={builder}: no module named {missing!r}. Python looks for {top} in the folders of "
        f"sys.path ({shown}{more}): install its package (pip install -e <its project>) or add the folder "
        f"that holds {top} to PYTHONPATH."
    )


def call_builder(model: CustomModel, input_shape: tuple, units: int, activation: str) -> keras.Model:
    """The network the user's builder returns, called as the contract in this module's docstring says."""
    build = import_builder(model.builder, model.trusted_modules)
    arguments = {"input_shape": input_shape, "output_units": units, "output_activation": activation}
    arguments |= dict(model.options)
    try:
        inspect.signature(build).bind(**arguments)
    except TypeError as error:
        raise ConfigError(
            f"model.builder={model.builder} cannot be called with {', '.join(arguments)}: {error}. A builder "
            f"takes input_shape, output_units and output_activation, and each key of model.options, as keyword "
            f"arguments"
        ) from None
    except ValueError:
        pass  # no signature to read (a C function): the call itself reports a mismatch
    network = build(**arguments)
    if not isinstance(network, keras.Model):
        raise ConfigError(
            f"model.builder={model.builder} returned {type(network).__module__}.{type(network).__qualname__}, "
            f"not a keras.Model: return the model itself, uncompiled (keras.Model(inputs, outputs))"
        )
    return network


def load_saved(path: str) -> keras.Model:
    """The network saved at ``path``, in Keras's safe mode; a file that needs code to load is refused."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.path={path!r}: no such file (relative paths start from {Path.cwd()})")
    try:
        return model_io.load_network(file)
    except model_io.UntrustedModelError as error:
        raise ConfigError(
            f"model.path={path}: the file holds Python code (a Lambda layer with a Python lambda, or the like) "
            f"that would run while it loads, and model=saved loads files in Keras's safe mode only. Save the "
            f"network without it, or build it with model=custom from a package you trust."
        ) from error
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"model.path={path}: Keras could not load it ({error}). A layer class of your own is not known to "
            f"model=saved: build such a network with model=custom from its package."
        ) from error


def check_fit(network: keras.Model, source: str, data, units: int, allow_unusual_output: bool) -> None:
    """Refuse a network whose input does not take the data's rows, or whose output is not the task's head."""
    inputs, outputs = _io_shapes(network, source, tuple(data.input_shape))
    rows = (None, *data.input_shape)
    if len(inputs) != len(rows) or any(have not in (None, need) for have, need in zip(inputs[1:], rows[1:])):
        raise ConfigError(
            f"{source}: the model takes inputs of shape {_shape(inputs)}, but the rows of {data.name} have "
            f"shape {_shape(rows)}"
        )
    if allow_unusual_output or (len(outputs) == 2 and outputs[-1] == units):
        return
    task = f"{data.task} task with {data.n_classes} classes" if data.task == "multiclass" else f"{data.task} task"
    raise ConfigError(
        f"{source}: the model outputs shape {_shape(outputs)}, but a {task} needs {_shape((None, units))}. "
        f"Set model.allow_unusual_output=true to train it anyway."
    )


def _io_shapes(network: keras.Model, source: str, row_shape: tuple) -> tuple[tuple, tuple]:
    """The input and output shapes (batch axis first) of a one-input, one-output network."""
    try:
        inputs, outputs = network.input_shape, network.output_shape
    except AttributeError:  # a subclassed model, or a Sequential without an Input: known once called
        try:
            result = network(np.zeros((1, *row_shape), "float32"))
        except Exception as error:
            raise ConfigError(
                f"{source}: the model cannot be called on a batch of rows of shape {_shape(row_shape)}: {error}"
            ) from error
        inputs = (None, *row_shape)
        outputs = list(result) if isinstance(result, (list, tuple)) else result
        outputs = outputs if isinstance(outputs, (list, dict)) else tuple(outputs.shape)
    for kind, shape in (("inputs", inputs), ("outputs", outputs)):
        if isinstance(shape, (list, dict)):
            raise ConfigError(f"{source}: the model has {len(shape)} {kind}; the runner trains one input, one output")
    return tuple(inputs), (None, *tuple(outputs)[1:])


def _shape(shape) -> str:
    return "(" + ", ".join("batch" if dim is None else str(dim) for dim in shape) + ")"
