"""Post-training analysis: what the trained network does, judged on held-out data.

``run(model, data, options)`` runs each check below on a trained, compiled Keras model and NumPy arrays.
Every check returns one ``CheckResult`` of stage ``analysis``; a check that cannot apply to the model or the
data (no recurrent layer, no image input, no slices, no dropout) returns SKIP with the reason.  Plots go
under ``options.output_dir`` (none when it is None).  The model's weights and state are left as they were.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from math import isqrt

import keras
import numpy as np

from runner.diagnostics import figures
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import input_gradients
from runner.diagnostics.introspect import (
    RECURRENT,
    activation_name,
    all_layers,
    is_recurrent,
    output_units,
)
from runner.diagnostics.report import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    CheckResult,
    Report,
    run_check,
)

STAGE = "analysis"
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
# baseline: each model's skill is 1 - error / error of the best constant predictor (0: no better than a
# constant, 1: perfect), so a near-linear problem where both models are excellent is not an alarm, as a raw
# error ratio of two tiny errors was.  FAIL when the network has (almost) no skill (< SKILL_NONE) while the
# linear model has a lot (> SKILL_BASELINE_HAS): a broken network; WARN when the network's skill is more
# than SKILL_GAP_WARN below the baseline's and less than half of it.
SKILL_NONE, SKILL_BASELINE_HAS, SKILL_GAP_WARN = 0.1, 0.3, 0.25
# Both skills below SKILL_NO_SIGNAL on NO_SIGNAL_ROWS+ held-out rows: WARN that nothing predicts the target.
SKILL_NO_SIGNAL, NO_SIGNAL_ROWS = 0.05, 50
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
        if options.enabled(check):
            report.add(run_check(check, STAGE, function, model, data, options))
    return report


# --------------------------------------------------------------------------------------------- activations

def constant_units(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Share of each hidden layer's units whose activation does not vary over probe samples (dense) or over
    samples and time steps (recurrent); heat maps of units x samples and units x time steps."""
    check = "analysis.constant_units"
    if not _has_graph(model):
        return _skip(check, "the model is subclassed: its hidden layers' outputs are not reachable without "
                            "its call() (use a Functional or Sequential model for this check)")
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
        dense_with_activation = kind == "Dense" and activation_name(layer) != "linear"
        if dense_with_activation or kind == "Activation" or kind in RECURRENT or kind == "Bidirectional":
            found.append(layer)
    return found


def _layer_outputs(model, layers, x):
    """Activations of ``layers`` on ``x``; recurrent layers always as (samples, time steps, units)."""
    tensors = [layer.input if is_recurrent(layer) else layer.output for layer in layers]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    values = keras.Model(inputs, tensors)(x, training=False)
    values = [keras.ops.convert_to_numpy(v) for v in _as_list(values)]
    return [_sequence_outputs(layer, value) if is_recurrent(layer) else value
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
                            "features, a single-label classification task and no recurrent layer)")
    mismatch = _units_mismatch(model, data, x)
    if mismatch:
        return _skip(check, mismatch)
    if np.issubdtype(x.dtype, np.integer):
        return _skip(check, "the inputs are integers (tokens): the output has no gradient with respect to them")
    labels = _row_labels(data, split)
    rows = np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)[:10]])
    images, targets = x[rows].astype("float32"), labels[rows]
    probabilities = _class_probabilities(_predict(model, images))[np.arange(len(rows)), targets]
    saliency = np.abs(input_gradients(model, images, _true_class_score(targets, output_units(model, images))))
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
    if not data.single_label or _has_layers(model, SEQUENCE_LAYERS):
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
    if np.issubdtype(x.dtype, np.integer) or _has_layers(model, {"Embedding"}):
        # An embedding lookup is not differentiable in its integer index: d output / d token does not exist.
        return _skip(check, "the inputs are integer tokens (Embedding): the output has no gradient with "
                            "respect to them")
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
    if data.task == "multilabel":
        return _confident_label_errors(check, options, split, y, outputs)
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


