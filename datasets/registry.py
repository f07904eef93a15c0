"""load_dataset: one entry point that dispatches by name (datasets/specs.py) and checks option names."""

from __future__ import annotations

import importlib
import inspect

from .containers import Dataset
from .options import common_option_names
from .specs import DATASET_NAMES, SPECS

__all__ = ["DATASET_NAMES", "load_dataset", "option_names"]


def option_names(name: str) -> list[str]:
    """Every option load_dataset(name, ...) accepts: the loader's own plus the common ones."""
    params = inspect.signature(_loader(name)).parameters.values()
    own = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return own + [n for n in common_option_names() if n not in own]


def load_dataset(name: str, **options) -> Dataset:
    """Load a data set by name (one of DATASET_NAMES: wine, seizure, mnist, synthetic) with keyword options."""
    valid = option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"load_dataset({name!r}): unknown option(s) {', '.join(unknown)}; valid options are {', '.join(valid)}"
        )
    return _loader(name)(**options)


def _loader(name: str):
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    module, function = SPECS[name].loader.split(":")
    return getattr(importlib.import_module(module), function)
