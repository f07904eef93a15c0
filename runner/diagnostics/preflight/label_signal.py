"""preflight.label_signal: are the labels related to the inputs?

A regularisation-free clone of the model trains for a fixed number of steps on the real labels and on
permuted ones; the two are compared on how well each predicts held-out rows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import compiled_loss
from runner.diagnostics.preflight._shared import (
    STAGE,
    auc_from_ranks,
    result,
    unusable_inputs,
)
from runner.diagnostics.preflight._trainer import (
    FreshClone,
    OneBatchTrainer,
    Probes,
    compiled_steps,
    multi_step_execution,
)
from runner.diagnostics.preflight.overfit_batch import NAME as OVERFIT
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, CheckResult

NAME = f"{STAGE}.label_signal"
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
FIX = (
    "Check that x and y rows are aligned (no shuffle of one without the other, no sort by label), that the "
    "label column is the intended one and that the inputs reach the model unmasked."
)


@dataclass
class Signal:
    """What the real-label and permuted-label runs measured, averaged over folds."""

    real_skill: float
    permuted_skill: float
    spread: float  # standard deviation of real_skill - permuted_skill when the labels carry no signal
    order_kept: float  # rank correlation of held-out predictions before and after training (real labels)
    own_rows_skill: float  # the real-label runs' skill on the rows they trained on
    folds: int

    @property
    def z(self) -> float:
        return (self.real_skill - self.permuted_skill) / max(self.spread, 1e-9)


def measure_signal(
    model: keras.Model, data: DiagnosticData, options: DiagnosticOptions, probes: Probes | None = None
) -> Signal:
    """Train from the model's weights on real and on permuted labels, per fold, and score each run."""
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    rng = np.random.default_rng(options.seed)
    trainer = StepTrainer(model, data, options, probes or Probes(), rng)
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
    return Signal(
        real_skill,
        perm_skill,
        math.sqrt(real_spread**2 + perm_spread**2),
        float(np.mean(unchanged)),
        float(np.mean(fit_skill)),
        len(real),
    )


@check(
    NAME,
    what="how much better a copy trained on the real labels ranks held-out targets than one trained on "
    "permuted labels, in null standard deviations (z)",
    threshold=f"PASS at z >= {SIGNAL_PASS_Z:g}, FAIL below z {SIGNAL_FAIL_Z:g} (when the test could see a "
    "clear effect and the model memorised its own rows)",
    fix=FIX,
    scope="probe",
)
def check_label_signal(
    model: keras.Model, data: DiagnosticData, options: DiagnosticOptions, probes: Probes | None = None
) -> CheckResult:
    """Are the labels related to the inputs?  A regularisation-free clone trains for a fixed number of steps
    on real labels and, from the same start, on permuted ones; both predict held-out training rows.  Value: how
    much better the real-label clone ranks the held-out targets, in null standard deviations (z)."""
    overfit = (probes or Probes()).results.get(OVERFIT)
    if overfit is not None and overfit.verdict != PASS:
        # A model that cannot even memorise one batch (a bad init, dead units, a wrong head) learns neither
        # the real nor the permuted labels, which says nothing about the labels.
        return result(
            NAME,
            SKIP,
            None,
            None,
            "inconclusive: the model cannot memorise one batch (see "
            "preflight.overfit_batch), so it learns real labels no faster than permuted ones whatever "
            "the labels are",
        )
    reason = _label_signal_skip(data)
    if reason:
        return result(NAME, SKIP, None, None, f"not run: {reason}")
    signal = measure_signal(model, data, options, probes)
    pass_at = options.threshold(NAME, SIGNAL_PASS_Z)
    fail_at = options.threshold(f"{NAME}.fail", SIGNAL_FAIL_Z)
    metric = "Spearman correlation" if data.task == "regression" else "ROC AUC"
    # The smallest real-vs-permuted difference this run could call learnable; when it exceeds a clear
    # effect the test is too weak (few or very imbalanced rows) to claim that the labels carry no signal.
    detectable = pass_at * signal.spread
    powered = detectable <= SIGNAL_CLEAR_EFFECT[metric]
    evidence = {
        "metric": metric,
        "skill_real_labels": round(signal.real_skill, 4),
        "skill_permuted_labels": round(signal.permuted_skill, 4),
        "null_spread": round(signal.spread, 4),
        "detectable_difference": round(detectable, 4),
        "powered": powered,
        "folds": signal.folds,
        "steps_per_run": SIGNAL_STEPS,
        "pass_at": pass_at,
        "fail_at": fail_at,
    }
    z = signal.z
    summary = (
        f"held-out {metric}: {signal.real_skill:.3f} after training on the real labels, "
        f"{signal.permuted_skill:.3f} on permuted ones (z = {z:.1f})"
    )
    if z >= pass_at:
        return result(NAME, PASS, z, pass_at, f"the labels are learnable: {summary}", evidence=evidence)
    evidence["prediction_order_kept"] = round(signal.order_kept, 4)
    if signal.order_kept >= SIGNAL_STILL:
        # The model barely moved in the budget (a small step size, a slow optimiser): it learned neither the
        # real nor the permuted labels, which says nothing about the labels.
        return result(
            NAME,
            SKIP,
            None,
            None,
            f"inconclusive: training for {SIGNAL_STEPS} steps barely changed "
            f"the predictions (rank correlation with the untrained ones {signal.order_kept:.2f}); "
            f"{summary}",
            evidence=evidence,
        )
    fitted = signal.own_rows_skill
    evidence["skill_on_own_rows"] = round(fitted, 4)
    # Labels unrelated to the inputs leave a model that learns its own rows (it memorises them) and nothing that
    # carries over; a model that has not learned its own rows either is merely slow (sigmoid stacks, small steps).
    memorised = fitted - signal.real_skill >= SIGNAL_MEMORISED[metric]
    if z < fail_at and powered and memorised:
        return result(
            NAME,
            FAIL,
            z,
            pass_at,
            f"labels look unrelated to the inputs: {summary}; {metric} {fitted:.3f} on the rows it trained on",
            FIX,
            evidence,
        )
    # Between the bounds, or too few rows to see a clear effect: no evidence either way, and a WARN that
    # only says "cannot tell" would be noise on healthy programs.
    why = (
        "the signal may be faint or need more than this budget"
        if powered
        else f"too few rows to tell (a difference below {detectable:.2f} goes unseen)"
    )
    return result(NAME, SKIP, None, None, f"inconclusive: {summary}; {why}", evidence=evidence)


