"""load_dataset: one entry point that dispatches by name and checks option names."""

from __future__ import annotations

import inspect

from .containers import Dataset
from .mnist import load_mnist
from .options import common_option_names
from .seizure import load_seizure
from .synthetic import load_synthetic
from .wine import load_wine

LOADERS = {"wine": load_wine, "seizure": load_seizure, "mnist": load_mnist, "synthetic": load_synthetic}
DATASET_NAMES = tuple(LOADERS)


def option_names(name: str) -> list[str]:
    """Every option load_dataset(name, ...) accepts: the loader's own plus the common ones."""
    params = inspect.signature(_loader(name)).parameters.values()
    own = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return own + [n for n in common_option_names() if n not in own]


def load_dataset(name: str, **options) -> Dataset:
    """Load a data set by name ("wine", "seizure", "mnist", "synthetic") with keyword options."""
    valid = option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"load_dataset({name!r}): unknown option(s) {', '.join(unknown)}; valid options are {', '.join(valid)}"
        )
    return _loader(name)(**options)


def _loader(name: str):
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return LOADERS[name]
