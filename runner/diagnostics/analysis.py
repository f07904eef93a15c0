"""Post-training analysis: what the trained network does, judged on held-out data.

``run(model, data, options)`` runs each check below on a trained, compiled Keras model and NumPy arrays.
Every check returns one ``CheckResult`` of stage ``analysis``; a check that cannot apply to the model or the
data (no recurrent layer, no image input, no slices, no dropout) returns SKIP with the reason.  Plots go
under ``options.output_dir`` (none when it is None).  The model's weights and state are left as they were.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from math import isqrt

import keras
import numpy as np

from runner.diagnostics import figures
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import input_gradients
from runner.diagnostics.report import FAIL, PASS, SKIP, WARN, CheckResult, Report

STAGE = "analysis"
RECURRENT = {"LSTM", "GRU", "SimpleRNN"}
SEQUENCE_LAYERS = RECURRENT | {"Bidirectional", "Conv1D", "ConvLSTM1D"}
STOCHASTIC = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
              "GaussianDropout", "GaussianNoise", "BatchNormalization"}
PREDICT_BATCH = 1024

# constant_units: a unit is constant when its std over probe samples (and time steps) is below this, the
# level at which diagnostics-reference.md calls a unit dead.  A layer is flagged when more than half of its
# units are constant (the reference's dead-layer rule); FAIL when nearly all are: the layer passes on almost
# no information.
CONSTANT_STD = 1e-5
CONSTANT_WARN, CONSTANT_FAIL = 0.5, 0.9
# receptive_field: an input step is visible when the averaged gradient magnitude is at least this share of
# the peak (the case study's model lost 10^6 within ~450 steps); WARN when less than half the steps are.
VISIBLE_RATIO = 1e-6
COVERAGE_WARN = 0.5
# confident_errors: wrong with probability above this is "confidently wrong"; WARN when such errors are the
# majority of the errors and more than 2% of all rows (a healthy 98%-accurate MNIST MLP stays below).
CONFIDENT = 0.99
OVERCONFIDENT_SHARE_OF_ERRORS, OVERCONFIDENT_SHARE_OF_ROWS = 0.5, 0.02
TOP_ERRORS = 10
# slices: a slice with at least SLICE_MIN_ROWS rows is flagged when its error is more than SLICE_RATIO times
# the error of all other rows and (classification) at least SLICE_MARGIN higher in absolute terms, so a
# naturally harder class (seizure recall 0.93 vs 0.98 elsewhere) is not an alarm.
SLICE_MIN_ROWS, SLICE_RATIO, SLICE_MARGIN = 20, 2.0, 0.1
# baseline: ratio of the network's test error to the baseline's.  PASS below 0.98 (better by 2%), FAIL above
# 1.25 (clearly worse, as a broken network is), WARN between.
BASELINE_PASS, BASELINE_FAIL = 0.98, 1.25
BASELINE_ROWS = 5000
# dropout_consistency: share of probe rows whose prediction changes between inference mode and the mean of
# TRAIN_PASSES train-mode passes (regression: mean |difference| in target std units).
TRAIN_PASSES = 8
CONSISTENCY_WARN = 0.1


def run(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions | None = None,
        history: dict[str, list[float]] | None = None, monitor=None) -> Report:
    """All enabled analysis checks on a trained model.  ``history`` and ``monitor`` are accepted for the
    common stage interface; the monitor plots its own histograms, so neither is needed here."""
    options = options or DiagnosticOptions()
    report = Report()
    for check, function in CHECKS.items():
        if not options.enabled(check):
            continue
        start = time.perf_counter()
        result = function(model, data, options)
        result.seconds = time.perf_counter() - start
        report.add(result)
    return report


# --------------------------------------------------------------------------------------------- activations

def constant_units(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Share of each hidden layer's units whose activation does not vary over probe samples (dense) or over
    samples and time steps (recurrent); heat maps of units x samples and units x time steps."""
    check = "analysis.constant_units"
    layers = _unit_layers(model)
    if not layers:
        return _skip(check, "the model has no hidden Dense, Activation or recurrent layer")
    split, x, _ = _evaluation_split(data)
    rows = _probe_rows(data, split, options)
    activations = _layer_outputs(model, layers, x[rows])
    labels = _row_labels(data, split)[rows]
    shares, over_time, plots = {}, {}, []
    for layer, values in zip(layers, activations):
        flat = values.reshape(-1, values.shape[-1])
        shares[layer.name] = float(np.mean(flat.std(axis=0) < CONSTANT_STD))
        over_time[layer.name] = values.ndim == 3
        plots += _activation_heatmap(options, layer, values, labels)
    worst = max(shares, key=shares.get)
    warn_at = options.threshold(check, CONSTANT_WARN)
    verdict = FAIL if shares[worst] >= CONSTANT_FAIL else WARN if shares[worst] > warn_at else PASS
    message = (f"{shares[worst]:.0%} of the units of layer '{worst}' are constant over {len(rows)} {split} "
               f"samples" + (" and all time steps" if over_time[worst] else ""))
    fix = "" if verdict == PASS else (
        "dead or stuck units: use LeakyReLU/ELU, lower the learning rate, check bias initialisation and L2 "
        "strength, or use fewer units")
    regularized = _has_weight_penalty(next(layer for layer in layers if layer.name == worst))
    if verdict == FAIL and regularized:
        # A weight penalty switches whole units off on purpose (the book's mnist_l2: 94% of a layer), so the
        # loud verdict belongs to monitor.regularization; here it is a consequence, not a second bug.
        verdict = WARN
        message += "; the layer has a weight penalty, which can shrink units to zero (see monitor.regularization)"
        fix = "lower the L2 factor; " + fix
    return CheckResult(check, verdict, shares[worst], warn_at, message, fix, STAGE,
                       {"constant_share": shares, "constant_std": CONSTANT_STD, "split": split}, plots)


