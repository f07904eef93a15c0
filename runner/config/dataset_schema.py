"""The ``dataset`` group's schemas: one dataclass per option in conf/dataset/."""

from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import MISSING

from runner.config.fields import _list, bounded, one_of, required


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


@dataclass
class ImagesDataset:  # a folder of class sub-folders (datasets/images.py), decoded once, read memory-mapped
    name: str = "images"
    path: str = required("/data/flowers")  # relative: under data_dir when set
    data_dir: Optional[str] = None
    image_size: List[int] = _list(64, 64)  # [height, width]: every image is resized to it
    color_mode: str = one_of("rgb", "rgb", "grayscale")
    scale: str = one_of("unit", "unit", "none")  # unit: pixels / 255 as float32; none: uint8 0-255
    split: str = one_of("auto", "auto", "folders", "random")  # auto: train/ val/ test/ folders when present
    split_seed: int = bounded(42, 0)
    val_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    test_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    max_samples: Optional[int] = bounded(None, 1)
    cache: bool = True  # keep the decoded arrays under <user cache>/parsed while the files are unchanged


@dataclass
class OwnDataset:
    """A user's own file (dataset=table | arrays | sequence; docs/guide/own-data.md): no download, no checksum."""

    name: str = MISSING
    path: str = required("my_data.csv")  # a file, or a glob of several (table, sequence); relative to the cwd
    # auto: decided from the target's values (stated in the run's data notes); multilabel: several 0/1 labels per row
    task: str = one_of("auto", "auto", "regression", "binary", "multiclass", "multilabel")
    scale: str = one_of("standard", "standard", "none")  # inputs, fitted on the training split only
    scale_target: bool = True  # regression: standardise the target on train (metrics also in its own unit)
    split_seed: int = bounded(42, 0)
    val_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    test_fraction: float = bounded(0.1, 0.0, 1.0, lo_open=True, hi_open=True)
    max_samples: Optional[int] = bounded(None, 1)
    cache: bool = True


@dataclass
class OwnTable(OwnDataset):
    """What the CSV/Parquet options share (table, sequence)."""

    target: Any = required("label")  # the column to predict, or a list of 0/1 label columns (multilabel; table only)
    missing: str = one_of("refuse", "refuse", "drop", "impute")  # impute: train median / most frequent value
    split_column: Optional[str] = None  # a column of train/val/test; None: a seeded split stratified on the target
    sep: str = ","
    encoding: str = "utf-8"
    decimal: str = "."


@dataclass
class TableDataset(OwnTable):
    name: str = "table"
    features: Optional[List[str]] = None  # None: every other column
    categorical: Optional[List[str]] = None  # one-hot encoded; None: the non-numeric columns


@dataclass
class SequenceDataset(OwnTable):
    """Rows of fixed-length series: columns ``feature_prefix``1..n, or ``steps`` columns from ``first_column``."""

    name: str = "sequence"
    feature_prefix: Optional[str] = None
    first_column: Optional[str] = None
    steps: Optional[int] = bounded(None, 1)  # None: every column from first_column on
    channels: Optional[int] = bounded(None, 1)  # values per step, side by side; None: 1


@dataclass
class ArraysDataset(OwnDataset):
    name: str = "arrays"
    path: str = required("my_data.npz")  # .npz, or the inputs' .npy beside target_path
    target_path: Optional[str] = None  # the targets' .npy when path is a .npy
    x_key: str = "x"  # the .npz arrays; x_train, y_train, x_val, ... are used instead when present
    y_key: str = "y"
