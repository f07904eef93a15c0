"""The fixed cause vocabulary of the ranked diagnosis (diagnosis.py): the causes with their description and one
fix, the votes by which flagged checks point at them, and what each cause explains downstream.

A vote has a standing: a root cause (the data, the loss/output pairing, scaling, initialisation) outranks a
training mechanism (step size, gradients, dead or saturated units), which outranks a symptom (a stalled loss,
underfitting, a lost baseline).  The tables and the small predicates their votes use; the ranking itself is in
diagnosis.py.  Pure Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.diagnostics.result import FAIL, WARN, CheckResult

ROOT, MECHANISM, SYMPTOM = 3, 2, 1

# cause -> (one-line description, its one fix)
CAUSES: dict[str, tuple[str, str]] = {
    "loss_output_mismatch": (
        "the loss does not fit the output layer (activation, units or target encoding)",
        (
            "Pair the loss with the output: sigmoid + binary cross-entropy, softmax + "
            "(sparse) categorical cross-entropy, linear + MSE for regression."
        ),
    ),
    "lr_too_high": (
        "the learning rate is too high: steps overshoot and the loss jumps or blows up",
        "Lower the learning rate by 10x (and clip gradients with optimizer.clipnorm=1.0).",
    ),
    "lr_too_low": (
        "the learning rate is too low: the weights barely move",
        "Raise the learning rate by 10x (Adam usually starts well at 1e-3).",
    ),
    "unscaled_inputs": (
        "the inputs are far from unit scale (unscaled, or scaled twice)",
        "Standardise the inputs once (zero mean, unit variance per feature; images / 255 once).",
    ),
    "unscaled_targets": (
        "the regression targets are far from unit scale",
        "Standardise the regression targets (and undo it on the predictions).",
    ),
    "bad_init": (
        "the initial weights are constant or of the wrong scale for their activations",
        (
            "Use the initializer that matches the activation: he_normal for ReLU, glorot_uniform for "
            "tanh/sigmoid/linear."
        ),
    ),
    "dead_relu": (
        "ReLU units are dead: their input is always negative, so they pass no gradient",
        "Initialise biases at zero, lower the learning rate, or use LeakyReLU/ELU.",
    ),
    "vanishing_gradient": (
        "the gradients vanish before they reach the first layers",
        (
            "Use ReLU hidden layers with He initialisation (or add batch normalisation / "
            "residual connections) so gradients reach the first layers."
        ),
    ),
    "exploding_gradient": (
        "the gradients explode (huge or NaN norms)",
        "Clip gradients (optimizer.clipnorm=1.0) and lower the learning rate.",
    ),
    "saturation": (
        "sigmoid/tanh units are saturated, so their gradients are near zero",
        "Keep pre-activations small: Glorot initialisation and scaled inputs, or ReLU hidden layers.",
    ),
    "too_few_epochs": (
        "training stopped while the loss was still falling",
        "Train for more epochs (or raise early stopping's patience).",
    ),
    "wrong_labels": (
        "the labels do not match the inputs (shuffled, misaligned or noisy)",
        ("Check that labels and inputs are aligned row for row (no shuffle of one without the other)."),
    ),
    "underfitting_capacity": (
        "the model is too small or too simple for the task",
        "Give the model more capacity (wider or deeper layers, or a fitting architecture).",
    ),
    "overfitting": (
        "the model memorises the training data: validation loss rises while training loss falls",
        "Regularise: add dropout or L2, use more data, or stop earlier (early stopping).",
    ),
    "regularization_too_strong": (
        "regularisation (L2, dropout) swamps the data loss",
        "Weaken the regularisation: lower L2 by 10x or dropout to 0.2-0.5.",
    ),
    "split_shift": (
        "the train and validation/test splits come from different distributions",
        "Split the data at random (stratified), or make the splits come from the same distribution.",
    ),
    "leakage": (
        "held-out rows also occur in the training data, so the scores are inflated",
        "Remove duplicates before splitting, so no held-out row occurs in training.",
    ),
    "bad_data": (
        "the data is broken: NaN/Inf values, a constant target or a class without samples",
        "Clean the data: drop or impute NaN/Inf rows and check the targets before training.",
    ),
    "missing_nonlinearity": (
        "the hidden layers have no non-linear activation, so the stack is one linear map",
        "Give the hidden layers a non-linear activation (relu).",
    ),
    "wrong_gradient": (
        "a custom layer or loss computes a wrong gradient or reduction",
        (
            "Fix the custom layer/loss: its gradient must match finite differences and the loss "
            "must average over the batch."
        ),
    ),
    "none": ("no check points at a problem", "Nothing to fix."),
}


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


def updates_too_big(result: CheckResult) -> bool | None:
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
    Vote("preflight.target_scale", "unscaled_targets", ROOT),  # also a PASS with a hint (see diagnosis._hints)
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
    Vote("monitor.update_ratio", "lr_too_high", MECHANISM, when=lambda r: updates_too_big(r) is True),
    Vote("monitor.update_ratio", "lr_too_low", MECHANISM, when=lambda r: updates_too_big(r) is False),
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
POOR_FIT = (
    "monitor.loss_stalled",
    "preflight.overfit_batch",
    "monitor.underfitting",
    "analysis.baseline",
    "monitor.still_improving",
    "analysis.confident_errors",
    "analysis.slices",
    "analysis.attributions",
    "analysis.gradcam_focus",
    "analysis.receptive_field",
    "analysis.constant_units",
    "preflight.zeroed_inputs",
    "preflight.initial_loss",
    "preflight.label_signal",
)
UNSTABLE = (
    "monitor.update_ratio",
    "monitor.gradient_norms",
    "monitor.loss_numeric",
    "monitor.loss_diverging",
    "monitor.loss_oscillating",
    "monitor.early_blowup",
    "monitor.dead_units",
    "monitor.saturation",
    "analysis.dropout_consistency",
)
_EVERYTHING_DOWNSTREAM = POOR_FIT + UNSTABLE + ("monitor.overfitting", "monitor.regularization")

EXPLAINS: dict[str, tuple[str, ...]] = {
    "loss_output_mismatch": _EVERYTHING_DOWNSTREAM,
    "unscaled_inputs": _EVERYTHING_DOWNSTREAM,
    "unscaled_targets": _EVERYTHING_DOWNSTREAM,
    "bad_data": _EVERYTHING_DOWNSTREAM,
    "wrong_gradient": _EVERYTHING_DOWNSTREAM,
    "bad_init": POOR_FIT + UNSTABLE,
    "lr_too_high": POOR_FIT + UNSTABLE,
    "exploding_gradient": POOR_FIT + UNSTABLE,
    "dead_relu": POOR_FIT + ("monitor.dead_units", "monitor.gradient_norms", "monitor.update_ratio"),
    "lr_too_low": POOR_FIT + ("monitor.update_ratio", "monitor.gradient_norms"),
    "vanishing_gradient": POOR_FIT + ("monitor.update_ratio", "monitor.saturation"),
    "saturation": POOR_FIT + ("monitor.update_ratio", "monitor.gradient_norms"),
    "missing_nonlinearity": POOR_FIT,
    "underfitting_capacity": POOR_FIT,
    "too_few_epochs": (
        "monitor.underfitting",
        "analysis.baseline",
        "analysis.confident_errors",
        "analysis.slices",
        "monitor.loss_stalled",
    ),
    "wrong_labels": POOR_FIT + ("monitor.overfitting", "monitor.update_ratio"),  # memorising noise overfits
    "overfitting": ("analysis.baseline", "analysis.confident_errors", "analysis.slices"),
    "regularization_too_strong": POOR_FIT
    + ("monitor.dead_units", "monitor.update_ratio", "analysis.dropout_consistency"),
    "split_shift": ("monitor.overfitting", "analysis.baseline", "analysis.confident_errors", "analysis.slices"),
    "leakage": (),
    "none": (),
}


# A flagged cause that another flagged signal shows to be a consequence: (cause, signals, becomes).  Steps so
# large that the loss blows up also kill ReLU units; the dead units are then not the root.
OVERRIDES = (
    (
        "dead_relu",
        ("monitor.loss_diverging", "monitor.early_blowup", "monitor.loss_numeric", "monitor.loss_oscillating"),
        "lr_too_high",
    ),
)


# Causes a hint may replace: what unscaled targets look like from the outside (big steps, a poor fit).  A
# flagged root or mechanism of another kind (a strong penalty, a bad init) keeps its place.
HINTABLE = {
    "lr_too_high",
    "exploding_gradient",
    "underfitting_capacity",
    "too_few_epochs",
    "wrong_labels",
    "lr_too_low",
    "none",
}