def _has_weight_penalty(layer) -> bool:
    inner = getattr(layer, "forward_layer", layer)  # a Bidirectional wrapper's penalties sit on its layers
    return any(getattr(inner, name, None) is not None
               for name in ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer"))


def _unit_layers(model):
    """Hidden layers whose outputs are units: Dense with a non-linear activation, Activation, recurrent."""
    outputs = {id(tensor) for tensor in model.outputs}
    found = []
    for layer in model.layers:
        if any(id(tensor) in outputs for tensor in _as_list(layer.output)):
            continue
        kind = type(layer).__name__
        dense_with_activation = kind == "Dense" and _activation_name(layer) != "linear"
        if dense_with_activation or kind == "Activation" or kind in RECURRENT or kind == "Bidirectional":
            found.append(layer)
    return found


def _layer_outputs(model, layers, x):
    """Activations of ``layers`` on ``x``; recurrent layers always as (samples, time steps, units)."""
    tensors = [layer.input if _is_recurrent(layer) else layer.output for layer in layers]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    values = keras.Model(inputs, tensors)(x, training=False)
    values = [keras.ops.convert_to_numpy(v) for v in _as_list(values)]
    return [_sequence_outputs(layer, value) if _is_recurrent(layer) else value
            for layer, value in zip(layers, values)]


def _sequence_outputs(layer, inputs):
    """A recurrent layer's output at every time step: the layer itself when it returns sequences, else a
    twin built from its config with return_sequences=True and the same weights."""
    config = layer.get_config()
    inner = [config["layer"]["config"]] if "layer" in config else [config]
    if config.get("backward_layer"):
        inner.append(config["backward_layer"]["config"])
    if all(part.get("return_sequences") for part in inner):
        return keras.ops.convert_to_numpy(layer(inputs, training=False))
    for part in inner:
        part["return_sequences"] = True
    twin = type(layer).from_config(config)
    twin(inputs[:1])
    twin.set_weights(layer.get_weights())
    return keras.ops.convert_to_numpy(twin(inputs, training=False))


def _activation_heatmap(options, layer, values, labels) -> list[str]:
    name = f"analysis/activations_{layer.name}.png"
    path = options.plot_path(name)
    if path is None:
        return []
    if values.ndim == 3:
        # Units x time steps of the first probe sample; a Bidirectional output holds forward then backward.
        split_line = (values.shape[-1] / 2 - 0.5,) if type(layer).__name__ == "Bidirectional" else ()
        title = f"{layer.name}: units x time steps (sample label {labels[0]})"
        if split_line:
            title += "; forward units above the line, backward below"
        figures.heatmap(path, values[0].T, title, "time step", "unit", hlines=split_line)
    else:
        ticks = _group_ticks(labels)
        figures.heatmap(path, values.T, f"{layer.name}: units x probe samples (sorted by label)",
                        "sample (label)", "unit", xticks=ticks)
    return [name]


def _group_ticks(labels):
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" or len(np.unique(labels)) > 20:
        return None
    values, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    return [list(starts + counts / 2.0), [str(v) for v in values]]


# -------------------------------------------------------------------------------------------- attributions

def attributions(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Saliency (|d true-class probability / d pixel|) and occlusion sensitivity (drop of the true class's
    probability when a patch is blanked) on one image per class.  Information only: PASS with the mean
    largest occlusion drop as the value."""
    check = "analysis.attributions"
    split, x, _ = _evaluation_split(data)
    shape = _image_shape(model, data, x)
    if shape is None:
        return _skip(check, "not an image classifier (needs 2-D inputs or a square number of at least 256 "
                            "features, a classification task and no recurrent layer)")
    labels = _row_labels(data, split)
    rows = np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)[:10]])
    images, targets = x[rows].astype("float32"), labels[rows]
    probabilities = _class_probabilities(_predict(model, images))[np.arange(len(rows)), targets]
    saliency = np.abs(input_gradients(model, images, _true_class_score(targets, _output_units(model))))
    fill = float(np.median(data.x_train))
    drops = _occlusion_drops(model, images, targets, probabilities, shape, fill)
    plots = _attribution_figure(options, images, targets, probabilities, saliency, drops, shape)
    table = [{"index": int(r), "label": int(t), "probability": float(p), "max_occlusion_drop": float(d.max())}
             for r, t, p, d in zip(rows, targets, probabilities, drops)]
    value = float(np.mean([d.max() for d in drops]))
    return CheckResult(check, PASS, value, None,
                       f"saliency and occlusion maps for {len(rows)} {split} images (one per class); mean "
                       f"largest drop of the true class's probability under a 4x4 patch: {value:.2f}",
                       "", STAGE, {"images": table, "patch": 4, "fill": fill}, plots)


def _image_shape(model, data, x):
    if data.task == "regression" or _has_layers(model, SEQUENCE_LAYERS):
        return None
    return _flat_image_shape(x)


def _occlusion_drops(model, images, targets, probabilities, shape, fill, patch=4):
    """(images, grid rows, grid cols) drop of the true class's probability, all occlusions in one predict."""
    height, width = shape
    corners = [(r, c) for r in range(0, height - patch + 1, patch) for c in range(0, width - patch + 1, patch)]
    batch = np.repeat(images.reshape(len(images), height, width, -1), len(corners), axis=0)
    for index in range(len(batch)):
        r, c = corners[index % len(corners)]
        batch[index, r:r + patch, c:c + patch] = fill
    occluded = _class_probabilities(_predict(model, batch.reshape((len(batch),) + images.shape[1:])))
    occluded = occluded[np.arange(len(batch)), np.repeat(targets, len(corners))]
    grid = (len(range(0, height - patch + 1, patch)), len(range(0, width - patch + 1, patch)))
    return probabilities[:, None, None] - occluded.reshape((len(images),) + grid)


def _attribution_figure(options, images, targets, probabilities, saliency, drops, shape):
    name = "analysis/attributions.png"
    path = options.plot_path(name)
    if path is None:
        return []
    rows, titles = [], []
    for image, target, p, grad, drop in zip(images, targets, probabilities, saliency, drops):
        scale = shape[0] // drop.shape[0]
        rows.append([image.reshape(shape), grad.reshape(shape[0], shape[1], -1).sum(axis=-1),
                     np.kron(drop, np.ones((scale, scale)))])
        titles.append([f"label {target}, p={p:.2f}", "", f"max drop {drop.max():.2f}"])
    # A fixed, symmetric scale for the drop: white is "no change", red a loss of the true class's probability.
    figures.image_grid(path, rows, titles, ["input", "saliency", "occlusion (drop)"], ["gray", "hot", "bwr"],
                       [None, None, (-1.0, 1.0)])
    return [name]


# ---------------------------------------------------------------------------------------- receptive field

def receptive_field(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions,
                    ratio: float = VISIBLE_RATIO) -> CheckResult:
    """How much of its input sequence the model uses.  The gradient of the output (at the middle time step
    for per-step outputs, else the single output) w.r.t. every input step, |.| averaged over probe samples;
    a step is visible when that gradient is at least ``ratio`` times the peak.  Value: the share of visible
    steps; WARN below one half, FAIL when the output does not depend on the input at all."""
    check = "analysis.receptive_field"
    split, x, _ = _evaluation_split(data)
    if not (x.ndim == 3 or (x.ndim == 2 and _has_layers(model, SEQUENCE_LAYERS))):
        return _skip(check, "not a sequence model (needs 3-D inputs or a recurrent/convolutional sequence layer)")
    probe = x[_probe_rows(data, split, options, limit=64)].astype("float32")
    outputs = _predict(model, probe)
    per_step_output = outputs.ndim == 3
    grads = np.abs(input_gradients(model, probe, _output_score(outputs)))
    magnitude = grads.reshape(len(probe), x.shape[1], -1).sum(axis=-1).mean(axis=0)
    steps = len(magnitude)
    peak = float(magnitude.max())
    if not np.isfinite(peak) or peak == 0.0:
        return CheckResult(check, FAIL, 0.0, COVERAGE_WARN, "the output does not depend on any input step",
                           "check that the inputs reach the output (frozen or zero weights, a constant output)",
                           STAGE, {"seq_len": steps})
    anchor = outputs.shape[1] // 2 if per_step_output else int(magnitude.argmax())
    visible = np.flatnonzero(magnitude >= ratio * peak)
    coverage = len(visible) / steps
    evidence = {"seq_len": steps, "ratio": ratio, "anchor_step": anchor,
                "anchor": "middle output step" if per_step_output else "step with the largest gradient",
                "visible_steps": len(visible), "first_visible": int(visible[0]),
                "last_visible": int(visible[-1]), "reach_back": int(anchor - visible[0]),
                "reach_forward": int(visible[-1] - anchor),
                "log10_gradient": _downsample(np.log10(np.maximum(magnitude, 1e-30)), 200)}
    plots = _receptive_field_plot(options, magnitude, anchor, ratio * peak)
    warn_below = options.threshold(check, COVERAGE_WARN)
    verdict = WARN if coverage < warn_below else PASS
    message = (f"{len(visible)} of {steps} input steps ({coverage:.0%}) move the output by at least "
               f"{ratio:g} of the strongest step; the model sees {evidence['reach_back']} steps back and "
               f"{evidence['reach_forward']} forward from step {anchor}")
    fix = "" if verdict == PASS else (
        "the model cannot use most of the sequence: use a bidirectional layer, shorter sequences (windows), "
        "more units, or attention/convolutions with a wider receptive field")
    return CheckResult(check, verdict, coverage, warn_below, message, fix, STAGE, evidence, plots)


def _output_score(outputs) -> Callable:
    """The scalar per row whose input gradient is measured: the middle step of a per-step output, summed
    over units; else the single output unit, or the class predicted for the row (multi-unit outputs)."""
    if outputs.ndim == 3:
        middle = outputs.shape[1] // 2
        return lambda out: keras.ops.sum(out[:, middle, :], axis=-1)
    flat = outputs.reshape(len(outputs), -1)
    if flat.shape[1] == 1:
        return lambda out: keras.ops.reshape(out, (-1,))
    chosen = np.eye(flat.shape[1], dtype="float32")[flat.argmax(axis=1)]
    return lambda out: keras.ops.sum(out * chosen, axis=-1)


def _receptive_field_plot(options, magnitude, anchor, floor):
    name = "analysis/receptive_field.png"
    path = options.plot_path(name)
    if path is None:
        return []
    figures.line(path, np.arange(len(magnitude)), {"mean |d output / d input step|": np.maximum(magnitude, 1e-30)},
                 "gradient of the output w.r.t. each input step", "input time step", "gradient magnitude",
                 log_y=True, vlines=(anchor,), hlines=(floor,))
    return [name]


# --------------------------------------------------------------------------------------- confident errors

def confident_errors(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """The most confident wrong predictions (binary: false positives and false negatives separately) or,
    for regression, the largest residuals, as a table in the evidence (and a CSV and image grid)."""
    check = "analysis.confident_errors"
    split, x, y = _evaluation_split(data)
    outputs = _predict(model, x)
    if data.task == "regression":
        return _largest_residuals(check, options, split, y, outputs)
    labels = _row_labels(data, split)
    probabilities = _class_probabilities(outputs)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    table = _error_table(wrong, labels, predicted, confidence, probabilities, data.task)
    overconfident = int(np.sum(confidence[wrong] > CONFIDENT))
    share_of_errors = overconfident / max(len(wrong), 1)
    share_of_rows = overconfident / len(labels)
    verdict = WARN if (share_of_errors > OVERCONFIDENT_SHARE_OF_ERRORS
                       and share_of_rows > OVERCONFIDENT_SHARE_OF_ROWS) else PASS
    message = (f"{len(wrong)} of {len(labels)} {split} rows wrong; {overconfident} of them with probability "
               f"> {CONFIDENT} ({share_of_errors:.0%} of the errors, {share_of_rows:.1%} of the rows)")
    fix = "" if verdict == PASS else (
        "overconfident mistakes: look at these rows for label noise, add regularisation (dropout, L2, label "
        "smoothing) or calibrate the probabilities")
    plots = _write_table(options, "analysis/confident_errors.csv", table)
    plots += _error_images(options, x, table, data, "analysis/confident_errors.png")
    evidence = {"split": split, "errors": len(wrong), "overconfident_errors": overconfident, "table": table}
    return CheckResult(check, verdict, share_of_rows, OVERCONFIDENT_SHARE_OF_ROWS, message, fix, STAGE,
                       evidence, plots)


def _error_table(wrong, labels, predicted, confidence, probabilities, task):
    """Rows of {kind, index, label, predicted, score}, most confident first (binary: FP then FN)."""
    if task == "binary":
        score = probabilities[:, 1]
        positives = wrong[predicted[wrong] == 1]
        negatives = wrong[predicted[wrong] == 0]
        groups = [("false positive", positives[np.argsort(-score[positives])][:TOP_ERRORS]),
                  ("false negative", negatives[np.argsort(score[negatives])][:TOP_ERRORS])]
    else:
        score = confidence
        groups = [("wrong", wrong[np.argsort(-confidence[wrong])][:TOP_ERRORS])]
    return [{"kind": kind, "index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
             "score": float(score[i])} for kind, rows in groups for i in rows]


def _largest_residuals(check, options, split, y, outputs):
    actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
    predicted = outputs.reshape(len(y), -1)[:, :actual.shape[1]]
    residual = np.abs(predicted - actual).max(axis=1)
    order = np.argsort(-residual)[:TOP_ERRORS]
    table = [{"kind": "largest residual", "index": int(i), "label": float(actual[i, 0]),
              "predicted": float(predicted[i, 0]), "score": float(residual[i])} for i in order]
    spread = float(actual.std()) or 1.0
    value = float(residual[order[0]] / spread)
    plots = _write_table(options, "analysis/confident_errors.csv", table)
    return CheckResult(check, PASS, value, None,
                       f"largest {split} residual is {value:.2f} target standard deviations "
                       f"(mean |residual| {residual.mean() / spread:.2f})", "", STAGE,
                       {"split": split, "table": table}, plots)


def _write_table(options, name, table) -> list[str]:
    path = options.plot_path(name)
    if path is None or not table:
        return []
    columns = list(table[0])
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in table]
    path.write_text("\n".join(lines) + "\n")
    return [name]


def _error_images(options, x, table, data, name) -> list[str]:
    shape = _flat_image_shape(x)
    path = options.plot_path(name) if shape is not None and table else None
    if path is None:
        return []
    names = data.class_names or [str(k) for k in range(data.n_classes)]
    shown = table[:8]
    figures.image_grid(path, [[x[row["index"]].reshape(shape)] for row in shown],
                       [[f"{row['kind']}: {names[row['label']]}->{names[row['predicted']]} {row['score']:.3f}"]
                        for row in shown], ["most confident errors"], ["gray"])
    return [name]


def _flat_image_shape(x):
    shape = x.shape[1:]
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1):
        return tuple(shape[:2])
    side = isqrt(shape[0]) if len(shape) == 1 else 0
    return (side, side) if side >= 16 and side * side == shape[0] else None


# ------------------------------------------------------------------------------------------------- slices

def slices(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Error rate (classification) or MAE (regression) per slice of the test split, each compared with all
    other rows; WARN when a slice of SLICE_MIN_ROWS+ rows is SLICE_RATIO times worse than the rest."""
    check = "analysis.slices"
    split, x, y = _evaluation_split(data)
    groups = data.slices.get(split)
    if groups is None:
        return _skip(check, f"no slices given for the {split} split")
    groups = np.asarray(groups)
    if len(groups) != len(x):
        raise ValueError(f"data.slices[{split!r}] has {len(groups)} entries for {len(x)} {split} rows")
    errors = _row_errors(model, data, split, x, y)
    table = {}
    for value in np.unique(groups):
        inside = groups == value
        rest = float(errors[~inside].mean()) if (~inside).any() else float("nan")
        table[str(value)] = {"rows": int(inside.sum()), "error": float(errors[inside].mean()), "rest": rest}
    ratio_limit = options.threshold(check, SLICE_RATIO)
    flagged = {k: v for k, v in table.items() if _slice_is_worse(v, ratio_limit, data.task)}
    eligible = [v for v in table.values() if v["rows"] >= SLICE_MIN_ROWS and v["rest"] > 0]
    worst_ratio = max((v["error"] / v["rest"] for v in eligible), default=0.0)
    metric = "MAE" if data.task == "regression" else "error rate"
    name = data.slice_name or "slice"
    plots = _slice_plot(options, table, metric, name)
    if flagged:
        listed = ", ".join(f"{name}={k}: {metric} {v['error']:.3f} vs {v['rest']:.3f} on the rest ({v['rows']} "
                           f"rows)" for k, v in flagged.items())
        return CheckResult(check, WARN, worst_ratio, ratio_limit, f"slices much worse than the rest: {listed}",
                           "inspect these rows (label errors, a distribution shift, too few training rows "
                           "of this kind); collect or weight more data for the slice", STAGE,
                           {"metric": metric, "slices": table, "flagged": sorted(flagged)}, plots)
    margin = f" and {SLICE_MARGIN:g} above" if data.task != "regression" else ""
    return CheckResult(check, PASS, worst_ratio, ratio_limit,
                       f"no {name} of {SLICE_MIN_ROWS}+ {split} rows has a {metric} more than {ratio_limit:g}x"
                       f"{margin} the rest's (largest ratio {worst_ratio:.2f}; "
                       + ", ".join(f"{k}: {v['error']:.3f}" for k, v in table.items()) + ")", "", STAGE,
                       {"metric": metric, "slices": table}, plots)


def _slice_is_worse(entry, ratio_limit, task) -> bool:
    if entry["rows"] < SLICE_MIN_ROWS or not np.isfinite(entry["rest"]):
        return False
    margin = 0.0 if task == "regression" else SLICE_MARGIN
    return entry["error"] > ratio_limit * entry["rest"] and entry["error"] - entry["rest"] >= margin


def _row_errors(model, data, split, x, y):
    outputs = _predict(model, x)
    if data.task == "regression":
        actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
        return np.abs(outputs.reshape(len(y), -1)[:, :actual.shape[1]] - actual).mean(axis=1)
    return (_class_probabilities(outputs).argmax(axis=1) != _row_labels(data, split)).astype("float64")


def _slice_plot(options, table, metric, name):
    plot = "analysis/slices.png"
    path = options.plot_path(plot)
    if path is None:
        return []
    keys = list(table)
    figures.bars(path, keys, [table[k]["error"] for k in keys], f"{metric} per {name}", metric,
                 [f"n={table[k]['rows']}" for k in keys])
    return [plot]


# ----------------------------------------------------------------------------------------------- baseline

def baseline(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """A linear baseline (Ridge / logistic regression on standardised, flattened inputs, at most
    BASELINE_ROWS training rows) against the network on the same test rows: ratio of the test errors
    (balanced error rate, or MAE), and the Pearson correlation of the two models' scores."""
    check = "analysis.baseline"
    split, x, y = _evaluation_split(data)
    fitted, converged = _fit_baseline(data, options.seed)
    flat = x.reshape(len(x), -1)
    outputs = _predict(model, x)
    if data.task == "regression":
        actual = np.asarray(y, dtype="float64").reshape(-1)
        network_scores = outputs.reshape(len(x), -1)[:, 0]
        baseline_scores = fitted.predict(flat).reshape(-1)  # Ridge's predict is one small product
        network_error = float(np.mean(np.abs(network_scores - actual)))
        baseline_error = float(np.mean(np.abs(baseline_scores - actual)))
        floor, metric = 1e-3 * (float(actual.std()) or 1.0), "MAE"
    else:
        labels = _row_labels(data, split)
        network_probabilities = _class_probabilities(outputs)
        baseline_probabilities = _full_probabilities(fitted, flat, network_probabilities.shape[1])
        network_error = _balanced_error(labels, network_probabilities.argmax(axis=1))
        baseline_error = _balanced_error(labels, baseline_probabilities.argmax(axis=1))
        network_scores, baseline_scores = _scores_to_correlate(network_probabilities, baseline_probabilities)
        floor, metric = 1e-3, "balanced error rate"
    ratio = (network_error + floor) / (baseline_error + floor)
    correlation = _pearson(network_scores, baseline_scores)
    fail_at = options.threshold(check, BASELINE_FAIL)
    verdict = PASS if ratio < BASELINE_PASS else FAIL if ratio > fail_at else WARN
    baseline_name = type(fitted[-1]).__name__
    message = (f"test {metric}: network {network_error:.4f}, {baseline_name} {baseline_error:.4f} "
               f"(ratio {ratio:.2f}); correlation of their predictions "
               + ("undefined (a constant prediction)" if correlation is None else f"{correlation:.2f}"))
    fix = {PASS: "", WARN: "the network is no better than a linear model: train longer, tune the learning "
                           "rate and capacity, or check that the features need a non-linear model",
           FAIL: "the network is clearly worse than a linear model: look for a bug (wrong loss or output "
                 "activation, missing scaling, dead or saturated units, a constant output)"}[verdict]
    evidence = {"metric": metric, "split": split, "network": network_error, "baseline": baseline_error,
                "baseline_model": baseline_name, "baseline_converged": converged,
                "train_rows": min(len(data.x_train), BASELINE_ROWS), "correlation": correlation}
    return CheckResult(check, verdict, ratio, fail_at, message, fix, STAGE, evidence)


def _fit_baseline(data, seed):
    """A standardise + linear pipeline fitted on at most BASELINE_ROWS training rows; (model, converged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    rows = np.arange(len(data.x_train))
    if len(rows) > BASELINE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, BASELINE_ROWS, replace=False))
    x = data.x_train[rows].reshape(len(rows), -1)
    if data.task == "regression":
        estimator, y = Ridge(alpha=1.0), np.asarray(data.y_train, dtype="float64")[rows].reshape(len(rows), -1)
        y = y[:, 0] if y.shape[1] == 1 else y
    else:
        # lbfgs with 200 iterations: about 3 s for 5,000 MNIST rows; it may stop before full convergence,
        # which only makes the baseline (and so the check) more lenient; the evidence says so.
        estimator, y = LogisticRegression(max_iter=200, C=1.0), data.labels("train")[rows]
    pipeline = make_pipeline(StandardScaler(), estimator)
    # One BLAS thread: on a busy machine OpenBLAS's threads contend and MNIST's fit took 30 s instead of 3.
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(x, y)
    return pipeline, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


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


# ---------------------------------------------------------------------------------------- dropout / BN

def dropout_consistency(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Inference-mode predictions against the mean of TRAIN_PASSES train-mode passes on the probe batch:
    share of rows whose predicted class changes (regression: mean |difference| / target std).  A large
    disagreement means dropout or batch normalisation behaves very differently at inference."""
    check = "analysis.dropout_consistency"
    stochastic = sorted({type(layer).__name__ for layer in _all_layers(model)} & STOCHASTIC)
    if not stochastic:
        return _skip(check, "the model has no dropout, noise or batch-normalisation layer")
    split, x, y = _evaluation_split(data)
    rows = _probe_rows(data, split, options)
    probe, target = x[rows].astype("float32"), y[rows]
    inference = keras.ops.convert_to_numpy(model(probe, training=False))
    train_passes = _train_mode_passes(model, probe, TRAIN_PASSES)
    averaged = train_passes.mean(axis=0)
    if data.task == "regression":
        spread = float(np.std(np.asarray(target, dtype="float64"))) or 1.0
        value = float(np.mean(np.abs(averaged - inference)) / spread)
        measure = "mean |difference| in target standard deviations"
    else:
        value = float(np.mean(_class_probabilities(averaged).argmax(axis=1)
                              != _class_probabilities(inference).argmax(axis=1)))
        measure = "share of rows whose predicted class changes"
    losses = _mode_losses(model, target, inference, train_passes)
    warn_at = options.threshold(check, CONSISTENCY_WARN)
    verdict = WARN if value > warn_at else PASS
    message = (f"inference vs mean of {TRAIN_PASSES} train-mode passes on {len(rows)} {split} rows: {measure} "
               f"= {value:.3f}" + (f"; loss {losses['inference']:.4f} (inference) vs {losses['train_mode']:.4f} "
                                   f"(train mode)" if losses else ""))
    fix = "" if verdict == PASS else (
        "train and inference behaviour disagree: lower the dropout rate (above 0.5 is rarely useful), put "
        "dropout after batch normalisation rather than before it, or use larger batches for batch norm")
    return CheckResult(check, verdict, value, warn_at, message, fix, STAGE,
                       {"layers": stochastic, "passes": TRAIN_PASSES, "losses": losses, "split": split})


def _train_mode_passes(model, x, passes):
    """(passes, ...) outputs with training=True; batch-norm statistics and seed states are put back after,
    so the check leaves the model as it found it."""
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    try:
        return np.stack([keras.ops.convert_to_numpy(model(x, training=True)) for _ in range(passes)])
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


def _mode_losses(model, target, inference, train_passes):
    loss = getattr(model, "loss", None)
    if loss is None:
        return {}
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss

    def mean_loss(prediction):
        # Keras's compiled loss reshapes (rows,) labels to a (rows, 1) output; do the same here.
        y = np.reshape(target, prediction.shape) if np.size(target) == prediction.size else target
        return float(np.mean(keras.ops.convert_to_numpy(loss_fn(y, prediction))))

    return {"inference": mean_loss(inference),
            "train_mode": float(np.mean([mean_loss(p) for p in train_passes]))}


# ------------------------------------------------------------------------------------------------ helpers

def _skip(check, reason) -> CheckResult:
    return CheckResult(check, SKIP, None, None, f"skipped: {reason}", "", STAGE)


def _evaluation_split(data: DiagnosticData):
    """The held-out split the analyses judge: test, else validation, else train."""
    for name in ("test", "val", "train"):
        x, y = data.split(name)
        if x is not None and y is not None:
            return name, np.asarray(x), np.asarray(y)
    raise ValueError("DiagnosticData holds no split with both x and y")


def _row_labels(data, split):
    if data.task == "regression":
        return np.asarray(data.split(split)[1], dtype="float64").reshape(len(data.split(split)[1]), -1)[:, 0]
    return np.asarray(data.labels(split)).astype(int)


def _probe_rows(data, split, options, limit=None):
    """A fixed, seeded set of row indices, sorted by label so heat maps group the classes."""
    x, _ = data.split(split)
    count = min(len(x), options.probe_samples, limit or len(x))
    rows = np.sort(np.random.default_rng(options.seed).choice(len(x), count, replace=False))
    labels = _row_labels(data, split)[rows]
    return rows[np.argsort(labels, kind="stable")]


def _predict(model, x):
    return np.asarray(model.predict(np.asarray(x, dtype="float32"), batch_size=PREDICT_BATCH, verbose=0))


def _class_probabilities(outputs) -> np.ndarray:
    """(rows, classes) probabilities; one sigmoid unit becomes two columns; logits are squashed."""
    out = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    if out.shape[1] == 1:
        p = out[:, 0]
        if p.min() < 0 or p.max() > 1:
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1.0 - p, p], axis=1)
    if out.min() < 0 or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return out


