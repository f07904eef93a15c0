"""Decoded images on disk: one .npy file per split, written a chunk at a time and read back memory-mapped.

An image folder can be larger than memory, and the runner's splits are arrays. So the images are decoded once
(Pillow) into <user cache>/parsed/images-<key>/<split>.x.npy, and each split's x is ``np.load(mmap_mode="r")``:
the OS pages images in as batches read them and drops them under memory pressure. The key holds every file's
path, size and modification time (hashing every file on each load would read the whole folder), the decode
options, the split each file went to, and the code and library versions. Each file's sha256 is taken while it is
decoded; their digest is kept in the entry for the run's record.

With ``cache=False`` the arrays go to a temporary folder that is deleted as soon as they are mapped: the mapping
keeps the data readable until the process ends (POSIX), and nothing is left on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from .cache import code_version, digest_of, parsed_dir, publish, remove_leftovers
from .errors import DataFormatError
from .image_folders import Layout

log = logging.getLogger("datasets")

FORMAT = 1
CHUNK = 256  # images decoded per write: the decode's memory is one chunk, whatever the folder's size
MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1)}


@dataclass(frozen=True)
class DecodeOptions:
    image_size: tuple[int, int]  # (height, width)
    color_mode: str  # rgb | grayscale
    scale: str  # unit: float32 in [0, 1]; none: uint8 as stored

    @property
    def dtype(self) -> np.dtype:
        # Unscaled pixels stay uint8: a quarter of the disk and page cache of float32
        return np.dtype(np.float32 if self.scale == "unit" else np.uint8)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.image_size, MODES[self.color_mode][1])


@dataclass
class Decoded:
    """Per split: x (memory-mapped), y, and the relative path of each row's file; plus the files' digest."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    files: dict[str, np.ndarray]
    digest: str
    note: str