def _label_signal_skip(data: DiagnosticData) -> str | None:
    y = np.asarray(data.y_train)
    if len(y) < SIGNAL_MIN_ROWS:
        return f"{len(y)} training rows, fewer than {SIGNAL_MIN_ROWS}"
    unusable = unusable_inputs([np.asarray(data.x_train)])
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
        return [(order[:SIGNAL_FIT_ROWS], order[SIGNAL_FIT_ROWS : SIGNAL_FIT_ROWS + SIGNAL_HELD_OUT_ROWS])]
    half = n // 2  # equal halves (an odd row left out): one predict shape, traced once
    first, second = order[:half], order[half : 2 * half]
    return [(first, second), (second, first)]


def shares_overfit_graph() -> bool:
    """Whether label_signal trains on overfit_batch's clone through its traced multi-step graph (TensorFlow)."""
    return keras.backend.backend() == "tensorflow"


class StepTrainer:
    """A regularisation-free clone of the model with a fresh optimiser of the same configuration, trained from
    the model's own weights for SIGNAL_STEPS mini-batches per run; the model itself is never touched.

    On TensorFlow the clone is overfit_batch's, trained through its traced multi-step graph: a trace of a train
    step of its own was half this check's time (seizure MLP: 0.9 s of 1.9 s). Elsewhere it is a clone of its
    own, trained by one ``fit`` call (JAX: device-side state between steps). Either way the same train_step
    runs on the same batches in the same order, so the weights are those of one train_on_batch per step."""

    def __init__(
        self,
        model: keras.Model,
        data: DiagnosticData,
        options: DiagnosticOptions,
        probes: Probes,
        rng: np.random.Generator,
    ):
        self.rng = rng
        self.shared: OneBatchTrainer | None = None
        if shares_overfit_graph():
            self.shared = probes.one_batch_trainer(model, data, options)
            self.fresh = self.shared
        else:
            self.fresh = FreshClone(model)
            self.fresh.clone.compile(
                optimizer=self.fresh.optimizer,
                loss=compiled_loss(model).fn,
                jit_compile=compiled_steps(),
                steps_per_execution=SIGNAL_STEPS if multi_step_execution() else 1,
            )
        self.clone = self.fresh.clone  # on TensorFlow compiled for graph steps, so its predictions are compiled too

    def train_and_predict(self, x: np.ndarray, y: np.ndarray, x_held: np.ndarray) -> np.ndarray:
        self.fresh.reset()
        # One input shape for every prediction (the training rows, then the held-out ones), so the predict
        # function is traced once, not once per shape.
        both = np.concatenate([x, x_held])
        self.before = self._predict(both)[len(x) :]
        batch = min(SIGNAL_BATCH, len(x))
        order = np.concatenate([self.rng.permutation(len(x)) for _ in range(math.ceil(SIGNAL_STEPS * batch / len(x)))])
        rows = order[: SIGNAL_STEPS * batch]
        if self.shared is not None:
            stacked_x = x[rows].reshape(SIGNAL_STEPS, batch, *x.shape[1:])
            self.shared.tensorflow_steps(stacked_x, y[rows].reshape(SIGNAL_STEPS, batch, *y.shape[1:]), SIGNAL_STEPS)
        else:
            self.clone.fit(x[rows], y[rows], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        after = self._predict(both)
        self.fitted = after[: len(x)]
        return after[len(x) :]

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.clone.predict_on_batch(x), dtype=np.float64).reshape(len(x), -1)


