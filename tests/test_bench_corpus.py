"""The healthy corpus (bench/healthy_corpus) and the mutation benchmark's operators and halves.

Fast: builds a few models without training them."""

import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import false_alarms, mutation_benchmark
from bench.healthy_corpus import BY_NAME, CORPUS, Spec, materialise
from bench.healthy_corpus.build import balanced_accuracy
from bench.healthy_corpus.data import prepare


def test_corpus_holds_at_least_40_distinct_specs():
    assert len(CORPUS) >= 40
    assert len(BY_NAME) == len(CORPUS)
    behaviour = [tuple(getattr(s, f.name) for f in fields(Spec) if f.name not in ("name", "min_score")) for s in CORPUS]
    assert len(set(behaviour)) == len(CORPUS)


def test_corpus_covers_the_styles_people_use():
    assert {s.optimizer for s in CORPUS} >= {"sgd", "adam", "rmsprop"}
    sgd = [s for s in CORPUS if s.optimizer == "sgd"]
    assert any(s.momentum > 0 for s in sgd) and any(s.momentum == 0 for s in sgd)
    assert {s.loss for s in CORPUS} >= {
        "mse",
        "mae",
        "huber",
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
    }
    assert {s.from_logits for s in CORPUS if s.task != "regression"} == {True, False}
    assert {s.arch for s in CORPUS} == {"mlp", "cnn", "lstm", "gru"}
    assert {s.functional for s in CORPUS} == {True, False}
    assert min(s.batch_size for s in CORPUS) == 1 and max(s.batch_size for s in CORPUS) == 1024
    assert min(s.epochs for s in CORPUS) <= 2 and max(s.epochs for s in CORPUS) == 500
    assert min(s.rows for s in CORPUS) <= 60 and max(s.rows for s in CORPUS) >= 3000
    assert any(s.dropout >= 0.2 for s in CORPUS) and any(s.l2 == 1e-4 for s in CORPUS)
    assert any(s.task == "regression" and not s.target_scaling for s in CORPUS)
    assert any("weights" in s.option_dict for s in CORPUS)  # imbalanced classes
    assert {s.task for s in CORPUS} == {"regression", "binary", "multiclass"}


def test_unscaled_regression_targets_are_in_the_tens():
    spec = BY_NAME["reg_tens_target_sgd"]
    y_train = prepare(spec, 0)["train"][1]
    assert 30 < float(np.mean(y_train)) < 70 and float(np.std(y_train)) > 5


def test_scaler_is_fitted_on_train_and_split_shift_leaves_val_raw():
    spec = BY_NAME["bin_raw_scales_l2_adamw"]
    splits = prepare(spec, 0)
    assert np.allclose(splits["train"][0].mean(axis=0), 0, atol=1e-3)
    shifted = prepare(mutation_benchmark.OPERATORS_BY_NAME["split_shift"].mutate(spec), 0)
    assert np.allclose(shifted["train"][0], splits["train"][0])
    assert np.abs(shifted["val"][0]).mean() > 10 * np.abs(splits["val"][0]).mean()


@pytest.mark.parametrize(
    "name", ["bin_lstm_trend_logits", "mc_digits_cnn_onehot_sgd", "reg_house_l2_nadam", "bin_two_softmax_sparse"]
)
def test_materialise_builds_a_compiled_model_matching_the_data(name):
    spec = BY_NAME[name]
    model, data, fit_kwargs = materialise(spec, seed=0)
    assert model.compiled and fit_kwargs == {"epochs": spec.epochs, "batch_size": spec.batch_size}
    assert data.task == spec.task and len(data.x_test) > 0
    predictions = model.predict(data.x_val[:4], verbose=0)
    assert predictions.shape == (4, spec.units)
    loss = float(model.evaluate(data.x_val[:32], data.y_val[:32], verbose=0))
    assert np.isfinite(loss)


def test_a_mutant_materialises_under_its_own_name():
    operator = mutation_benchmark.OPERATORS_BY_NAME["dropout_0.9"]
    parent, mutant = next((p, m) for o, p, m in mutation_benchmark.mutants() if o is operator)
    assert mutant.name == f"{parent.name}__dropout_0.9" and mutant.dropout == 0.9
    model, _, _ = materialise(mutant, seed=0)
    assert any(type(layer).__name__ == "Dropout" and layer.rate == 0.9 for layer in model.layers)


def test_materialise_is_reproducible():
    spec = BY_NAME["bin_moons_sgd_momentum"]
    first, _, _ = materialise(spec, seed=3)
    second, _, _ = materialise(spec, seed=3)
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert np.array_equal(a, b)


