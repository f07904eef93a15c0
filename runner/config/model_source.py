"""Config checks of the networks the runner does not build itself: a user's builder (``model=custom``) and a
saved file (``model=saved``).

What can be told from the config alone is checked here, before TensorFlow loads: the builder's
``module:function`` form, the names in ``trusted_modules``, the keyword arguments the runner passes itself,
and the saved file's kind. Whether the builder is trusted is decided by runner/runtime/security.py
(it owns ``$RUNNER_TRUSTED_TARGETS``); the import, the file itself and the shapes are checked when the
network is built (runner/run/user_models.py), as a data set's files are when it loads.
"""

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner.config.schema import CustomModel, SavedModel

DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
BUILDER_FORMAT = re.compile(rf"(?P<module>{DOTTED_NAME.pattern}):(?P<function>[A-Za-z_]\w*)")
# The builder's arguments that the runner fills in from the data: an option may not set them too.
RUNNER_ARGUMENTS = ("input_shape", "output_units", "output_activation")
SAVED_SUFFIXES = (".keras", ".h5", ".hdf5")  # what keras.saving.load_model reads in Keras 3


def model_source_problems(model) -> list[str]:
    """What is wrong with a ``model=custom`` or ``model=saved`` node that the config alone can tell."""
    if not isinstance(model, DictConfig):
        return []
    schema = OmegaConf.get_type(model)
    if schema is CustomModel:
        return _custom_problems(model)
    if schema is SavedModel:
        return _saved_problems(model)
    return []


def _custom_problems(model: DictConfig) -> list[str]:
    problems = []
    if not OmegaConf.is_missing(model, "builder") and not BUILDER_FORMAT.fullmatch(model.builder):
        problems.append(
            f"model.builder={model.builder!r} is not of the form package.module:function "
            f"(e.g. my_package.my_module:build)"
        )
    problems += [
        f"model.trusted_modules has {name!r}, which is no module name (e.g. my_package or my_package.nets)"
        for name in model.trusted_modules
        if not DOTTED_NAME.fullmatch(str(name))
    ]
    problems += [
        f"model.options.{name} is set, but the runner passes {name} to the builder itself (from the data and "
        f"the task); remove it"
        for name in RUNNER_ARGUMENTS
        if name in model.options
    ]
    return problems


def _saved_problems(model: DictConfig) -> list[str]:
    if OmegaConf.is_missing(model, "path"):
        return []  # reported as unset by the schema check
    if Path(model.path).suffix.lower() not in SAVED_SUFFIXES:
        return [
            f"model.path={model.path!r} is not a Keras model file: Keras 3 loads {', '.join(SAVED_SUFFIXES)} "
            f"files (a TensorFlow SavedModel folder is not one); save the model with model.save('model.keras')"
        ]
    return []
