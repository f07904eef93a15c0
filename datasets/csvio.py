"""Read CSV files and validate columns and values, reporting file, column and 1-based data row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .csv_rows import check_field_counts, gaps_or_implicit_index
from .errors import DataFormatError

_MAX_LISTED = 10


def sniff_separator(path: Path) -> str:
    """';' or ',' judged from the header line (the wine files exist in both styles)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    return ";" if header.count(";") > header.count(",") else ","


def read_csv(path: Path, sep: str | None = None) -> pd.DataFrame:
    """Parse a CSV with a header row; parsing problems become DataFormatError naming the file."""
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty (0 bytes)")
    sep = sep or sniff_separator(path)
    try:
        frame = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: the file has no header and no data") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, pd.errors.ParserError):
            check_field_counts(path, sep)
        raise DataFormatError(f"{path}: could not parse as CSV (separator {sep!r}): {exc}") from None
    if gaps_or_implicit_index(frame):  # a row with the wrong number of fields, not a missing value
        check_field_counts(path, sep)
    if len(frame) == 0:
        raise DataFormatError(f"{path}: the file has a header but no data rows")
    return frame


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def check_columns(frame: pd.DataFrame, expected: list[str], path: Path, allowed_extra: tuple[str, ...] = ()) -> None:
    """Every expected column present and nothing unexpected; the order does not matter."""
    present = set(frame.columns)
    missing = [c for c in expected if c not in present]
    extra = [c for c in frame.columns if c not in set(expected) and c not in allowed_extra]
    problems = []
    if missing:
        problems.append(f"missing column(s) {_listing(missing)}")
    if extra:
        problems.append(f"unexpected column(s) {_listing(extra)}")
    if problems:
        raise DataFormatError(f"{path}: {' and '.join(problems)}. Expected the columns {_listing(expected)}.")


def _bad_cell(path: Path, column: str, row: int, text) -> DataFormatError:
    # row is 0-based in the frame; users count data rows from 1 (line = row + 2 with the header).
    shown = "(empty or NA)" if pd.isna(text) else repr(text)
    return DataFormatError(
        f"{path}: column {column!r}, data row {row + 1} (line {row + 2}): "
        f"value {shown} is missing, not a number, or not finite"
    )


def numeric_block(frame: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """The columns as a float64 matrix; rejects text, missing values, NaN and Inf."""
    arrays = []
    for column in columns:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series):
            series = pd.to_numeric(series, errors="coerce")
            bad = np.flatnonzero(series.isna().to_numpy())
            if len(bad):
                raise _bad_cell(path, column, int(bad[0]), frame[column].iloc[bad[0]])
        arrays.append(series.to_numpy(np.float64))
    block = np.column_stack(arrays)
    bad_rows, bad_cols = np.nonzero(~np.isfinite(block))
    if len(bad_rows):
        # np.nonzero is row-major, so the first hit is the earliest row.
        row, col = int(bad_rows[0]), int(bad_cols[0])
        raise _bad_cell(path, columns[col], row, frame[columns[col]].iloc[row])
    return block


def label_column(frame: pd.DataFrame, column: str, path: Path, allowed: set[int]) -> np.ndarray:
    """An integer label column whose values must all lie in `allowed`."""
    values = numeric_block(frame, [column], path)[:, 0]
    bad = np.flatnonzero(~np.isin(values, sorted(allowed)))
    if len(bad):
        row = int(bad[0])
        raise DataFormatError(
            f"{path}: column {column!r}, data row {row + 1} (line {row + 2}): label "
            f"{frame[column].iloc[row]!r} is not one of {sorted(allowed)} "
            f"({len(bad)} bad row(s) in all)"
        )
    return values.astype(np.int64)
