"""What the loaders of a user's own files (table, arrays, sequence) share: locating the files, deciding the
task from the target, encoding the target, cutting the splits and scaling a regression target."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .containers import Split
from .errors import DataFormatError, DataNotFoundError
from .fetch import FoundFile, sha256_of
from .options import CommonOptions
from .specs import HELD_OUT, OWN_DATA_TASKS
from .splitting import _split_off, check_disjoint, quantile_bins

# task=auto: whole numbers with at most this many distinct values are class labels, anything else a quantity.
AUTO_MAX_CLASSES = 20
MULTILABEL_ONE_COLUMN = (
    "dataset.task=multilabel needs two or more 0/1 label columns (dataset.target=[a,b,c], or a 2-D y); "
    "one 0/1 column is dataset.task=binary"
)
_SHOWN_VALUES = 6


def locate(path: str | None, key: str) -> list[FoundFile]:
    """The file(s) ``path`` names (a glob matches several, in sorted order), each with its sha256."""
    if path is None or not str(path).strip():
        raise DataNotFoundError(f"{key} is not set: name the file to read, e.g. {key}=my_data.csv")
    expanded = Path(str(path)).expanduser()
    if any(char in str(path) for char in "*?["):
        matches = sorted(Path(p) for p in glob.glob(str(expanded), recursive=True) if Path(p).is_file())
        if not matches:
            raise DataNotFoundError(f"{key}={path!r} matches no file (searched from {Path.cwd()})")
    elif expanded.is_dir():
        raise DataNotFoundError(f"{key}={path!r}: {expanded.absolute()} is a folder; name a file or a glob")
    elif not expanded.is_file():
        raise DataNotFoundError(f"{key}={path!r}: no such file {expanded.absolute()}")
    else:
        matches = [expanded]
    return [FoundFile(str(p), p.resolve(), sha256_of(p), None) for p in matches]


def file_digests(found: list[FoundFile]) -> dict[str, str]:
    return {str(f.path): f.sha256 for f in found}


@dataclass
class Target:
    """A target encoded for its task: floats for regression, a 0/1 float column per label for multilabel
    (``classes`` then names the labels), class indices (0..k-1) otherwise."""

    task: str
    y: np.ndarray
    classes: list[str] | None
    notes: list[str]


def label_text(value) -> str:
    """How a class label is named: 3.0 and 3 are both "3", so CSV and NumPy labels agree."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)


def encode_target(values: np.ndarray, task: str, name: str, where) -> Target:
    """Decide the task (``auto``) or check the given one against the values, and encode them.

    ``where(i)`` names row i for messages (file and data row).
    """
    if task == "multilabel":
        raise DataFormatError(MULTILABEL_ONE_COLUMN)
    if task not in OWN_DATA_TASKS:
        raise ValueError(f"task={task!r}: expected one of {OWN_DATA_TASKS}")
    numbers = _as_numbers(values)
    distinct = np.unique(numbers if numbers is not None else values.astype(str))
    if len(distinct) < 2:
        raise DataFormatError(
            f"target {name!r} has the single value {label_text(distinct[0])!r} in every row: nothing to learn"
        )
    notes = []
    if task == "auto":
        task, why = _decide(numbers, distinct)
        values_seen = f"{distinct[0]:g} to {distinct[-1]:g}" if task == "regression" else _shown(distinct)
        notes.append(
            f"task=auto: target {name!r} has {why} ({values_seen}) -> {task}; set dataset.task to choose another"
        )
    if task == "regression":
        if numbers is None:
            bad = int(np.flatnonzero(~_parses(values))[0])
            raise DataFormatError(
                f"{where(bad)}: column {name!r}: target {values[bad]!r} is not a number, "
                "and task=regression needs numbers (use task=binary or multiclass for labels)"
            )
        return Target(task, numbers.astype(np.float32), None, notes)
    if task == "binary" and len(distinct) != 2:
        raise DataFormatError(
            f"target {name!r} has {len(distinct)} distinct values ({_shown(distinct)}) but dataset.task=binary "
            "needs exactly 2; use dataset.task=multiclass (or auto)"
        )
    index = np.searchsorted(distinct, numbers if numbers is not None else values.astype(str))
    classes = [label_text(v) for v in distinct]
    if task == "binary":
        notes.append(f"target {name!r}: {classes[1]!r} is the positive class (1), {classes[0]!r} the negative (0)")
    return Target(task, index.astype(np.int64), classes, notes)


def encode_labels(columns: list[np.ndarray], names: list[str], task: str, where) -> Target:
    """Several target columns, each of 0/1 (or boolean) labels, so the task is multilabel; ``task`` is auto or
    multilabel, any other task is refused. ``where(i)`` names row i for messages."""
    if task not in ("auto", "multilabel"):
        raise DataFormatError(
            f"dataset.target holds {len(names)} columns ({_quoted(names)}), a multi-label target, but "
            f"dataset.task={task}; set dataset.task=multilabel (or auto), or name one target column"
        )
    y = np.column_stack([_zero_one(values, name, where) for values, name in zip(columns, names)])
    shares = y.mean(axis=0)
    constant = [name for name, share in zip(names, shares) if share in (0.0, 1.0)]
    if len(constant) == len(names):
        raise DataFormatError(f"every label column ({_quoted(names)}) has one value in every row: nothing to learn")
    notes = []
    if task == "auto":
        notes.append(
            f"task=auto: the {len(names)} target columns {_quoted(names)} hold only 0/1 -> multilabel "
            "(one sigmoid output per label); set dataset.task to choose another"
        )
    notes.append("labels' share of 1s: " + ", ".join(f"{n!r} {v:.2f}" for n, v in zip(names, shares)))
    if constant:
        notes.append(f"label(s) {_quoted(constant)} never change: the model learns nothing about them")
    return Target("multilabel", y.astype(np.float32), list(names), notes)