# ------------------------------------------------------------------------------------ rank statistics


def _ranks(predictions: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(predictions, axis=0)


def _order_kept(before: np.ndarray, after: np.ndarray) -> float:
    """Mean rank correlation between held-out predictions before and after training, over output columns."""
    columns = [
        _rank_correlation(_ranks(before[:, j]), after[:, j]) for j in range(min(before.shape[1], after.shape[1]))
    ]
    finite = [c for c in columns if np.isfinite(c)]
    return float(np.mean(finite)) if finite else 1.0


def _fold_mean(folds: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean skill over folds and its standard deviation (folds judged on disjoint rows)."""
    skills, spreads = zip(*folds)
    return float(np.mean(skills)), math.sqrt(sum(s**2 for s in spreads)) / len(spreads)


def _skill_and_spread(
    task: str, predictions: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[float, float]:
    """How well the predictions rank the held-out targets, and the standard deviation of that skill when the
    targets are shuffled (its spread when the predictions carry no information)."""
    score_ranks = _ranks(predictions)
    skill = _skill(task, score_ranks, target)
    if task == "regression":
        # Ranking a shuffled target gives the shuffled ranks: rank once, not once per shuffle (400 rankings
        # took most of this check's time on the wine data).
        target_ranks = _ranks(np.asarray(target, dtype=np.float64).reshape(len(target), -1))
        shuffled = [
            _spearman(score_ranks, target_ranks[rng.permutation(len(target))]) for _ in range(SIGNAL_PERMUTATIONS)
        ]
    else:
        shuffled = [_skill(task, score_ranks, target[rng.permutation(len(target))]) for _ in range(SIGNAL_PERMUTATIONS)]
    return skill, float(np.std(shuffled))


def _skill(task: str, score_ranks: np.ndarray, target: np.ndarray) -> float:
    """Regression: mean Spearman correlation over outputs.  Classification: mean one-vs-rest ROC AUC over the
    classes present (multilabel: over the labels that vary)."""
    if task == "regression":
        return _spearman(score_ranks, _ranks(np.asarray(target, dtype=np.float64).reshape(len(target), -1)))
    if task == "multilabel":
        target = np.asarray(target).reshape(len(target), -1) > 0.5
        pairs = [(score_ranks[:, j], target[:, j]) for j in range(min(target.shape[1], score_ranks.shape[1]))]
    elif score_ranks.shape[1] == 1:  # one sigmoid (or logit) unit: the score of class 1
        pairs = [(score_ranks[:, 0], target == 1)]
    else:
        pairs = [(score_ranks[:, k], target == k) for k in range(score_ranks.shape[1])]
    aucs = [auc_from_ranks(ranks, positive) for ranks, positive in pairs if 0 < positive.sum() < len(positive)]
    return float(np.mean(aucs)) if aucs else 0.5


def _spearman(score_ranks: np.ndarray, target_ranks: np.ndarray) -> float:
    """Mean Spearman correlation over the outputs, from the ranks of the predictions and of the targets."""
    columns = min(target_ranks.shape[1], score_ranks.shape[1])
    return float(np.nanmean([_ranked_correlation(score_ranks[:, j], target_ranks[:, j]) for j in range(columns)]))


def _rank_correlation(score_ranks: np.ndarray, target: np.ndarray) -> float:
    return _ranked_correlation(score_ranks, _ranks(target))


def _ranked_correlation(score_ranks: np.ndarray, target_ranks: np.ndarray) -> float:
    if score_ranks.std() == 0 or target_ranks.std() == 0:
        return 0.0
    return float(np.corrcoef(score_ranks, target_ranks)[0, 1])
