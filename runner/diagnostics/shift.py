"""Two data checks: do the splits come from one distribution, and are the labels related to the inputs?

``check_split_shift`` compares train with val and test: per-feature standardised mean differences and std
ratios (the evidence: which features moved) and a classifier two-sample test (the verdict: can a linear model
tell the splits apart, cross-validated ROC AUC, ~0.5 when they come from one distribution).
``check_label_signal`` trains a regularisation-free clone of the model for a fixed number of steps on the real
labels and on permuted ones and compares how well each predicts held-out rows.
"""

from __future__ import annotations

import math

import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.report import FAIL, PASS, SKIP, WARN, CheckResult

STAGE = "preflight"

# ------------------------------------------------------------------------------------- split shift

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


def check_split_shift(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Train vs val and train vs test: a classifier two-sample test (cross-validated ROC AUC of telling the
    splits apart from their inputs), with the most shifted features as evidence.  Value: the largest AUC."""
    name = f"{STAGE}.split_shift"
    pairs = [split for split in ("val", "test") if getattr(data, f"x_{split}") is not None]
    reason = _split_shift_skip(data, pairs)
    if reason:
        return _result(name, SKIP, None, None, f"not run: {reason}")
    small = [split for split in pairs if len(getattr(data, f"x_{split}")) < SHIFT_MIN_ROWS]
    train = np.asarray(data.x_train)
    comparisons = {split: _compare(train, np.asarray(getattr(data, f"x_{split}")), data.feature_names,
                                   options.seed) for split in pairs if split not in small}
    worst_split = max(comparisons, key=lambda split: comparisons[split]["excess"])
    worst = comparisons[worst_split]
    warn_at = options.threshold(f"{name}.warn", worst["warn_at"])
    fail_at = options.threshold(name, worst["fail_at"])
    auc = worst["auc"]
    evidence = {"splits": comparisons, "worst_split": worst_split, "skipped_small_splits": small}
    bounds = f"one distribution: ~0.5; WARN above {warn_at:.2f}, FAIL above {fail_at:.2f}"
    if auc <= warn_at:
        return _result(name, PASS, auc, fail_at, f"train and {worst_split} look alike: a classifier tells them "
                       f"apart with AUC {auc:.2f} ({bounds})", evidence=evidence)
    moved = ", ".join(f"{f['feature']} (SMD {f['smd']:+.2f}, std x{f['std_ratio']:.2g})"
                      for f in worst["worst_features"][:3])
    return _result(name, FAIL if auc > fail_at else WARN, auc, fail_at,
                   f"train and {worst_split} inputs differ: a classifier tells them apart with AUC {auc:.2f} "
                   f"({bounds}); most shifted features: {moved}",
                   "Apply the same preprocessing to every split (fit scalers on train, apply them to all), "
                   "check units and the order of sequence steps or image encodings per split, and split at "
                   "random (or stratified) unless a time split is intended.", evidence=evidence)


def _split_shift_skip(data: DiagnosticData, pairs: list[str]) -> str | None:
    if not pairs:
        return "no validation or test split to compare with train"
    arrays = [np.asarray(data.x_train)] + [np.asarray(getattr(data, f"x_{split}")) for split in pairs]
    if len(arrays[0]) < SHIFT_MIN_ROWS or all(len(x) < SHIFT_MIN_ROWS for x in arrays[1:]):
        return f"fewer than {SHIFT_MIN_ROWS} rows in train or in every held-out split"
    if any(x.shape[1:] != arrays[0].shape[1:] for x in arrays[1:]):
        return "the splits' inputs differ in shape: " + ", ".join(str(x.shape[1:]) for x in arrays)
    return _unusable_inputs(arrays)


def _unusable_inputs(arrays: list[np.ndarray]) -> str | None:
    """Why these inputs cannot be measured (non-numeric or non-finite), or None."""
    if any(not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) for x in arrays):
        return "the inputs are not numeric"
    if any(np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all() for x in arrays):
        return "the inputs hold NaN/Inf values (see preflight.data_finite)"
    return None


def _compare(train: np.ndarray, other: np.ndarray, feature_names, seed: int) -> dict:
    """Per-feature statistics and the classifier AUC for train vs one held-out split."""
    rng = np.random.default_rng(seed)
    width = max(1, int(np.prod(train.shape[1:])))
    stats_rows, rows = (max(SHIFT_MIN_ROWS, min(limit, MAX_CELLS // width)) for limit in (STATS_ROWS, SHIFT_ROWS))
    stats = _feature_shift(_sample(train, stats_rows, rng), _sample(other, stats_rows, rng), feature_names)
    a, b = _sample(train, rows, rng), _sample(other, rows, rng)
    auc = _two_sample_auc(a, b, seed)
    sd = math.sqrt((len(a) + len(b) + 1) / (12.0 * len(a) * len(b)))
    warn_at = min(0.5 + max(SHIFT_WARN_FLOOR, SHIFT_WARN_Z * sd), 0.99)
    fail_at = min(0.5 + max(SHIFT_FAIL_FLOOR, SHIFT_FAIL_Z * sd), 0.995)
    return {"auc": round(auc, 4), "rows": [len(a), len(b)], "null_sd": round(sd, 4), "warn_at": round(warn_at, 4),
            "fail_at": round(fail_at, 4), "excess": (auc - 0.5) / (fail_at - 0.5), **stats}


def _sample(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= rows:
        return x
    return x[np.sort(rng.choice(len(x), size=rows, replace=False))]


def _feature_shift(a: np.ndarray, b: np.ndarray, feature_names) -> dict:
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
    worst = [{"feature": names[i] if names else int(i), "smd": round(float(smd[i]), 3),
              "std_ratio": round(float(ratio[i]), 3)} for i in order]
    return {"worst_features": worst, "max_abs_smd": round(float(np.abs(smd).max()), 3),
            "max_abs_log_std_ratio": round(float(np.abs(np.log(ratio)).max()), 3)}


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float64)


def _two_sample_auc(a: np.ndarray, b: np.ndarray, seed: int) -> float:
    """Cross-validated ROC AUC of a logistic regression telling rows of ``a`` from rows of ``b``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    features = _shift_features(np.concatenate([a, b]), seed)
    side = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    folds = min(SHIFT_FOLDS, len(a), len(b))
    scores = np.zeros(len(side))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        for fit_rows, score_rows in splitter.split(features, side):
            model = LogisticRegression(C=SHIFT_C, max_iter=200, class_weight="balanced")
            model.fit(features[fit_rows], side[fit_rows])
            scores[score_rows] = model.decision_function(features[score_rows])
    return _auc(scores, side)


def _shift_features(x: np.ndarray, seed: int) -> np.ndarray:
    """What the classifier sees: pooled inputs, their magnitudes, row summaries and sequence summaries, each
    standardised over both sides together (no side information leaks into them)."""
    flat = _flat(x)
    z = _standardise(flat)
    # Row summaries over every feature catch a shift confined to a few features that pooling would dilute.
    rows = np.column_stack([z.mean(axis=1), np.abs(z).mean(axis=1), np.abs(z).max(axis=1), flat.mean(axis=1),
                            flat.std(axis=1)])
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


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC from ranks (ties share their mean rank)."""
    from scipy.stats import rankdata

    return _auc_from_ranks(rankdata(scores), np.asarray(positive, bool))


def _result(name: str, verdict: str, value, threshold, message: str, fix: str = "", evidence=None
            ) -> CheckResult:
    return CheckResult(check=name, verdict=verdict, value=value, threshold=threshold, message=message,
                       fix=fix if verdict in (WARN, FAIL) else "", stage=STAGE, evidence=evidence or {})


# ------------------------------------------------------------------------------------ label signal

SIGNAL_MIN_ROWS = 32
SIGNAL_FIT_ROWS = 256  # rows each clone trains on
SIGNAL_HELD_OUT_ROWS = 512  # rows it is judged on (one fold); fewer rows: two folds, each half judged once
SIGNAL_STEPS, SIGNAL_BATCH = 150, 32  # a budget in steps, never seconds: the verdict must not depend on load
SIGNAL_PERMUTATIONS = 200  # held-out target shuffles that measure the skill's spread under no signal
# z = (skill with real labels - skill with permuted labels) / the spread of that difference: ~N(0, 1) when
# the labels are unrelated to the inputs.
SIGNAL_PASS_Z, SIGNAL_FAIL_Z = 3.0, 2.0
SIGNAL_MEMORISED = {"ROC AUC": 0.1, "Spearman correlation": 0.2}  # own-rows skill above held-out skill
SIGNAL_STILL = 0.95  # held-out predictions ranked this alike before and after training: the model did not learn
# A difference this large is a clear signal (AUC 0.5 -> 0.7, correlation 0 -> 0.4): FAIL only when it
# would have been detected.
SIGNAL_CLEAR_EFFECT = {"ROC AUC": 0.2, "Spearman correlation": 0.4}


def check_label_signal(model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Are the labels related to the inputs?  A regularisation-free clone trains for a fixed number of steps
    on real labels and, from the same start, on permuted ones; both predict held-out training rows.  Value: how
    much better the real-label clone ranks the held-out targets, in null standard deviations (z)."""
    name = f"{STAGE}.label_signal"
    reason = _label_signal_skip(data)
    if reason:
        return _result(name, SKIP, None, None, f"not run: {reason}")
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    rng = np.random.default_rng(options.seed)
    trainer = _StepTrainer(model, rng)
    labels = y if data.task in ("regression", "multilabel") else data.labels("train")
    real, permuted = [], []  # (skill, spread) per fold: pooling folds would mix two models' score scales
    unchanged = []  # per real-label run: how much the held-out predictions kept their order through training
    fit_skill = []  # per real-label run: its skill on the rows it trained on
    for fit_rows, held_rows in _signal_folds(len(x), rng):
        for runs, fit_labels in ((real, y[fit_rows]), (permuted, y[rng.permutation(fit_rows)])):
            predictions = trainer.train_and_predict(x[fit_rows], fit_labels, x[held_rows])
            runs.append(_skill_and_spread(data.task, predictions, labels[held_rows], rng))
            if runs is real:
                unchanged.append(_order_kept(trainer.before, predictions))
                fit_skill.append(_skill(data.task, _ranks(trainer.fitted), labels[fit_rows]))
    (real_skill, real_spread), (perm_skill, perm_spread) = _fold_mean(real), _fold_mean(permuted)
    spread = math.sqrt(real_spread**2 + perm_spread**2)
    z = (real_skill - perm_skill) / max(spread, 1e-9)
    pass_at = options.threshold(name, SIGNAL_PASS_Z)
    fail_at = options.threshold(f"{name}.fail", SIGNAL_FAIL_Z)
    metric = "Spearman correlation" if data.task == "regression" else "ROC AUC"
    # The smallest real-vs-permuted difference this run could call learnable; when it exceeds a clear
    # effect the test is too weak (few or very imbalanced rows) to claim that the labels carry no signal.
    detectable = pass_at * spread
    powered = detectable <= SIGNAL_CLEAR_EFFECT[metric]
    evidence = {"metric": metric, "skill_real_labels": round(real_skill, 4),
                "skill_permuted_labels": round(perm_skill, 4), "null_spread": round(spread, 4),
                "detectable_difference": round(detectable, 4), "powered": powered,
                "folds": len(real), "steps_per_run": SIGNAL_STEPS, "pass_at": pass_at, "fail_at": fail_at}
    summary = (f"held-out {metric}: {real_skill:.3f} after training on the real labels, {perm_skill:.3f} on "
               f"permuted ones (z = {z:.1f})")
    if z >= pass_at:
        return _result(name, PASS, z, pass_at, f"the labels are learnable: {summary}", evidence=evidence)
    fix = ("Check that x and y rows are aligned (no shuffle of one without the other, no sort by label), that the "
           "label column is the intended one and that the inputs reach the model unmasked.")
    kept = float(np.mean(unchanged))
    evidence["prediction_order_kept"] = round(kept, 4)
    if kept >= SIGNAL_STILL:
        # The model barely moved in the budget (a small step size, a slow optimiser): it learned neither the
        # real nor the permuted labels, which says nothing about the labels.
        return _result(name, SKIP, None, None, f"inconclusive: training for {SIGNAL_STEPS} steps barely changed "
                       f"the predictions (rank correlation with the untrained ones {kept:.2f}); {summary}",
                       evidence=evidence)
    fitted = float(np.mean(fit_skill))
    evidence["skill_on_own_rows"] = round(fitted, 4)
    # Labels unrelated to the inputs leave a model that learns its own rows (it memorises them) and nothing that
    # carries over; a model that has not learned its own rows either is merely slow (sigmoid stacks, small steps).
    memorised = fitted - real_skill >= SIGNAL_MEMORISED[metric]
    if z < fail_at and powered and memorised:
        return _result(name, FAIL, z, pass_at, f"labels look unrelated to the inputs: {summary}; "
                       f"{metric} {fitted:.3f} on the rows it trained on", fix, evidence)
    # Between the bounds, or too few rows to see a clear effect: no evidence either way, and a WARN that
    # only says "cannot tell" would be noise on healthy programs.
    why = ("the signal may be faint or need more than this budget" if powered else
           f"too few rows to tell (a difference below {detectable:.2f} goes unseen)")
    return _result(name, SKIP, None, None, f"inconclusive: {summary}; {why}", evidence=evidence)


def _ranks(predictions: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(predictions, axis=0)


def _order_kept(before: np.ndarray, after: np.ndarray) -> float:
    """Mean rank correlation between held-out predictions before and after training, over output columns."""
    from scipy.stats import rankdata

    columns = [_rank_correlation(rankdata(before[:, j]), after[:, j]) for j in range(min(before.shape[1],
                                                                                           after.shape[1]))]
    finite = [c for c in columns if np.isfinite(c)]
    return float(np.mean(finite)) if finite else 1.0


def _fold_mean(folds: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean skill over folds and its standard deviation (folds judged on disjoint rows)."""
    skills, spreads = zip(*folds)
    return float(np.mean(skills)), math.sqrt(sum(s**2 for s in spreads)) / len(spreads)


def _label_signal_skip(data: DiagnosticData) -> str | None:
    y = np.asarray(data.y_train)
    if len(y) < SIGNAL_MIN_ROWS:
        return f"{len(y)} training rows, fewer than {SIGNAL_MIN_ROWS}"
    unusable = _unusable_inputs([np.asarray(data.x_train)])
    if unusable:
        return unusable
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        return "the training targets hold NaN/Inf values"
    if data.single_label and np.unique(data.labels("train")).size < 2:
        return "a single class in the training labels"
    if data.task == "multilabel":
        columns = y.reshape(len(y), -1)
        if not any(np.unique(column).size > 1 for column in columns.T):
            return "no label varies in the training rows"
    if data.task == "regression" and not np.any(np.asarray(y, dtype=np.float64).std(axis=0) > 0):
        return "the regression target is constant"
    return None


def _signal_folds(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """One fold (fit rows, held-out rows) when the data is large enough, else two halves judged in turn,
    so that a small data set still gives every row a held-out prediction."""
    order = rng.permutation(n)
    if n >= SIGNAL_FIT_ROWS + SIGNAL_HELD_OUT_ROWS // 2:
        return [(order[:SIGNAL_FIT_ROWS], order[SIGNAL_FIT_ROWS:SIGNAL_FIT_ROWS + SIGNAL_HELD_OUT_ROWS])]
    half = n // 2  # equal halves (an odd row left out): one predict shape, traced once
    first, second = order[:half], order[half:2 * half]
    return [(first, second), (second, first)]


class _StepTrainer:
    """A regularisation-free clone of the model with a fresh optimiser of the same configuration, trained
    from the model's own weights for SIGNAL_STEPS mini-batches per run; the model itself is never touched."""

    def __init__(self, model, rng: np.random.Generator):
        import keras

        from runner.diagnostics.preflight import _clone, compiled_loss

        self.rng = rng
        self.clone = _clone(model, regularized=False)
        self.optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
        self.optimizer.build(self.clone.trainable_variables)
        self.initial = ([w.copy() for w in self.clone.get_weights()],
                        [keras.ops.convert_to_numpy(v) for v in self.optimizer.variables])
        self.clone.compile(optimizer=self.optimizer, loss=compiled_loss(model).fn, jit_compile=False)

    def train_and_predict(self, x: np.ndarray, y: np.ndarray, x_held: np.ndarray) -> np.ndarray:
        self._reset()
        self.before = np.asarray(self.clone.predict_on_batch(x_held), dtype=np.float64).reshape(len(x_held), -1)
        batch = min(SIGNAL_BATCH, len(x))
        order = np.concatenate([self.rng.permutation(len(x))
                                for _ in range(math.ceil(SIGNAL_STEPS * batch / len(x)))])
        for step in range(SIGNAL_STEPS):
            rows = order[step * batch:(step + 1) * batch]
            self.clone.train_on_batch(x[rows], y[rows])
        self.fitted = np.asarray(self.clone.predict_on_batch(x), dtype=np.float64).reshape(len(x), -1)
        predictions = np.asarray(self.clone.predict_on_batch(x_held), dtype=np.float64)
        return predictions.reshape(len(x_held), -1)

    def _reset(self) -> None:
        weights, slots = self.initial
        self.clone.set_weights(weights)
        for variable, value in zip(self.optimizer.variables, slots):
            variable.assign(value)


def _skill_and_spread(task: str, predictions: np.ndarray, target: np.ndarray, rng: np.random.Generator
                      ) -> tuple[float, float]:
    """How well the predictions rank the held-out targets, and the standard deviation of that skill when the
    targets are shuffled (its spread when the predictions carry no information)."""
    from scipy.stats import rankdata

    score_ranks = rankdata(predictions, axis=0)
    skill = _skill(task, score_ranks, target)
    shuffled = [_skill(task, score_ranks, target[rng.permutation(len(target))])
                for _ in range(SIGNAL_PERMUTATIONS)]
    return skill, float(np.std(shuffled))


def _skill(task: str, score_ranks: np.ndarray, target: np.ndarray) -> float:
    """Regression: mean Spearman correlation over outputs.  Classification: mean one-vs-rest ROC AUC over the
    classes present (multilabel: over the labels that vary)."""
    if task == "regression":
        target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
        columns = min(target.shape[1], score_ranks.shape[1])
        return float(np.nanmean([_rank_correlation(score_ranks[:, j], target[:, j]) for j in range(columns)]))
    if task == "multilabel":
        target = np.asarray(target).reshape(len(target), -1) > 0.5
        pairs = [(score_ranks[:, j], target[:, j]) for j in range(min(target.shape[1], score_ranks.shape[1]))]
    elif score_ranks.shape[1] == 1:  # one sigmoid (or logit) unit: the score of class 1
        pairs = [(score_ranks[:, 0], target == 1)]
    else:
        pairs = [(score_ranks[:, k], target == k) for k in range(score_ranks.shape[1])]
    aucs = [_auc_from_ranks(ranks, positive) for ranks, positive in pairs if 0 < positive.sum() < len(positive)]
    return float(np.mean(aucs)) if aucs else 0.5


def _rank_correlation(score_ranks: np.ndarray, target: np.ndarray) -> float:
    from scipy.stats import rankdata

    target_ranks = rankdata(target)
    if score_ranks.std() == 0 or target_ranks.std() == 0:
        return 0.0
    return float(np.corrcoef(score_ranks, target_ranks)[0, 1])


def _auc_from_ranks(ranks: np.ndarray, positive: np.ndarray) -> float:
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
