"""The fitted preprocessing of a table's rows as plain JSON-ready data, and the one function that applies it.

Training and prediction go through the same ``encode``, so raw rows after training get exactly the features
the model was trained on. A description (``Dataset.preprocessing``, the run's model/preprocessing.json) holds:

- ``columns``: the raw input columns, in order; ``categories``: per categorical column, the categories seen in
  the training split (one output column each, ``column=category``; an unseen category encodes as all zeros);
- ``missing`` (the policy) and ``impute``: per column, the training split's median or most frequent value;
- ``encoded``: the encoded feature names; ``scaling``: the training split's per-feature mean and std (or null);
- ``shape``: the per-row input shape of a sequence (null for a flat table); ``target``: its name, task,
  classes (index = the model's class) and scaling (original = output * std + mean).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataFormatError
from .userdata import label_text

FORMAT = 1
_MAX_LISTED = 10


def listing(names) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def fit_preprocessing(train: pd.DataFrame, features: list[str], categorical: list[str], missing: str) -> dict:
    """Categories and fill values from the training rows only (the scaling is added once the rows are encoded)."""
    impute, categories = {}, {}
    for column in features:
        series = train[column]
        if column in categorical:
            texts = _texts(series)
            if missing == "impute":
                impute[column] = _most_frequent(texts, column)
                texts = texts.fillna(impute[column])
            categories[column] = sorted(texts.dropna().unique().tolist())
        elif missing == "impute":
            median = pd.to_numeric(series, errors="coerce").median()
            if pd.isna(median):
                raise DataFormatError(f"column {column!r} has no number in the training split: nothing to impute from")
            impute[column] = float(median)
    encoded = [
        name
        for column in features
        for name in ([f"{column}={c}" for c in categories[column]] if column in categories else [column])
    ]
    return {
        "format": FORMAT,
        "columns": list(features),
        "categories": categories,
        "missing": missing,
        "impute": impute,
        "encoded": encoded,
    }


def _texts(series: pd.Series) -> pd.Series:
    """Category labels as text (3 and 3.0 both "3"), missing values kept as missing."""
    return series.map(lambda value: None if pd.isna(value) else label_text(value)).astype(object)


def _most_frequent(texts: pd.Series, column: str) -> str:
    counts = texts.dropna().value_counts()
    if counts.empty:
        raise DataFormatError(f"column {column!r} has no value in the training split: nothing to impute from")
    return sorted(counts.index[counts == counts.max()])[0]  # ties: the first in sorted order, reproducibly


def encode(frame: pd.DataFrame, prep: dict, where=None) -> np.ndarray:
    """The encoded, unscaled features of ``frame``'s rows (float64, one column per encoded feature)."""
    where = where or (lambda i: f"row {i + 1}")
    absent = [c for c in prep["columns"] if c not in frame.columns]
    if absent:
        raise DataFormatError(
            f"the rows lack the column(s) {listing(absent)}; the model takes {listing(prep['columns'])}"
        )
    blocks = []
    for column in prep["columns"]:
        if column in prep["categories"]:
            blocks.append(_one_hot(frame[column], column, prep, where))
        else:
            blocks.append(_numbers(frame[column], column, prep, where)[:, None])
    return np.hstack(blocks)


def _numbers(series: pd.Series, column: str, prep: dict, where) -> np.ndarray:
    numbers = series if pd.api.types.is_numeric_dtype(series) else pd.to_numeric(series, errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    if column in prep["impute"]:
        values = np.where(series.isna().to_numpy(), prep["impute"][column], values)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = int(bad[0])
        shown = "(empty or NA)" if pd.isna(series.iloc[row]) else repr(series.iloc[row])
        raise DataFormatError(
            f"{where(row)}: column {column!r}: value {shown} is missing, not a number, or not finite "
            f"({len(bad)} such row(s))"
        )
    return values


def _one_hot(series: pd.Series, column: str, prep: dict, where) -> np.ndarray:
    texts = _texts(series)
    if column in prep["impute"]:
        texts = texts.fillna(prep["impute"][column])
    gaps = np.flatnonzero(texts.isna().to_numpy())
    if len(gaps):
        raise DataFormatError(f"{where(int(gaps[0]))}: column {column!r}: missing value ({len(gaps)} such row(s))")
    categories = prep["categories"][column]
    codes = pd.Index(categories).get_indexer(texts)  # -1: a category the training split did not have
    matrix = np.zeros((len(texts), len(categories)))
    known = np.flatnonzero(codes >= 0)
    matrix[known, codes[known]] = 1.0
    return matrix


def transform(frame: pd.DataFrame, preprocessing: dict) -> np.ndarray:
    """Raw rows (a DataFrame with the training file's columns) -> the model's inputs (float32)."""
    x = encode(frame, preprocessing)
    scaling = preprocessing.get("scaling")
    if scaling:
        x = (x - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
    shape = preprocessing.get("shape")
    return x.astype(np.float32).reshape(len(x), *shape) if shape else x.astype(np.float32)