def test_every_operator_changes_what_it_claims_and_declares_known_causes():
    claims = {
        "lr_x100": ("learning_rate", lambda old, new: np.isclose(new, old * 100)),
        "lr_div1000": ("learning_rate", lambda old, new: np.isclose(new, old / 1000)),
        "init_zeros": ("initializer", lambda old, new: new == "zeros"),
        "init_constant": ("initializer", lambda old, new: new == "constant"),
        "init_huge_std": ("initializer", lambda old, new: new == "huge"),
        "remove_input_scaling": ("input_scaling", lambda old, new: new == "none"),
        "remove_target_scaling": ("target_scaling", lambda old, new: old and not new),
        "shuffle_labels": ("shuffle_labels", lambda old, new: new),
        "cut_epochs": ("epochs", lambda old, new: new <= 2 < old),
        "dropout_0.9": ("dropout", lambda old, new: new == 0.9),
        "huge_l2": ("l2", lambda old, new: new == 1.0),
        "batch1_high_lr": ("batch_size", lambda old, new: new == 1),
        "change_activation_sigmoid": ("hidden_activation", lambda old, new: new == "sigmoid"),
        "remove_nonlinearity": ("hidden_activation", lambda old, new: new == "linear"),
        "change_loss": ("loss", lambda old, new: new != old),
        "flip_from_logits": ("from_logits", lambda old, new: new != old),
        "softmax_on_sigmoid_head": ("output_activation", lambda old, new: old == "sigmoid" and new == "softmax"),
        "wrong_output_units": ("output_units", lambda old, new: new == 2),
        "split_shift": ("scale_eval", lambda old, new: old and not new),
    }
    assert set(claims) == {o.name for o in mutation_benchmark.OPERATORS}
    for operator, parent, mutant in mutation_benchmark.mutants():
        field, holds = claims[operator.name]
        assert holds(getattr(parent, field), getattr(mutant, field)), (operator.name, parent.name)
        assert operator.accepts and operator.accepts <= mutation_benchmark.CAUSES
        assert "none" not in operator.accepts


def test_batch1_operator_raises_the_learning_rate_too():
    parent = BY_NAME["reg_batch1_sgd"]  # already batch 1: the operator must not apply
    assert not mutation_benchmark.OPERATORS_BY_NAME["batch1_high_lr"].applies(parent)
    spec = BY_NAME["bin_cnn_bars"]
    mutant = mutation_benchmark.OPERATORS_BY_NAME["batch1_high_lr"].mutate(spec)
    assert mutant.learning_rate == pytest.approx(spec.learning_rate * 30)


def test_benchmark_size_each_operator_on_at_least_8_setups():
    chosen = mutation_benchmark.mutants()
    assert len(chosen) >= 150
    per_operator = {}
    for operator, parent, _ in chosen:
        per_operator.setdefault(operator.name, set()).add(parent.name)
    assert all(len(setups) >= 8 for setups in per_operator.values()), per_operator


def test_halves_are_deterministic_and_balanced():
    names = [s.name for s in CORPUS]
    first = mutation_benchmark.halves(names)
    assert first == mutation_benchmark.halves(list(reversed(names)))
    assert sum(h == "tuning" for h in first.values()) == len(names) // 2
    operators = mutation_benchmark.halves([o.name for o in mutation_benchmark.OPERATORS])
    assert set(operators.values()) == {"tuning", "test"}
    tuning_op = next(n for n, h in operators.items() if h == "tuning")
    test_setup = next(n for n, h in first.items() if h == "test")
    assert mutation_benchmark.mutant_half(tuning_op, test_setup) == "test"


def test_hurt_needs_more_than_the_margin():
    assert mutation_benchmark.hurt(0.80, 0.90)
    assert not mutation_benchmark.hurt(0.87, 0.90)
    assert mutation_benchmark.hurt(float("nan"), 0.90)


def test_balanced_accuracy_gives_chance_to_a_constant_guess():
    truth = np.array([0] * 90 + [1] * 10)
    assert balanced_accuracy(truth, np.zeros(100, dtype=int)) == pytest.approx(0.5)
    assert balanced_accuracy(truth, truth) == 1.0


def test_false_alarm_summary_counts_runs_with_any_warn_or_fail():
    runs = [
        {
            "setup": "a",
            "seed": 0,
            "worst": "PASS",
            "flagged": [],
            "cause": None,
            "score": 0.9,
            "seconds": 1.0,
            "error": "",
        },
        {
            "setup": "a",
            "seed": 1,
            "worst": "FAIL",
            "cause": "lr_too_high",
            "score": 0.9,
            "seconds": 1.0,
            "error": "",
            "flagged": [
                {"check": "x.y", "verdict": "FAIL", "message": "m"},
                {"check": "x.z", "verdict": "WARN", "message": "m"},
            ],
        },
        {
            "setup": "a",
            "seed": 2,
            "worst": None,
            "flagged": [],
            "cause": None,
            "score": None,
            "seconds": 1.0,
            "error": "boom",
        },
    ]
    total = false_alarms.summary(runs)
    assert (total["runs"], total["errors"], total["any_fail"], total["any_warn"]) == (2, 1, 1, 1)
    assert total["any_fail_pct"] == 50.0
    assert false_alarms.check_counts(runs)["x.y"]["FAIL"] == 1
