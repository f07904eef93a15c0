"""preflight.split_shift: do the splits come from one distribution?

Train is compared with val and test: per-feature standardised mean differences and std ratios (the
evidence: which features moved) and a classifier two-sample test (the verdict: can a linear model tell the
splits apart, cross-validated ROC AUC, ~0.5 when they come from one distribution).
"""

from __future__ import annotations

import math

import numpy as np

from datasets import HELD_OUT
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import (
    STAGE,
    auc_from_ranks,
    result,
    unusable_inputs,
)
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

NAME = f"{STAGE}.split_shift"
SHIFT_ROWS = 300  # rows per side for the classifier: enough for AUC ~ +-0.02, cheap on 784 features
STATS_ROWS = 2000  # rows per side for the per-feature statistics (a mean over rows costs little)
SHIFT_MIN_ROWS = 10  # a held-out split smaller than this cannot be compared
MAX_CELLS = 10_000_000  # rows x features per side held as float64 (80 MB): very wide inputs use fewer rows
CLASSIFIER_FEATURES = 256  # wider inputs are average-pooled along their time/space axes down to this
SUMMARY_CHANNELS = 16  # sequence summaries per channel, channels pooled down to this many groups
SHIFT_FOLDS = 5
SHIFT_C = 0.01  # inverse L2 strength of the two-sample logistic regression
# AUC bounds: 0.5 + max(floor, z * sd), sd the AUC's spread when both sides come from one distribution
# (Mann-Whitney); the floor keeps a large data set from flagging a shift too small to matter.
SHIFT_WARN_Z, SHIFT_FAIL_Z = 5.5, 7.0
SHIFT_WARN_FLOOR, SHIFT_FAIL_FLOOR = 0.06, 0.10
WORST_FEATURES = 5
CLIP_Z = 10.0
# Noise (in pooled stds) added to the classifier's inputs: without it a shift of 0.01 std in a discrete
# feature (a per-split scaler moving the mass at 0 slightly) separates every tied pair, up to AUC 0.5 + P(tie) / 2.
JITTER = 0.1
FIX = (
    "Apply the same preprocessing to every split (fit scalers on train, apply them to all), check units and "
    "the order of sequence steps or image encodings per split, and split at random (or stratified) unless a "
    "time split is intended."
)


