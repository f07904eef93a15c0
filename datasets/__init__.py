"""Data sets for the experiment runner: locate, verify, parse, split and scale (numpy/pandas only).

``import datasets`` is light: the facts of each data set (``specs``) and the errors load at once, the loaders
and their numpy/pandas/scikit-learn only when a name below that needs them is first used.
"""

from importlib import import_module

from .errors import ChecksumError, DataError, DataFormatError, DataNotFoundError
from .specs import DATASET_NAMES, HELD_OUT, SPECS, SPLITS, DatasetSpec, spec_for, spec_of

# Names served on first use, by the module that defines them (PEP 562).
_LAZY = {
    "Dataset": "containers",
    "Split": "containers",
    "default_cache_dir": "fetch",
    "load_dataset": "registry",
    "option_names": "registry",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "load_dataset",
    "Dataset",
    "DatasetSpec",
    "Split",
    "DataError",
    "DataNotFoundError",
    "DataFormatError",
    "ChecksumError",
    "DATASET_NAMES",
    "HELD_OUT",
    "SPECS",
    "SPLITS",
    "default_cache_dir",
    "option_names",
    "spec_for",
    "spec_of",
]
