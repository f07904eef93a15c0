"""White wine (Cortez et al. 2009): regress alcohol from the other physico-chemical measurements."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from . import csvio
from .cache import cached
from .containers import Dataset, Split
from .fetch import FoundFile, book_split_files, checksum_notes, find_file
from .options import CommonOptions
from .specs import HELD_OUT, SPECS, SPLITS
from .splitting import finalize, quantile_bins, random_split, split_sizes

FULL_FILE = "wine/winequality-white.csv"
BOOK_FILES = {name: f"wine/book_split/{name}_data.csv" for name in SPLITS}
COLUMNS = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
    "quality",
]
# Units from Cortez et al. (2009), recorded so that de-scaled predictions can be labelled.
UNITS = {
    "fixed acidity": "g(tartaric acid)/dm3",
    "volatile acidity": "g(acetic acid)/dm3",
    "citric acid": "g/dm3",
    "residual sugar": "g/dm3",
    "chlorides": "g(sodium chloride)/dm3",
    "free sulfur dioxide": "mg/dm3",
    "total sulfur dioxide": "mg/dm3",
    "density": "g/cm3",
    "pH": "pH",
    "sulphates": "g(potassium sulphate)/dm3",
    "alcohol": "% vol",
    "quality": "score 0-10",
}


def load_wine(*, target: str = "alcohol", scale_target: bool = True, **common) -> Dataset:
    """Wine regression; the book split when present, else a seeded split stratified on target quantiles."""
    opts = CommonOptions(**common)
    if target not in COLUMNS:
        raise ValueError(f"target={target!r}: expected one of {COLUMNS}")
    book = book_split_files(BOOK_FILES, opts.split, opts.data_dir, opts.verify_checksum)
    full = (
        None
        if book
        else find_file(FULL_FILE, data_dir=opts.data_dir, download=opts.download, verify_checksum=opts.verify_checksum)
    )
    files = list(book.values()) if book else [full]
    options = {"target": target, "scale_target": scale_target, **asdict(opts)}
    return cached("wine", options, files, lambda: parse_wine(book, full, opts, target, scale_target), opts.cache)


def parse_wine(
    book: dict[str, FoundFile] | None, full: FoundFile | None, opts: CommonOptions, target: str, scale_target: bool
) -> Dataset:
    """Read, split and scale the located files: the three book split files, or else the full file."""
    # quality is a rating of the wine, not a measurement; it stays in meta for analysis.
    features = [c for c in COLUMNS if c not in (target, "quality")]
    if book:
        splits = {name: read_wine(found, features, target) for name, found in book.items()}
        found_files = list(book.values())
        split_source = "book"
        notes = [
            f"book split (Deep Learning Quick Reference, ch. 2) read from {book['train'].path.parent}",
            f"the book's code used only 9 inputs by mistake; all {len(features)} are used here",
        ]
    else:
        splits, notes = _random_wine_split(read_wine(full, features, target), opts, target)
        found_files = [full]
        split_source = "random"
    notes += checksum_notes(found_files) + _duplicate_note(splits)

    splits, feature_scaling, more_notes = finalize(splits, opts, stratify=False)
    splits, target_scaling = _scale_target(splits, target) if scale_target else (_as_float32_y(splits), None)
    return Dataset(
        name="wine",
        task=SPECS["wine"].task,
        **splits,
        feature_names=features,
        target_name=target,
        class_names=None,
        split_source=split_source,
        files={str(f.path): f.sha256 for f in found_files},
        feature_scaling=feature_scaling,
        target_scaling=target_scaling,
        notes=notes + more_notes,
    )


def read_wine(found: FoundFile, features: list[str], target: str) -> Split:
    """One wine CSV (';' full file or ',' book split) as an unscaled float64 Split."""
    frame = csvio.read_csv(found.path)
    csvio.check_columns(frame, COLUMNS, found.path)
    x = csvio.numeric_block(frame, features, found.path)
    y = csvio.numeric_block(frame, [target], found.path)[:, 0]
    quality = csvio.label_column(frame, "quality", found.path, allowed=set(range(11)))
    return Split(x, y, {"quality": quality, "row_id": np.arange(1, len(frame) + 1)})


def _random_wine_split(table: Split, opts: CommonOptions, target: str) -> tuple[dict[str, Split], list[str]]:
    _, n_val, n_test = split_sizes(len(table), opts.val_fraction, opts.test_fraction)
    # No more bins than the smallest split has rows, or stratification cannot work.
    n_bins = max(1, min(10, n_val, n_test))
    parts, stratified = random_split(len(table), opts, strata=quantile_bins(table.y, n_bins))
    how = f"stratified on {n_bins} quantile bins of {target}" if stratified else "not stratified (too few rows)"
    note = (
        f"random split (seed {opts.split_seed}, val {opts.val_fraction}, test {opts.test_fraction}) "
        f"of {FULL_FILE}, {how}; meta['row_id'] is the data row in that file"
    )
    return {name: table.take(index) for name, index in parts.items()}, [note]


def _scale_target(splits: dict[str, Split], target: str) -> tuple[dict[str, Split], dict]:
    # Fitted on train only, like the features; original = y * std + mean.
    mean = float(splits["train"].y.mean())
    std = float(splits["train"].y.std()) or 1.0
    scaled = {k: Split(s.x, ((s.y - mean) / std).astype(np.float32), s.meta) for k, s in splits.items()}
    return scaled, {"mean": mean, "std": std, "unit": UNITS[target]}


def _as_float32_y(splits: dict[str, Split]) -> dict[str, Split]:
    return {k: Split(s.x, s.y.astype(np.float32), s.meta) for k, s in splits.items()}


def _duplicate_note(splits: dict[str, Split]) -> list[str]:
    """Warn that identical wines can sit in train and in val/test (the white file has repeated rows)."""
    train = set(_row_keys(splits["train"]))
    counts = {name: sum(key in train for key in _row_keys(splits[name])) for name in HELD_OUT}
    if not any(counts.values()):
        return []
    return [
        f"{counts['val']} val and {counts['test']} test rows have an exact duplicate in train "
        "(winequality-white.csv contains repeated rows); val/test scores are slightly optimistic"
    ]


def _row_keys(split: Split) -> list[bytes]:
    # Rounding absorbs float noise such as 0.9967799999999999 in the book files; + 0.0 turns -0.0 into 0.0.
    rows = np.round(np.column_stack([split.x, split.y]), 6) + 0.0
    return [row.tobytes() for row in rows]
