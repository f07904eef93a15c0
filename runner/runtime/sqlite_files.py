"""Local SQLite stores (MLflow's and Optuna's): where a ``sqlite:///`` URL's file is, and the lock that makes
processes opening one new store take turns. Light on purpose: the sweeper plugin imports it on every start."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory when not absolute)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


@contextlib.contextmanager
def creation_lock(database: Path | None):
    """Processes opening one SQLite store at once take turns: MLflow's and Optuna's table creation (their
    alembic migrations, which insert the store's one ``alembic_version`` row) are not safe against each other,
    and all but one would fail on a new store. No lock for other databases (``database`` None)."""
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield
