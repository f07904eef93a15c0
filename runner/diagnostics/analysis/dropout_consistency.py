"""analysis.dropout_consistency: whether the model predicts the same in training and inference mode."""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.analysis._shared import (
    STAGE,
    _class_probabilities,
    _evaluation_split,
    _label_probabilities,
    _probe_rows,
    _skip,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import stochastic_layers
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, WARN, CheckResult

NAME = "analysis.dropout_consistency"
# The mean of this many train-mode passes (each with new dropout masks) stands for the training-time
# prediction of a probe row.
TRAIN_PASSES = 8
# WARN when more than a tenth of the probe rows change their prediction (regression: a mean |difference| of a
# tenth of the target's standard deviation); an MLP with dropout 0.1 stays below, one with 0.9 goes above.
CONSISTENCY_WARN = 0.1
FIX = (
    "train and inference behaviour disagree: lower the dropout rate (above 0.5 is rarely useful), put "
    "dropout after batch normalisation rather than before it, or use larger batches for batch norm"
)


def _train_mode_passes(model, x, passes):
    """(passes, ...) outputs with training=True; batch-norm statistics and seed states are put back after,
    so the check leaves the model as it found it."""
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    try:
        return np.stack([keras.ops.convert_to_numpy(model(x, training=True)) for _ in range(passes)])
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


def disagreement(task, target, averaged, inference) -> tuple[float, str]:
    """How far the averaged train-mode outputs are from the inference outputs, and what that measures."""
    if task == "regression":
        spread = float(np.std(np.asarray(target, dtype="float64"))) or 1.0
        return (
            float(np.mean(np.abs(averaged - inference)) / spread),
            "mean |difference| in target standard deviations",
        )
    if task == "multilabel":
        return (
            float(np.mean((_label_probabilities(averaged) > 0.5) != (_label_probabilities(inference) > 0.5))),
            "share of label decisions that change",
        )
    return (
        float(np.mean(_class_probabilities(averaged).argmax(axis=1) != _class_probabilities(inference).argmax(axis=1))),
        "share of rows whose predicted class changes",
    )


def _mode_losses(model, target, inference, train_passes):
    loss = getattr(model, "loss", None)
    if loss is None:
        return {}
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss

    def mean_loss(prediction):
        # Keras's compiled loss reshapes (rows,) labels to a (rows, 1) output; do the same here.
        y = np.reshape(target, prediction.shape) if np.size(target) == prediction.size else target
        return float(np.mean(keras.ops.convert_to_numpy(loss_fn(y, prediction))))

    return {"inference": mean_loss(inference), "train_mode": float(np.mean([mean_loss(p) for p in train_passes]))}


@check(
    NAME,
    threshold=CONSISTENCY_WARN,
    fix=FIX,
    what=f"the share of probe rows whose prediction changes between inference mode and the mean of "
    f"{TRAIN_PASSES} train-mode passes (regression: mean |difference| in target standard deviations)",
)
def dropout_consistency(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Inference-mode predictions against the mean of TRAIN_PASSES train-mode passes on the probe batch:
    share of rows whose predicted class changes (regression: mean |difference| / target std).  A large
    disagreement means dropout or batch normalisation behaves very differently at inference."""
    stochastic = stochastic_layers(model)
    if not stochastic:
        return _skip(NAME, "the model has no dropout, noise or batch-normalisation layer")
    split, x, y = _evaluation_split(data)
    rows = _probe_rows(data, split, options)
    probe, target = x[rows].astype("float32"), y[rows]
    inference = keras.ops.convert_to_numpy(model(probe, training=False))
    train_passes = _train_mode_passes(model, probe, TRAIN_PASSES)
    value, measure = disagreement(data.task, target, train_passes.mean(axis=0), inference)
    losses = _mode_losses(model, target, inference, train_passes)
    warn_at = options.threshold(NAME, CONSISTENCY_WARN)
    verdict = WARN if value > warn_at else PASS
    message = (
        f"inference vs mean of {TRAIN_PASSES} train-mode passes on {len(rows)} {split} rows: {measure} "
        f"= {value:.3f}"
        + (f"; loss {losses['inference']:.4f} (inference) vs {losses['train_mode']:.4f} (train mode)" if losses else "")
    )
    fix = "" if verdict == PASS else FIX
    return CheckResult(
        NAME,
        verdict,
        value,
        warn_at,
        message,
        fix,
        STAGE,
        {"layers": stochastic, "passes": TRAIN_PASSES, "losses": losses, "split": split},
    )
