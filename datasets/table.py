"""Bring your own table: a CSV or Parquet file (or a glob of them) with a target column.

Categorical columns are one-hot encoded, missing values refused, dropped or imputed, and the inputs scaled,
each fitted on the training split only. The fitted preprocessing is kept as JSON-ready data
(``Dataset.preprocessing``) so that ``transform`` turns raw rows into the model's inputs after training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import cached
from .containers import Dataset, Split
from .csv_rows import check_field_counts, gaps_or_implicit_index
from .errors import DataFormatError
from .fetch import FoundFile
from .options import CommonOptions
from .specs import SPLITS
from .splitting import finalize
from .tablecode import encode, fit_preprocessing, listing, transform
from .userdata import (
    Target,
    cut_splits,
    encode_labels,
    encode_target,
    file_digests,
    locate,
    scale_target,
    strata_of,
    target_record,
)

__all__ = ["load_table", "transform", "read_rows", "Rows", "TableOptions", "frame_dataset"]

MISSING_POLICIES = ("refuse", "drop", "impute")
PARQUET_SUFFIXES = (".parquet", ".pq")
# The values a split column may hold, and the split each names.
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_FIRST_ROWS = 3


@dataclass(frozen=True)
class TableOptions:
    """What the table-shaped loaders (table, sequence) share beyond the common options."""

    target: object = None
    task: str = "auto"
    missing: str = "refuse"
    split_column: str | None = None
    sep: str = ","
    encoding: str = "utf-8"
    decimal: str = "."
    scale_target: bool = True

    def __post_init__(self):
        if self.missing not in MISSING_POLICIES:
            raise ValueError(f"missing={self.missing!r}: expected one of {MISSING_POLICIES}")


@dataclass
class Rows:
    """The rows read from one or more files, and where each came from (for messages naming file and row)."""

    frame: pd.DataFrame
    files: list[Path]
    file_index: np.ndarray
    file_row: np.ndarray  # 0-based data row within its file

    def where(self, i: int) -> str:
        path, row = self.files[self.file_index[i]], int(self.file_row[i])
        line = "" if path.suffix.lower() in PARQUET_SUFFIXES else f" (line {row + 2})"
        return f"{path}: data row {row + 1}{line}"

    def keep(self, mask: np.ndarray) -> Rows:
        frame = self.frame[mask].reset_index(drop=True)
        return Rows(frame, self.files, self.file_index[mask], self.file_row[mask])


def load_table(
    *,
    path: str | None = None,
    target=None,
    task: str = "auto",
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    missing: str = "refuse",
    split_column: str | None = None,
    sep: str = ",",
    encoding: str = "utf-8",
    decimal: str = ".",
    scale_target: bool = True,
    **common,
) -> Dataset:
    """A CSV or Parquet table (or a glob of them); ``target`` is the column to predict (docs/guide/own-data.md)."""
    opts = CommonOptions(**common)
    table = TableOptions(target, task, missing, split_column, sep, encoding, decimal, scale_target)
    found = locate(path, "dataset.path")
    lists = {"features": _names(features), "categorical": _names(categorical)}
    options = {"path": path, **asdict(table), **lists, **asdict(opts)}
    return cached("table", options, found, lambda: parse_table(found, table, opts, **lists), opts.cache)


def parse_table(
    found: list[FoundFile], table: TableOptions, opts: CommonOptions, features: list | None, categorical: list | None
) -> Dataset:
    rows = read_rows(found, table)
    targets = target_columns(rows, table)
    chosen = feature_columns(rows, targets, table, features)
    declared = categorical is not None
    categorical = categorical if declared else detect_categorical(rows, chosen)
    for column in categorical:
        if column not in chosen:
            raise DataFormatError(
                f"dataset.categorical names {column!r}, which is not a feature; the features are {listing(chosen)}"
            )
    notes = [] if declared else [f"categorical columns detected (non-numeric): {listing(categorical) or 'none'}"]
    return frame_dataset("table", rows, found, targets, chosen, list(categorical), table, opts, notes=notes)


def _names(values) -> list[str] | None:
    return None if values is None else [str(v) for v in values]


# ---------------------------------------------------------------- reading


def read_rows(found: list[FoundFile], table: TableOptions) -> Rows:
    """Every file's rows, stacked; the files must have the same columns."""
    frames = [read_file(f.path, table) for f in found]
    first = list(frames[0].columns)
    for f, frame in zip(found[1:], frames[1:]):
        if set(frame.columns) != set(first):
            missing = [c for c in first if c not in set(frame.columns)]
            extra = [c for c in frame.columns if c not in set(first)]
            raise DataFormatError(
                f"{f.path}: its columns differ from those of {found[0].path} (missing {listing(missing) or 'none'}, "
                f"extra {listing(extra) or 'none'}); every file a glob matches must have the same columns"
            )
    index = np.concatenate([np.full(len(frame), i) for i, frame in enumerate(frames)])
    file_row = np.concatenate([np.arange(len(frame)) for frame in frames])
    frame = pd.concat([frame[first] for frame in frames], ignore_index=True)
    return Rows(frame, [f.path for f in found], index, file_row)


