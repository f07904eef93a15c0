"""analysis.baseline: the network's skill against a linear model's on the same held-out rows."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from runner.diagnostics.analysis._shared import (
    STAGE,
    _class_probabilities,
    _evaluation_split,
    _label_probabilities,
    _predict,
    _row_labels,
    _skip,
    _units_mismatch,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import output_units
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, WARN, CheckResult

NAME = "analysis.baseline"
# Each model's skill is 1 - error / error of the best constant predictor (0: no better than a constant,
# 1: perfect), so a near-linear problem where both models are excellent is not an alarm, as a raw error ratio
# of two tiny errors was.  FAIL when the network has (almost) no skill (< SKILL_NONE) while the linear model
# has a lot (> SKILL_BASELINE_HAS): a broken network; WARN when the network's skill is more than
# SKILL_GAP_WARN below the baseline's and less than half of it.
SKILL_NONE, SKILL_BASELINE_HAS, SKILL_GAP_WARN = 0.1, 0.3, 0.25
# Both skills below SKILL_NO_SIGNAL on NO_SIGNAL_ROWS+ held-out rows: WARN that nothing predicts the target.
SKILL_NO_SIGNAL, NO_SIGNAL_ROWS = 0.05, 50
# The baseline is fitted on at most this many training rows (about 3 s of logistic regression on MNIST).
BASELINE_ROWS = 5000
FIX = (
    "the network has far less skill than a linear model: train longer, tune the learning rate and capacity, "
    "or check that the features need a non-linear model"
)
FIX_NO_SIGNAL = (
    "check that the targets belong to the inputs row for row (no shuffle of one without the other, "
    "the right target column)"
)
FIX_BROKEN = (
    "the network has almost no skill while a linear model has a lot: look for a bug (wrong loss or "
    "output activation, missing scaling, dead or saturated units, a constant output)"
)


def _skill_verdict(network: float, linear: float, gap_limit: float) -> str:
    if network < SKILL_NONE and linear > SKILL_BASELINE_HAS:
        return FAIL
    if linear - network > gap_limit and network < linear / 2:
        return WARN
    return PASS  # also when both models are (near) perfect: no skill is missing


def _baseline_not_applicable(model, data, split, x, y) -> str | None:
    """Why neither model can be scored against a constant on this data, or None."""
    if data.task == "regression":
        actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
        if output_units(model, x) < actual.shape[1]:
            return f"the output has {output_units(model, x)} units but the target has {actual.shape[1]} columns"
        if np.all(np.ptp(actual, axis=0) == 0):
            return f"the {split} target is constant: no predictor can beat the constant one"
        return None
    if data.task == "multilabel":
        actual = np.asarray(y).reshape(len(y), -1) > 0.5
        if not np.any(actual.any(axis=0) & ~actual.all(axis=0)):
            return f"no label takes both values in the {split} split: balanced errors are undefined"
        return None
    if len(np.unique(data.labels("train"))) < 2:
        return "the training labels hold a single class: a classifier cannot be fitted"
    if len(np.unique(_row_labels(data, split))) < 2:
        return f"the {split} labels hold a single class: the constant predictor is already perfect"
    return _units_mismatch(model, data, x)


def _baseline_predictions(data, x, seed):
    """The linear baseline's held-out predictions (regression: values; classification: a probability per
    class; multilabel: a probability per label), its name, and whether every fit converged."""
    rows = np.arange(len(data.x_train))
    if len(rows) > BASELINE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, BASELINE_ROWS, replace=False))
    x_train = data.x_train[rows].reshape(len(rows), -1)
    if data.task == "regression":
        y = np.asarray(data.y_train, dtype="float64")[rows].reshape(len(rows), -1)
        fitted, converged = _fit_linear(x_train, y[:, 0] if y.shape[1] == 1 else y, regression=True)
        return _in_one_thread(fitted.predict, x).reshape(len(x), -1), "Ridge", converged
    if data.task == "multilabel":
        y = np.asarray(data.y_train)[rows].reshape(len(rows), -1) > 0.5
        columns, converged = [], True
        for label in y.T:
            if label.all() or not label.any():  # one value in training: the baseline predicts it
                columns.append(np.full(len(x), float(label[0])))
                continue
            fitted, ok = _fit_linear(x_train, label.astype(int), regression=False)
            columns.append(_in_one_thread(fitted.predict_proba, x)[:, 1])
            converged = converged and ok
        return np.stack(columns, axis=1), "LogisticRegression", converged
    fitted, converged = _fit_linear(x_train, data.labels("train")[rows], regression=False)
    n_classes = max(data.n_classes, int(fitted[-1].classes_.max()) + 1)
    return _full_probabilities(fitted, x, n_classes), "LogisticRegression", converged


def _fit_linear(x, y, regression: bool):
    """A standardise + linear pipeline; (pipeline, converged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    # lbfgs with 200 iterations: about 3 s for 5,000 MNIST rows; it may stop before full convergence,
    # which only makes the baseline (and so the check) more lenient; the evidence says so.
    estimator = Ridge(alpha=1.0) if regression else LogisticRegression(max_iter=200, C=1.0)
    pipeline = make_pipeline(StandardScaler(), estimator)
    # One BLAS thread: on a busy machine OpenBLAS's threads contend and MNIST's fit took 30 s instead of 3.
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(np.asarray(x, dtype="float64"), y)
    return pipeline, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _in_one_thread(function, x):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return np.asarray(function(np.asarray(x, dtype="float64")))


def _regression_skill(data, split, y, outputs, predictions) -> dict:
    """MAE per target column; the best constant for MAE is the column's median on this split."""
    actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
    network = np.asarray(outputs, dtype="float64").reshape(len(y), -1)[:, : actual.shape[1]]
    constant = np.abs(actual - np.median(actual, axis=0)).mean(axis=0)
    network_error = np.abs(network - actual).mean(axis=0)
    baseline_error = np.abs(predictions - actual).mean(axis=0)
    varying = constant > 0  # a constant column has no skill to measure
    return {
        "metric": "MAE",
        "network": float(network_error.mean()),
        "baseline": float(baseline_error.mean()),
        "constant": float(constant.mean()),
        "network_skill": float(np.mean(1 - network_error[varying] / constant[varying])),
        "baseline_skill": float(np.mean(1 - baseline_error[varying] / constant[varying])),
        "scores": (network[:, 0], predictions[:, 0]),
    }


def _class_skill(data, split, y, outputs, predictions) -> dict:
    """Balanced error rate; a constant class scores 1 - 1/k over the k classes present in the split."""
    labels = _row_labels(data, split)
    network_probabilities = _class_probabilities(outputs)
    if predictions.shape[1] < network_probabilities.shape[1]:  # the output has more units than classes
        predictions = np.pad(predictions, ((0, 0), (0, network_probabilities.shape[1] - predictions.shape[1])))
    constant = 1.0 - 1.0 / len(np.unique(labels))
    network = _balanced_error(labels, network_probabilities.argmax(axis=1))
    linear = _balanced_error(labels, predictions.argmax(axis=1))
    return {
        "metric": "balanced error rate",
        "network": network,
        "baseline": linear,
        "constant": constant,
        "network_skill": 1 - network / constant,
        "baseline_skill": 1 - linear / constant,
        "scores": _scores_to_correlate(network_probabilities, predictions),
    }


def _multilabel_skill(data, split, y, outputs, predictions) -> dict:
    """Balanced error per label (a constant scores 0.5), averaged over labels that take both values."""
    actual = np.asarray(y).reshape(len(y), -1) > 0.5
    network_probabilities = _label_probabilities(outputs)[:, : actual.shape[1]]
    judged = [k for k in range(actual.shape[1]) if 0 < actual[:, k].sum() < len(actual)]
    network = [
        _balanced_error(actual[:, k].astype(int), (network_probabilities[:, k] > 0.5).astype(int)) for k in judged
    ]
    linear = [_balanced_error(actual[:, k].astype(int), (predictions[:, k] > 0.5).astype(int)) for k in judged]
    return {
        "metric": "balanced error rate (mean over labels)",
        "network": float(np.mean(network)),
        "baseline": float(np.mean(linear)),
        "constant": 0.5,
        "labels_judged": len(judged),
        "network_skill": float(np.mean(1 - np.asarray(network) / 0.5)),
        "baseline_skill": float(np.mean(1 - np.asarray(linear) / 0.5)),
        "scores": (network_probabilities.reshape(-1), predictions.reshape(-1)),
    }


def _full_probabilities(fitted, x, n_classes):
    """The baseline's probabilities with a column for every class, also those absent from its train rows."""
    from threadpoolctl import threadpool_limits

    probabilities = np.zeros((len(x), n_classes))
    with threadpool_limits(1):
        probabilities[:, fitted[-1].classes_.astype(int)] = fitted.predict_proba(x)
    return probabilities


def _balanced_error(labels, predicted) -> float:
    """1 - mean per-class recall: a constant prediction scores 1 - 1/k however imbalanced the classes, so a
    network stuck on the majority class cannot look as good as a baseline that learned something."""
    return float(np.mean([np.mean(predicted[labels == c] != c) for c in np.unique(labels)]))


def _scores_to_correlate(network, baseline):
    if network.shape[1] == 2:
        return network[:, 1], baseline[:, 1]
    return network.reshape(-1), baseline.reshape(-1)


def _pearson(a, b):
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


@check(
    NAME,
    threshold=f"WARN: skill gap > {SKILL_GAP_WARN:g} and below half the baseline's; FAIL: skill < "
    f"{SKILL_NONE:g} while the baseline's > {SKILL_BASELINE_HAS:g}",
    fix=FIX,
    what="the linear baseline's skill minus the network's on held-out rows, where skill is 1 - error / error "
    "of the best constant predictor (balanced error rate or MAE)",
)
def baseline(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """A linear baseline (Ridge / logistic regression on standardised, flattened inputs, at most
    BASELINE_ROWS training rows) against the network on the same held-out rows, judged by skill:
    1 - error / error of the best constant predictor (balanced error rate, or MAE), averaged over target
    columns (regression) or labels (multilabel).  Also the Pearson correlation of the two models' scores."""
    split, x, y = _evaluation_split(data)
    reason = _baseline_not_applicable(model, data, split, x, y)
    if reason:
        return _skip(NAME, reason)
    outputs = _predict(model, x)
    predictions, baseline_name, converged = _baseline_predictions(data, x.reshape(len(x), -1), options.seed)
    scores = {"regression": _regression_skill, "multilabel": _multilabel_skill}.get(data.task, _class_skill)
    measured = scores(data, split, y, outputs, predictions)
    network, linear = measured["network_skill"], measured["baseline_skill"]
    gap_limit = options.threshold(NAME, SKILL_GAP_WARN)
    verdict = _skill_verdict(network, linear, gap_limit)
    # Neither model beats a constant on enough rows: nothing in the inputs predicts the target (shuffled
    # labels, a misaligned target column), or the task is that hard; either way the user must know.
    no_signal = verdict == PASS and max(network, linear) < SKILL_NO_SIGNAL and len(x) >= NO_SIGNAL_ROWS
    verdict = WARN if no_signal else verdict
    correlation = _pearson(*measured.pop("scores"))
    message = ("neither the network nor a linear model predicts better than a constant: " if no_signal else "") + (
        f"{split} {measured['metric']}: network {measured['network']:.4f} (skill {network:.2f}), "
        f"{baseline_name} {measured['baseline']:.4f} (skill {linear:.2f}), best constant "
        f"{measured['constant']:.4f}; correlation of their predictions "
        + ("undefined (a constant prediction)" if correlation is None else f"{correlation:.2f}")
    )
    fix = FIX_NO_SIGNAL if no_signal else {PASS: "", WARN: FIX, FAIL: FIX_BROKEN}[verdict]
    evidence = {
        **measured,
        "no_signal": no_signal,
        "split": split,
        "baseline_model": baseline_name,
        "baseline_converged": converged,
        "train_rows": min(len(data.x_train), BASELINE_ROWS),
        "correlation": correlation,
    }
    return CheckResult(NAME, verdict, linear - network, gap_limit, message, fix, STAGE, evidence)
