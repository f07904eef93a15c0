"""One ranked diagnosis from a report's check verdicts: the likeliest cause, its one fix, the flagged checks it
explains, and an independent second cause.

A flat list of ~30 verdicts shows one bug as several FAILs whose fixes can contradict each other ("raise the
learning rate" from a stalled loss while the inputs are unscaled).  Here each flagged check votes for causes
through a small table (``VOTES``); a vote has a standing: a root cause (the data, the loss/output pairing,
scaling, initialisation) outranks a training mechanism (step size, gradients, dead or saturated units), which
outranks a symptom (a stalled loss, underfitting, a lost baseline).  Within one standing a FAIL outranks a
WARN, so a WARN on a root cause still explains the symptom FAILs it produces.  The winner's ``EXPLAINS`` set
turns the other flagged checks into its consequences; what it does not explain is ranked again as the second
cause.  Pure Python: no Keras, no NumPy needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from runner.diagnostics.result import FAIL, PASS, SEVERITY, WARN, CheckResult

ROOT, MECHANISM, SYMPTOM = 3, 2, 1

# cause -> (one-line description, its one fix)
CAUSES: dict[str, tuple[str, str]] = {
    "loss_output_mismatch": ("the loss does not fit the output layer (activation, units or target encoding)",
                             ("Pair the loss with the output: sigmoid + binary cross-entropy, softmax + "
                              "(sparse) categorical cross-entropy, linear + MSE for regression.")),
    "lr_too_high": ("the learning rate is too high: steps overshoot and the loss jumps or blows up",
                    "Lower the learning rate by 10x (and clip gradients with optimizer.clipnorm=1.0)."),
    "lr_too_low": ("the learning rate is too low: the weights barely move",
                   "Raise the learning rate by 10x (Adam usually starts well at 1e-3)."),
    "unscaled_inputs": ("the inputs are far from unit scale (unscaled, or scaled twice)",
                        "Standardise the inputs once (zero mean, unit variance per feature; images / 255 once)."),
    "unscaled_targets": ("the regression targets are far from unit scale",
                         "Standardise the regression targets (and undo it on the predictions)."),
    "bad_init": ("the initial weights are constant or of the wrong scale for their activations",
                 ("Use the initializer that matches the activation: he_normal for ReLU, glorot_uniform for "
                  "tanh/sigmoid/linear.")),
    "dead_relu": ("ReLU units are dead: their input is always negative, so they pass no gradient",
                  "Initialise biases at zero, lower the learning rate, or use LeakyReLU/ELU."),
    "vanishing_gradient": ("the gradients vanish before they reach the first layers",
                           ("Use ReLU hidden layers with He initialisation (or add batch normalisation / "
                            "residual connections) so gradients reach the first layers.")),
    "exploding_gradient": ("the gradients explode (huge or NaN norms)",
                           "Clip gradients (optimizer.clipnorm=1.0) and lower the learning rate."),
    "saturation": ("sigmoid/tanh units are saturated, so their gradients are near zero",
                   "Keep pre-activations small: Glorot initialisation and scaled inputs, or ReLU hidden layers."),
    "too_few_epochs": ("training stopped while the loss was still falling",
                       "Train for more epochs (or raise early stopping's patience)."),
    "wrong_labels": ("the labels do not match the inputs (shuffled, misaligned or noisy)",
                     ("Check that labels and inputs are aligned row for row (no shuffle of one without the "
                      "other).")),
    "underfitting_capacity": ("the model is too small or too simple for the task",
                              "Give the model more capacity (wider or deeper layers, or a fitting architecture)."),
    "overfitting": ("the model memorises the training data: validation loss rises while training loss falls",
                    "Regularise: add dropout or L2, use more data, or stop earlier (early stopping)."),
    "regularization_too_strong": ("regularisation (L2, dropout) swamps the data loss",
                                  "Weaken the regularisation: lower L2 by 10x or dropout to 0.2-0.5."),
    "split_shift": ("the train and validation/test splits come from different distributions",
                    "Split the data at random (stratified), or make the splits come from the same distribution."),
    "leakage": ("held-out rows also occur in the training data, so the scores are inflated",
                "Remove duplicates before splitting, so no held-out row occurs in training."),
    "bad_data": ("the data is broken: NaN/Inf values, a constant target or a class without samples",
                 "Clean the data: drop or impute NaN/Inf rows and check the targets before training."),
    "missing_nonlinearity": ("the hidden layers have no non-linear activation, so the stack is one linear map",
                             "Give the hidden layers a non-linear activation (relu)."),
    "wrong_gradient": ("a custom layer or loss computes a wrong gradient or reduction",
                       ("Fix the custom layer/loss: its gradient must match finite differences and the loss "
                        "must average over the batch.")),
    "none": ("no check points at a problem", "Nothing to fix."),
}


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
        return {"cause": self.cause, "verdict": self.verdict, "summary": self.summary, "fix": self.fix,
                "evidence": [dict(row) for row in self.evidence], "consequences": list(self.consequences),
                "second": self.second.to_dict() if self.second else None}

    @classmethod
    def from_dict(cls, data: dict) -> Diagnosis:
        second = data.get("second")
        return cls(data["cause"], data["verdict"], data["summary"], data["fix"], list(data.get("evidence", [])),
                   list(data.get("consequences", [])), cls.from_dict(second) if second else None)


@dataclass(frozen=True)
class Vote:
    """A flagged ``check`` (any of ``verdicts``, and ``when`` holds) points at ``cause``."""

    check: str
    cause: str
    standing: int
    weight: float = 1.0
    when: Callable[[CheckResult], bool] | None = None
    verdicts: tuple[str, ...] = (WARN, FAIL)

    def applies(self, result: CheckResult) -> bool:
        if result.check != self.check or result.verdict not in self.verdicts:
            return False
        try:
            return self.when is None or bool(self.when(result))
        except Exception:  # noqa: BLE001 - a check whose evidence changed shape must not sink the diagnosis
            return False


def _says(*words: str) -> Callable[[CheckResult], bool]:
    return lambda result: any(word in (result.message or "").lower() for word in words)


def _not(condition: Callable[[CheckResult], bool]) -> Callable[[CheckResult], bool]:
    return lambda result: not condition(result)


def _updates_too_big(result: CheckResult) -> bool | None:
    """update_ratio: its message says which way ("updates larger than" / "large updates" / "updates below");
    else the per-layer log10 medians in the evidence decide (healthy -4 .. -1)."""
    text = (result.message or "").lower()
    if "larger than" in text or "large updates" in text:
        return True
    if "below" in text:
        return False
    medians = result.evidence.get("median_log10") if isinstance(result.evidence, dict) else None
    values = [float(v) for v in (medians or {}).values() if isinstance(v, (int, float))]
    high, low = sum(v > -1.0 for v in values), sum(v < -4.0 for v in values)
    if high != low:
        return high > low
    if result.value is None:
        return None
    return result.value > -2.5  # the middle of the healthy band in log10


def _wrong_kernels(result: CheckResult) -> bool:
    """initial_weights: a kernel is constant or of the wrong scale (its per-layer rows say which kind)."""
    layers = result.evidence.get("layers", {}) if isinstance(result.evidence, dict) else {}
    kinds = {row.get("kind") for row in layers.values() if isinstance(row, dict)}
    return bool(kinds & {"constant", "scale"}) or _says("constant init")(result)


_DEAD_BIASES = _says("start dead", "dead bias")
_VANISHING = _says("vanish")
_EXPLODING = _says("explod", "grew", "nan", "inf")

VOTES: tuple[Vote, ...] = (
    # root causes: the data, the splits, the loss/output pairing, scaling, initialisation, the architecture
    Vote("preflight.data_finite", "bad_data", ROOT),
    Vote("preflight.constant_target", "bad_data", ROOT),
    Vote("preflight.class_balance", "bad_data", ROOT, verdicts=(FAIL,)),  # a class with no rows
    Vote("preflight.input_scale", "unscaled_inputs", ROOT),
    Vote("preflight.target_scale", "unscaled_targets", ROOT),  # also a PASS with a hint (see _hints)
    Vote("preflight.split_leakage", "leakage", ROOT),
    Vote("preflight.split_shift", "split_shift", ROOT),
    Vote("preflight.loss_output_pairing", "loss_output_mismatch", ROOT),
    Vote("preflight.loss_reduction", "wrong_gradient", ROOT),
    Vote("preflight.gradient_check", "wrong_gradient", ROOT),
    Vote("preflight.initial_weights", "dead_relu", ROOT, when=_DEAD_BIASES),
    Vote("preflight.initial_weights", "bad_init", ROOT, when=lambda r: _wrong_kernels(r) or not _DEAD_BIASES(r)),
    Vote("preflight.nonlinearity", "missing_nonlinearity", ROOT),
    Vote("preflight.dropout_rate", "regularization_too_strong", ROOT),
    # training mechanisms: step size, gradients, units
    Vote("monitor.gradient_norms", "vanishing_gradient", MECHANISM, when=_VANISHING),
    Vote("monitor.gradient_norms", "exploding_gradient", MECHANISM, when=_not(_VANISHING)),
    Vote("monitor.update_ratio", "lr_too_high", MECHANISM, when=lambda r: _updates_too_big(r) is True),
    Vote("monitor.update_ratio", "lr_too_low", MECHANISM, when=lambda r: _updates_too_big(r) is False),
    Vote("monitor.dead_units", "dead_relu", MECHANISM),
    Vote("monitor.saturation", "saturation", MECHANISM),
    Vote("monitor.loss_numeric", "lr_too_high", MECHANISM, 0.8),
    Vote("monitor.loss_numeric", "exploding_gradient", MECHANISM, 0.5),
    Vote("monitor.loss_diverging", "lr_too_high", MECHANISM),
    Vote("monitor.loss_oscillating", "lr_too_high", MECHANISM, 0.7),
    Vote("monitor.early_blowup", "lr_too_high", MECHANISM),
    Vote("monitor.regularization", "regularization_too_strong", MECHANISM),
    # symptoms: many causes produce them; they win only when nothing deeper is flagged
    Vote("monitor.loss_stalled", "lr_too_low", SYMPTOM, when=lambda r: not r.evidence.get("short_run")),
    Vote("monitor.loss_stalled", "too_few_epochs", SYMPTOM, 1.2, when=lambda r: bool(r.evidence.get("short_run"))),
    Vote("preflight.overfit_batch", "lr_too_low", SYMPTOM, 0.5),
    Vote("preflight.initial_loss", "loss_output_mismatch", SYMPTOM, 0.5),
    Vote("preflight.initial_loss", "bad_init", SYMPTOM, 0.4),
    Vote("preflight.zeroed_inputs", "dead_relu", SYMPTOM, 0.5),
    # label_signal trains a clone of the model itself, so a bad step size, unscaled inputs or a bad init would make
    # real labels look unlearnable too (seen on wine_lr_div1000 and wine_no_scaling); it only runs once the model
    # has memorised one batch (preflight skips it otherwise), and then it speaks for the labels themselves.
    Vote("preflight.label_signal", "wrong_labels", ROOT, 0.9),  # a scaling fault can hide a signal: it wins ties
    Vote("monitor.still_improving", "too_few_epochs", SYMPTOM),
    Vote("monitor.overfitting", "overfitting", SYMPTOM),
    Vote("monitor.underfitting", "underfitting_capacity", SYMPTOM, 0.6),
    Vote("monitor.underfitting", "wrong_labels", SYMPTOM, 0.4),
    Vote("analysis.baseline", "underfitting_capacity", SYMPTOM, 0.6, when=_not(_says("neither"))),
    Vote("analysis.baseline", "wrong_labels", SYMPTOM, 0.4, when=_not(_says("neither"))),
    Vote("analysis.baseline", "wrong_labels", SYMPTOM, 1.5, when=_says("neither")),
    Vote("analysis.confident_errors", "wrong_labels", SYMPTOM, 0.5),
    Vote("analysis.constant_units", "dead_relu", SYMPTOM, 0.5),
    Vote("analysis.receptive_field", "underfitting_capacity", SYMPTOM),
    Vote("analysis.slices", "underfitting_capacity", SYMPTOM, 0.3),
    Vote("analysis.dropout_consistency", "regularization_too_strong", SYMPTOM),
    Vote("capacity.long_context", "underfitting_capacity", MECHANISM),
)

# What goes wrong downstream of a broken training signal: a root cause there explains all of these.
_POOR_FIT = ("monitor.loss_stalled", "preflight.overfit_batch", "monitor.underfitting", "analysis.baseline",
             "monitor.still_improving", "analysis.confident_errors", "analysis.slices", "analysis.attributions",
             "analysis.receptive_field", "analysis.constant_units", "preflight.zeroed_inputs",
             "preflight.initial_loss", "preflight.label_signal")
_UNSTABLE = ("monitor.update_ratio", "monitor.gradient_norms", "monitor.loss_numeric", "monitor.loss_diverging",
             "monitor.loss_oscillating", "monitor.early_blowup", "monitor.dead_units", "monitor.saturation",
             "analysis.dropout_consistency")
_EVERYTHING_DOWNSTREAM = _POOR_FIT + _UNSTABLE + ("monitor.overfitting", "monitor.regularization")

EXPLAINS: dict[str, tuple[str, ...]] = {
    "loss_output_mismatch": _EVERYTHING_DOWNSTREAM,
    "unscaled_inputs": _EVERYTHING_DOWNSTREAM,
    "unscaled_targets": _EVERYTHING_DOWNSTREAM,
    "bad_data": _EVERYTHING_DOWNSTREAM,
    "wrong_gradient": _EVERYTHING_DOWNSTREAM,
    "bad_init": _POOR_FIT + _UNSTABLE,
    "lr_too_high": _POOR_FIT + _UNSTABLE,
    "exploding_gradient": _POOR_FIT + _UNSTABLE,
    "dead_relu": _POOR_FIT + ("monitor.dead_units", "monitor.gradient_norms", "monitor.update_ratio"),
    "lr_too_low": _POOR_FIT + ("monitor.update_ratio", "monitor.gradient_norms"),
    "vanishing_gradient": _POOR_FIT + ("monitor.update_ratio", "monitor.saturation"),
    "saturation": _POOR_FIT + ("monitor.update_ratio", "monitor.gradient_norms"),
    "missing_nonlinearity": _POOR_FIT,
    "underfitting_capacity": _POOR_FIT,
    "too_few_epochs": ("monitor.underfitting", "analysis.baseline", "analysis.confident_errors", "analysis.slices",
                       "monitor.loss_stalled"),
    "wrong_labels": _POOR_FIT + ("monitor.overfitting", "monitor.update_ratio"),  # memorising noise overfits
    "overfitting": ("analysis.baseline", "analysis.confident_errors", "analysis.slices"),
    "regularization_too_strong": _POOR_FIT + ("monitor.dead_units", "monitor.update_ratio",
                                              "analysis.dropout_consistency"),
    "split_shift": ("monitor.overfitting", "analysis.baseline", "analysis.confident_errors", "analysis.slices"),
    "leakage": (),
    "none": (),
}


# A flagged cause that another flagged signal shows to be a consequence: (cause, signals, becomes).  Steps so
# large that the loss blows up also kill ReLU units; the dead units are then not the root.
OVERRIDES = (("dead_relu", ("monitor.loss_diverging", "monitor.early_blowup", "monitor.loss_numeric",
                            "monitor.loss_oscillating"), "lr_too_high"),)


# Causes a hint may replace: what unscaled targets look like from the outside (big steps, a poor fit).  A
# flagged root or mechanism of another kind (a strong penalty, a bad init) keeps its place.
HINTABLE = {"lr_too_high", "exploding_gradient", "underfitting_capacity", "too_few_epochs", "wrong_labels",
            "lr_too_low", "none"}


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
    if any(result.check == "monitor.update_ratio" and _safely(_updates_too_big, result) is False for result in flagged):
        return []  # tiny steps explain the symptoms directly; a moderate target scale does not
    found = []
    for result in results:
        cause = result.evidence.get("hint") if isinstance(result.evidence, dict) else None
        if result.verdict == PASS and cause in CAUSES and names & set(_POOR_FIT + _UNSTABLE):
            found.append(CheckResult(result.check, WARN, result.value, result.threshold,
                                     f"{result.message} (a likely root of the checks below)", stage=result.stage,
                                     evidence=result.evidence))
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
            consequences = [result.check for result in flagged if result.check not in {row["check"] for row in
                            evidence} and result.check in EXPLAINS.get(becomes, ())]
            verdict = max((row["verdict"] for row in evidence), key=SEVERITY.get)
            return Diagnosis(becomes, verdict, _summary(becomes, evidence, consequences), CAUSES[becomes][1],
                             evidence, consequences)
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
    consequences = [result.check for result in flagged
                    if result.check not in evidence_results and result.check in EXPLAINS.get(cause, ())]
    # The problem is as serious as the worst thing it explains (a WARN-level root behind a FAIL-level symptom).
    verdict = max([row["verdict"] for row in evidence] + [by_name[name].verdict for name in consequences],
                  key=SEVERITY.get)
    return Diagnosis(cause, verdict, _summary(cause, evidence, consequences), CAUSES[cause][1], evidence,
                     consequences)


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
    return Diagnosis("none", verdict, f"No known cause for the flagged check(s) {names}: read their messages.",
                     "See the flagged checks' own messages.", evidence)


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
