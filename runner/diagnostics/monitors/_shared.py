"""What several monitor checks share: the stage's one argument (``Observed``), the result helper, and the
readings of the records that more than one check takes (the start loss, whether the loss fell, log10 ratios).
No Keras here: the checks judge recorded numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

if TYPE_CHECKING:
    from runner.diagnostics.monitors.recording import Records

STAGE = "monitor"


@dataclass
class Observed:
    """Everything a monitor check reads, gathered once by ``TrainingMonitor.report``: the records, the Keras
    history (``History.history``), the watched hidden layers with their kind, why their activations could not
    be read (None when they could), and the chance-level loss (None when unknown)."""

    records: Records
    history: dict[str, list[float]] = field(default_factory=dict)
    watched: dict[str, str] = field(default_factory=dict)
    unreadable: str | None = None
    chance: float | None = None


def result(check: str, verdict: str, value, threshold, message: str, fix: str = "", **evidence) -> CheckResult:
    return CheckResult(
        check=check,
        verdict=verdict,
        value=value,
        threshold=threshold,
        message=message,
        fix=fix if verdict != PASS else "",
        stage=STAGE,
        evidence=evidence,
    )


def losses(history: dict) -> list[float]:
    return [float(v) for v in history.get("loss", [])]


def start_loss(records: Records) -> float:
    """Training loss before any update (data + regularisation, inference mode, probe batch); NaN when none was
    measured (training failed before its first step)."""
    if not records.data_loss or not records.reg_loss:
        return math.nan
    return records.data_loss[0] + records.reg_loss[0]


def loss_fell(records: Records, share: float) -> bool:
    """Whether the probe batch's data loss ended at most ``share`` of its start."""
    if not records.data_loss:
        return False
    start, end = records.data_loss[0], records.data_loss[-1]
    return math.isfinite(start) and math.isfinite(end) and start > 0 and end <= share * start


def max_log10(ratios: list[float]) -> float:
    with np.errstate(divide="ignore"):
        logs = np.log10(np.asarray([r for r in ratios if not math.isnan(r)], dtype=float))
    return float(np.max(logs)) if logs.size else math.nan


def median_log10(ratios: list[float]) -> float:
    with np.errstate(divide="ignore"):
        logs = np.log10(np.asarray([r for r in ratios if not math.isnan(r)], dtype=float))
    return float(np.median(logs)) if logs.size else math.nan


def activation_check(
    check: str,
    shares_by_layer: dict[str, list[float]],
    limit: float,
    observed: Observed,
    family: str,
    what: str,
    fix: str,
) -> CheckResult:
    """The rule dead_units and saturation share: a layer is flagged when its share at the end exceeds
    ``limit``; FAIL when most layers are (or, for ReLU, the last hidden one, which feeds the output alone)."""
    threshold = f"share of {what} per layer > {limit:g}"
    kinds = "ReLU-family" if family == "relu" else "sigmoid/tanh"
    if observed.unreadable and any((kind == "relu") == (family == "relu") for kind in observed.watched.values()):
        return result(check, SKIP, None, threshold, observed.unreadable)
    if not shares_by_layer:
        return result(check, SKIP, None, threshold, f"no {kinds} hidden layer")
    final = {name: shares[-1] for name, shares in shares_by_layer.items()}
    flagged = [name for name, share in final.items() if share > limit]
    value = max(final.values())
    evidence = {"per_layer_per_epoch": shares_by_layer, "final": final}
    last_layer = list(final)[-1]
    described = ", ".join(f"{n} {final[n]:.0%}" for n in flagged)
    if len(flagged) > len(final) / 2 or (family == "relu" and last_layer in flagged):
        return result(check, FAIL, value, threshold, f"{what} dominate: {described}", fix, **evidence)
    if flagged:
        return result(check, WARN, value, threshold, f"{what} in {described}", fix, **evidence)
    return result(check, PASS, value, threshold, f"at most {value:.0%} {what} in any layer", **evidence)
