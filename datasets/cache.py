"""Parsed data sets kept as .npy arrays plus JSON, so that a later load skips parsing the source files.

An entry lives in <user cache>/parsed/<loader>-<key>/ where the key is a digest of the loader name, the
options that shape the result, the path and sha256 of every source file used, the datasets/*.py sources
and the numpy/pandas/scikit-learn versions. Any change to one of them makes a new entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields
from importlib.metadata import version as _version  # not "import sklearn": 4 s to read a version string
from pathlib import Path

import numpy as np
import pandas as pd

from .containers import Dataset, Split
from .fetch import FoundFile, default_cache_dir, sha256_of
from .specs import SPLITS

log = logging.getLogger("datasets")

FORMAT = 1
# These only choose, fetch or check the source files, which the key holds by path and digest.
NOT_IN_KEY = frozenset({"data_dir", "download", "verify_checksum", "cache"})
_CHUNK = 4 << 20
# Far longer than any write takes, so a folder this old was left by a writer that was killed.
_LEFTOVER_AGE_S = 3600


class EntryDamaged(Exception):
    """A cache entry that fails a check; the data set is parsed again and the entry rewritten."""


def parsed_dir() -> Path:
    return default_cache_dir() / "parsed"


def cached(
    name: str, options: dict, files: list[FoundFile], parse: Callable[[], Dataset], enabled: bool = True
) -> Dataset:
    """The Dataset that parse() returns, read from the cache when an entry for the same inputs exists."""
    if not enabled:
        return parse()
    key = key_data(name, options, files)
    entry = parsed_dir() / f"{name}-{digest_of(key)}"
    data = read_if_sound(entry, key)
    if data is not None:
        data.notes.append(f"parsed arrays read from cache {entry}")
        return data
    data = parse()
    save(entry, data, key)
    return data


def read_if_sound(entry: Path, key: dict) -> Dataset | None:
    if not entry.is_dir():
        return None
    try:
        return read_entry(entry, key)
    except Exception as exc:  # whatever is wrong with the entry, parsing the sources again is right
        log.warning(
            "the cached parse %s is damaged (%s: %s); parsing the source files again and rewriting it",
            entry,
            type(exc).__name__,
            exc,
        )
        return None


def save(entry: Path, data: Dataset, key: dict) -> None:
    try:
        # An entry there now is the damaged one just read, or one another process has just written.
        write_entry(entry, data, key, replace=entry.is_dir())
    except Exception as exc:  # a cache that cannot be written must not fail a load that succeeded
        log.warning("could not save the parsed data to the cache %s (%s: %s)", entry, type(exc).__name__, exc)


def key_data(name: str, options: dict, files: list[FoundFile]) -> dict:
    """Everything that decides the parsed result, in the form it takes in meta.json."""
    key = {
        "format": FORMAT,
        "loader": name,
        "options": {k: options[k] for k in sorted(options) if k not in NOT_IN_KEY},
        "files": [[str(f.path), f.sha256, f.checksum_ok] for f in files],
        "code": code_version(),
        "versions": {"numpy": np.__version__, "pandas": pd.__version__, "scikit-learn": _version("scikit-learn")},
    }
    # Through JSON and back, so that it compares equal to the copy read from meta.json (tuples, numpy numbers).
    return json.loads(json.dumps(key, default=str))


def digest_of(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """A digest of the package's sources: editing a loader must not serve results of the old code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------- writing


