"""The one list of checks: every check of every stage registers here the same way.

A check lives in its own module (``runner/diagnostics/<stage>/<name>.py``) and is declared with ``@check``::

    @check("preflight.input_scale", threshold=INPUT_SCALE_WARN,
           fix=FIX, what="the largest per-feature mean or standard deviation of the training inputs")
    def input_scale(data, options) -> CheckResult: ...

The stage runners read their checks from here in registration order (the order of the imports in the stage's
``__init__``), and the diagnostics catalogue in the docs is generated from the same records, so the two cannot
drift apart.  This module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from runner.diagnostics.result import STAGES

# The stage packages whose modules register checks; capacity checks are called directly (they train their own
# models) and register too, so they appear in the catalogue.
_STAGE_PACKAGES = {
    stage: f"runner.diagnostics.{package}"
    for stage, package in (
        ("preflight", "preflight"),
        ("monitor", "monitors"),
        ("analysis", "analysis"),
        ("capacity", "capacity"),
    )
}


@dataclass(frozen=True)
class Check:
    """One diagnostic: the quantity it measures (``what``), the default threshold it compares that quantity
    with (overridable per run through ``DiagnosticOptions.thresholds[name]``), and the fix it suggests when
    the verdict is not PASS.  ``run`` is the function that returns the CheckResult."""

    name: str
    run: Callable
    what: str
    threshold: float | str | None
    fix: str
    scope: str = ""  # what the check reads beyond the options, when a stage has several kinds (preflight: data/model)

    @property
    def stage(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]


_REGISTRY: dict[str, Check] = {}


def check(name: str, *, what: str, threshold: float | str | None, fix: str = "", scope: str = ""):
    """Register the decorated function as the check ``name`` (``<stage>.<short name>``); returns it unchanged,
    so it can still be called directly."""
    stage = name.split(".", 1)[0]
    if stage not in STAGES or "." not in name:
        raise ValueError(f"a check name is '<stage>.<name>' with a stage from {STAGES}, not {name!r}")

    def register(function: Callable) -> Callable:
        previous = _REGISTRY.get(name)
        if previous is not None and previous.run.__qualname__ != function.__qualname__:
            raise ValueError(
                f"check {name!r} is registered twice ({previous.run.__module__} and {function.__module__})"
            )
        _REGISTRY[name] = Check(name, function, what, threshold, fix, scope)
        return function

    return register


def checks(stage: str | None = None) -> list[Check]:
    """The registered checks of one stage (or all), in registration order; imports the stage packages."""
    stages = [stage] if stage is not None else list(_STAGE_PACKAGES)
    for name in stages:
        if name not in _STAGE_PACKAGES:
            raise ValueError(f"stage must be one of {tuple(_STAGE_PACKAGES)}, not {name!r}")
        importlib.import_module(_STAGE_PACKAGES[name])
    return [entry for entry in _REGISTRY.values() if stage is None or entry.stage == stage]


def get(name: str) -> Check:
    checks(name.split(".", 1)[0])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no check named {name!r}; known: {sorted(_REGISTRY)}") from None
