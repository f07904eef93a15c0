"""Data sets for the experiment runner: locate, verify, parse, split and scale (numpy/pandas only)."""

from .containers import Dataset, Split
from .errors import ChecksumError, DataError, DataFormatError, DataNotFoundError
from .fetch import default_cache_dir
from .registry import DATASET_NAMES, load_dataset, option_names

__all__ = [
    "load_dataset",
    "Dataset",
    "Split",
    "DataError",
    "DataNotFoundError",
    "DataFormatError",
    "ChecksumError",
    "DATASET_NAMES",
    "default_cache_dir",
    "option_names",
]
