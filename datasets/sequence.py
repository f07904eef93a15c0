"""Bring your own sequences: a table whose rows are fixed-length series (the seizure layout, generalised).

The step columns are ``feature_prefix`` followed by the step number (X1, X2, ... X178), or ``steps`` consecutive
columns from ``first_column`` on (default: every column but the target and the split column). A row becomes
(steps, 1), or (steps, channels) when ``channels`` is given: the columns then run step by step, each step's
channels side by side (t1c1, t1c2, t2c1, ...).
"""

from __future__ import annotations

import re
from dataclasses import asdict

from .cache import cached
from .containers import Dataset
from .errors import DataFormatError
from .fetch import FoundFile
from .options import CommonOptions
from .table import Rows, TableOptions, frame_dataset, read_rows, target_column
from .tablecode import listing
from .userdata import locate


def load_sequence(
    *,
    path: str | None = None,
    target=None,
    task: str = "auto",
    feature_prefix: str | None = None,
    first_column: str | None = None,
    steps: int | None = None,
    channels: int | None = None,
    missing: str = "refuse",
    split_column: str | None = None,
    sep: str = ",",
    encoding: str = "utf-8",
    decimal: str = ".",
    scale_target: bool = True,
    **common,
) -> Dataset:
    """Rows of fixed-length sequences -> (rows, steps, channels) inputs for a recurrent model."""
    opts = CommonOptions(**common)
    table = TableOptions(target, task, missing, split_column, sep, encoding, decimal, scale_target)
    for key, value in (("steps", steps), ("channels", channels)):
        if value is not None and (isinstance(value, bool) or int(value) < 1):
            raise ValueError(f"{key}={value!r}: expected a positive integer or None")
    layout = {"feature_prefix": feature_prefix, "first_column": first_column, "steps": steps, "channels": channels}
    found = locate(path, "dataset.path")
    options = {"path": path, **asdict(table), **layout, **asdict(opts)}
    return cached("sequence", options, found, lambda: parse_sequence(found, table, opts, **layout), opts.cache)


def parse_sequence(
    found: list[FoundFile],
    table: TableOptions,
    opts: CommonOptions,
    feature_prefix: str | None,
    first_column: str | None,
    steps: int | None,
    channels: int | None,
) -> Dataset:
    rows = read_rows(found, table)
    target = target_column(rows, table)
    reserved = {target, table.split_column}
    if feature_prefix is not None:
        columns = prefixed_columns(rows, feature_prefix, reserved)
    else:
        columns = consecutive_columns(rows, first_column, reserved, None if steps is None else steps * (channels or 1))
    width = channels or 1
    if len(columns) % width:
        raise DataFormatError(
            f"{len(columns)} step columns do not divide into dataset.channels={width} channels per step"
        )
    shape = (len(columns) // width, width)
    if steps is not None and shape[0] != steps:
        raise DataFormatError(
            f"dataset.steps={steps}, but {len(columns)} step columns with {width} channel(s) make {shape[0]} steps"
        )
    note = f"sequence of {shape[0]} steps x {width} channel(s) from the columns {columns[0]!r} .. {columns[-1]!r}"
    return frame_dataset("sequence", rows, found, target, columns, [], table, opts, shape=shape, notes=[note])


def prefixed_columns(rows: Rows, prefix: str, reserved: set) -> list[str]:
    """PREFIX1, PREFIX2, ... ordered by their number, which must run without a gap."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    numbered = {}
    for column in rows.frame.columns:
        match = pattern.fullmatch(column)
        if match and column not in reserved:
            numbered[int(match.group(1))] = column
    if not numbered:
        raise DataFormatError(
            f"dataset.feature_prefix={prefix!r}: no column is named {prefix}<number>; "
            f"the columns are {listing(rows.frame.columns)}"
        )
    order = sorted(numbered)
    gaps = sorted(set(range(order[0], order[-1] + 1)) - set(order))
    if gaps:
        raise DataFormatError(
            f"dataset.feature_prefix={prefix!r}: the steps {order[0]}..{order[-1]} lack the column(s) "
            f"{listing(prefix + str(g) for g in gaps)}"
        )
    return [numbered[i] for i in order]


def consecutive_columns(rows: Rows, first: str | None, reserved: set, count: int | None) -> list[str]:
    """``count`` columns (all when None) from ``first`` on, in file order, skipping the target and split column."""
    columns = list(rows.frame.columns)
    if first is not None and first not in columns:
        raise DataFormatError(f"dataset.first_column={first!r} is not a column; the columns are {listing(columns)}")
    start = columns.index(first) if first is not None else 0
    chosen = [c for c in columns[start:] if c not in reserved]
    if count is not None:
        if len(chosen) < count:
            raise DataFormatError(
                f"{count} step columns wanted (dataset.steps x dataset.channels) but only {len(chosen)} follow "
                f"{columns[start]!r}"
            )
        chosen = chosen[:count]
    if not chosen:
        raise DataFormatError(f"no step columns: the file has only {listing(columns)}")
    return chosen
