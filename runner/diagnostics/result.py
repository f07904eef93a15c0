"""What every check returns: one measured quantity, a threshold, a verdict, evidence and a fix.

Plain dataclasses and the isolation wrapper every stage runs its checks through; imports nothing heavy, so a
result can be built, read and saved without Keras, Hydra or MLflow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
SEVERITY = {PASS: 0, SKIP: 0, WARN: 1, FAIL: 2}
STAGES = ("preflight", "monitor", "analysis", "capacity")


@dataclass
class CheckResult:
    """The outcome of one check.

    ``check`` is a stable dotted name (``preflight.initial_loss``); it names the MLflow tag ``diag.<check>``
    and the metric ``diag.<check>`` that holds ``value``.  ``threshold`` says in words or as a number what
    ``value`` was compared with; ``message`` is the plain-language verdict and ``fix`` the suggested remedy
    (empty on PASS).  ``evidence`` holds small JSON-able facts behind the verdict (per-layer numbers, ...);
    ``plots`` are file paths relative to the diagnostics output folder.
    """

    check: str
    verdict: str
    value: float | None
    threshold: float | str | None
    message: str
    fix: str = ""
    stage: str = "preflight"
    evidence: dict = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self):
        if self.verdict not in SEVERITY:
            raise ValueError(f"verdict must be one of {sorted(SEVERITY)}, not {self.verdict!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {self.stage!r}")
        if self.value is not None:
            self.value = float(self.value)

    @property
    def ok(self) -> bool:
        return SEVERITY[self.verdict] == 0


def run_check(check: str, stage: str, function, *args) -> CheckResult:
    """Run one check, timed; an exception inside it becomes a SKIP that names the error (``evidence["error"]``)
    instead of costing the other checks their results.  Such a SKIP is a bug in the check, never a verdict on
    the model: the zoo test (tests/test_diag_zoo.py) requires that none occurs."""
    started = time.perf_counter()
    try:
        result = function(*args)
    except Exception as error:  # noqa: BLE001 - isolation is the point: one check must not sink the report
        logging.getLogger("runner.diagnostics").warning("check %s could not run", check, exc_info=True)
        result = CheckResult(
            check,
            SKIP,
            None,
            None,
            f"could not run: {type(error).__name__}: {error}",
            stage=stage,
            evidence={"error": f"{type(error).__name__}: {error}"},
        )
    result.seconds = time.perf_counter() - started
    return result
