"""SIGINT and SIGTERM as a clean unwind.

Python turns Ctrl-C into KeyboardInterrupt, but SIGTERM (``kill``, a scheduler's time limit, a container
stop) ends the process at once: the run would stay RUNNING in MLflow with nothing saved. ``install`` makes
both signals raise ``Interrupted``, a KeyboardInterrupt, so a SIGTERM takes the path Ctrl-C takes: the run
is marked KILLED, its error tag names the signal, and the process exits with 128 + the signal's number.

No TensorFlow here: the command line installs the handlers before any job starts.
"""

import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """The process received SIGINT or SIGTERM."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process a signal ended: 130, 143


_deferring = 0
_pending: int | None = None


def install() -> None:
    """Handle SIGINT and SIGTERM from now on; only the main thread may set handlers (else: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)


def _interrupt(signum, frame) -> None:
    global _pending
    if _deferring:
        _pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred():
    """Hold a signal until the block ends, so that files written in it (a checkpoint and its record) are whole."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)