def _confident_label_errors(check, options, split, y, outputs):
    """Multilabel: every (row, label) decision is a binary prediction; the same overconfidence rule as for
    single-label rows, counted over decisions."""
    actual = np.asarray(y).reshape(len(y), -1) > 0.5
    probabilities = _label_probabilities(outputs)[:, :actual.shape[1]]
    confidence = np.maximum(probabilities, 1.0 - probabilities)
    wrong_rows, wrong_labels = np.nonzero((probabilities > 0.5) != actual)
    order = np.argsort(-confidence[wrong_rows, wrong_labels])[:TOP_ERRORS]
    table = [{"kind": "wrong label", "index": int(wrong_rows[i]), "label": int(wrong_labels[i]),
              "predicted": float(probabilities[wrong_rows[i], wrong_labels[i]]),
              "score": float(confidence[wrong_rows[i], wrong_labels[i]])} for i in order]
    overconfident = int(np.sum(confidence[wrong_rows, wrong_labels] > CONFIDENT))
    share_of_errors = overconfident / max(len(wrong_rows), 1)
    share_of_decisions = overconfident / actual.size
    verdict = WARN if (share_of_errors > OVERCONFIDENT_SHARE_OF_ERRORS
                       and share_of_decisions > OVERCONFIDENT_SHARE_OF_ROWS) else PASS
    message = (f"{len(wrong_rows)} of {actual.size} {split} label decisions wrong; {overconfident} of them with "
               f"probability > {CONFIDENT} ({share_of_errors:.0%} of the errors)")
    fix = "" if verdict == PASS else (
        "overconfident mistakes: look at these rows for label noise, add regularisation or calibrate")
    evidence = {"split": split, "errors": len(wrong_rows), "overconfident_errors": overconfident, "table": table}
    return CheckResult(check, verdict, share_of_decisions, OVERCONFIDENT_SHARE_OF_ROWS, message, fix, STAGE,
                       evidence, _write_table(options, "analysis/confident_errors.csv", table))


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
    # An output with more units than named classes can predict a class that has no name: show its index.
    largest = max(max(row["label"], row["predicted"]) for row in table)
    names = list(data.class_names or []) + [str(k) for k in range(len(data.class_names or []), largest + 1)]
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
    """Error rate (classification, multilabel: share of wrong label decisions) or MAE (regression) per slice
    of the evaluation split.  A classification slice is compared only with rows of the same true labels
    outside it: a slice that is mostly one class must not look bad because that class is the harder one.
    WARN when a slice of SLICE_MIN_ROWS+ rows is SLICE_RATIO times worse than those rows."""
    check = "analysis.slices"
    split, x, y = _evaluation_split(data)
    groups = data.slices.get(split)
    if groups is None:
        return _skip(check, f"no slices given for the {split} split")
    groups = np.asarray(groups)
    if len(groups) != len(x):
        raise ValueError(f"data.slices[{split!r}] has {len(groups)} entries for {len(x)} {split} rows")
    errors = _row_errors(model, data, split, x, y)
    strata = _label_strata(data, split)
    table = {str(value): _slice_entry(errors, groups == value, strata) for value in np.unique(groups)}
    # A slice that is a whole label class (with slices == the labels: every slice) has no same-label rows
    # to compare with.  Its error is then that class's error rate, whose spread across classes measures how
    # hard each class is, not a flaw of the slice; preflight.class_balance and the confusion of classes are
    # the place for that, so such a slice is listed, never judged.
    unjudged = sorted(k for k, v in table.items() if not np.isfinite(v["rest"]))
    ratio_limit = options.threshold(check, SLICE_RATIO)
    flagged = {k: v for k, v in table.items() if _slice_is_worse(v, ratio_limit, data.task)}
    eligible = [v for v in table.values() if v["rows"] >= SLICE_MIN_ROWS and np.isfinite(v["rest"]) and v["rest"] > 0]
    worst_ratio = max((v["compared"] / v["rest"] for v in eligible), default=0.0)
    metric = {"regression": "MAE", "multilabel": "label error rate"}.get(data.task, "error rate")
    name = data.slice_name or "slice"
    comparison = "the rest" if strata is None else "rows of the same labels outside it"
    evidence = {"metric": metric, "slices": table, "not_judged": unjudged, "compared_with": comparison}
    plots = _slice_plot(options, table, metric, name)
    if len(unjudged) == len(table):
        return CheckResult(check, SKIP, None, ratio_limit,
                           f"skipped: every {name} is a whole label class (no rows of the same labels outside "
                           f"it), so a {name}'s error is a class's error; nothing to compare", "", STAGE,
                           evidence, plots)
    if flagged:
        listed = ", ".join(f"{name}={k}: {metric} {v['compared']:.3f} vs {v['rest']:.3f} on {comparison} "
                           f"({v['rows']} rows)" for k, v in flagged.items())
        return CheckResult(check, WARN, worst_ratio, ratio_limit, f"slices much worse than {comparison}: {listed}",
                           "inspect these rows (label errors, a distribution shift, too few training rows "
                           "of this kind); collect or weight more data for the slice", STAGE,
                           {**evidence, "flagged": sorted(flagged)}, plots)
    margin = f" and {SLICE_MARGIN:g} above" if data.task != "regression" else ""
    skipped = f"; not judged (whole label classes): {', '.join(unjudged)}" if unjudged else ""
    return CheckResult(check, PASS, worst_ratio, ratio_limit,
                       f"no {name} of {SLICE_MIN_ROWS}+ {split} rows has a {metric} more than {ratio_limit:g}x"
                       f"{margin} that of {comparison} (largest ratio {worst_ratio:.2f}; "
                       + ", ".join(f"{k}: {v['error']:.3f}" for k, v in table.items()) + ")" + skipped, "",
                       STAGE, evidence, plots)


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
    return {**entry, "compared": float(compared.mean()),
            "rest": float(np.average(outside_errors, weights=weights))}


