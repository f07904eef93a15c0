"""analysis.slices: a group of held-out rows (a slice) on which the model is much worse than elsewhere."""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.analysis import plots
from runner.diagnostics.analysis._shared import (
    STAGE,
    _class_probabilities,
    _evaluation_split,
    _label_probabilities,
    _predict,
    _row_labels,
    _skip,
)
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.registry import check
from runner.diagnostics.result import PASS, SKIP, WARN, CheckResult

NAME = "analysis.slices"
# A slice with at least SLICE_MIN_ROWS rows is flagged when its error is more than SLICE_RATIO times the error
# of all other rows and (classification) at least SLICE_MARGIN higher in absolute terms, so a naturally
# harder class (seizure recall 0.93 vs 0.98 elsewhere) is not an alarm.
SLICE_MIN_ROWS, SLICE_RATIO, SLICE_MARGIN = 20, 2.0, 0.1
FIX = (
    "inspect these rows (label errors, a distribution shift, too few training rows of this kind); collect "
    "or weight more data for the slice"
)


def row_errors(model, data, split, x, y):
    """Per row: 1 when wrong (classification), the share of wrong label decisions (multilabel), or the mean
    absolute error over target columns (regression)."""
    outputs = _predict(model, x)
    if data.task == "regression":
        actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
        return np.abs(outputs.reshape(len(y), -1)[:, : actual.shape[1]] - actual).mean(axis=1)
    if data.task == "multilabel":
        actual = np.asarray(y).reshape(len(y), -1) > 0.5
        return ((_label_probabilities(outputs)[:, : actual.shape[1]] > 0.5) != actual).mean(axis=1)
    return (_class_probabilities(outputs).argmax(axis=1) != _row_labels(data, split)).astype("float64")


def _label_strata(data, split) -> np.ndarray | None:
    """One integer per row naming its true label (multilabel: its set of labels); None for regression."""
    if data.task == "regression":
        return None
    if data.task == "multilabel":
        y = np.asarray(data.split(split)[1])
        label_sets = y.reshape(len(y), -1) > 0.5
        return np.unique(label_sets, axis=0, return_inverse=True)[1].reshape(len(y))
    return _row_labels(data, split)


def _slice_entry(errors, inside, strata) -> dict:
    """A slice's error, and the error of the rows it is compared with.  With label strata: only the slice's
    rows whose label also occurs outside it count ("compared"), against the outside rows of those labels
    weighted by the slice's label mix; "rest" is NaN when no label of the slice occurs outside it."""
    entry = {"rows": int(inside.sum()), "error": float(errors[inside].mean())}
    if strata is None:
        rest = float(errors[~inside].mean()) if (~inside).any() else float("nan")
        return {**entry, "compared": entry["error"], "rest": rest}
    shared_labels = [label for label in np.unique(strata[inside]) if np.any(~inside & (strata == label))]
    if not shared_labels:
        return {**entry, "compared": entry["error"], "rest": float("nan")}
    weights = [np.sum(inside & (strata == label)) for label in shared_labels]
    outside_errors = [errors[~inside & (strata == label)].mean() for label in shared_labels]
    compared = errors[inside & np.isin(strata, shared_labels)]
    return {**entry, "compared": float(compared.mean()), "rest": float(np.average(outside_errors, weights=weights))}


def _slice_is_worse(entry, ratio_limit, task) -> bool:
    if entry["rows"] < SLICE_MIN_ROWS or not np.isfinite(entry["rest"]):
        return False
    margin = 0.0 if task == "regression" else SLICE_MARGIN
    return entry["compared"] > ratio_limit * entry["rest"] and entry["compared"] - entry["rest"] >= margin