def read_file(path: Path, table: TableOptions) -> pd.DataFrame:
    """One CSV or Parquet file; what cannot be parsed becomes a DataFormatError naming the file and the option."""
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty (0 bytes)")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises its own types; any failure here means the file is unreadable
            raise DataFormatError(f"{path}: could not read as Parquet: {exc}") from None
    else:
        frame = _read_csv(path, table)
    if len(frame) == 0:
        raise DataFormatError(f"{path}: the file has a header but no data rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _read_csv(path: Path, table: TableOptions) -> pd.DataFrame:
    frame = _parsed_csv(path, table)
    if gaps_or_implicit_index(frame):  # what a row with too few (or too many) fields leaves
        check_field_counts(path, table.sep, table.encoding, "dataset.sep")
    return frame


def _parsed_csv(path: Path, table: TableOptions) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=table.sep, encoding=table.encoding, decimal=table.decimal)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: the file has no header and no data") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: not readable as {table.encoding} text ({exc.reason} at byte {exc.start}); "
            "set dataset.encoding (e.g. dataset.encoding=latin-1)"
        ) from None
    except (pd.errors.ParserError, ValueError, LookupError) as exc:
        if isinstance(exc, pd.errors.ParserError):
            check_field_counts(path, table.sep, table.encoding, "dataset.sep")
        raise DataFormatError(
            f"{path}: could not parse as CSV (dataset.sep={table.sep!r}, dataset.encoding={table.encoding!r}): {exc}"
        ) from None


def _separator_hint(rows: Rows, table: TableOptions) -> str:
    # One column whose name holds another separator is the sign of a wrong dataset.sep.
    if len(rows.frame.columns) == 1:
        name = rows.frame.columns[0]
        for sep in (";", "\t", ",", "|"):
            if sep != table.sep and sep in name:
                return f" The file was read as one column: is it separated by {sep!r}? Set dataset.sep={sep!r}."
    return ""


# ---------------------------------------------------------------- columns


def target_column(rows: Rows, table: TableOptions) -> str:
    """The one target column of a loader that takes a single target (sequence)."""
    targets = target_columns(rows, table)
    if len(targets) > 1:
        raise DataFormatError(
            f"dataset.target={targets!r}: this data set takes one target column; several 0/1 label columns "
            "(a multi-label target) are read by dataset=table"
        )
    return targets[0]


def target_columns(rows: Rows, table: TableOptions) -> list[str]:
    """The target column, or the several label columns of a multi-label target, checked against the file."""
    target = table.target
    names = [str(t) for t in target] if isinstance(target, (list, tuple)) else [target]
    columns = list(rows.frame.columns)
    source = rows.files[0] if len(rows.files) == 1 else f"{len(rows.files)} files ({rows.files[0].name}, ...)"
    if target is None or not names:
        raise DataFormatError(
            f"dataset.target is not set: name the column to predict; {source} has the columns {listing(columns)}"
        )
    if len(set(names)) != len(names):
        raise DataFormatError(f"dataset.target={names!r} names a column more than once")
    for key, column in [*(("dataset.target", str(n)) for n in names), ("dataset.split_column", table.split_column)]:
        if column is not None and column not in columns:
            raise DataFormatError(
                f"{source}: no column {column!r} ({key}); the columns are {listing(columns)}."
                + _separator_hint(rows, table)
            )
    if table.split_column in names:
        raise DataFormatError(f"dataset.split_column and dataset.target both name {table.split_column!r}")
    return [str(n) for n in names]