@check(
    NAME,
    what="the cross-validated ROC AUC of a linear classifier telling training inputs from validation "
    "or test inputs (the larger of the two)",
    threshold=f"WARN > 0.5 + max({SHIFT_WARN_FLOOR:g}, {SHIFT_WARN_Z:g} sd), FAIL > 0.5 + "
    f"max({SHIFT_FAIL_FLOOR:g}, {SHIFT_FAIL_Z:g} sd); sd: the AUC's spread under one distribution",
    fix=FIX,
    scope="data",
)
def check_split_shift(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Train vs val and train vs test: a classifier two-sample test (cross-validated ROC AUC of telling the
    splits apart from their inputs), with the most shifted features as evidence.  Value: the largest AUC."""
    pairs = [split for split in HELD_OUT if getattr(data, f"x_{split}") is not None]
    reason = _split_shift_skip(data, pairs)
    if reason:
        return result(NAME, SKIP, None, None, f"not run: {reason}")
    small = [split for split in pairs if len(getattr(data, f"x_{split}")) < SHIFT_MIN_ROWS]
    train = np.asarray(data.x_train)
    comparisons = {
        split: compare(train, np.asarray(getattr(data, f"x_{split}")), data.feature_names, options.seed)
        for split in pairs
        if split not in small
    }
    worst_split = max(comparisons, key=lambda split: comparisons[split]["excess"])
    worst = comparisons[worst_split]
    warn_at = options.threshold(f"{NAME}.warn", worst["warn_at"])
    fail_at = options.threshold(NAME, worst["fail_at"])
    auc = worst["auc"]
    evidence = {"splits": comparisons, "worst_split": worst_split, "skipped_small_splits": small}
    bounds = f"one distribution: ~0.5; WARN above {warn_at:.2f}, FAIL above {fail_at:.2f}"
    if auc <= warn_at:
        return result(
            NAME,
            PASS,
            auc,
            fail_at,
            f"train and {worst_split} look alike: a classifier tells them apart with AUC {auc:.2f} ({bounds})",
            evidence=evidence,
        )
    moved = ", ".join(
        f"{f['feature']} (SMD {f['smd']:+.2f}, std x{f['std_ratio']:.2g})" for f in worst["worst_features"][:3]
    )
    return result(
        NAME,
        FAIL if auc > fail_at else WARN,
        auc,
        fail_at,
        f"train and {worst_split} inputs differ: a classifier tells them apart with AUC {auc:.2f} "
        f"({bounds}); most shifted features: {moved}",
        FIX,
        evidence=evidence,
    )


def _split_shift_skip(data: DiagnosticData, pairs: list[str]) -> str | None:
    if not pairs:
        return "no validation or test split to compare with train"
    arrays = [np.asarray(data.x_train)] + [np.asarray(getattr(data, f"x_{split}")) for split in pairs]
    if len(arrays[0]) < SHIFT_MIN_ROWS or all(len(x) < SHIFT_MIN_ROWS for x in arrays[1:]):
        return f"fewer than {SHIFT_MIN_ROWS} rows in train or in every held-out split"
    if any(x.shape[1:] != arrays[0].shape[1:] for x in arrays[1:]):
        return "the splits' inputs differ in shape: " + ", ".join(str(x.shape[1:]) for x in arrays)
    return unusable_inputs(arrays)


def compare(train: np.ndarray, other: np.ndarray, feature_names, seed: int) -> dict:
    """Per-feature statistics and the classifier AUC for train vs one held-out split."""
    rng = np.random.default_rng(seed)
    width = max(1, int(np.prod(train.shape[1:])))
    stats_rows, rows = (max(SHIFT_MIN_ROWS, min(limit, MAX_CELLS // width)) for limit in (STATS_ROWS, SHIFT_ROWS))
    stats = feature_shift(_sample(train, stats_rows, rng), _sample(other, stats_rows, rng), feature_names)
    a, b = _sample(train, rows, rng), _sample(other, rows, rng)
    auc = two_sample_auc(a, b, seed)
    sd = math.sqrt((len(a) + len(b) + 1) / (12.0 * len(a) * len(b)))
    warn_at = min(0.5 + max(SHIFT_WARN_FLOOR, SHIFT_WARN_Z * sd), 0.99)
    fail_at = min(0.5 + max(SHIFT_FAIL_FLOOR, SHIFT_FAIL_Z * sd), 0.995)
    return {
        "auc": round(auc, 4),
        "rows": [len(a), len(b)],
        "null_sd": round(sd, 4),
        "warn_at": round(warn_at, 4),
        "fail_at": round(fail_at, 4),
        "excess": (auc - 0.5) / (fail_at - 0.5),
        **stats,
    }


def _sample(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= rows:
        return x
    return x[np.sort(rng.choice(len(x), size=rows, replace=False))]


def feature_shift(a: np.ndarray, b: np.ndarray, feature_names) -> dict:
    """Standardised mean difference (pooled std) and std ratio of every flattened feature; the worst few."""
    a, b = _flat(a), _flat(b)
    pooled = np.concatenate([a, b]).std(axis=0)
    varying = pooled > 0
    smd = np.where(varying, (b.mean(axis=0) - a.mean(axis=0)) / np.where(varying, pooled, 1.0), 0.0)
    # A floor of 10% of the pooled std keeps a feature that is constant on one side finite.
    floor = 0.1 * pooled + 1e-12
    ratio = np.where(varying, (b.std(axis=0) + floor) / (a.std(axis=0) + floor), 1.0)
    badness = np.maximum(np.abs(smd), np.abs(np.log(ratio)))
    order = np.argsort(-badness)[:WORST_FEATURES]
    names = feature_names if feature_names is not None and len(feature_names) == a.shape[1] else None
    worst = [
        {
            "feature": names[i] if names else int(i),
            "smd": round(float(smd[i]), 3),
            "std_ratio": round(float(ratio[i]), 3),
        }
        for i in order
    ]
    return {
        "worst_features": worst,
        "max_abs_smd": round(float(np.abs(smd).max()), 3),
        "max_abs_log_std_ratio": round(float(np.abs(np.log(ratio)).max()), 3),
    }


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float64)


def two_sample_auc(a: np.ndarray, b: np.ndarray, seed: int) -> float:
    """Cross-validated ROC AUC of a logistic regression telling rows of ``a`` from rows of ``b``."""
    from scipy.stats import rankdata
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    features = shift_features(np.concatenate([a, b]), seed)
    side = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    folds = min(SHIFT_FOLDS, len(a), len(b))
    scores = np.zeros(len(side))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        for fit_rows, score_rows in splitter.split(features, side):
            model = LogisticRegression(C=SHIFT_C, max_iter=200, class_weight="balanced")
            model.fit(features[fit_rows], side[fit_rows])
            scores[score_rows] = model.decision_function(features[score_rows])
    return auc_from_ranks(rankdata(scores), np.asarray(side, bool))  # ties share their mean rank


def shift_features(x: np.ndarray, seed: int) -> np.ndarray:
    """What the classifier sees: pooled inputs, their magnitudes, row summaries and sequence summaries, each
    standardised over both sides together (no side information leaks into them)."""
    flat = _flat(x)
    z = _standardise(flat)
    # Row summaries over every feature catch a shift confined to a few features that pooling would dilute.
    rows = np.column_stack(
        [z.mean(axis=1), np.abs(z).mean(axis=1), np.abs(z).max(axis=1), flat.mean(axis=1), flat.std(axis=1)]
    )
    pooled = _standardise(_pool(np.asarray(x, dtype=np.float64)))
    parts = [pooled, np.abs(pooled), rows]
    if x.ndim in (2, 3) and x.shape[1] >= 8:  # possibly a sequence (a table gets harmless extra columns)
        parts.append(_sequence_summaries(x))
    features = _standardise(np.column_stack(parts))
    return features + JITTER * np.random.default_rng(seed).standard_normal(features.shape)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns standardised over both sides, clipped so that one extreme value cannot dominate a column."""
    std = x.std(axis=0)
    return np.clip((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0), -CLIP_Z, CLIP_Z)


def _pool(x: np.ndarray) -> np.ndarray:
    """Average-pool the time/space axes (channels kept up to a few) so that at most CLASSIFIER_FEATURES
    values remain per row."""
    if x.ndim <= 2:
        return _pool_axis(x.reshape(len(x), -1), 1, CLASSIFIER_FEATURES)
    if x.ndim == 3:  # (n, steps, channels)
        x = _pool_axis(x, 2, SUMMARY_CHANNELS)
        return _pool_axis(x, 1, max(1, CLASSIFIER_FEATURES // x.shape[2])).reshape(len(x), -1)
    x = x.reshape(*x.shape[:3], -1)  # (n, height, width, channels)
    x = _pool_axis(x, 3, 4)
    side = max(1, int(math.sqrt(CLASSIFIER_FEATURES // x.shape[3])))
    return _pool_axis(_pool_axis(x, 1, side), 2, side).reshape(len(x), -1)


def _pool_axis(x: np.ndarray, axis: int, bins: int) -> np.ndarray:
    if x.shape[axis] <= bins:
        return x
    return np.stack([part.mean(axis=axis) for part in np.array_split(x, bins, axis=axis)], axis=axis)


def _sequence_summaries(x: np.ndarray) -> np.ndarray:
    """Per channel: level, spread, trend, lag-1 autocorrelation, roughness and the skew of the steps; the
    last three change when a sequence is shuffled in time, the trend and skew when it is reversed."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, :, None] if x.ndim == 2 else _pool_axis(x, 2, SUMMARY_CHANNELS)
    centred = x - x.mean(axis=1, keepdims=True)
    std = centred.std(axis=1) + 1e-12
    steps = np.diff(x, axis=1)
    step_std = steps.std(axis=1) + 1e-12
    autocorr = (centred[:, 1:] * centred[:, :-1]).mean(axis=1) / std**2
    half = x.shape[1] // 2
    trend = (x[:, half:].mean(axis=1) - x[:, :half].mean(axis=1)) / std
    roughness = np.abs(steps).mean(axis=1) / std
    skew = (((steps - steps.mean(axis=1, keepdims=True)) / step_std[:, None]) ** 3).mean(axis=1)
    return np.concatenate([x.mean(axis=1), np.log(std), trend, autocorr, roughness, skew], axis=1)