def _zero_one(values: np.ndarray, name: str, where) -> np.ndarray:
    # A column of booleans with gaps (dropped since) reaches here as objects
    booleans = values.dtype.kind == "b" or (
        values.dtype.kind == "O" and all(isinstance(v, (bool, np.bool_)) for v in values)
    )
    numbers = values.astype(np.float64) if booleans else _as_numbers(values)
    bad = np.ones(len(values), dtype=bool) if numbers is None else ~np.isin(numbers, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values[row].item() if isinstance(values[row], np.generic) else values[row]  # 3, not np.int8(3)
        raise DataFormatError(
            f"{where(row)}: label column {name!r}: value {value!r} is not 0/1 ({int(bad.sum())} such row(s)); "
            "a multi-label target holds one 0/1 (or true/false) column per label"
        )
    return numbers


def _quoted(names) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:_SHOWN_VALUES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN_VALUES else "")


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    if values.dtype.kind in "OUS" and _parses(values).all():
        return values.astype(np.float64)
    return None


def _parses(values: np.ndarray) -> np.ndarray:
    def parses(value) -> bool:
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return not isinstance(value, bool)

    return np.array([parses(v) for v in values], dtype=bool)


def _decide(numbers: np.ndarray | None, distinct: np.ndarray) -> tuple[str, str]:
    count = len(distinct)
    if numbers is None:
        return ("binary" if count == 2 else "multiclass"), f"{count} distinct non-numeric labels"
    if not np.all(np.isfinite(distinct)):
        return "regression", f"{count} distinct numbers"
    whole = bool(np.all(np.mod(distinct, 1) == 0))
    if whole and count <= AUTO_MAX_CLASSES:
        return ("binary" if count == 2 else "multiclass"), f"{count} distinct whole numbers"
    reason = "fractions among them" if not whole else f"more than {AUTO_MAX_CLASSES} of them"
    return "regression", f"{count} distinct numbers, {reason}"


def _shown(distinct: np.ndarray) -> str:
    shown = ", ".join(label_text(v) for v in distinct[:_SHOWN_VALUES])
    return shown + (f", ... {label_text(distinct[-1])}" if len(distinct) > _SHOWN_VALUES else "")


def strata_of(target: Target, smallest_split: int) -> np.ndarray:
    """What the seeded split stratifies on: the classes, or quantile bins of a regression target (no more bins
    than the smallest held-out split has rows, or stratifying cannot work)."""
    if target.task == "multilabel":  # each combination of labels is a stratum
        return np.unique(target.y, axis=0, return_inverse=True)[1].reshape(-1)
    if target.task != "regression":
        return target.y
    return quantile_bins(target.y, max(1, min(10, smallest_split)))


def cut_splits(
    n: int, opts: CommonOptions, strata: np.ndarray | None, wanted: tuple[str, ...] = HELD_OUT
) -> tuple[dict[str, np.ndarray], str]:
    """Row indices of train and of each ``wanted`` held-out split (seeded, stratified when it can be), and a note."""
    fractions = {"val": opts.val_fraction, "test": opts.test_fraction}
    rest, parts, stratified = np.arange(n), {}, True
    for name in sorted(wanted, key=lambda s: s != "test"):  # test first, as datasets/splitting.py does
        size = int(round(n * fractions[name]))
        if size < 1 or len(rest) - size < 1:
            raise DataFormatError(
                f"cannot cut a {name} split of {fractions[name]} from {n} rows; "
                "add rows or raise dataset.val_fraction / dataset.test_fraction"
            )
        rest, taken, strat = _split_off(rest, size, opts.split_seed, strata)
        parts[name] = np.sort(taken)
        stratified = stratified and strat
    parts["train"] = np.sort(rest)
    check_disjoint(parts)
    shares = ", ".join(f"{name} {fractions[name]}" for name in wanted)
    how = "stratified on the target" if stratified and strata is not None else "not stratified"
    return parts, f"random split of {n} rows (seed {opts.split_seed}, {shares}), {how}"


def scale_target(splits: dict[str, Split]) -> tuple[dict[str, Split], dict]:
    """Standardise a regression target with the training split's mean and std (original = y * std + mean)."""
    mean = float(splits["train"].y.mean())
    std = float(splits["train"].y.std()) or 1.0
    scaled = {k: Split(s.x, ((s.y - mean) / std).astype(np.float32), s.meta) for k, s in splits.items()}
    return scaled, {"mean": mean, "std": std}


def target_record(name: str, target: Target, scaling: dict | None) -> dict:
    """The target's part of a preprocessing description: how to read the model's outputs."""
    return {"name": name, "task": target.task, "classes": target.classes, "scaling": scaling}