def feature_columns(rows: Rows, targets: list[str], table: TableOptions, features: list[str] | None) -> list[str]:
    """The declared features, or every column but the target(s) and the split column."""
    columns = list(rows.frame.columns)
    reserved = {*targets, table.split_column}
    if features is None:
        chosen = [c for c in columns if c not in reserved]
    else:
        absent = [c for c in features if c not in columns]
        if absent:
            raise DataFormatError(
                f"dataset.features names {listing(absent)}, not in the file's columns {listing(columns)}"
            )
        clash = [c for c in features if c in reserved]
        if clash:
            raise DataFormatError(f"dataset.features names {listing(clash)}, the target or the split column")
        chosen = list(dict.fromkeys(features))
    if not chosen:
        raise DataFormatError(f"no feature columns: the file has only {listing(columns)}")
    return chosen


def detect_categorical(rows: Rows, features: list[str]) -> list[str]:
    """Non-numeric columns; one that holds numbers but for a few cells is refused (a typo, or a wrong decimal)."""
    found = []
    for column in features:
        series = rows.frame[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        present = series.dropna()
        if len(present):
            _refuse_near_numbers(rows, column, present)
        found.append(column)
    return found


def _refuse_near_numbers(rows: Rows, column: str, present: pd.Series) -> None:
    parsed = pd.to_numeric(present, errors="coerce")
    if present.astype(str).str.fullmatch(r"-?\d+,\d+").mean() >= 0.9:
        reason = "the column's numbers use a decimal comma: set dataset.decimal=','"
    elif parsed.notna().mean() >= 0.9:
        reason = (
            f"{parsed.notna().mean():.0%} of the column are numbers; fix the value, or declare the column in "
            "dataset.categorical if it holds labels"
        )
    else:
        return
    at = int(present.index[int(np.flatnonzero(parsed.isna().to_numpy())[0])])
    raise DataFormatError(
        f"{rows.where(at)}: column {column!r}: value {rows.frame[column].iloc[at]!r} is not a number; {reason}"
    )


# ---------------------------------------------------------------- missing values


def handle_missing(rows: Rows, features: list[str], targets: list[str], missing: str) -> tuple[Rows, list[str]]:
    """Apply the missing-value policy: refuse (naming columns and first rows), or drop those rows; impute drops
    only the rows without a target (features are filled later, with the training split's values)."""
    columns = features + targets
    gaps = {c: np.flatnonzero(rows.frame[c].isna().to_numpy()) for c in columns}
    gaps = {c: index for c, index in gaps.items() if len(index)}
    if not gaps:
        return rows, []
    if missing == "refuse":
        described = "; ".join(
            f"{column!r} in {len(index)} row(s), first {', '.join(rows.where(i) for i in index[:_FIRST_ROWS])}"
            for column, index in gaps.items()
        )
        raise DataFormatError(
            f"missing values in {len(gaps)} column(s): {described}. Set dataset.missing=drop to drop those rows, "
            "or dataset.missing=impute to fill features with the training split's median (numbers) or most "
            "frequent value (categories)"
        )
    dropped_columns = list(gaps) if missing == "drop" else [c for c in gaps if c in targets]
    drop = np.zeros(len(rows.frame), dtype=bool)
    for column in dropped_columns:
        drop[gaps[column]] = True
    kept = rows.keep(~drop)
    if len(kept.frame) == 0:
        raise DataFormatError(f"dataset.missing={missing}: every row has a missing value; nothing is left")
    notes = []
    if drop.any():
        notes.append(f"missing={missing}: dropped {int(drop.sum())} row(s) missing {listing(dropped_columns)}")
    filled = [c for c in gaps if c not in targets] if missing == "impute" else []
    if filled:
        notes.append(f"missing=impute: gaps in {listing(filled)} filled with the training split's median / mode")
    return kept, notes


# ---------------------------------------------------------------- splits and the data set


def assign_splits(rows: Rows, target: Target, split_column: str | None, opts: CommonOptions):
    """Row indices per split: the split column's values, or a seeded split stratified on the target."""
    if split_column is None:
        smallest = int(round(len(target.y) * min(opts.val_fraction, opts.test_fraction)))
        parts, note = cut_splits(len(target.y), opts, strata_of(target, smallest))
        return parts, note, "random"
    values = rows.frame[split_column]
    named = values.astype(str).str.strip().str.lower().map(SPLIT_VALUES)
    bad = np.flatnonzero(named.isna().to_numpy() | values.isna().to_numpy())
    if len(bad):
        raise DataFormatError(
            f"{rows.where(int(bad[0]))}: column {split_column!r} (dataset.split_column): value "
            f"{values.iloc[bad[0]]!r} is not one of train, val, test ({len(bad)} such row(s))"
        )
    parts = {name: np.flatnonzero((named == name).to_numpy()) for name in SPLITS}
    empty = [name for name, index in parts.items() if not len(index)]
    if empty:
        raise DataFormatError(f"column {split_column!r} (dataset.split_column) has no {' or '.join(empty)} rows")
    return parts, f"splits given by column {split_column!r}", "fixed"


def _encoded_target(rows: Rows, targets: list[str], task: str) -> Target:
    if len(targets) == 1:
        return encode_target(rows.frame[targets[0]].to_numpy(), task, targets[0], rows.where)
    return encode_labels([rows.frame[t].to_numpy() for t in targets], targets, task, rows.where)


def frame_dataset(
    name: str,
    rows: Rows,
    found: list[FoundFile],
    target_name: str | list[str],
    features: list[str],
    categorical: list[str],
    table: TableOptions,
    opts: CommonOptions,
    shape: tuple[int, ...] | None = None,
    notes: list[str] | None = None,
) -> Dataset:
    """Encode, split and scale a table's rows: the part the table and sequence loaders share. ``target_name``
    is the target column, or the label columns of a multi-label target."""
    targets = [target_name] if isinstance(target_name, str) else list(target_name)
    rows, missing_notes = handle_missing(rows, features, targets, table.missing)
    target = _encoded_target(rows, targets, table.task)
    target_name = targets[0] if len(targets) == 1 else ",".join(targets)
    parts, split_note, split_source = assign_splits(rows, target, table.split_column, opts)
    prep = fit_preprocessing(rows.frame.iloc[parts["train"]], features, categorical, table.missing)
    x = encode(rows.frame, prep, rows.where)
    x = x.reshape(len(x), *shape) if shape else x
    meta = {"row_id": rows.file_row + 1}
    if len(rows.files) > 1:
        meta["source_file"] = np.array([rows.files[i].name for i in rows.file_index], dtype=object)
    splits = {
        split: Split(x[index], target.y[index], {k: v[index] for k, v in meta.items()})
        for split, index in parts.items()
    }
    splits, feature_scaling, finalize_notes = finalize(splits, opts, stratify=target.task != "regression")
    target_scaling = None
    if target.task == "regression" and table.scale_target:
        splits, target_scaling = scale_target(splits)
    scaling = None if feature_scaling is None else {k: feature_scaling[k] for k in ("mean", "std")}
    prep.update(kind=name, shape=list(shape) if shape else None, scaling=scaling)
    prep["target"] = target_record(targets[0] if len(targets) == 1 else targets, target, target_scaling)
    files_note = [f"{len(found)} files matched: {', '.join(str(f.path) for f in found)}"] if len(found) > 1 else []
    return Dataset(
        name=name,
        task=target.task,
        **{split: splits[split] for split in SPLITS},
        feature_names=list(prep["encoded"]),
        target_name=target_name,
        class_names=target.classes,
        split_source=split_source,
        files=file_digests(found),
        feature_scaling=feature_scaling,
        target_scaling=target_scaling,
        notes=(notes or []) + files_note + missing_notes + target.notes + [split_note] + finalize_notes,
        preprocessing=prep,
    )
