"""A report: the results of every check run, the ranked diagnosis, and report.json / report.html.

The result type and the verdict constants live in ``result.py`` (re-exported here); the ranking in
``diagnosis.py`` and the page in ``html.py`` read results only, so none of them imports this module back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner.diagnostics import html
from runner.diagnostics.diagnosis import rank
from runner.diagnostics.result import (  # noqa: F401 - re-exported: the names every stage imports from here
    FAIL,
    PASS,
    SEVERITY,
    SKIP,
    STAGES,
    WARN,
    CheckResult,
    run_check,
)


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
        return rank(self.results)

    def to_dict(self) -> dict:
        return {
            "worst": self.worst,
            "diagnosis": _jsonable(self.diagnosis.to_dict()),
            "checks": [_jsonable(asdict(result)) for result in self.results],
            "plots": list(self.plots),
        }

    def write_json(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def write(self, folder: Path, title: str = "Diagnostics") -> tuple[Path, Path]:
        """``folder``/report.json and a self-contained ``folder``/report.html (plots read from ``folder``)."""
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
