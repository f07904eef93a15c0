"""What every diagnostic returns: one measured quantity, a threshold, a verdict, evidence and a fix.

Plain dataclasses, so a report can be built, read and saved without Keras, Hydra or MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
        result = CheckResult(check, SKIP, None, None, f"could not run: {type(error).__name__}: {error}",
                             stage=stage, evidence={"error": f"{type(error).__name__}: {error}"})
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class Report:
    results: list[CheckResult] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # plots not tied to one check (heat maps, histograms)

    def add(self, *results: CheckResult) -> None:
        self.results.extend(results)

    def extend(self, other: Report) -> None:
        self.results.extend(other.results)
        self.plots.extend(other.plots)

    def __getitem__(self, check: str) -> CheckResult:
        for result in self.results:
            if result.check == check:
                return result
        raise KeyError(check)

    def verdicts(self) -> dict[str, str]:
        return {result.check: result.verdict for result in self.results}

    def problems(self) -> list[CheckResult]:
        """Non-PASS verdicts, worst first."""
        flagged = [result for result in self.results if not result.ok]
        return sorted(flagged, key=lambda result: -SEVERITY[result.verdict])

    @property
    def worst(self) -> str:
        return max((result.verdict for result in self.results), key=SEVERITY.get, default=PASS)

    @property
    def diagnosis(self):
        """The ranked cause of the flagged checks (runner.diagnostics.diagnosis.rank), computed afresh."""
        from runner.diagnostics.diagnosis import rank  # a sibling module that imports this one

        return rank(self.results)

    def to_dict(self) -> dict:
        return {"worst": self.worst, "diagnosis": _jsonable(self.diagnosis.to_dict()),
                "checks": [_jsonable(asdict(result)) for result in self.results], "plots": list(self.plots)}

    def write_json(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def write(self, folder: Path, title: str = "Diagnostics") -> tuple[Path, Path]:
        """``folder``/report.json and a self-contained ``folder``/report.html (plots read from ``folder``)."""
        from runner.diagnostics import html  # a sibling module; imported here to keep report.py standalone

        folder = Path(folder)
        return self.write_json(folder / "report.json"), html.write(self, folder / "report.html", folder, title)


def _jsonable(value):
    """NaN/Inf become strings so report.json stays valid JSON; numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
