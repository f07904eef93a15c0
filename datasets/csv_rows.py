"""Rows of a CSV file whose number of fields differs from the header's, and the likeliest cause of each.

pandas blames such a row on a column (a short row leaves its last columns empty) or names only the first bad
line, so every CSV loader calls ``check_field_counts`` when a parse failed or left gaps: one pass of the csv
module over the file, cheap next to the parse itself.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import DataFormatError

SEPARATORS = (",", ";", "\t", "|")
LISTED = 5  # bad rows named in a message; the rest are counted


class FieldCountError(DataFormatError):
    """Rows of a CSV file have another number of fields than its header."""


@dataclass(frozen=True)
class BadRow:
    data_row: int  # 1-based, blank lines not counted (as pandas skips them)
    line: int  # 1-based line of the file where the row starts
    fields: int
    cause: str


@dataclass(frozen=True)
class FieldCounts:
    expected: int  # the header's fields
    bad: list[BadRow]  # the first LISTED bad rows
    total_bad: int
    rows: int  # data rows read


def scan_field_counts(path: Path, sep: str, encoding: str = "utf-8") -> FieldCounts:
    """Every data row's number of fields against the header's (quoted separators and line breaks respected)."""
    bad, total, rows, expected = [], 0, 0, 0
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        start = 1
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record:  # a blank line
                continue
            if not expected:
                expected = len(record)
                continue
            rows += 1
            if len(record) != expected:
                total += 1
                if len(bad) < LISTED:
                    bad.append(BadRow(rows, line, len(record), likely_cause(record, expected, sep)))
    return FieldCounts(expected, bad, total, rows)


def likely_cause(fields: list[str], expected: int, sep: str) -> str:
    """Why a row has ``len(fields)`` fields where the header has ``expected``."""
    text = sep.join(fields)
    for other in SEPARATORS:
        if other != sep and len(next(csv.reader([text], delimiter=other))) == expected:
            return f"separated by {other!r} instead of {sep!r}"
    if len(fields) < expected:
        return "short: truncated, or fields left out"
    return "an extra field: a stray separator, or an unquoted value holding one (a decimal comma?)"


def check_field_counts(path: Path, sep: str, encoding: str = "utf-8", option: str = "") -> None:
    """Raise FieldCountError naming the first rows whose number of fields is not the header's, with their
    field counts and the likely cause; nothing when every row fits. ``option``: the setting that chooses
    the separator (e.g. ``dataset.sep``), named in the advice."""
    counts = scan_field_counts(path, sep, encoding)
    if counts.total_bad:
        raise FieldCountError(f"{path}: {describe(counts)} {_advice(counts, sep, option)}")


def describe(counts: FieldCounts) -> str:
    listed = "; ".join(
        f"data row {row.data_row} (line {row.line}) has {row.fields} field{'s' * (row.fields != 1)}, "
        f"expected {counts.expected}: {row.cause}"
        for row in counts.bad
    )
    more = f"; and {counts.total_bad - len(counts.bad)} more" if counts.total_bad > len(counts.bad) else ""
    return (
        f"{counts.total_bad} of {counts.rows} data rows have another number of fields than the header "
        f"({counts.expected}): {listed}{more}."
    )


def _advice(counts: FieldCounts, sep: str, option: str) -> str:
    if counts.total_bad < counts.rows:
        return "Fix or remove those rows."
    setting = f"{option}={sep!r}" if option else repr(sep)
    return f"No data row has the header's fields: are the rows separated by another character than {setting}?"


def gaps_or_implicit_index(frame: pd.DataFrame) -> bool:
    """Whether a parsed frame shows the signs of rows with the wrong number of fields: missing values (a short
    row's last columns), or a first column pandas took as the index (data rows one field longer than the
    header). Vectorised, so a clean file costs no scan."""
    return bool(frame.isna().to_numpy().any()) or not isinstance(frame.index, pd.RangeIndex)