@check(
    NAME,
    threshold=SLICE_RATIO,
    fix=FIX,
    what=f"the largest ratio of a slice's error to that of comparable rows outside it (slices of "
    f"{SLICE_MIN_ROWS}+ held-out rows; classification also needs a gap of {SLICE_MARGIN:g})",
)
def slices(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Error rate (classification, multilabel: share of wrong label decisions) or MAE (regression) per slice
    of the evaluation split.  A classification slice is compared only with rows of the same true labels
    outside it: a slice that is mostly one class must not look bad because that class is the harder one.
    WARN when a slice of SLICE_MIN_ROWS+ rows is SLICE_RATIO times worse than those rows."""
    split, x, y = _evaluation_split(data)
    groups = data.slices.get(split)
    if groups is None:
        return _skip(NAME, f"no slices given for the {split} split")
    groups = np.asarray(groups)
    if groups.ndim != 1:  # diagnostics.slices=label on a multilabel task: a row belongs to several labels
        return _skip(NAME, f"the {split} slices hold {groups.shape[1:]} values per row; slicing needs one per row")
    if len(groups) != len(x):
        raise ValueError(f"data.slices[{split!r}] has {len(groups)} entries for {len(x)} {split} rows")
    errors = row_errors(model, data, split, x, y)
    strata = _label_strata(data, split)
    table = {str(value): _slice_entry(errors, groups == value, strata) for value in np.unique(groups)}
    # A slice that is a whole label class (with slices == the labels: every slice) has no same-label rows
    # to compare with.  Its error is then that class's error rate, whose spread across classes measures how
    # hard each class is, not a flaw of the slice; preflight.class_balance and the confusion of classes are
    # the place for that, so such a slice is listed, never judged.
    unjudged = sorted(k for k, v in table.items() if not np.isfinite(v["rest"]))
    ratio_limit = options.threshold(NAME, SLICE_RATIO)
    flagged = {k: v for k, v in table.items() if _slice_is_worse(v, ratio_limit, data.task)}
    eligible = [v for v in table.values() if v["rows"] >= SLICE_MIN_ROWS and np.isfinite(v["rest"]) and v["rest"] > 0]
    worst_ratio = max((v["compared"] / v["rest"] for v in eligible), default=0.0)
    metric = {"regression": "MAE", "multilabel": "label error rate"}.get(data.task, "error rate")
    name = data.slice_name or "slice"
    comparison = "the rest" if strata is None else "rows of the same labels outside it"
    evidence = {"metric": metric, "slices": table, "not_judged": unjudged, "compared_with": comparison}
    drawn = plots.slice_plot(options, table, metric, name)
    if len(unjudged) == len(table):
        return CheckResult(
            NAME,
            SKIP,
            None,
            ratio_limit,
            f"skipped: every {name} is a whole label class (no rows of the same labels outside "
            f"it), so a {name}'s error is a class's error; nothing to compare",
            "",
            STAGE,
            evidence,
            drawn,
        )
    if flagged:
        listed = ", ".join(
            f"{name}={k}: {metric} {v['compared']:.3f} vs {v['rest']:.3f} on {comparison} ({v['rows']} rows)"
            for k, v in flagged.items()
        )
        return CheckResult(
            NAME,
            WARN,
            worst_ratio,
            ratio_limit,
            f"slices much worse than {comparison}: {listed}",
            FIX,
            STAGE,
            {**evidence, "flagged": sorted(flagged)},
            drawn,
        )
    margin = f" and {SLICE_MARGIN:g} above" if data.task != "regression" else ""
    skipped = f"; not judged (whole label classes): {', '.join(unjudged)}" if unjudged else ""
    return CheckResult(
        NAME,
        PASS,
        worst_ratio,
        ratio_limit,
        f"no {name} of {SLICE_MIN_ROWS}+ {split} rows has a {metric} more than {ratio_limit:g}x"
        f"{margin} that of {comparison} (largest ratio {worst_ratio:.2f}; "
        + ", ".join(f"{k}: {v['error']:.3f}" for k, v in table.items())
        + ")"
        + skipped,
        "",
        STAGE,
        evidence,
        drawn,
    )