def _true_class_score(targets, units) -> Callable:
    """Per row, the model's output for the row's true class (one sigmoid unit: p or 1 - p)."""
    if units == 1:
        sign = (2.0 * targets - 1.0).astype("float32")
        offset = (1.0 - targets).astype("float32")
        return lambda out: keras.ops.reshape(out, (-1,)) * sign + offset
    chosen = np.eye(units, dtype="float32")[targets]
    return lambda out: keras.ops.sum(out * chosen, axis=-1)


def _output_units(model) -> int:
    return int(model.outputs[0].shape[-1])


def _all_layers(model):
    """Every layer, also those nested in sub-models and wrappers (Bidirectional, TimeDistributed)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
        for attribute in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attribute, None)
            if isinstance(inner, keras.layers.Layer):
                found.append(inner)
    return found


def _has_layers(model, kinds) -> bool:
    return any(type(layer).__name__ in kinds for layer in _all_layers(model))


def _is_recurrent(layer) -> bool:
    return type(layer).__name__ in RECURRENT or type(layer).__name__ == "Bidirectional"


def _activation_name(layer) -> str:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _downsample(values, most):
    step = max(1, math.ceil(len(values) / most))
    return [float(v) for v in values[::step]]


CHECKS: dict[str, Callable[[keras.Model, DiagnosticData, DiagnosticOptions], CheckResult]] = {
    "analysis.constant_units": constant_units,
    "analysis.attributions": attributions,
    "analysis.receptive_field": receptive_field,
    "analysis.confident_errors": confident_errors,
    "analysis.slices": slices,
    "analysis.baseline": baseline,
    "analysis.dropout_consistency": dropout_consistency,
}