def write_entry(entry: Path, data: Dataset, key: dict, replace: bool = False) -> None:
    """Write into a temporary folder beside the entry, then rename it into place in one step."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(entry.parent)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        splits = {name: write_split(tmp, name, split) for name, split in data.splits().items()}
        described = {f.name: getattr(data, f.name) for f in fields(Dataset) if f.name not in SPLITS}
        meta = {"format": FORMAT, "key": key, "dataset": described, "splits": splits}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        publish(tmp, entry, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_split(folder: Path, name: str, split: Split) -> dict:
    return {
        "x": write_array(folder / f"{name}.x.npy", split.x),
        "y": write_array(folder / f"{name}.y.npy", split.y),
        "meta": {
            key: write_array(folder / f"{name}.meta{i}.npy", values)
            for i, (key, values) in enumerate(split.meta.items())
        },
    }


def write_array(path: Path, values: np.ndarray) -> dict:
    """Save one array; the record holds its file name and sha256 for the check on reading."""
    as_object = values.dtype == object
    if as_object:
        # .npy cannot hold Python objects without pickle; string ids are stored as fixed-width text.
        if not all(isinstance(v, str) for v in values.flat):
            raise TypeError(f"{path.name}: an object array holding non-strings cannot be cached")
        values = values.astype(str)
    np.save(path, np.ascontiguousarray(values), allow_pickle=False)
    return {"file": path.name, "sha256": sha256_of(path), "object": as_object}


def publish(tmp: Path, entry: Path, replace: bool) -> None:
    """Rename tmp to entry; keep an entry another process published first unless it is the damaged one."""
    if replace:
        old = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".old"))
        try:
            os.replace(entry, old / "entry")
        except FileNotFoundError:
            pass  # another process removed it already
        finally:
            shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(tmp, entry)
    except OSError:
        # Renaming onto a non-empty folder fails: another process has just published the same entry.
        if not entry.is_dir():
            raise


def remove_leftovers(folder: Path) -> None:
    cutoff = time.time() - _LEFTOVER_AGE_S
    for path in folder.glob(".*"):
        try:
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


# ---------------------------------------------------------------- reading


def read_entry(entry: Path, key: dict) -> Dataset:
    """The cached Dataset, after checking the entry's key and every array's digest."""
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise EntryDamaged("meta.json describes a different entry")
    splits = {name: read_split(entry, meta["splits"][name]) for name in SPLITS}
    return Dataset(**splits, **meta["dataset"])


def read_split(entry: Path, record: dict) -> Split:
    meta = {key: read_array(entry, item) for key, item in record["meta"].items()}
    return Split(read_array(entry, record["x"]), read_array(entry, record["y"]), meta)


def read_array(entry: Path, record: dict) -> np.ndarray:
    values = read_verified(entry / record["file"], record["sha256"])
    return values.astype(object) if record["object"] else values


def read_verified(path: Path, sha256: str) -> np.ndarray:
    """Read a .npy file straight into its array, hashing the bytes on the way (one pass, no extra copy)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        shape, dtype = read_header(handle)
        header_size = handle.tell()
        # Checked before allocating, so that a damaged header cannot ask for an absurd amount of memory.
        expected_size = header_size + int(np.prod(shape)) * dtype.itemsize
        if os.fstat(handle.fileno()).st_size != expected_size:
            raise EntryDamaged(
                f"{path.name} has {os.fstat(handle.fileno()).st_size} bytes, its header says {expected_size}"
            )
        handle.seek(0)
        digest.update(handle.read(header_size))
        values = np.empty(shape, dtype)
        raw = values.reshape(-1).view(np.uint8)
        done = 0
        while done < raw.size:
            count = handle.readinto(raw[done : done + _CHUNK])
            if not count:
                raise EntryDamaged(f"{path.name} is truncated ({header_size + done} bytes)")
            digest.update(raw[done : done + count])
            done += count
        digest.update(handle.read())
    if digest.hexdigest() != sha256:
        raise EntryDamaged(f"{path.name}: sha256 {digest.hexdigest()} differs from the recorded {sha256}")
    return values


def read_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise EntryDamaged(f"unexpected .npy format version {version}")
    # write_array saves C-ordered arrays without objects; anything else was not written here.
    if fortran_order or dtype.hasobject:
        raise EntryDamaged("unexpected array layout in the .npy header")
    return shape, dtype
