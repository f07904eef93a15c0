"""One ranked diagnosis from a report's check verdicts: the likeliest cause, its one fix, the flagged checks it
explains, and an independent second cause.

A flat list of ~30 verdicts shows one bug as several FAILs whose fixes can contradict each other ("raise the
learning rate" from a stalled loss while the inputs are unscaled).  Here each flagged check votes for causes
through a small table (``VOTES``, in causes.py with the causes and their fixes); a vote has a standing: a root
cause (the data, the loss/output pairing, scaling, initialisation) outranks a training mechanism (step size,
gradients, dead or saturated units), which outranks a symptom (a stalled loss, underfitting, a lost baseline).
Within one standing a FAIL outranks a WARN, so a WARN on a root cause still explains the symptom FAILs it
produces.  The winner's ``EXPLAINS`` set turns the other flagged checks into its consequences; what it does not
explain is ranked again as the second cause.  Pure Python: no Keras, no NumPy needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.diagnostics.causes import (  # CAUSES, EXPLAINS and VOTES are still imported from here
    CAUSES,
    EXPLAINS,
    HINTABLE,
    OVERRIDES,
    POOR_FIT,
    UNSTABLE,
    VOTES,
    Vote,
    updates_too_big,
)
from runner.diagnostics.result import PASS, SEVERITY, WARN, CheckResult


@dataclass
class Diagnosis:
    cause: str  # from CAUSES; "none" when nothing is flagged
    verdict: str  # worst verdict among its evidence (WARN/FAIL), PASS for none
    summary: str  # one plain sentence
    fix: str  # the cause's one fix
    evidence: list[dict] = field(default_factory=list)  # [{"check", "verdict", "value", "message"}]
    consequences: list[str] = field(default_factory=list)  # other flagged checks this cause explains
    second: Diagnosis | None = None  # an independent second cause, or None

    def to_dict(self) -> dict:
        return {
            "cause": self.cause,
            "verdict": self.verdict,
            "summary": self.summary,
            "fix": self.fix,
            "evidence": [dict(row) for row in self.evidence],
            "consequences": list(self.consequences),
            "second": self.second.to_dict() if self.second else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Diagnosis:
        second = data.get("second")
        return cls(
            data["cause"],
            data["verdict"],
            data["summary"],
            data["fix"],
            list(data.get("evidence", [])),
            list(data.get("consequences", [])),
            cls.from_dict(second) if second else None,
        )


def rank(results: list[CheckResult]) -> Diagnosis:
    """The likeliest cause of the flagged checks in ``results`` (SKIPs never count), with a second cause for
    what it leaves unexplained.  A PASS may carry a ``hint`` (a target scale in the tens): it counts as a root
    cause only when some flagged check is a consequence of it."""
    flagged = [result for result in results if SEVERITY.get(result.verdict, 0) > 0]
    top = _override(_diagnose(flagged), flagged)
    hints = _hints(results, flagged) if top.cause in HINTABLE else []
    if hints:
        flagged += hints
        top = _override(_diagnose(flagged), flagged)
    if top.cause == "none":
        return top
    explained = {row["check"] for row in top.evidence} | set(top.consequences)
    rest = [result for result in flagged if result.check not in explained]
    if rest:
        top.second = _diagnose(rest)
    return top


def _hints(results: list[CheckResult], flagged: list[CheckResult]) -> list[CheckResult]:
    """PASS results with a hinted cause, as WARN stand-ins, when that cause explains a flagged check."""
    names = {result.check for result in flagged}
    if any(result.check == "monitor.update_ratio" and _safely(updates_too_big, result) is False for result in flagged):
        return []  # tiny steps explain the symptoms directly; a moderate target scale does not
    found = []
    for result in results:
        cause = result.evidence.get("hint") if isinstance(result.evidence, dict) else None
        if result.verdict == PASS and cause in CAUSES and names & set(POOR_FIT + UNSTABLE):
            found.append(
                CheckResult(
                    result.check,
                    WARN,
                    result.value,
                    result.threshold,
                    f"{result.message} (a likely root of the checks below)",
                    stage=result.stage,
                    evidence=result.evidence,
                )
            )
    return found


def _safely(function, result: CheckResult):
    try:
        return function(result)
    except Exception:  # noqa: BLE001 - evidence of an unexpected shape must not sink the diagnosis
        return None


def _override(top: Diagnosis, flagged: list[CheckResult]) -> Diagnosis:
    names = {result.check for result in flagged}
    own = {row["check"] for row in top.evidence}
    for cause, signals, becomes in OVERRIDES:
        if top.cause == cause and names & set(signals) and "preflight.initial_weights" not in own:
            votes = [result for result in flagged if result.check in signals]
            evidence = [_evidence_row(result) for result in votes]
            consequences = [
                result.check
                for result in flagged
                if result.check not in {row["check"] for row in evidence} and result.check in EXPLAINS.get(becomes, ())
            ]
            verdict = max((row["verdict"] for row in evidence), key=SEVERITY.get)
            return Diagnosis(
                becomes, verdict, _summary(becomes, evidence, consequences), CAUSES[becomes][1], evidence, consequences
            )
    return top


def _diagnose(flagged: list[CheckResult]) -> Diagnosis:
    votes = {}  # cause -> [(vote, result)]
    for result in flagged:
        for vote in VOTES:
            if vote.applies(result):
                votes.setdefault(vote.cause, []).append((vote, result))
    if not votes:
        return _nothing_known(flagged)
    cause = max(votes, key=lambda name: _strength(votes[name]))
    evidence_results = list(dict.fromkeys(result.check for _, result in votes[cause]))
    by_name = {result.check: result for result in flagged}
    evidence = [_evidence_row(by_name[name]) for name in evidence_results]
    consequences = [
        result.check
        for result in flagged
        if result.check not in evidence_results and result.check in EXPLAINS.get(cause, ())
    ]
    # The problem is as serious as the worst thing it explains (a WARN-level root behind a FAIL-level symptom).
    verdict = max(
        [row["verdict"] for row in evidence] + [by_name[name].verdict for name in consequences], key=SEVERITY.get
    )
    return Diagnosis(cause, verdict, _summary(cause, evidence, consequences), CAUSES[cause][1], evidence, consequences)


def _strength(pairs: list[tuple[Vote, CheckResult]]) -> tuple:
    """Standing first, then the verdict at that standing, then the summed weight of all votes."""
    best = max((vote.standing, SEVERITY[result.verdict]) for vote, result in pairs)
    total = sum(vote.weight * SEVERITY[result.verdict] for vote, result in pairs)
    return (*best, total)


def _nothing_known(flagged: list[CheckResult]) -> Diagnosis:
    """``none``: nothing flagged (PASS), or flagged checks no rule knows (kept visible, with their verdict)."""
    fix = CAUSES["none"][1]
    if not flagged:
        return Diagnosis("none", PASS, "No check points at a problem.", fix)
    evidence = [_evidence_row(result) for result in flagged]
    verdict = max((row["verdict"] for row in evidence), key=SEVERITY.get)
    names = ", ".join(row["check"] for row in evidence)
    return Diagnosis(
        "none",
        verdict,
        f"No known cause for the flagged check(s) {names}: read their messages.",
        "See the flagged checks' own messages.",
        evidence,
    )


def _evidence_row(result: CheckResult) -> dict:
    return {"check": result.check, "verdict": result.verdict, "value": result.value, "message": result.message}


def _summary(cause: str, evidence: list[dict], consequences: list[str]) -> str:
    description = CAUSES[cause][0]
    pointers = ", ".join(row["check"] for row in evidence)
    sentence = f"{description[0].upper()}{description[1:]}: shown by {pointers}"
    if consequences:
        sentence += f"; this also explains {len(consequences)} other flagged check(s)"
    return sentence + "."


# ---------------------------------------------------------------- across the trials of a sweep

MIN_TRIALS_PER_CAUSE = 2
MIN_SEPARATION = 0.5  # Youden's J (share of the cause's trials in the range - share of the others): below, no link


def cause_ranges(trials: list[dict]) -> list[str]:
    """How often each diagnosis occurred over a sweep's trials, and the parameter ranges that go with each.

    ``trials``: one dict per trial, ``{"cause": <diag.cause tag or None>, "params": {name: value}}``; trials
    without a cause (no diagnostics ran) are left out.  The first line counts the causes; then, for each cause
    of at least MIN_TRIALS_PER_CAUSE trials and each parameter, the range (numeric: ``> v`` or ``<= v`` at an
    observed value; categorical: ``= value``) that best separates its trials from the others, when that
    separation reaches MIN_SEPARATION, e.g. "lr_too_high in 7 of 9 trials with optimizer.learning_rate > 0.01".
    """
    diagnosed = [trial for trial in trials if trial.get("cause")]
    if not diagnosed:
        return []
    counts: dict[str, int] = {}
    for trial in diagnosed:
        counts[trial["cause"]] = counts.get(trial["cause"], 0) + 1
    ordered = sorted(counts, key=lambda cause: (-counts[cause], cause))
    lines = [f"diagnoses over {len(diagnosed)} trials: " + ", ".join(f"{c} {counts[c]}" for c in ordered)]
    names = sorted({name for trial in diagnosed for name in (trial.get("params") or {})})
    for cause in ordered:
        if cause == "none" or counts[cause] < MIN_TRIALS_PER_CAUSE:
            continue
        found = [_best_range(diagnosed, cause, name) for name in names]
        found = [item for item in found if item is not None and item[0] >= MIN_SEPARATION]
        lines += [text for _, text in sorted(found, key=lambda item: -item[0])]
    return lines


def _best_range(trials: list[dict], cause: str, name: str) -> tuple[float, str] | None:
    """(separation, sentence) of the best range of parameter ``name`` for ``cause``, or None."""
    pairs = [((trial.get("params") or {}).get(name), trial["cause"] == cause) for trial in trials]
    pairs = [(value, hit) for value, hit in pairs if value is not None and str(value) not in ("", "None", "nan")]
    if len({str(value) for value, _ in pairs}) < 2:
        return None
    numbers = _as_numbers([value for value, _ in pairs])
    if numbers is not None:
        candidates = [(f"> {_fmt(v)}", [x > v for x in numbers]) for v in sorted(set(numbers))[:-1]]
        candidates += [(f"<= {_fmt(v)}", [x <= v for x in numbers]) for v in sorted(set(numbers))[:-1]]
    else:
        candidates = [(f"= {v}", [str(value) == v for value, _ in pairs]) for v in sorted({str(v) for v, _ in pairs})]
    hits = [hit for _, hit in pairs]
    scored = [(_separation(inside, hits), text, inside) for text, inside in candidates]
    score, text, inside = max(scored, key=lambda item: (item[0], sum(item[2])))
    in_range = sum(inside)
    with_cause = sum(hit for hit, flag in zip(hits, inside) if flag)
    return score, f"{cause} in {with_cause} of {in_range} trials with {name} {text}"


def _separation(inside: list[bool], hits: list[bool]) -> float:
    """Youden's J: share of the cause's trials inside the range minus share of the other trials inside it."""
    positives = sum(hits)
    negatives = len(hits) - positives
    if positives == 0 or negatives == 0:
        return 0.0  # every trial has the cause (or none): a range cannot separate anything
    true_inside = sum(1 for flag, hit in zip(inside, hits) if flag and hit)
    false_inside = sum(1 for flag, hit in zip(inside, hits) if flag and not hit)
    return true_inside / positives - false_inside / negatives


def _as_numbers(values: list) -> list[float] | None:
    """The values as floats when all of them are numbers (params come from MLflow as strings), else None."""
    if any(isinstance(value, bool) for value in values):
        return None
    try:
        return [float(value) for value in values]
    except (TypeError, ValueError):
        return None


def _fmt(value: float) -> str:
    return f"{value:g}"
