"""Epileptic Seizure Recognition (UCI 388): binary seizure vs. non-seizure from 178 EEG samples."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import csvio
from .cache import cached
from .containers import Dataset, Split
from .errors import DataFormatError
from .fetch import FoundFile, book_split_files, check_file, checksum_notes, find_file, find_local, search_places
from .options import CommonOptions
from .specs import SPECS, SPLITS
from .splitting import finalize, random_split

# Both layouts hold the same rows; the UCI one is first because it is the one we can download.
FULL_FILES = ["seizure/epileptic_seizure_recognition.csv", "seizure/kaggle_epileptic_seizure_recognition.csv"]
BOOK_FILES = {name: f"seizure/book_split/{name}_data.csv" for name in SPLITS}
FEATURES = [f"X{i}" for i in range(1, 179)]
CLASS_NAMES = ["non-seizure", "seizure"]
ORIGINAL_CLASSES = "1 seizure, 2 tumour area, 3 healthy area, 4 eyes closed, 5 eyes open"


def load_seizure(*, file: str = "auto", **common) -> Dataset:
    """Seizure data; the book split when present, else a seeded split stratified on the 5 original classes."""
    opts = CommonOptions(**common)
    full_names = FULL_FILES if file == "auto" else [_relpath(file)]
    book = book_split_files(BOOK_FILES, opts.split, opts.data_dir, opts.verify_checksum)
    full = _find_local_full(full_names, opts) if book else _find_full(file, full_names, opts)
    files = (list(book.values()) if book else []) + ([full] if full else [])
    options = {"file": file, **asdict(opts)}
    return cached("seizure", options, files, lambda: parse_seizure(book, full, files, opts), opts.cache)


def parse_seizure(
    book: dict[str, FoundFile] | None, full: FoundFile | None, files: list[FoundFile], opts: CommonOptions
) -> Dataset:
    """Read, split and scale the located files: the book split (with the full file when found), or the full file."""
    if book:
        splits, notes = _load_book(book, full)
        split_source = "book"
    else:
        splits, notes = _random_seizure_split(read_full(full), opts)
        split_source = "random"
    notes.append(
        f"meta['original_class'] codes: {ORIGINAL_CLASSES}"
        if "original_class" in splits["train"].meta
        else "meta['original_class'] and meta['segment_id'] are absent (full file not found)"
    )
    notes += checksum_notes(files)

    splits, feature_scaling, more_notes = finalize(splits, opts, stratify=True)
    return Dataset(
        name="seizure",
        task=SPECS["seizure"].task,
        **splits,
        feature_names=list(FEATURES),
        target_name="y",
        class_names=list(CLASS_NAMES),
        split_source=split_source,
        files={str(f.path): f.sha256 for f in files},
        feature_scaling=feature_scaling,
        target_scaling=None,
        notes=notes + more_notes,
    )


def _relpath(file: str) -> str:
    # A bare file name refers to the seizure/ folder of the data root.
    return file if "/" in file else f"seizure/{file}"


def _find_full(file: str, full_names: list[str], opts: CommonOptions) -> FoundFile:
    if Path(file).is_absolute():
        return check_file(Path(file), Path(file).name, opts.verify_checksum)
    layout = (
        'Expected layout: header \'"","X1",...,"X178","y"\' (UCI) or \'Unnamed,X1,...,X178,y\' (Kaggle), '
        "id column first, y in 1..5."
    )
    return find_file(
        full_names, data_dir=opts.data_dir, download=opts.download, verify_checksum=opts.verify_checksum, hint=layout
    )


def read_full(found: FoundFile) -> Split:
    """A full file in either layout; y is already binary, the 1..5 label is kept in meta."""
    frame = csvio.read_csv(found.path, sep=",")
    id_column = frame.columns[0]
    if id_column in FEATURES or id_column == "y":
        raise DataFormatError(
            f"{found.path}: expected the segment id column first (header \"\" or 'Unnamed'), "
            f"found {id_column!r}; is this a book split file?"
        )
    csvio.check_columns(frame, FEATURES + ["y"], found.path, allowed_extra=(id_column,))
    x = csvio.numeric_block(frame, FEATURES, found.path)
    original = csvio.label_column(frame, "y", found.path, allowed={1, 2, 3, 4, 5})
    meta = {
        "original_class": original,
        "segment_id": frame[id_column].astype(str).to_numpy(),
        "row_id": np.arange(1, len(frame) + 1),
    }
    return Split(x, (original == 1).astype(np.int64), meta)


def read_book(found: FoundFile) -> Split:
    """A book split file: X1..X178 and a binary y, no id column."""
    frame = csvio.read_csv(found.path, sep=",")
    csvio.check_columns(frame, FEATURES + ["y"], found.path)
    x = csvio.numeric_block(frame, FEATURES, found.path)
    y = csvio.label_column(frame, "y", found.path, allowed={0, 1})
    return Split(x, y, {"row_id": np.arange(1, len(frame) + 1)})


def _find_local_full(full_names: list[str], opts: CommonOptions) -> FoundFile | None:
    # Beside a book split the full file only adds metadata, which is not worth a download.
    local = find_local(full_names, search_places(opts.data_dir))
    return None if local is None else check_file(local[0], local[1], opts.verify_checksum)


def _load_book(book: dict[str, FoundFile], full_found: FoundFile | None) -> tuple[dict[str, Split], list[str]]:
    splits = {name: read_book(found) for name, found in book.items()}
    notes = [
        f"book split (Deep Learning Quick Reference, ch. 4) read from {book['train'].path.parent}; "
        "meta['row_id'] is the data row in each split file"
    ]
    if full_found is None:
        return splits, notes
    full = read_full(full_found)
    splits = {name: attach_original(split, full, book[name], full_found) for name, split in splits.items()}
    notes.append(f"book split: original 5-class labels and segment ids recovered from the full file {full_found.path}")
    return splits, notes


def attach_original(split: Split, full: Split, book_file: FoundFile, full_file: FoundFile) -> Split:
    """Add original_class and segment_id by finding each book row's 178 values in the full file."""
    # Feature vectors are unique in the data set, so the values identify the row; + 0.0 maps -0.0 to 0.0.
    lookup = {row.tobytes(): i for i, row in enumerate(full.x + 0.0)}
    index = np.array([lookup.get(row.tobytes(), -1) for row in split.x + 0.0])
    unmatched = np.flatnonzero(index < 0)
    if len(unmatched):
        raise DataFormatError(
            f"{book_file.path}: data row {unmatched[0] + 1} ({len(unmatched)} rows in all) does not occur in "
            f"the full file {full_file.path}; the two do not belong together. "
            "Remove one of them or pass dataset.split=random."
        )
    original = full.meta["original_class"][index]
    disagree = np.flatnonzero((original == 1) != (split.y == 1))
    if len(disagree):
        row = disagree[0]
        raise DataFormatError(
            f"{book_file.path}: data row {row + 1} has y={split.y[row]} but the same values in "
            f"{full_file.path} (data row {index[row] + 1}) have class {original[row]}"
        )
    meta = {**split.meta, "original_class": original, "segment_id": full.meta["segment_id"][index]}
    return Split(split.x, split.y, meta)


def _random_seizure_split(table: Split, opts: CommonOptions) -> tuple[dict[str, Split], list[str]]:
    parts, stratified = random_split(len(table), opts, strata=table.meta["original_class"])
    how = "stratified on the 5 original classes" if stratified else "not stratified (too few rows)"
    note = (
        f"random split (seed {opts.split_seed}, val {opts.val_fraction}, test {opts.test_fraction}) "
        f"of the full file, {how}; meta['row_id'] is the data row in that file"
    )
    return {name: table.take(index) for name, index in parts.items()}, [note]
