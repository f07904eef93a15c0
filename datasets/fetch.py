"""Find data files in the configured places, verify their digests, download when allowed."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import sources
from .errors import ChecksumError, DataNotFoundError

DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Place:
    """A directory searched for data files, and why it is searched."""

    root: Path
    origin: str


@dataclass(frozen=True)
class FoundFile:
    """A located file with its digest; checksum_ok is None for files not in the table."""

    relpath: str
    path: Path
    sha256: str
    checksum_ok: bool | None


def user_cache_root() -> Path:
    """The runner's own cache folder: $RUNNER_CACHE_DIR, else $XDG_CACHE_HOME/keras-runner, else
    ~/.cache/keras-runner.  Data go in it (``default_cache_dir``), and so do the JAX programs the runner keeps
    (runner/runtime/backend.py)."""
    if os.environ.get("RUNNER_CACHE_DIR"):
        return Path(os.environ["RUNNER_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "keras-runner"


def default_cache_dir() -> Path:
    """Where downloads go: $RUNNER_CACHE_DIR itself, else the ``data`` folder of ``user_cache_root``."""
    if os.environ.get("RUNNER_CACHE_DIR"):
        return user_cache_root()
    return user_cache_root() / "data"


def search_places(data_dir: str | os.PathLike | None) -> list[Place]:
    """The places searched, in priority order."""
    places = []
    if data_dir:
        places.append(Place(Path(data_dir).expanduser().absolute(), "data_dir option"))
    if os.environ.get("RUNNER_DATA_DIR"):
        places.append(Place(Path(os.environ["RUNNER_DATA_DIR"]).expanduser().absolute(), "RUNNER_DATA_DIR"))
    places.append(Place(default_cache_dir().absolute(), "user cache"))
    return places


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, relpath: str, verify_checksum: bool) -> FoundFile:
    """Hash a file and, if it is a known file, compare against the accepted digests."""
    actual = sha256_of(path)
    expected = sources.SHA256.get(relpath)
    ok = None if expected is None else actual in expected
    if ok is False and verify_checksum:
        raise ChecksumError(
            f"{path}: sha256 mismatch for known file '{relpath}'.\n"
            f"  expected: {' or '.join(sorted(expected))}\n"
            f"  actual:   {actual}\n"
            "The file may be corrupt or a different version. If you want to use it anyway, "
            "set dataset.verify_checksum=false."
        )
    return FoundFile(relpath, path.resolve(), actual, ok)


def find_local(relpaths: list[str], places: list[Place]) -> tuple[Path, str] | None:
    """First existing file; places take priority over the order of relpaths."""
    for place in places:
        for relpath in relpaths:
            candidate = place.root / relpath
            if candidate.is_file():
                return candidate, relpath
    return None


def find_file(
    relpaths: str | list[str], *, data_dir=None, download=True, verify_checksum=True, hint: str = ""
) -> FoundFile:
    """Locate one of `relpaths` (alternatives), downloading the first one with a known URL if needed."""
    relpaths = [relpaths] if isinstance(relpaths, str) else list(relpaths)
    places = search_places(data_dir)
    found = find_local(relpaths, places)
    if found:
        return check_file(found[0], found[1], verify_checksum)

    downloadable = [r for r in relpaths if r in sources.URLS]
    if not download:
        attempt = "Download: not tried (download=False)."
    elif not downloadable:
        attempt = "Download: not tried (no download source is known for this file)."
    else:
        relpath = downloadable[0]
        url = sources.URLS[relpath]
        try:
            path = download_to_cache(url, relpath)
        except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
            attempt = f"Download: tried {url} and it failed: {exc}"
        else:
            return check_file(path, relpath, verify_checksum)
    raise DataNotFoundError(not_found_message(relpaths, places, attempt, hint))


def not_found_message(relpaths: list[str], places: list[Place], attempt: str, hint: str = "") -> str:
    lines = [f"Data file {' or '.join(repr(r) for r in relpaths)} not found. Searched:"]
    for place in places:
        # A folder that is not there at all is most often a typo in the path: say so.
        missing = "; this folder does not exist" if place.origin != "user cache" and not place.root.is_dir() else ""
        for relpath in relpaths:
            lines.append(f"  - {place.root / relpath}   ({place.origin}{missing})")
    if "RUNNER_DATA_DIR" not in {p.origin for p in places}:
        lines.append("  (RUNNER_DATA_DIR is not set)")
    lines.append(attempt)
    lines.append(
        f"To provide the data, put it at <DIR>/{relpaths[0]} and either set dataset.data_dir=<DIR> "
        "or the environment variable RUNNER_DATA_DIR=<DIR>."
    )
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def download_to_cache(url: str, relpath: str) -> Path:
    """Download into the cache through a temporary file; only a verified file is renamed into place."""
    dest = default_cache_dir() / relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as dest, so the final os.replace is an atomic rename.
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "keras-runner"})
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        expected = sources.SHA256.get(relpath)
        # Downloads are always verified: a bad file must never become a cached "good" one.
        if expected is not None and digest.hexdigest() not in expected:
            raise ChecksumError(
                f"Downloaded {url} for '{relpath}' but its sha256 {digest.hexdigest()} is not the "
                f"expected {' or '.join(sorted(expected))}; nothing was saved to {dest.parent}."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def find_book_split(relpaths: dict[str, str], *, data_dir=None, verify_checksum=True) -> dict[str, FoundFile] | None:
    """The three book split files from one place, or None if no place has any of them."""
    for place in search_places(data_dir):
        present = {name: place.root / rel for name, rel in relpaths.items() if (place.root / rel).is_file()}
        if not present:
            continue
        missing = [str(place.root / rel) for name, rel in relpaths.items() if name not in present]
        if missing:
            raise DataNotFoundError(
                f"Incomplete book split in {place.root} ({place.origin}): found "
                f"{', '.join(str(p) for p in present.values())} but missing {', '.join(missing)}. "
                "Add the missing file(s), remove the partial split, or pass dataset.split=random."
            )
        return {name: check_file(path, relpaths[name], verify_checksum) for name, path in present.items()}
    return None


def book_split_missing_message(relpaths: dict[str, str], data_dir) -> str:
    places = search_places(data_dir)
    lines = ["split='book' was requested but no book split files were found. Searched:"]
    for place in places:
        for rel in relpaths.values():
            lines.append(f"  - {place.root / rel}   ({place.origin})")
    lines.append(
        "Book split files are never downloaded. Put them under <DIR>/"
        f"{Path(next(iter(relpaths.values()))).parent}/ and set dataset.data_dir=<DIR> "
        "(or RUNNER_DATA_DIR), or use dataset.split=random."
    )
    return "\n".join(lines)


def book_split_files(
    relpaths: dict[str, str], split: str, data_dir, verify_checksum: bool
) -> dict[str, FoundFile] | None:
    """Resolve the split option: the book files, or None when a random split should be made."""
    if split == "random":
        return None
    found = find_book_split(relpaths, data_dir=data_dir, verify_checksum=verify_checksum)
    if found is None and split == "book":
        raise DataNotFoundError(book_split_missing_message(relpaths, data_dir))
    return found


def checksum_notes(found_files: list[FoundFile]) -> list[str]:
    return [
        f"{f.path}: sha256 differs from the known file's; accepted because verify_checksum=false"
        for f in found_files
        if f.checksum_ok is False
    ]