def _slice_is_worse(entry, ratio_limit, task) -> bool:
    if entry["rows"] < SLICE_MIN_ROWS or not np.isfinite(entry["rest"]):
        return False
    margin = 0.0 if task == "regression" else SLICE_MARGIN
    return entry["compared"] > ratio_limit * entry["rest"] and entry["compared"] - entry["rest"] >= margin


def _row_errors(model, data, split, x, y):
    outputs = _predict(model, x)
    if data.task == "regression":
        actual = np.asarray(y, dtype="float64").reshape(len(y), -1)
        return np.abs(outputs.reshape(len(y), -1)[:, :actual.shape[1]] - actual).mean(axis=1)
    if data.task == "multilabel":
        actual = np.asarray(y).reshape(len(y), -1) > 0.5
        return ((_label_probabilities(outputs)[:, :actual.shape[1]] > 0.5) != actual).mean(axis=1)
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
    BASELINE_ROWS training rows) against the network on the same held-out rows, judged by skill:
    1 - error / error of the best constant predictor (balanced error rate, or MAE), averaged over target
    columns (regression) or labels (multilabel).  Also the Pearson correlation of the two models' scores."""
    check = "analysis.baseline"
    split, x, y = _evaluation_split(data)
    reason = _baseline_not_applicable(model, data, split, x, y)
    if reason:
        return _skip(check, reason)
    outputs = _predict(model, x)
    predictions, baseline_name, converged = _baseline_predictions(data, x.reshape(len(x), -1), options.seed)
    scores = {"regression": _regression_skill, "multilabel": _multilabel_skill}.get(data.task, _class_skill)
    measured = scores(data, split, y, outputs, predictions)
    network, linear = measured["network_skill"], measured["baseline_skill"]
    gap_limit = options.threshold(check, SKILL_GAP_WARN)
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
               + ("undefined (a constant prediction)" if correlation is None else f"{correlation:.2f}"))
    fix = {PASS: "", WARN: "the network has far less skill than a linear model: train longer, tune the learning "
                           "rate and capacity, or check that the features need a non-linear model",
           "no_signal": "check that the targets belong to the inputs row for row (no shuffle of one without the "
                        "other, the right target column)",
           FAIL: "the network has almost no skill while a linear model has a lot: look for a bug (wrong loss or "
                 "output activation, missing scaling, dead or saturated units, a constant output)"}[
        "no_signal" if no_signal else verdict]
    evidence = {**measured, "no_signal": no_signal, "split": split, "baseline_model": baseline_name, "baseline_converged": converged,
                "train_rows": min(len(data.x_train), BASELINE_ROWS), "correlation": correlation}
    return CheckResult(check, verdict, linear - network, gap_limit, message, fix, STAGE, evidence)


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
    network = np.asarray(outputs, dtype="float64").reshape(len(y), -1)[:, :actual.shape[1]]
    constant = np.abs(actual - np.median(actual, axis=0)).mean(axis=0)
    network_error = np.abs(network - actual).mean(axis=0)
    baseline_error = np.abs(predictions - actual).mean(axis=0)
    varying = constant > 0  # a constant column has no skill to measure
    return {"metric": "MAE", "network": float(network_error.mean()), "baseline": float(baseline_error.mean()),
            "constant": float(constant.mean()),
            "network_skill": float(np.mean(1 - network_error[varying] / constant[varying])),
            "baseline_skill": float(np.mean(1 - baseline_error[varying] / constant[varying])),
            "scores": (network[:, 0], predictions[:, 0])}


