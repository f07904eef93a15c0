"""Bring your own arrays: a .npz file (arrays ``x`` and ``y``, or given splits ``x_train``, ``y_train``, ``x_val``,
...) or a pair of .npy files (``path`` and ``target_path``). Inputs may have any rank (images as N,H,W,C)."""

from __future__ import annotations

import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .cache import cached
from .containers import Dataset, Split
from .errors import DataFormatError
from .fetch import FoundFile
from .options import CommonOptions
from .specs import HELD_OUT, SPLITS
from .splitting import finalize
from .tablecode import listing
from .userdata import (
    cut_splits,
    encode_labels,
    encode_target,
    file_digests,
    locate,
    strata_of,
    target_record,
)
from .userdata import scale_target as standardise_target

_MAX_NAMED_FEATURES = 10_000  # beyond this (large images) feature names say nothing a shape does not


def load_arrays(
    *,
    path: str | None = None,
    target_path: str | None = None,
    x_key: str = "x",
    y_key: str = "y",
    task: str = "auto",
    scale_target: bool = True,
    **common,
) -> Dataset:
    """Arrays from .npz (or two .npy files); the given splits when the file has them, else a seeded split."""
    opts = CommonOptions(**common)
    found = _one(locate(path, "dataset.path"), "dataset.path")
    suffix = found.path.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise DataFormatError(f"{found.path}: dataset=arrays reads .npz or .npy files (for a CSV use dataset=table)")
    files = [found]
    if suffix == ".npy":
        if target_path is None:
            raise DataFormatError(f"{found.path} is a .npy file: name the targets' .npy file with dataset.target_path")
        files.append(_one(locate(target_path, "dataset.target_path"), "dataset.target_path"))
    own = {"x_key": x_key, "y_key": y_key, "task": task, "scale_target": scale_target}
    options = {"path": path, "target_path": target_path, **own, **asdict(opts)}
    return cached("arrays", options, files, lambda: parse_arrays(files, opts, **own), opts.cache)


def _one(found: list[FoundFile], key: str) -> FoundFile:
    if len(found) > 1:
        raise DataFormatError(f"{key} matches {len(found)} files ({found[0].path}, ...); name one file")
    return found[0]


def parse_arrays(
    files: list[FoundFile], opts: CommonOptions, x_key: str, y_key: str, task: str, scale_target: bool
) -> Dataset:
    given = read_arrays(files, x_key, y_key)  # split (or "all") -> (x, y, where the rows come from)
    names = list(given)
    ys = np.concatenate([given[name][1] for name in names])
    offsets = np.cumsum([0] + [len(given[name][1]) for name in names])

    def where(i: int) -> str:
        part = int(np.searchsorted(offsets, i, side="right")) - 1
        return f"{given[names[part]][2]}, row {i - offsets[part]}"

    target = _encoded(ys, task, y_key if "all" in given else "y_train/y_val/y_test", where, y_key)
    y_of = {name: target.y[offsets[k] : offsets[k + 1]] for k, name in enumerate(names)}
    splits, notes, source = _splits(given, y_of, target, opts)
    splits, feature_scaling, more = finalize(splits, opts, stratify=target.task != "regression")
    target_scaling = None
    if target.task == "regression" and scale_target:
        splits, target_scaling = standardise_target(splits)
    shape = list(splits["train"].x.shape[1:])
    scaling = None if feature_scaling is None else {k: feature_scaling[k] for k in ("mean", "std")}
    preprocessing = {"format": 1, "kind": "arrays", "shape": shape, "scaling": scaling}
    preprocessing["target"] = target_record(y_key, target, target_scaling)
    return Dataset(
        name="arrays",
        task=target.task,
        **splits,
        feature_names=_feature_names(x_key, shape),
        target_name=y_key,
        class_names=target.classes,
        split_source=source,
        files=file_digests(files),
        feature_scaling=feature_scaling,
        target_scaling=target_scaling,
        notes=target.notes + notes + more,
        preprocessing=preprocessing,
    )


def _encoded(ys: np.ndarray, task: str, name: str, where, y_key: str):
    """One target per row, or a 2-D y of 0/1 labels (multilabel): one label per column, named ``y_0``, ..."""
    if ys.ndim == 1:
        return encode_target(ys, task, name, where)
    return encode_labels(list(ys.T), [f"{y_key}_{k}" for k in range(ys.shape[1])], task, where)


def _splits(given: dict, y_of: dict, target, opts: CommonOptions) -> tuple[dict[str, Split], list[str], str]:
    """The given splits, with any missing held-out split cut from train; or a seeded split of all rows."""
    base = "all" if "all" in given else "train"
    x = given[base][0]
    y = y_of[base]
    wanted = HELD_OUT if base == "all" else tuple(s for s in HELD_OUT if s not in given)
    splits = {name: Split(given[name][0], y_of[name], _rows(len(y_of[name]))) for name in given if name != base}
    if not wanted:
        return {**splits, "train": Split(x, y, _rows(len(y)))}, ["splits given in the file"], "fixed"
    smallest = int(round(len(y) * min(getattr(opts, f"{s}_fraction") for s in wanted)))
    parts, note = cut_splits(len(y), opts, strata_of(target, smallest), wanted)
    whole = Split(x, y, _rows(len(y)))
    splits.update({name: whole.take(index) for name, index in parts.items()})
    if base == "train":
        note = f"{', '.join(wanted)} cut from the given training rows: {note}"
    return {name: splits[name] for name in SPLITS}, [note], "random" if base == "all" else "fixed"