def materialise(layout: Layout, parts: dict[str, np.ndarray], options: DecodeOptions, enabled: bool) -> Decoded:
    """The splits' arrays (file indices ``parts`` into ``layout.files``), from the cache or decoded now."""
    key = key_data(layout, parts, options)
    if not enabled:
        parsed_dir().mkdir(parents=True, exist_ok=True)
        # Beside the cache rather than in /tmp, which may be memory (tmpfs): mapping it would save nothing.
        folder = Path(tempfile.mkdtemp(dir=parsed_dir(), prefix=".images-uncached-", suffix=".tmp"))
        try:
            write_entry(folder, layout, parts, options, key)
            decoded = read_entry(folder, key)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        decoded.note = "images decoded into a temporary memory-mapped file (cache=false)"
        return decoded
    entry = parsed_dir() / f"images-{digest_of(key)}"
    if entry.is_dir():
        try:
            decoded = read_entry(entry, key)
            decoded.note = f"decoded images read from cache {entry}"
            return decoded
        except Exception as exc:  # whatever is wrong with the entry, decoding the images again is right
            log.warning("the decoded images in %s are damaged (%s: %s); decoding again", entry, type(exc).__name__, exc)
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(entry.parent)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        write_entry(tmp, layout, parts, options, key)
        publish(tmp, entry, replace=entry.is_dir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    decoded = read_entry(entry, key)
    decoded.note = f"images decoded once into the cache {entry}, read memory-mapped"
    return decoded


def key_data(layout: Layout, parts: dict[str, np.ndarray], options: DecodeOptions) -> dict:
    files = layout.files
    key = {
        "format": FORMAT,
        "loader": "images",
        "root": str(layout.root),
        "classes": layout.class_names,
        "options": {"image_size": list(options.image_size), "color_mode": options.color_mode, "scale": options.scale},
        "splits": {
            name: [[files[i].relpath, files[i].size, files[i].mtime_ns, files[i].label] for i in index.tolist()]
            for name, index in parts.items()
        },
        "code": code_version(),
        "versions": {"numpy": np.__version__, "pillow": PIL.__version__},
    }
    return json.loads(json.dumps(key))  # as meta.json gives it back (tuples become lists)


# ---------------------------------------------------------------- writing


def write_entry(folder: Path, layout: Layout, parts: dict[str, np.ndarray], options: DecodeOptions, key: dict):
    """Decode every split's images into ``folder``; meta.json last, so an entry without it is incomplete."""
    digests = []
    for name, index in parts.items():
        digests += write_split(folder, name, layout, index, options)
        labels = np.array([layout.files[i].label for i in index.tolist()], dtype=np.int64)
        np.save(folder / f"{name}.y.npy", labels, allow_pickle=False)
        paths = np.array([layout.files[i].relpath for i in index.tolist()], dtype=str)
        np.save(folder / f"{name}.file.npy", paths, allow_pickle=False)
    meta = {
        "format": FORMAT,
        "key": key,
        "digest": files_digest(digests),
        "rows": {name: len(index) for name, index in parts.items()},
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def write_split(folder: Path, name: str, layout: Layout, index: np.ndarray, options: DecodeOptions) -> list[tuple]:
    """Stream one split's images into <name>.x.npy; returns (path, size, sha256) of every file read."""
    shape = (len(index), *options.shape)
    header = {"descr": np.lib.format.dtype_to_descr(options.dtype), "fortran_order": False, "shape": shape}
    buffer = np.empty((min(CHUNK, max(len(index), 1)), *options.shape), dtype=options.dtype)
    digests = []
    with open(folder / f"{name}.x.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, len(index), CHUNK):
            rows = index[start : start + CHUNK].tolist()
            for row, file_index in enumerate(rows):
                item = layout.files[file_index]
                pixels, sha256 = decode(layout.root / item.relpath, options)
                buffer[row] = pixels / np.float32(255) if options.scale == "unit" else pixels
                digests.append((item.relpath, item.size, sha256))
            handle.write(buffer[: len(rows)].tobytes())
    return digests


def decode(path: Path, options: DecodeOptions) -> tuple[np.ndarray, str]:
    """One image as uint8 (height, width, channels) at the configured size and colour mode, and its sha256."""
    raw = path.read_bytes()  # read once: hashed, then decoded from memory
    mode, channels = MODES[options.color_mode]
    height, width = options.image_size
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            converted = image.convert(mode)
        if converted.size != (width, height):  # mixed sizes are resized, as Keras's directory loader does
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types for corrupt, truncated or unknown files
        raise DataFormatError(
            f"images: {path} is not a readable image ({type(exc).__name__}: {exc}); replace or remove the file"
        ) from None
    return pixels.reshape(height, width, channels), hashlib.sha256(raw).hexdigest()


def files_digest(digests: list[tuple]) -> str:
    """sha256 of the sorted (relative path, size, sha256) list: one value that names the exact files used."""
    lines = sorted(f"{path}\t{size}\t{sha256}" for path, size, sha256 in digests)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------- reading


def read_entry(folder: Path, key: dict) -> Decoded:
    """Map each split's x and read its labels and paths, after checking the key and the arrays' shapes."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise ValueError("meta.json describes a different entry")
    x, y, files = {}, {}, {}
    options = key["options"]
    shape = (*options["image_size"], MODES[options["color_mode"]][1])
    for name, rows in meta["rows"].items():
        # np.load refuses a file shorter than its header's shape when mapping it, so a truncated
        # entry fails here rather than as garbage pixels later.
        x[name] = np.load(folder / f"{name}.x.npy", mmap_mode="r", allow_pickle=False)
        y[name] = np.load(folder / f"{name}.y.npy", allow_pickle=False)
        files[name] = np.load(folder / f"{name}.file.npy", allow_pickle=False)
        if x[name].shape != (rows, *shape) or len(y[name]) != rows or len(files[name]) != rows:
            raise ValueError(f"{name}: arrays of {x[name].shape}, {len(y[name])} labels; expected {rows} rows")
    return Decoded(x, y, files, meta["digest"], "")