def _class_skill(data, split, y, outputs, predictions) -> dict:
    """Balanced error rate; a constant class scores 1 - 1/k over the k classes present in the split."""
    labels = _row_labels(data, split)
    network_probabilities = _class_probabilities(outputs)
    if predictions.shape[1] < network_probabilities.shape[1]:  # the output has more units than classes
        predictions = np.pad(predictions, ((0, 0), (0, network_probabilities.shape[1] - predictions.shape[1])))
    constant = 1.0 - 1.0 / len(np.unique(labels))
    network = _balanced_error(labels, network_probabilities.argmax(axis=1))
    linear = _balanced_error(labels, predictions.argmax(axis=1))
    return {"metric": "balanced error rate", "network": network, "baseline": linear, "constant": constant,
            "network_skill": 1 - network / constant, "baseline_skill": 1 - linear / constant,
            "scores": _scores_to_correlate(network_probabilities, predictions)}


def _multilabel_skill(data, split, y, outputs, predictions) -> dict:
    """Balanced error per label (a constant scores 0.5), averaged over labels that take both values."""
    actual = np.asarray(y).reshape(len(y), -1) > 0.5
    network_probabilities = _label_probabilities(outputs)[:, :actual.shape[1]]
    judged = [k for k in range(actual.shape[1]) if 0 < actual[:, k].sum() < len(actual)]
    network = [_balanced_error(actual[:, k].astype(int), (network_probabilities[:, k] > 0.5).astype(int))
               for k in judged]
    linear = [_balanced_error(actual[:, k].astype(int), (predictions[:, k] > 0.5).astype(int)) for k in judged]
    return {"metric": "balanced error rate (mean over labels)", "network": float(np.mean(network)),
            "baseline": float(np.mean(linear)), "constant": 0.5, "labels_judged": len(judged),
            "network_skill": float(np.mean(1 - np.asarray(network) / 0.5)),
            "baseline_skill": float(np.mean(1 - np.asarray(linear) / 0.5)),
            "scores": (network_probabilities.reshape(-1), predictions.reshape(-1))}


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
    stochastic = sorted({type(layer).__name__ for layer in all_layers(model)} & STOCHASTIC)
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
    elif data.task == "multilabel":
        value = float(np.mean((_label_probabilities(averaged) > 0.5) != (_label_probabilities(inference) > 0.5)))
        measure = "share of label decisions that change"
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
    """One sortable label per row: the class, the first target column (regression) or, for multilabel
    rows, how many labels the row has."""
    y = np.asarray(data.split(split)[1])
    if data.task == "regression":
        return y.astype("float64").reshape(len(y), -1)[:, 0]
    if data.task == "multilabel":
        return (y.reshape(len(y), -1) > 0.5).sum(axis=1)
    return np.asarray(data.labels(split)).astype(int)


def _label_probabilities(outputs) -> np.ndarray:
    """(rows, labels) independent probabilities of a multilabel output; logits are squashed."""
    out = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    if out.min() < 0 or out.max() > 1:
        out = 1.0 / (1.0 + np.exp(-out))
    return out


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


def _has_graph(model) -> bool:
    """Whether the model has symbolic inputs and outputs (Functional, or Sequential once built); a
    subclassed model has neither, so its layers' outputs cannot be tapped."""
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def _units_mismatch(model, data, x) -> str | None:
    """Why the output cannot be read as one probability per class (too few units), or None."""
    if not data.single_label:
        return None
    units = output_units(model, x)
    classes = max(data.n_classes, int(_row_labels(data, _evaluation_split(data)[0]).max()) + 1)
    if units == 1 and classes == 2:
        return None
    if units < classes:
        return f"the output has {units} unit{'s' * (units != 1)} but the labels have {classes} classes"
    return None


def _has_layers(model, kinds) -> bool:
    return any(type(layer).__name__ in kinds for layer in all_layers(model))


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
