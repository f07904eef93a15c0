"""Python's cyclic garbage collector at a process's start and end.

Importing TensorFlow, Keras, pandas and scikit-learn makes close to a million objects that live as long as the
process. The collector's passes over them while they are made cost 0.5-1 s of a 5 s start on 2 cores and free
almost nothing (about 4,000 objects). So it is paused while a job's libraries import, and everything made until
then is frozen once per process: later collections (clear_session's full one at each job's start) scan only
what jobs make. Frozen objects are still freed when nothing refers to them; only cycles among them stay.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_for_imports() -> Iterator[None]:
    """The collector off for the block, then what exists is frozen (once per process) and it is on again."""
    if not gc.isenabled():  # a caller paused it already, or the program runs without it
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        freeze_once()
        gc.enable()


def freeze_once() -> None:
    """Freeze every object that exists now, the first time in this process: the imports and the start-up."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


def freeze_before_exit() -> None:
    """Freeze what is left as the program ends: the full collection Python runs at exit then skips it, 0.7 s
    after a run and 1 s after a sweep's process (2 cores). atexit handlers still run, and what they make is
    collected as usual."""
    gc.freeze()
