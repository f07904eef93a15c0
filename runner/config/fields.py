"""How a schema field declares its allowed values: a range, a set of choices, or "required, e.g. ..."

``validate`` (runner/config/validation.py) reads the metadata these helpers attach, because Hydra does not run
``__post_init__``.
"""

from dataclasses import field

from omegaconf import MISSING


def bounded(default, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """A numeric field whose value must lie in the given interval (None = unbounded side)."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open)})


def one_of(default, *choices):
    """A field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


def _list(*values):
    return field(default_factory=lambda: list(values))


def required(example: str):
    """A field with no default: a config that leaves it unset is refused with ``example`` as the fix."""
    return field(default=MISSING, metadata={"example": example})