def _rows(n: int) -> dict[str, np.ndarray]:
    return {"row_id": np.arange(1, n + 1)}


def _feature_names(x_key: str, shape: list[int]) -> list[str]:
    if int(np.prod(shape)) > _MAX_NAMED_FEATURES:
        return []
    return [f"{x_key}[{','.join(str(i) for i in index)}]" for index in np.ndindex(*shape)]


# ---------------------------------------------------------------- reading and checking


def read_arrays(files: list[FoundFile], x_key: str, y_key: str) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """{"all": (x, y, origin)} or the given {"train": ..., "val": ..., "test": ...}, checked."""
    if len(files) == 2:
        x = _load(files[0].path, None)
        y = _load(files[1].path, None)
        return {"all": _checked(x, y, f"{files[0].path}", f"{files[1].path}")}
    path = files[0].path
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {key: _load(path, key, archive) for key in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: could not read as .npz: {exc}") from None
    if "x_train" in stored:
        return _given_splits(path, stored)
    for key, option in ((x_key, "dataset.x_key"), (y_key, "dataset.y_key")):
        if key not in stored:
            raise DataFormatError(
                f"{path}: no array {key!r} ({option}); the file holds {listing(stored)} "
                "(given splits are named x_train, y_train, x_val, y_val, x_test, y_test)"
            )
    return {"all": _checked(stored[x_key], stored[y_key], f"{path}[{x_key!r}]", f"{path}[{y_key!r}]")}


def _load(path: Path, key: str | None, archive=None) -> np.ndarray:
    try:
        return np.asarray(archive[key]) if archive is not None else np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which a data file must not run
        where = f"{path}[{key!r}]" if key else str(path)
        raise DataFormatError(f"{where}: cannot be read without pickle ({exc}); save plain numeric arrays") from None


def _given_splits(path: Path, stored: dict) -> dict:
    given = {}
    for split in SPLITS:
        x_key, y_key = f"x_{split}", f"y_{split}"
        if (x_key in stored) != (y_key in stored):
            have, lack = (x_key, y_key) if x_key in stored else (y_key, x_key)
            raise DataFormatError(f"{path}: has {have!r} but no {lack!r}; a given split needs both")
        if x_key in stored:
            given[split] = _checked(stored[x_key], stored[y_key], f"{path}[{x_key!r}]", f"{path}[{y_key!r}]")
    if "train" not in given:
        raise DataFormatError(f"{path}: given splits need x_train and y_train")
    shape, labels = given["train"][0].shape[1:], given["train"][1].shape[1:]
    for split, (x, y, origin) in given.items():
        if x.shape[1:] != shape:
            raise DataFormatError(f"{origin}: rows of shape {x.shape[1:]}, but x_train's are {shape}")
        if y.shape[1:] != labels:
            raise DataFormatError(
                f"{path}['y_{split}']: targets of shape {y.shape[1:]} per row, y_train's are {labels}"
            )
    return given


def _checked(x: np.ndarray, y: np.ndarray, x_origin: str, y_origin: str) -> tuple[np.ndarray, np.ndarray, str]:
    if x.dtype.kind not in "biuf":
        raise DataFormatError(f"{x_origin}: dtype {x.dtype}; inputs must be numbers (bool, int or float)")
    x = x.reshape(len(x), 1) if x.ndim == 1 else x
    if y.ndim > 1 and y.size == len(y):  # (N, 1) and the like
        y = y.reshape(len(y))
    if y.ndim > 2:
        raise DataFormatError(
            f"{y_origin}: targets of shape {y.shape}; expected one value per row (class indices or labels, "
            "not one-hot: np.argmax(y, axis=1)), or one 0/1 column per label (rows x labels: multilabel)"
        )
    if len(x) != len(y):
        raise DataFormatError(f"{x_origin} has {len(x)} rows but {y_origin} has {len(y)}")
    if len(x) == 0:
        raise DataFormatError(f"{x_origin}: no rows")
    if x.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
        if len(bad):
            row, column = (int(v) for v in bad[0])
            raise DataFormatError(
                f"{x_origin}: row {row}, position {column}: a NaN or infinite input ({len(bad)} in all)"
            )
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        row = int(np.argwhere(~np.isfinite(y))[0][0])
        raise DataFormatError(f"{y_origin}: row {row}: a NaN or infinite target")
    return x, y, x_origin


def transform(x: np.ndarray, preprocessing: dict) -> np.ndarray:
    """Raw inputs (rows of the training file's shape) -> the model's inputs (float32), as in training."""
    x = np.asarray(x, dtype=np.float64)
    shape = tuple(preprocessing["shape"])
    if x.shape[1:] != shape:
        raise DataFormatError(f"inputs of shape {x.shape[1:]} per row; the model takes {shape}")
    scaling = preprocessing.get("scaling")
    if scaling:
        flat = x.reshape(len(x), -1)
        x = ((flat - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])).reshape(x.shape)
    return x.astype(np.float32)
