"""MNIST digits from a Keras-layout mnist.npz: fixed train/val/test split, pixels scaled to [0, 1]."""

from __future__ import annotations

import zipfile
from dataclasses import asdict

import numpy as np

from .cache import cached
from .containers import Dataset, Split
from .errors import DataFormatError
from .fetch import FoundFile, checksum_notes, find_file
from .options import CommonOptions
from .specs import SPECS
from .splitting import finalize

FILE = "mnist/mnist.npz"
IMAGE_SHAPE = (28, 28)
KEYS = ("x_train", "y_train", "x_test", "y_test")
CLASS_NAMES = [str(d) for d in range(SPECS["mnist"].n_classes)]
FEATURE_NAMES = [f"pixel_{r}_{c}" for r in range(IMAGE_SHAPE[0]) for c in range(IMAGE_SHAPE[1])]


def load_mnist(*, flatten: bool = True, val_size: int = 5000, scale: str = "none", **common) -> Dataset:
    """MNIST: the last val_size training images form the validation split; the test file split is kept."""
    # The split is fixed by the file. Generic callers may pass every common option, so the fractions
    # are accepted at their defaults, but a changed value is refused rather than silently ignored.
    defaults = CommonOptions()
    for name in ("val_fraction", "test_fraction"):
        if common.get(name, getattr(defaults, name)) != getattr(defaults, name):
            raise ValueError(f"mnist has a fixed split: {name} is not used; set val_size (default 5000) instead")
    if common.pop("split", "auto") not in ("auto", "fixed"):
        raise ValueError("mnist has a fixed split from its file: split must be 'auto' or 'fixed'")
    opts = CommonOptions(scale=scale, **common)

    found = find_file(
        FILE,
        data_dir=opts.data_dir,
        download=opts.download,
        verify_checksum=opts.verify_checksum,
        hint="Expected a Keras-layout npz with arrays x_train, y_train, x_test, y_test.",
    )
    options = {"flatten": flatten, "val_size": val_size, **asdict(opts)}
    return cached("mnist", options, [found], lambda: parse_mnist(found, opts, flatten, val_size), opts.cache)


def parse_mnist(found: FoundFile, opts: CommonOptions, flatten: bool, val_size: int) -> Dataset:
    """Read and check the npz, cut the validation rows from the end of the training arrays, scale."""
    arrays = read_npz(found)
    divisors = {
        part: pixel_divisor(arrays[f"x_{part}"], f"{found.path}: array 'x_{part}'") for part in ("train", "test")
    }
    n_train = len(arrays["x_train"])
    if not 1 <= val_size < n_train:
        raise ValueError(f"val_size={val_size}: expected 1 <= val_size < {n_train} (training images in {found.path})")

    train_all = _as_split(arrays["x_train"], arrays["y_train"], flatten, divisors["train"])
    cut = n_train - val_size
    splits = {
        "train": train_all.take(np.arange(cut)),
        "val": train_all.take(np.arange(cut, n_train)),
        "test": _as_split(arrays["x_test"], arrays["y_test"], flatten, divisors["test"]),
    }
    splits, feature_scaling, notes = finalize(splits, opts, stratify=True)
    notes = [
        f"fixed split: train = first {cut} rows of x_train, val = last {val_size}, test = x_test; "
        f"{pixel_note(arrays, divisors)}; meta['index'] is the row in the npz array"
    ] + notes
    return Dataset(
        name="mnist",
        task=SPECS["mnist"].task,
        **splits,
        feature_names=list(FEATURE_NAMES),
        target_name="digit",
        class_names=list(CLASS_NAMES),
        split_source="fixed",
        files={str(found.path): found.sha256},
        feature_scaling=feature_scaling,
        target_scaling=None,
        notes=notes + checksum_notes([found]),
    )


def _as_split(images: np.ndarray, labels: np.ndarray, flatten: bool, divisor: float) -> Split:
    x = images.astype(np.float32) / np.float32(divisor)
    if flatten:
        x = x.reshape(len(x), -1)
    return Split(x, labels.astype(np.int64), {"index": np.arange(len(x))})


def read_npz(found: FoundFile) -> dict[str, np.ndarray]:
    """The four arrays, after checking the archive, keys, shapes, dtypes and labels."""
    path = found.path
    # np.load would try to unpickle a non-zip file and fail with a misleading message.
    if not zipfile.is_zipfile(path):
        raise DataFormatError(
            f"{path}: not a zip (.npz) archive; the file is corrupt or truncated. Delete it and download it again."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise DataFormatError(f"{path}: missing array(s) {missing}; the archive holds {sorted(archive.files)}")
            arrays = {key: archive[key] for key in KEYS}
    except DataFormatError:
        raise
    except Exception as exc:  # zlib, zipfile and numpy each raise their own types for damaged members
        raise DataFormatError(f"{path}: could not read the npz archive ({type(exc).__name__}: {exc})") from None
    check_arrays(arrays, str(path))
    return arrays


def check_arrays(arrays: dict[str, np.ndarray], path: str) -> None:
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        numeric = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or not numeric:
            raise DataFormatError(
                f"{path}: array 'x_{part}' has shape {x.shape} and dtype {x.dtype}; expected (n, 28, 28) of numbers "
                "(uint8 in the Keras file)"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataFormatError(
                f"{path}: array 'y_{part}' has shape {y.shape} and dtype {y.dtype}; expected (n,) of integers"
            )
        if len(y) != len(x):
            raise DataFormatError(f"{path}: 'x_{part}' has {len(x)} images but 'y_{part}' has {len(y)} labels")
        bad = np.flatnonzero((y < 0) | (y > 9))
        if len(bad):
            raise DataFormatError(
                f"{path}: 'y_{part}'[{bad[0]}] = {y[bad[0]]} is not a digit 0-9 ({len(bad)} bad labels in all)"
            )


def pixel_divisor(images: np.ndarray, where: str) -> float:
    """What the pixels are divided by to reach [0, 1]: 255 for values in [0, 255] (the Keras file's uint8, or
    any numbers in that range), 1 for values already in [0, 1]; any other range is refused."""
    if images.dtype == np.uint8 or images.size == 0:
        return 255.0
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataFormatError(f"{where} holds NaN or infinite pixel values; expected numbers in [0, 255] or [0, 1]")
    if low < 0 or high > 255:
        raise DataFormatError(
            f"{where} has pixel values in [{low:g}, {high:g}]; expected [0, 255] (as the Keras file's uint8) or [0, 1]"
        )
    return 1.0 if high <= 1 else 255.0


def pixel_note(arrays: dict[str, np.ndarray], divisors: dict[str, float]) -> str:
    """How the pixels were scaled to [0, 1], saying so when the file is not the Keras file's uint8."""
    parts = []
    for part, divisor in divisors.items():
        dtype = arrays[f"x_{part}"].dtype
        if dtype == np.uint8:
            parts.append(f"x_{part} pixels divided by 255")
        elif divisor == 1:
            parts.append(f"x_{part} pixels ({dtype}) already in [0, 1], kept as they are")
        else:
            parts.append(f"x_{part} pixels ({dtype}, in [0, 255]) divided by 255")
    if all(arrays[f"x_{part}"].dtype == np.uint8 for part in divisors):
        return "pixels divided by 255"
    return "; ".join(parts)
