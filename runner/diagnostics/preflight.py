"""Preflight checks: what can be known about a compiled, untrained model and its data before training.

``run(model, data, options)`` returns a Report of ``preflight.*`` checks: the data (non-finite values, input
scale, constant targets, class balance, train/val/test overlap), the loss and output layer taken together,
the initial loss and weights, a gradient check, and whether the model can memorise 16 samples.  The model
itself is never changed: checks that train or perturb weights work on clones.  A check that cannot apply
(class balance on a regression task, zeroed inputs when the overfit test passed) returns SKIP and says why.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.gradients import (
    computes_in_float64,
    float64_enabled,
    forward_loss,
    loss_and_gradients,
)
from runner.diagnostics.introspect import (  # noqa: F401 - LossInfo, compiled_loss: this module's API too
    LECUN_FAMILY,
    RELU_FAMILY,
    LossInfo,
    activation_name,
    all_layers,
    compiled_loss,
    ensure_built,
    is_nonlinear,
    is_recurrent,
    leaf_layers,
    output_activation,
    output_layer,
    output_shape,
    output_units,
    weighted,
)
from runner.diagnostics.report import (
    FAIL,
    PASS,
    SEVERITY,
    SKIP,
    WARN,
    CheckResult,
    Report,
    run_check,
)

STAGE = "preflight"
SPLITS = ("train", "val", "test")
BINARY_CE = {"binary_crossentropy", "binary_focal_crossentropy"}
CATEGORICAL_CE = {"categorical_crossentropy", "categorical_focal_crossentropy"}
SPARSE_CE = {"sparse_categorical_crossentropy"}
CROSS_ENTROPY = BINARY_CE | CATEGORICAL_CE | SPARSE_CE
REGRESSION_LOSSES = {"mean_absolute_error", "mean_squared_error", "huber", "log_cosh",
                     "mean_absolute_percentage_error", "mean_squared_logarithmic_error"}
# Ranges each output activation can produce; a target outside them can never be fitted.
OUTPUT_RANGES = {"sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0),
                 "tanh": (-1.0, 1.0), "relu": (0.0, math.inf), "softplus": (0.0, math.inf),
                 "exponential": (0.0, math.inf), "elu": (-1.0, math.inf)}
REGULARIZER_KEYS = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                    "recurrent_regularizer", "beta_regularizer", "gamma_regularizer",
                    "embeddings_regularizer"}
DROPOUT_KEYS = {"dropout", "recurrent_dropout"}
NOISE_LAYERS = (keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
                keras.layers.SpatialDropout3D, keras.layers.GaussianDropout, keras.layers.AlphaDropout)

# Defaults.  options.thresholds overrides the first threshold of a check by its name
# ("preflight.input_scale") and a second one by name + suffix ("preflight.input_scale.fail", ".tiny",
# "preflight.overfit_batch.max_steps", ".max_seconds").
SCALE_TINY, SCALE_WARN, SCALE_FAIL = 1e-2, 10.0, 100.0  # largest per-feature RMS of the inputs
DROPOUT_WARN, DROPOUT_FAIL = 0.5, 0.8  # largest dropout rate
CONSTANT_TARGET_CV = 1e-3
# Largest |mean| or std of a regression target column: targets in the tens (house prices in k$) train fine
# with Adam; hundreds and more leave a fresh network, whose outputs start near 0, far behind.
TARGET_SCALE_WARN, TARGET_SCALE_FAIL = 100.0, 1e4
TARGET_SCALE_HINT = 10.0  # above this a PASS carries a hint the diagnosis uses when training goes wrong
MINORITY_SHARE_OF_BALANCED = 0.2  # minority share < 0.2 / k: < 10% for binary, < 2% for 10 classes
LEAKAGE_WARN, LEAKAGE_FAIL = 0.01, 0.10
DUPLICATES_EXPLAIN = 1.5  # held-out overlap up to this x the within-train twin rate: the data's own repeats
# TheDeepChecker fails a deviation of 100% from chance.  Fresh networks written by others start further off
# than the book's (within 10%): +50% to +100% on healthy third-party programs (a deep sigmoid stack, an RNN,
# inputs in the tens), so 2x chance only WARNs and 4x chance (an exploding or saturated start) FAILs.
INITIAL_LOSS_WARN, INITIAL_LOSS_FAIL = 1.0, 3.0
# Regression: an untrained network's outputs have some spread of their own (MSE of a fresh MLP on standardised
# targets: about 1.2-2x the loss of predicting zeros); an exploding start is far above that.
REGRESSION_INITIAL_WARN, REGRESSION_INITIAL_FAIL = 3.0, 9.0
SUM_REDUCTION_RATIO = 1.5  # loss on a batch repeated twice / loss on the batch: 1 for a mean, 2 for a sum
INIT_WARN_RATIO, INIT_FAIL_RATIO = 4.0, 10.0  # kernel std vs the reference std, either way
CONSTANT_INIT_RATIO = 1e-3  # kernel std this far below the reference: the units start identical
INIT_MIN_VALUES = 16  # fewer weights than this give no reliable std
DEEP_STACK = 3  # layers with too-small weights before the signal is lost on the way through
DEAD_BIAS_Z = 2.0  # a ReLU unit whose bias is this many pre-activation stds below zero is dead at start
DEAD_UNIT_SHARE = 0.5
GRAD_WARN, GRAD_FAIL = 1e-4, 1e-2
GRAD_STEP, GRAD_FINE_STEP, GRAD_TINY = 1e-4, 1e-6, 1e-8
GRAD_ROWS, GRAD_ENTRIES_PER_WEIGHT = 16, 3
OVERFIT_ROWS, OVERFIT_MAX_STEPS = 16, 500
# Budgets are steps, never seconds: the same program must get the same verdict on a loaded machine.
OVERFIT_LEARNING_DROP, OVERFIT_MOVING_DROP = 0.3, 0.1  # loss drop when the target was not reached
OVERFIT_ACCURACY, OVERFIT_RELATIVE_ERROR = 0.95, 0.05
# Below this many steps eager training costs less than tracing a compiled step (measured on the seizure
# MLP: 50 ms CPU per eager step; 1.0 s to trace, then 3 ms per compiled step).
EAGER_STEPS = 20
ZEROED_SAME_CURVE = 0.9  # final loss on real inputs >= this x the loss on zeroed inputs: inputs unused


def run(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> Report:
    """All enabled preflight checks on a compiled, untrained ``model``; the model is left untouched.

    Each check runs isolated (``run_check``): one that raises becomes a SKIP naming the error, and the others
    still run."""
    report = Report()
    checks = [("data_finite", check_data_finite), ("input_scale", check_input_scale),
              ("target_scale", check_target_scale), ("constant_target", check_constant_target),
              ("class_balance", check_class_balance), ("split_leakage", check_split_leakage),
              *_shift_checks()]
    model_checks = [("loss_output_pairing", check_loss_output_pairing), ("nonlinearity", check_nonlinearity),
                    ("initial_loss", check_initial_loss), ("loss_reduction", check_loss_reduction),
                    ("initial_weights", check_initial_weights), ("gradient_check", check_gradients),
                    ("dropout_rate", check_dropout_rate)]
    for name, check in checks:
        if options.enabled(f"{STAGE}.{name}"):
            report.add(run_check(f"{STAGE}.{name}", STAGE, check, data, options))
    later = [name for name, _ in model_checks] + ["overfit_batch", "zeroed_inputs", *_signal_checks()]
    reason = _model_checks_blocked(model, data, report)
    if reason:
        # Every model check below would measure NaN or fail the same way: say so once per check.
        report.add(*(_result(name, SKIP, None, None, reason) for name in later
                     if options.enabled(f"{STAGE}.{name}")))
        return report
    unavailable = _unavailable_checks(model, data)
    for name, check in model_checks:
        if options.enabled(f"{STAGE}.{name}"):
            report.add(_result(name, SKIP, None, None, unavailable[name]) if name in unavailable
                       else run_check(f"{STAGE}.{name}", STAGE, check, model, data, options))
    for name in ("overfit_batch", "zeroed_inputs", *_signal_checks()):
        if name in unavailable and options.enabled(f"{STAGE}.{name}"):
            report.add(_result(name, SKIP, None, None, unavailable[name]))
    overfit = None
    if options.enabled(f"{STAGE}.overfit_batch") and "overfit_batch" not in unavailable:
        trainer = None
        try:
            trainer = OneBatchTrainer(model, data, options)  # built once: the zeroed-input run reuses it
        except Exception as error:  # noqa: BLE001 - reported through run_check below
            failure = error
        overfit = (run_check(f"{STAGE}.overfit_batch", STAGE, check_overfit_batch, model, data, options, trainer)
                   if trainer is not None else run_check(f"{STAGE}.overfit_batch", STAGE, _raise, failure))
        report.add(overfit)
        if options.enabled(f"{STAGE}.zeroed_inputs"):
            report.add(run_check(f"{STAGE}.zeroed_inputs", STAGE, check_zeroed_inputs, model, data, options,
                                 overfit, trainer))
    for name in _signal_checks():
        if options.enabled(f"{STAGE}.{name}") and name not in unavailable:
            report.add(_label_signal_or_skip(model, data, options, overfit))
    return report


def _label_signal_or_skip(model, data, options, overfit: CheckResult | None) -> CheckResult:
    """label_signal trains the model itself on real and permuted labels: a model that cannot even memorise
    one batch (a bad init, dead units, a wrong head) learns neither, which says nothing about the labels."""
    if overfit is not None and overfit.verdict != PASS:
        return _result("label_signal", SKIP, None, None, "inconclusive: the model cannot memorise one batch "
                       "(see preflight.overfit_batch), so it learns real labels no faster than permuted ones "
                       "whatever the labels are")
    from runner.diagnostics.shift import check_label_signal

    return run_check(f"{STAGE}.label_signal", STAGE, check_label_signal, model, data, options)


def _raise(error: Exception):
    raise error


def _model_checks_blocked(model: keras.Model, data: DiagnosticData, report: Report) -> str | None:
    """Why no model check can run (NaN data, no loss, a model that cannot take the inputs), or None."""
    if _has_non_finite(report):
        return "not run: the data holds NaN/Inf values (see preflight.data_finite)"
    if len(data.x_train) == 0:
        return "not run: the training split is empty"
    if getattr(model, "loss", None) is None:
        return "not run: the model is not compiled with a loss (compile it before the diagnostics)"
    if isinstance(model.loss, (list, tuple, dict)):
        return "not run: the model has several losses; the model checks support a single-output model"
    try:
        ensure_built(model, data.x_train)
        output_shape(model, data.x_train)
    except Exception as error:  # noqa: BLE001 - the reason is the verdict
        return f"not run: the model cannot be called on the training inputs ({type(error).__name__}: {error})"
    return None


LOSS_CHECKS = ("initial_loss", "loss_reduction", "gradient_check", "label_signal", "overfit_batch", "zeroed_inputs")
COPY_CHECKS = ("gradient_check", "label_signal", "overfit_batch", "zeroed_inputs")


def _unavailable_checks(model: keras.Model, data: DiagnosticData) -> dict[str, str]:
    """Model checks that cannot run here, each with the reason: a loss that cannot be computed because the
    labels name classes the output has no unit for, or a model that cannot be copied (these checks convert
    or train a copy)."""
    units = output_shape(model, data.x_train)[-1]
    if data.single_label and units < data.n_classes and not (units == 1 and data.n_classes == 2):
        reason = (f"not run: the output has {units} unit{'s' * (units != 1)} but the labels have {data.n_classes} "
                  "classes, so the loss cannot be computed (see preflight.loss_output_pairing)")
        return dict.fromkeys(LOSS_CHECKS, reason)
    try:
        keras.models.clone_model(model, clone_function=lambda layer: layer)  # shares layers: no config needed
    except (ValueError, TypeError, NotImplementedError) as error:
        reason = (f"not run: this check works on a copy of the model, and a {type(model).__name__} cannot be copied "
                  f"({str(error).split('.')[0]}); a Functional or Sequential model can")
        return dict.fromkeys(COPY_CHECKS, reason)
    return {}


def _shift_checks() -> list:
    """preflight.split_shift, from its own module (runner.diagnostics.shift)."""
    try:
        from runner.diagnostics.shift import check_split_shift
    except ImportError:
        return []
    return [("split_shift", check_split_shift)]


def _signal_checks() -> list[str]:
    try:
        from runner.diagnostics.shift import check_label_signal  # noqa: F401 - present or not
    except ImportError:
        return []
    return ["label_signal"]


def _has_non_finite(report: Report) -> bool:
    return any(r.check == f"{STAGE}.data_finite" and r.verdict == FAIL for r in report.results)


def check_dropout_rate(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """The largest dropout rate in the model: above 0.5 most of each layer is switched off at every step
    (UMLAUT's static rule); at 0.8 or more training sees mostly noise."""
    warn = options.threshold(f"{STAGE}.dropout_rate", DROPOUT_WARN)
    fail = options.threshold(f"{STAGE}.dropout_rate.fail", DROPOUT_FAIL)
    rates = {layer.name: float(getattr(layer, "rate", 0.0)) for layer in all_layers(model)
             if isinstance(layer, NOISE_LAYERS) and isinstance(getattr(layer, "rate", None), (int, float))}
    threshold = f"largest dropout rate <= {warn:g} (FAIL at {fail:g} or more)"
    if not rates:
        return _result("dropout_rate", PASS, 0.0, threshold, "the model has no dropout layers")
    layer, rate = max(rates.items(), key=lambda item: item[1])
    if rate > warn:
        return _result("dropout_rate", FAIL if rate >= fail else WARN, rate, threshold,
                       f"dropout rate {rate:g} in layer {layer}: {rate:.0%} of its units are dropped at every "
                       f"training step", "Use a dropout rate of 0.5 or less (0.2-0.5 is usual).",
                       evidence={"rates": rates})
    return _result("dropout_rate", PASS, rate, threshold, f"largest dropout rate {rate:g} ({layer})",
                   evidence={"rates": rates})


# ---------------------------------------------------------------------------------------------- data


def check_data_finite(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    counts = {}
    for split in SPLITS:
        x, y = data.split(split)
        for kind, array in (("x", x), ("y", y)):
            if array is not None and np.issubdtype(np.asarray(array).dtype, np.floating):
                counts[f"{kind}_{split}"] = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    bad = {name: count for name, count in counts.items() if count}
    total = sum(bad.values())
    if total:
        where = ", ".join(f"{name}: {count}" for name, count in bad.items())
        return _result("data_finite", FAIL, total, 0, f"{total} NaN/Inf values in the data ({where})",
                       "Find where they come from (missing values, a division by zero in preprocessing) and "
                       "impute or drop those rows before training.", evidence=counts)
    return _result("data_finite", PASS, 0, 0, "no NaN or Inf in any split", evidence=counts)


def check_input_scale(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """The largest per-feature root mean square: about 1 for standardised features, <= 1 for pixels / 255."""
    x = _as_rows(_sample_rows(np.asarray(data.x_train), 10_000, options.seed))
    finite = np.where(np.isfinite(x), x, 0.0)
    rms = np.sqrt(np.mean(np.square(finite, dtype=np.float64), axis=0))
    largest = float(rms.max()) if rms.size else 0.0
    tiny = options.threshold(f"{STAGE}.input_scale.tiny", SCALE_TINY)
    warn = options.threshold(f"{STAGE}.input_scale", SCALE_WARN)
    fail = options.threshold(f"{STAGE}.input_scale.fail", SCALE_FAIL)
    evidence = {"largest_feature": int(rms.argmax()) if rms.size else None,
                "features_rms_above_warn": int(np.sum(rms > warn)), "median_feature_rms": float(np.median(rms)),
                "max_abs": float(np.max(np.abs(finite))) if finite.size else 0.0}
    if data.feature_names and rms.size == len(data.feature_names):
        evidence["largest_feature"] = data.feature_names[int(rms.argmax())]
    threshold = f"{tiny} <= max feature RMS <= {warn} (FAIL above {fail} or below {tiny / 2:g})"
    if largest > warn:
        verdict = FAIL if largest > fail else WARN
        return _result("input_scale", verdict, largest, threshold,
                       f"unscaled inputs: feature {evidence['largest_feature']} has RMS {largest:.3g} "
                       f"({evidence['features_rms_above_warn']} features above {warn:g})",
                       "Standardise the inputs (fit mean and std on the training split) or divide by the "
                       "known range, e.g. pixels / 255.", evidence=evidence)
    if largest < tiny:
        # Below half the WARN level (MNIST pixels / 255 twice: 0.0027) the inputs are too small to learn from.
        return _result("input_scale", FAIL if largest < tiny / 2 else WARN, largest, threshold,
                       f"inputs are nearly zero (largest feature RMS {largest:.3g}): scaled twice?",
                       "Check that the inputs are scaled once (e.g. not / 255 after standardising).",
                       evidence=evidence)
    return _result("input_scale", PASS, largest, threshold, f"inputs are on a unit scale (max RMS {largest:.3g})",
                   evidence=evidence)


def check_constant_target(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    if data.task == "regression":
        y = np.asarray(data.y_train, dtype=np.float64)
        std, mean = float(np.std(y)), float(abs(np.mean(y)))
        cv = std / max(mean, 1e-12)  # finite even for a zero-mean (standardised) target: MLflow metrics
        limit = options.threshold(f"{STAGE}.constant_target", CONSTANT_TARGET_CV)
        evidence = {"mean": float(np.mean(y)), "std": std}
        if cv < limit:
            return _result("constant_target", FAIL, cv, limit,
                           f"the regression target is (nearly) constant: coefficient of variation {cv:.3g}",
                           "Check that the right column is the target and that it was not overwritten by "
                           "preprocessing.", evidence=evidence)
        return _result("constant_target", PASS, cv, limit, f"the target varies (coefficient of variation "
                       f"{cv:.3g})", evidence=evidence)
    if data.task == "multilabel":
        y = np.asarray(data.y_train, dtype=np.float64).reshape(len(data.y_train), -1)
        constant = [int(j) for j in np.flatnonzero(y.std(axis=0) == 0)]
        if len(constant) == y.shape[1]:
            return _result("constant_target", FAIL, len(constant), 0, "every label column is constant in the "
                           "training split", "Check the label columns: nothing varies, so nothing can be learned.",
                           evidence={"constant_labels": constant[:50]})
        return _result("constant_target", PASS, len(constant), 0, f"{y.shape[1] - len(constant)} of {y.shape[1]} "
                       "label columns vary", evidence={"constant_labels": constant[:50]})
    present = np.unique(data.labels("train"))
    evidence = {"classes_present": [int(c) for c in present[:50]]}
    if present.size < 2:
        return _result("constant_target", FAIL, present.size, 2,
                       f"every training label is class {present[0] if present.size else '?'}",
                       "Check the label column and the split: a single class leaves nothing to learn.",
                       evidence=evidence)
    return _result("constant_target", PASS, present.size, 2, f"{present.size} classes in the training labels",
                   evidence=evidence)


def check_target_scale(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Regression targets far from unit scale (prices in dollars, counts in thousands): a fresh network
    outputs values near zero and needs many steps just to reach the targets' level, with gradients scaled
    by the targets' size.  Values in the tens (house prices in k$, wine quality 3-9) train fine."""
    if data.task != "regression":
        return _result("target_scale", SKIP, None, None, f"not a regression task ({data.task})")
    y = np.asarray(data.y_train, dtype=np.float64).reshape(len(data.y_train), -1)
    finite = np.where(np.isfinite(y), y, 0.0)
    scale = np.maximum(np.abs(finite.mean(axis=0)), finite.std(axis=0))
    largest = float(scale.max()) if scale.size else 0.0
    warn = options.threshold(f"{STAGE}.target_scale", TARGET_SCALE_WARN)
    fail = options.threshold(f"{STAGE}.target_scale.fail", TARGET_SCALE_FAIL)
    evidence = {"mean": [float(v) for v in finite.mean(axis=0)[:20]],
                "std": [float(v) for v in finite.std(axis=0)[:20]]}
    threshold = f"max(|mean|, std) of each target column <= {warn:g} (FAIL above {fail:g})"
    if largest > warn:
        return _result("target_scale", FAIL if largest > fail else WARN, largest, threshold,
                       f"unscaled regression targets: a target column has |mean| or std {largest:.3g}",
                       "Standardise the targets (fit mean and std on the training split; invert the scaling on "
                       "predictions), or divide them by a known unit (e.g. prices in thousands).",
                       evidence=evidence)
    if largest > TARGET_SCALE_HINT:
        # Targets in the tens train fine with a good optimiser, so this alone is no warning; but if training
        # then misbehaves, their scale is the likeliest root (the diagnosis reads the hint).
        evidence["hint"] = "unscaled_targets"
    return _result("target_scale", PASS, largest, threshold, f"targets are within {largest:.3g} of unit scale",
                   evidence=evidence)


def check_nonlinearity(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """A stack of weighted layers with no non-linearity between them is one linear map however deep it is:
    the extra layers add parameters but no capacity."""
    layers = leaf_layers(model)
    output = output_layer(model)
    hidden = [layer for layer in layers if layer is not output]
    weighted_layers = [layer for layer in layers if weighted(layer)]
    bending = [layer.name for layer in hidden if is_nonlinear(layer)]
    evidence = {"weighted_layers": len(weighted_layers), "nonlinear_layers": bending[:20]}
    threshold = "a non-linearity between stacked weighted layers"
    if len(weighted_layers) < 2:
        return _result("nonlinearity", PASS, len(bending), threshold,
                       "a single weighted layer: a linear (or generalised linear) model by design", evidence=evidence)
    if bending:
        return _result("nonlinearity", PASS, len(bending), threshold,
                       f"{len(bending)} non-linear hidden layer(s), e.g. {bending[0]}", evidence=evidence)
    return _result("nonlinearity", WARN, 0, threshold,
                   f"{len(weighted_layers)} weighted layers with no non-linearity between them: the network is "
                   "a single linear map", "Give the hidden layers a non-linear activation (relu, or gelu/tanh).",
                   evidence=evidence)


def check_class_balance(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    if not data.single_label:
        return _result("class_balance", SKIP, None, None, f"not a single-label classification task ({data.task})")
    k = data.n_classes
    counts = np.bincount(data.labels("train"), minlength=k)
    shares = counts / max(1, counts.sum())
    minority = int(shares.argmin())
    limit = options.threshold(f"{STAGE}.class_balance", MINORITY_SHARE_OF_BALANCED / k)
    name = data.class_names[minority] if data.class_names and minority < len(data.class_names) else minority
    evidence = {"shares": [round(float(s), 4) for s in shares], "minority_class": str(name)}
    share = float(shares[minority])
    if counts[minority] == 0:
        return _result("class_balance", FAIL, share, limit, f"class {name} has no training samples",
                       "Make sure every class occurs in the training split (stratify the split).",
                       evidence=evidence)
    if share < limit:
        return _result("class_balance", WARN, share, limit,
                       f"very imbalanced classes: class {name} is {share:.1%} of the training rows",
                       "Use class weights or resampling, and judge the model by per-class metrics (recall, "
                       "F1, ROC AUC) rather than accuracy.", evidence=evidence)
    return _result("class_balance", PASS, share, limit, f"smallest class share {share:.1%}", evidence=evidence)


def check_split_leakage(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Share of val/test rows whose inputs occur verbatim in the training split.

    A data set that repeats rows (the white wine data: 29% of the book's training rows have a twin among
    them) shows the same overlap under any random split; only an overlap well above that rate points at the
    split itself, so only such an overlap can FAIL.
    """
    held_out = [(split, data.split(split)[0]) for split in ("val", "test") if data.split(split)[0] is not None]
    if not held_out:
        return _result("split_leakage", SKIP, None, None, "no validation or test split to compare with")
    train_counts = Counter(_row_hashes(data.x_train))
    twin_rate = sum(count for count in train_counts.values() if count > 1) / max(1, len(data.x_train))
    evidence = {"train_rows_with_a_twin_in_train": round(twin_rate, 4)}
    leaked = total = 0
    shares = {}
    for split, x in held_out:
        hits = sum(h in train_counts for h in _row_hashes(x))
        evidence[f"{split}_rows_in_train"] = hits
        leaked, total = leaked + hits, total + len(x)
        shares[split] = hits / max(1, len(x))
    share = leaked / max(1, total)
    warn = options.threshold(f"{STAGE}.split_leakage", LEAKAGE_WARN)
    fail = options.threshold(f"{STAGE}.split_leakage.fail", LEAKAGE_FAIL)
    threshold = f"WARN > {warn:g}, FAIL > {fail:g} unless the training split repeats rows at a similar rate"
    if share <= warn:
        return _result("split_leakage", PASS, share, threshold, f"{leaked} of {total} held-out rows occur in "
                       "the training split", evidence=evidence)
    message = f"{share:.1%} of the validation/test rows ({leaked} of {total}) also occur in the training split"
    # Per split: copies pushed into one split (the test set) stand out against the data's own repeat rate even
    # when the other split dilutes the total.
    explained = max(shares.values()) <= DUPLICATES_EXPLAIN * twin_rate
    if explained:
        message += (f"; the data set itself repeats rows ({twin_rate:.1%} of training rows have a twin within "
                    "the training split), so this overlap is what any random split of it gives")
    if explained:
        # What any random split of this data gives is not a fault of the split: a WARN on every run of such a
        # data set (the white wine data) would teach users to ignore WARNs.
        return _result("split_leakage", PASS, share, threshold, message, evidence=evidence)
    return _result("split_leakage", FAIL if share > fail else WARN, share, threshold, message,
                   "Deduplicate the rows before splitting (or keep duplicates in the same split), or the "
                   "held-out scores overstate generalisation.", evidence=evidence)


# ----------------------------------------------------------------------------------- loss and output


def check_loss_output_pairing(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions
                              ) -> CheckResult:
    loss = compiled_loss(model)
    activation, units = output_activation(model), output_units(model, data.x_train)
    problems = _pairing_problems(loss, activation, units, data)
    evidence = {"loss": loss.name, "from_logits": loss.from_logits, "activation": activation, "units": units,
                "task": data.task}
    threshold = "0 problems"
    if not problems:
        return _result("loss_output_pairing", PASS, 0, threshold,
                       f"{activation} output with {units} unit(s) suits {loss.name} on a {data.task} task",
                       evidence=evidence)
    evidence["problems"] = [message for message, _ in problems]
    return _result("loss_output_pairing", FAIL, len(problems), threshold, "; ".join(evidence["problems"]),
                   " ".join(dict.fromkeys(fix for _, fix in problems)), evidence=evidence)


def _pairing_problems(loss: LossInfo, activation: str, units: int, data: DiagnosticData) -> list[tuple]:
    problems = []
    task, name = data.task, loss.name
    probabilities = activation in ("sigmoid", "softmax")
    if activation == "softmax" and units == 1:
        problems.append(("softmax over a single unit always outputs 1.0",
                         "Use sigmoid for one output unit, or softmax over one unit per class."))
    if task == "regression" and name in CROSS_ENTROPY:
        problems.append((f"{name} on a regression task",
                         "Use a regression loss (mean_absolute_error, mean_squared_error, huber)."))
    if task != "regression" and name in REGRESSION_LOSSES:
        problems.append((f"regression loss {name} on a {task} classification task",
                         "Use binary_crossentropy (sigmoid) or sparse_categorical_crossentropy (softmax)."))
    if name in CATEGORICAL_CE | SPARSE_CE and activation == "sigmoid":
        problems.append((f"sigmoid output with {name}: the outputs do not form a distribution over classes",
                         "Use softmax with categorical cross-entropy (or sigmoid with binary_crossentropy)."))
    if name in CROSS_ENTROPY and not loss.from_logits and not probabilities:
        problems.append((f"{activation} output with {name}: the loss expects probabilities",
                         "Use a sigmoid/softmax output, or keep the linear output and set from_logits=True."))
    if name in CROSS_ENTROPY and loss.from_logits and probabilities:
        problems.append((f"{activation} output with {name}(from_logits=True): probabilities squashed twice",
                         "Remove the output activation or set from_logits=False."))
    if name in SPARSE_CE | CATEGORICAL_CE and units > 1 and data.single_label and units < data.n_classes:
        # More units than classes only wastes a few weights (and the labels may just miss a class); fewer
        # leaves classes that can never be predicted.
        problems.append((f"{units} output units for {data.n_classes} classes",
                         "Give the output layer one unit per class."))
    label_columns = int(np.asarray(data.y_train).reshape(len(data.y_train), -1).shape[1])
    if name in BINARY_CE and data.single_label and units > 1 and label_columns == 1:
        problems.append((f"{units} output units under binary cross-entropy for one 0/1 label per row: each unit is "
                         "compared with the same label", "Use one sigmoid unit with binary_crossentropy, or "
                         f"{units} softmax units with sparse_categorical_crossentropy."))
    if task == "multilabel":
        if activation == "softmax" or name in SPARSE_CE | CATEGORICAL_CE:
            problems.append((f"{activation} output with {name} on a multi-label task: the labels compete for "
                             "one unit of probability", "Use one sigmoid unit per label with binary_crossentropy."))
        if units != data.n_classes:
            problems.append((f"{units} output units for {data.n_classes} labels",
                             "Give the output layer one sigmoid unit per label."))
    problems += _target_range_problems(loss, activation, units, data)
    return problems


def _target_range_problems(loss: LossInfo, activation: str, units: int, data: DiagnosticData) -> list[tuple]:
    y = np.asarray(data.y_train)
    if not np.issubdtype(y.dtype, np.number) or y.size == 0:
        return []
    low, high = float(np.nanmin(y)), float(np.nanmax(y))
    if data.task == "regression" and not loss.from_logits and activation in OUTPUT_RANGES:
        reach = OUTPUT_RANGES[activation]
        if low < reach[0] or high > reach[1]:
            span = f"[{reach[0]:g}, {reach[1]:g}]"
            return [(f"targets span [{low:.3g}, {high:.3g}] but a {activation} output only reaches {span}",
                     "Use a linear output for regression (or rescale the targets into the output's range).")]
    if loss.name in BINARY_CE and (low < 0 or high > 1):
        return [(f"binary cross-entropy with labels in [{low:g}, {high:g}] (must be 0/1)",
                 "Encode the two classes as 0 and 1.")]
    if loss.name in SPARSE_CE and units > 1 and high >= units:
        return [(f"sparse labels up to {high:g} but only {units} output units",
                 "Give the output layer one unit per class.")]
    if loss.name in CATEGORICAL_CE and (y.ndim < 2 or y.shape[-1] != units):
        return [(f"categorical cross-entropy needs one-hot targets of width {units}, got shape {y.shape}",
                 "One-hot encode the labels, or use sparse_categorical_crossentropy with integer labels.")]
    return []


def check_initial_loss(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Loss of the untrained model vs what an untrained network gives: chance level -ln(1/k) for a
    cross-entropy (it outputs near-uniform probabilities), the loss of predicting zeros for regression (its
    outputs start near zero, whatever the targets' mean).  A much higher loss means an over-confident or
    exploding start: initialisation scale, unscaled inputs or a wrong head."""
    loss = compiled_loss(model)
    x, y = _probe_batch(data, options.probe_samples, options.seed)
    # What the model outputs (predict: probabilities), not the logits path training takes: a softmax over one
    # unit trains its logits but always outputs 1.0, and this check must see that.
    measured = _batch_loss(loss.fn, y, _predict(model, x))
    expected, reference = _expected_initial_loss(loss, data, model, x, y)
    if expected is None:
        return _result("initial_loss", SKIP, None, None, f"{loss.name} has no known starting level "
                       "(not a plain cross-entropy, and not a regression loss)", evidence={"loss": measured})
    warn = options.threshold(f"{STAGE}.initial_loss", INITIAL_LOSS_WARN if data.task != "regression"
                             else REGRESSION_INITIAL_WARN)
    fail = options.threshold(f"{STAGE}.initial_loss.fail", INITIAL_LOSS_FAIL if data.task != "regression"
                             else REGRESSION_INITIAL_FAIL)
    # Only a loss above the reference is a problem: a start below chance (a lucky head) costs nothing.
    excess = (measured - expected) / expected if expected > 0 else (math.inf if measured > 0 else 0.0)
    evidence = {"loss": measured, "expected": expected, "reference": reference, "rows": len(x)}
    threshold = f"relative excess over the reference WARN >= {warn:g}, FAIL >= {fail:g}"
    summary = f"initial loss {measured:.4g} vs {expected:.4g} ({reference}): {excess:+.0%}"
    if not math.isfinite(measured):
        return _result("initial_loss", FAIL, math.nan, threshold, f"the untrained model's loss is {measured}",
                       "Check the inputs' scale and the output layer: the untrained model already overflows.",
                       evidence=evidence)
    if excess >= warn:
        return _result("initial_loss", FAIL if excess >= fail else WARN, excess, threshold, summary,
                       "An untrained model should predict near-uniform probabilities (or values near zero): "
                       "check the initialisation scale, the input scaling and the output activation.",
                       evidence=evidence)
    return _result("initial_loss", PASS, excess, threshold, summary, evidence=evidence)


def _expected_initial_loss(loss: LossInfo, data: DiagnosticData, model, x, y_batch
                           ) -> tuple[float | None, str]:
    if data.task != "regression" and loss.name in {"binary_crossentropy", "categorical_crossentropy",
                                                   "sparse_categorical_crossentropy"}:
        units = output_units(model, x)
        k = 2 if loss.name == "binary_crossentropy" or units == 1 else units
        return math.log(k), f"chance level -ln(1/{k})"
    if data.task == "regression" and loss.name in REGRESSION_LOSSES:
        zeros = np.zeros(np.shape(y_batch), dtype="float32")
        return _batch_loss(loss.fn, y_batch.astype("float32"), zeros), "loss of predicting zeros"
    return None, ""


def check_loss_reduction(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions
                         ) -> CheckResult:
    """A mean-reduced loss is unchanged when the batch is duplicated; a summed one doubles."""
    loss = compiled_loss(model)
    x, y = _probe_batch(data, min(64, options.probe_samples), options.seed)
    single = _batch_loss(loss.fn, y, _predict(model, x))
    double = _batch_loss(loss.fn, np.concatenate([y, y]), _predict(model, np.concatenate([x, x])))
    ratio = double / single if single > 0 else 1.0
    limit = options.threshold(f"{STAGE}.loss_reduction", SUM_REDUCTION_RATIO)
    evidence = {"loss": single, "loss_duplicated_batch": double, "reduction": loss.reduction}
    if ratio > limit:
        return _result("loss_reduction", FAIL, ratio, limit,
                       f"the loss grows {ratio:.2f}x when the batch is duplicated: it is summed, not averaged",
                       "Use a mean reduction (reduction='sum_over_batch_size'), or the effective learning rate "
                       "scales with the batch size.", evidence=evidence)
    return _result("loss_reduction", PASS, ratio, limit, f"loss averaged over the batch (ratio {ratio:.2f})",
                   evidence=evidence)


# ------------------------------------------------------------------------------------------ weights


def check_initial_weights(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions
                          ) -> CheckResult:
    """Each kernel's std vs the He / Glorot / LeCun std for its layer's activation; dead ReLU biases."""
    findings, layers, output = [], {}, output_layer(model)
    for layer in leaf_layers(model):
        activation = activation_name(layer)
        kernels = [w for w in layer.weights if w.name in ("kernel", "recurrent_kernel", "depthwise_kernel")]
        for weight in kernels:
            row = _kernel_finding(layer, weight, activation, is_output=layer is output)
            layers[weight.path] = {k: v for k, v in row.items() if k not in ("verdict", "message")}
            if row["verdict"] != PASS:
                findings.append(row)
        dead = _dead_bias_finding(layer, kernels, activation)
        if dead:
            findings.append(dead)
    ratios = [row["ratio"] for row in layers.values() if row["ratio"] is not None]
    worst = max(ratios, key=lambda r: abs(math.log(max(r, 1e-12))), default=1.0)
    threshold = (f"kernel std within [1/{INIT_WARN_RATIO:g}, {INIT_WARN_RATIO:g}]x the nearest standard rule "
                 f"(FAIL above {INIT_FAIL_RATIO:g}x, or below 1/{INIT_FAIL_RATIO:g} in {DEEP_STACK}+ layers)")
    evidence = {"layers": layers}
    if not findings:
        return _result("initial_weights", PASS, worst, threshold,
                       f"initial weight scales match their activations (worst ratio {worst:.2f})",
                       evidence=evidence)
    small = [row for row in findings if row.get("small")]
    if len(small) >= DEEP_STACK and all(row["ratio"] < 1.0 / INIT_FAIL_RATIO for row in small):
        # Weights too small in one or two layers slow training down; through a deep stack the signal vanishes.
        for row in small:
            row["verdict"] = FAIL
    findings.sort(key=lambda row: -SEVERITY[row["verdict"]])
    evidence["problems"] = [row["message"] for row in findings]
    verdict = findings[0]["verdict"]
    fixes = {"constant": "Use a random initializer (glorot_uniform, he_normal): identical weights give "
                         "identical units, so symmetry never breaks.",
             "scale": "Use the initializer that matches the activation (he_normal for ReLU, glorot_uniform "
                      "for tanh/sigmoid/linear, lecun_normal for SELU).",
             "dead": "Initialise ReLU biases at zero (or slightly positive) so units start active."}
    fix = " ".join(dict.fromkeys(fixes[row["kind"]] for row in findings))
    return _result("initial_weights", verdict, worst, threshold, "; ".join(evidence["problems"]), fix,
                   evidence=evidence)


def _kernel_finding(layer, weight, activation: str, is_output: bool) -> dict:
    values = keras.ops.convert_to_numpy(weight).astype(np.float64)
    fan_in, fan_out = _fans(values.shape)
    recurrent = weight.name == "recurrent_kernel" or is_recurrent(layer)
    references = {"He": math.sqrt(2.0 / fan_in), "LeCun": math.sqrt(1.0 / fan_in),
                  "Glorot": math.sqrt(2.0 / (fan_in + fan_out))}
    if activation in RELU_FAMILY and not recurrent:
        rule = "He"
    elif activation in LECUN_FAMILY and not recurrent:
        rule = "LeCun"
    else:
        rule = "Glorot"
    std = float(values.std())
    ratio = std / references[rule]
    row = {"std": std, "mean": float(values.mean()), "reference": references[rule], "rule": rule,
           "ratio": ratio, "activation": activation, "verdict": PASS, "message": "", "kind": ""}
    name = weight.path
    units = int(values.shape[-1]) if values.ndim else 1
    if values.size < 2 or units < 2:
        return row  # one unit (or one weight) has no symmetry to break and too few values to judge a spread
    if ratio < CONSTANT_INIT_RATIO:
        # A constant output kernel is harmless (its units get different gradients from different targets).
        if not is_output:
            row.update(verdict=FAIL, kind="constant", message=f"{name}: every weight is about {values.mean():.3g} "
                       "(constant init): the units of this layer stay identical, symmetry never breaks")
        return row
    if values.size < INIT_MIN_VALUES:
        return row
    # Any standard rule is a sound start (Keras's default glorot_uniform under a ReLU is 0.2-0.7x He): judge
    # the distance to the nearest one.
    nearest = min(references, key=lambda r: abs(math.log(std / references[r])))
    ratio_nearest = std / references[nearest]
    too_big, too_small = ratio_nearest > INIT_WARN_RATIO, ratio_nearest < 1.0 / INIT_WARN_RATIO
    if too_big or (too_small and not is_output):  # a small output layer only starts less confident
        failing = ratio_nearest > INIT_FAIL_RATIO
        row.update(verdict=FAIL if failing else WARN, kind="scale", ratio=ratio_nearest, small=too_small,
                   message=f"{name}: std {std:.3g} is {ratio_nearest:.2g}x the {nearest} std "
                           f"{references[nearest]:.3g} (the nearest standard initialisation)")
    return row


def _dead_bias_finding(layer, kernels, activation: str) -> dict | None:
    """Share of ReLU units whose bias sits far below the spread of their pre-activation (unit-RMS inputs)."""
    bias = next((w for w in layer.weights if w.name == "bias"), None)
    if activation not in RELU_FAMILY or bias is None or not kernels or is_recurrent(layer):
        return None
    kernel = keras.ops.convert_to_numpy(kernels[0]).astype(np.float64)
    fan_in, _ = _fans(kernel.shape)
    spread = float(kernel.std()) * math.sqrt(fan_in)
    values = keras.ops.convert_to_numpy(bias).astype(np.float64)
    dead_share = float(np.mean(values < -DEAD_BIAS_Z * max(spread, 1e-12)))
    if dead_share <= DEAD_UNIT_SHARE:
        return None
    return {"verdict": FAIL, "kind": "dead", "ratio": None,
            "message": f"{bias.path}: {dead_share:.0%} of the {activation} units start dead (bias mean "
                       f"{values.mean():.3g} vs pre-activation spread {spread:.3g})"}


# ---------------------------------------------------------------------------------------- gradients


@float64_enabled()
def check_gradients(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Backprop vs centred differences in float64 on a few entries of every trainable weight."""
    loss = compiled_loss(model)
    clone, precise = _float64_clone(model, loss)
    x, y = _probe_batch(data, GRAD_ROWS, options.seed)
    x = x.astype("float64") if precise else x
    _, analytic = loss_and_gradients(clone.model, x, y, training=False, loss_fn=clone.loss,
                                     include_regularization=False)
    rng = np.random.default_rng(options.seed)
    warn = options.threshold(f"{STAGE}.gradient_check", GRAD_WARN if precise else 10 * GRAD_WARN)
    fail = options.threshold(f"{STAGE}.gradient_check.fail", GRAD_FAIL if precise else 10 * GRAD_FAIL)
    steps = (GRAD_STEP, GRAD_FINE_STEP) if precise else (1e-2, 1e-3)
    base = clone.forward(x, y)
    per_weight, checked, kinks = {}, 0, 0
    for weight, grad in zip(clone.model.trainable_weights, analytic):
        worst = 0.0
        for index in _entries(weight, GRAD_ENTRIES_PER_WEIGHT, rng):
            error = _entry_error(clone, weight, index, float(grad[index]), x, y, base, steps, warn)
            kinks += error == KINK
            checked += error is not None and error != KINK
            worst = max(worst, error if error not in (None, KINK) else 0.0)
        per_weight[weight.path] = worst
    value = max(per_weight.values(), default=0.0)
    worst_weight = max(per_weight, key=per_weight.get) if per_weight else None
    evidence = {"max_relative_error": per_weight, "entries": checked, "kinks_skipped": kinks,
                "float64": precise, "steps": list(steps), "rows": len(x)}
    threshold = f"relative error WARN > {warn:g}, FAIL > {fail:g}"
    if value > warn:
        return _result("gradient_check", FAIL if value > fail else WARN, value, threshold,
                       f"backprop and finite differences disagree on {worst_weight} (relative error {value:.2g})",
                       "A custom layer, loss or gradient is wrong (or not differentiable): test it in "
                       "isolation and compare its gradient with finite differences.", evidence=evidence)
    return _result("gradient_check", PASS, value, threshold,
                   f"backprop matches finite differences on {checked} entries (max relative error {value:.1g}"
                   f"{f', {kinks} at kinks skipped' if kinks else ''})", evidence=evidence)


KINK = -1.0  # marks an entry that sits on a kink of the loss (e.g. a ReLU input exactly at 0)


def _entry_error(clone, weight, index, analytic: float, x, y, base: float, steps, warn: float) -> float | None:
    """Relative error of one gradient entry; None when both derivatives are ~0, KINK at a kink.

    At a kink the two one-sided derivatives differ and backprop returns one of them: that is a valid
    subgradient, not a bug, so the entry is left out rather than failed.
    """
    error = None
    for step in steps:
        forward, backward = _one_sided_derivatives(clone, weight, index, x, y, base, step)
        error = _relative_error(analytic, (forward + backward) / 2.0)
        if error is None or error <= warn:
            return error
    one_sided = [_relative_error(analytic, d) for d in (forward, backward)]
    jump = _relative_error(forward, backward)
    if jump is not None and jump > warn and min((e for e in one_sided if e is not None), default=math.inf) <= warn:
        return KINK
    return error


@dataclass
class _Clone:
    model: keras.Model
    loss: Callable

    def __post_init__(self):
        # Finite differences must see the loss that backprop differentiates (logits kept by sigmoid/softmax).
        self.forward = forward_loss(self.model, self.loss)


def _float64_clone(model: keras.Model, loss: LossInfo) -> tuple[_Clone, bool]:
    """A float64 copy of ``model`` (same weights) and loss, or a float32 copy if the model refuses float64."""
    try:
        clone = _clone(model, dtype="float64")
        precise = computes_in_float64(clone)
        return _Clone(clone, _float64_loss(loss) if precise else loss.fn), precise
    except (TypeError, ValueError, NotImplementedError):
        return _Clone(_clone(model), loss.fn), False


def _float64_loss(loss: LossInfo) -> Callable:
    # Loss objects cast predictions to their own dtype (float32 by default), which would undo float64.
    if isinstance(loss.fn, keras.losses.Loss):
        return loss.fn.__class__.from_config({**loss.fn.get_config(), "dtype": "float64"})
    return loss.fn


def _one_sided_derivatives(clone: _Clone, weight, index: tuple, x, y, base: float, step: float
                           ) -> tuple[float, float]:
    original = keras.ops.convert_to_numpy(weight)
    losses = []
    for sign in (1.0, -1.0):
        shifted = original.copy()
        shifted[index] += sign * step
        weight.assign(shifted)
        losses.append(clone.forward(x, y))
    weight.assign(original)
    return (losses[0] - base) / step, (base - losses[1]) / step


def _relative_error(analytic: float, numeric: float) -> float | None:
    scale = max(abs(analytic), abs(numeric))
    return None if scale < GRAD_TINY else abs(analytic - numeric) / scale


def _entries(weight, count: int, rng: np.random.Generator) -> list[tuple]:
    shape = tuple(weight.shape)
    size = int(np.prod(shape)) if shape else 1
    flat = rng.choice(size, size=min(count, size), replace=False)
    return [np.unravel_index(int(i), shape) for i in flat]


# ------------------------------------------------------------------------------- overfit one batch


def check_overfit_batch(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions,
                        trainer: OneBatchTrainer | None = None) -> CheckResult:
    """Can the model, without dropout or regularisation, memorise 16 training samples?

    Dropout and weight penalties are switched off (as Karpathy does) so the test isolates the pipeline:
    data, architecture, loss and optimiser; whether the regularisation is too strong is the monitors'
    question (and the book's L2 model must not fail here for being regularised as intended).
    """
    trainer = trainer or OneBatchTrainer(model, data, options)
    run = trainer.memorise(trainer.x)
    evidence = {"steps": run.steps, "seconds": round(run.seconds, 2), "loss_before": run.loss_before,
                "loss_after": run.loss_after, "rows": len(trainer.x), "criterion": trainer.criterion}
    sign = ">=" if trainer.higher_is_better else "<="
    threshold = (f"{trainer.criterion} {sign} {trainer.target:g} within {trainer.max_steps} steps; else the loss "
                 f"must fall by {OVERFIT_LEARNING_DROP:.0%} (WARN) or {OVERFIT_MOVING_DROP:.0%} (FAIL below)")
    if run.reached:
        return _result("overfit_batch", PASS, run.score, threshold,
                       f"memorised {len(trainer.x)} samples in {run.steps} steps ({trainer.criterion} "
                       f"{run.score:.3g})", evidence=evidence)
    drop = 1.0 - run.loss_after / run.loss_before if run.loss_before > 0 else 0.0
    evidence["loss_drop"] = drop
    summary = (f"{trainer.criterion} {run.score:.3g} after {run.steps} steps on {len(trainer.x)} samples, loss "
               f"{run.loss_before:.3g} -> {run.loss_after:.3g} ({drop:.0%} lower)")
    accuracy_stuck = trainer.classify and not run.score > run.score_first
    if math.isfinite(drop) and drop >= OVERFIT_LEARNING_DROP and not accuracy_stuck:
        # A slow optimiser (plain SGD at 0.01) learns the batch, just not to the target within the budget.
        return _result("overfit_batch", PASS, run.score, threshold, f"learning, not yet memorised: {summary}",
                       evidence=evidence)
    if math.isfinite(drop) and drop >= OVERFIT_LEARNING_DROP:
        return _result("overfit_batch", FAIL, run.score, threshold,
                       f"the loss falls but the accuracy never rises ({summary}): the loss does not measure what "
                       "the model predicts", "Check the loss/output pairing (e.g. softmax over a single unit).",
                       evidence=evidence)
    verdict = WARN if math.isfinite(drop) and drop >= OVERFIT_MOVING_DROP else FAIL
    return _result("overfit_batch", verdict, run.score, threshold, f"could not memorise: {summary}",
                   "A healthy model memorises a handful of samples: check the loss/output pairing, the "
                   "learning rate (too low or too high), the initialisation and dead units.", evidence=evidence)


def check_zeroed_inputs(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions,
                        overfit: CheckResult, trainer: OneBatchTrainer | None = None) -> CheckResult:
    """After an overfit test that did not memorise: the same training on all-zero inputs.  Reaching the same loss means the
    model never used its inputs (dead network, inputs disconnected, no signal reaching the output)."""
    if overfit.verdict not in (WARN, FAIL) or "steps" not in overfit.evidence:
        why = "the overfit test passed" if overfit.verdict == PASS else "the overfit test did not run"
        return _result("zeroed_inputs", SKIP, None, None, f"not run: {why}")
    trainer = trainer or OneBatchTrainer(model, data, options)
    zeroed = trainer.memorise(np.zeros_like(trainer.x), max_steps=int(overfit.evidence["steps"]))
    real_loss, zero_loss = float(overfit.evidence["loss_after"]), zeroed.loss_after
    ratio = real_loss / zero_loss if zero_loss > 0 else 1.0
    limit = options.threshold(f"{STAGE}.zeroed_inputs", ZEROED_SAME_CURVE)
    evidence = {"loss_after_real": real_loss, "loss_after_zeroed": zero_loss, "steps": zeroed.steps}
    moved = [1.0 - run_after / run_before if run_before > 0 else 0.0 for run_before, run_after in
             ((float(overfit.evidence["loss_before"]), real_loss), (zeroed.loss_before, zero_loss))]
    if max(moved) < OVERFIT_MOVING_DROP:
        return _result("zeroed_inputs", SKIP, None, None, "inconclusive: neither run lowered the loss by "
                       f"{OVERFIT_MOVING_DROP:.0%} (real inputs {moved[0]:.1%}, zeroed {moved[1]:.1%})",
                       evidence=evidence)
    if ratio >= limit:
        return _result("zeroed_inputs", FAIL, ratio, limit,
                       f"training on zeroed inputs reaches the same loss ({zero_loss:.3g} vs {real_loss:.3g} with "
                       "the real inputs): the model ignores its inputs",
                       "Look for dead units (very negative biases, a huge learning rate), identical units "
                       "(constant init), an input disconnected from the output, or labels unrelated to the "
                       "inputs.", evidence=evidence)
    return _result("zeroed_inputs", PASS, ratio, limit,
                   f"the real inputs lower the loss more than zeroed ones ({real_loss:.3g} vs {zero_loss:.3g}): "
                   "the model uses its inputs but learns too slowly", evidence=evidence)


@dataclass
class Memorisation:
    reached: bool
    score: float
    steps: int
    seconds: float
    loss_before: float
    loss_after: float
    score_first: float = math.nan


class OneBatchTrainer:
    """A regularisation-free clone of the model, trained from the original weights with a fresh optimiser
    (same configuration) on one batch of ``OVERFIT_ROWS`` training rows; reusable for several runs.

    Steps run through ``train_on_batch``, whose loss and accuracy are per batch and in training mode (so a
    batch-norm model is judged as it trains).  The first ``EAGER_STEPS`` run eagerly, the rest compiled:
    healthy classifiers memorise the batch within a few steps (MNIST MLP: 2, seizure MLP: 10), where
    tracing a compiled step would cost more than the steps themselves.
    """

    def __init__(self, model: keras.Model, data: DiagnosticData, options: DiagnosticOptions):
        self.loss = compiled_loss(model)
        self.x, self.y = _probe_batch(data, OVERFIT_ROWS, options.seed)
        self.clone = _clone(model, regularized=False)
        self.optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
        self.optimizer.build(self.clone.trainable_variables)
        self.initial = ([w.copy() for w in self.clone.get_weights()],
                        [keras.ops.convert_to_numpy(v) for v in self.optimizer.variables])
        self.max_steps = int(options.threshold(f"{STAGE}.overfit_batch.max_steps", OVERFIT_MAX_STEPS))
        self.classify = data.task != "regression"
        self.multilabel = data.task == "multilabel"
        self.eager = None
        # An eager recurrent layer runs its time loop step by step in Python: compile it from the start.
        self.eager_steps = 0 if any(is_recurrent(layer) for layer in leaf_layers(model)) else EAGER_STEPS
        if self.classify:
            self.criterion, self.higher_is_better = "accuracy", True
            self.target = options.threshold(f"{STAGE}.overfit_batch", OVERFIT_ACCURACY)
        else:
            self.criterion, self.higher_is_better = "loss / loss of the mean", False
            self.target = options.threshold(f"{STAGE}.overfit_batch", OVERFIT_RELATIVE_ERROR)
            constant = np.broadcast_to(np.mean(self.y, axis=0), self.y.shape).astype("float32")
            self.baseline = max(_batch_loss(self.loss.fn, self.y, constant), 1e-12)

    def memorise(self, x: np.ndarray, max_steps: int | None = None) -> Memorisation:
        """Train from the initial state on (x, y) until the criterion holds or the steps run out."""
        self._reset()
        max_steps = max_steps or self.max_steps
        started = time.perf_counter()
        losses, scores, score, step = [], [], math.nan, 0
        for step in range(1, max_steps + 1):
            if step == self.eager_steps + 1:
                self._compile(eager=False)
            logs = self.clone.train_on_batch(x, self.y, return_dict=True)
            losses.append(float(logs["loss"]))
            score = float(logs["accuracy"]) if self.classify else losses[-1] / self.baseline
            scores.append(score)
            if self.reached(score) or not math.isfinite(losses[-1]):
                break
        return Memorisation(self.reached(score), score, step, time.perf_counter() - started, losses[0],
                            losses[-1], scores[0])

    def reached(self, score: float) -> bool:
        return score >= self.target if self.higher_is_better else score <= self.target

    def _reset(self) -> None:
        weights, slots = self.initial
        self.clone.set_weights(weights)
        for variable, value in zip(self.optimizer.variables, slots):
            variable.assign(value)
        self._compile(eager=self.eager_steps > 0)

    def _compile(self, eager: bool) -> None:
        if self.eager == eager:
            return
        metrics = [self._accuracy()] if self.classify else []
        # The optimiser instance carries over, so switching modes keeps its state.
        self.clone.compile(optimizer=self.optimizer, loss=self.loss.fn, metrics=metrics, run_eagerly=eager,
                           jit_compile=False)  # XLA compilation would cost more than the steps
        self.eager = eager

    def _accuracy(self):
        units = output_units(self.clone, self.x)
        if units == 1 or self.multilabel:
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if self.loss.from_logits else 0.5)
        if self.y.ndim > 1 and self.y.shape[-1] == units:
            return keras.metrics.CategoricalAccuracy(name="accuracy")
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


# ------------------------------------------------------------------------------------------ helpers


def _fans(shape: tuple) -> tuple[int, int]:
    """Fans as Keras's initializers compute them (kernels: [receptive field...] x in x out)."""
    if len(shape) < 2:
        size = int(shape[0]) if shape else 1
        return size, size
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return int(shape[-2]) * receptive, int(shape[-1]) * receptive


def _clone(model: keras.Model, *, dtype: str | None = None, regularized: bool = True) -> keras.Model:
    """A copy of ``model`` with the same weights, optionally in another dtype or without dropout and
    weight penalties (nested layers such as Bidirectional's included)."""
    def clone_layer(layer):
        config = layer.get_config()
        if dtype is not None:
            config = _replace_key(config, "dtype", dtype)
        if not regularized:
            config = _without_regularization(config)
            if isinstance(layer, NOISE_LAYERS):
                config["rate"] = 0.0
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def _without_regularization(config):
    """A layer config without weight penalties, dropout or recurrent dropout (nested layers included)."""
    config = _replace_key(config, DROPOUT_KEYS, 0.0)
    return _replace_key(config, REGULARIZER_KEYS, None)


def _replace_key(config, keys, value):
    keys = {keys} if isinstance(keys, str) else keys
    if isinstance(config, dict):
        return {k: (value if k in keys else _replace_key(v, keys, value)) for k, v in config.items()}
    if isinstance(config, list):
        return [_replace_key(v, keys, value) for v in config]
    return config


def _predict(model: keras.Model, x: np.ndarray):
    """Inference-mode outputs through Keras's compiled predict step.  Measured on the seizure MLP (float64,
    16 rows): 0.04 s CPU to trace, then 0.4 ms a call, against 5 ms a call eagerly; an eager recurrent layer
    is far slower still (25 s for 256 rows through the seizure BiLSTM)."""
    return model.predict_on_batch(x)


def _batch_loss(fn: Callable, y, predictions) -> float:
    return float(keras.ops.convert_to_numpy(keras.ops.mean(fn(y, predictions))))


def _probe_batch(data: DiagnosticData, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(data.x_train)
    index = np.sort(np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False))
    return np.asarray(data.x_train[index]), np.asarray(data.y_train[index])


def _sample_rows(x: np.ndarray, rows: int, seed: int) -> np.ndarray:
    if len(x) <= rows:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=rows, replace=False))]


def _as_rows(x) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float64, copy=False)


def _row_hashes(x) -> list[int]:
    # float32 so that a float64 and a float32 copy of the same row hash alike.
    rows = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1), dtype=np.float32)
    return [hash(row.tobytes()) for row in rows]


def _result(name: str, verdict: str, value, threshold, message: str, fix: str = "", evidence=None
            ) -> CheckResult:
    return CheckResult(check=f"{STAGE}.{name}", verdict=verdict, value=value, threshold=threshold,
                       message=message, fix=fix if verdict in (WARN, FAIL) else "", stage=STAGE,
                       evidence=evidence or {})
