"""bench/real_bugs: enough pairs, complete metadata, causes from the diagnosis vocabulary, and a few pairs
that really build (both sides) into compiled models and consistent data.  Fast: nothing here trains."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import real_bug_benchmark  # noqa: E402
from bench.real_bugs import CAUSES, all_pairs, by_name  # noqa: E402
from bench.real_bugs.data import score, split  # noqa: E402

PAIRS = all_pairs()
# One of each model style: Functional MLP, Conv2D, LSTM, data-side bug that changes the arrays.
MATERIALISED = (
    "logits_without_from_logits",
    "unnormalised_pixels",
    "relu_final_regression_lstm",
    "labels_shuffled_separately",
)


def test_there_are_at_least_twenty_pairs_with_unique_names():
    names = [pair.name for pair in PAIRS]
    assert len(names) >= 20
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda pair: pair.name)
def test_metadata_is_complete_and_causes_come_from_the_vocabulary(pair):
    for field in ("title", "source", "bug_class", "fix", "facts", "style"):
        assert getattr(pair, field).strip(), f"{pair.name}: empty {field}"
    assert pair.url.startswith("https://"), pair.url
    assert pair.causes and set(pair.causes) <= set(CAUSES), pair.causes
    assert "none" not in pair.causes  # a buggy program is never "nothing wrong"
    assert callable(pair.build)


def test_sources_file_names_every_pair_and_its_link():
    sources = (REPO / "bench" / "real_bugs" / "SOURCES.md").read_text()
    for pair in PAIRS:
        assert f"`{pair.name}`" in sources, pair.name
        assert pair.url in sources, pair.url


def test_no_pair_claims_the_independent_scorers_stack_overflow_programs():
    # DeepLocalize, DeepFD and deepmufl score us with their Stack Overflow programs: we must not port them.
    for pair in PAIRS:
        assert "stackoverflow.com" not in pair.url + pair.source, pair.name


@pytest.mark.parametrize("name", MATERIALISED)
def test_both_sides_build_a_compiled_model_that_fits_its_data(name):
    pair = by_name(name)
    shapes = []
    for side in (pair.buggy, pair.fixed):
        model, data, fit_kwargs = side(0)
        assert model.compiled and fit_kwargs["epochs"] >= 1
        assert len(data.x_train) == len(data.y_train) and len(data.x_test) == len(data.y_test) > 0
        prediction = model.predict(data.x_val[:4], verbose=0)
        assert prediction.shape[0] == 4
        shapes.append(data.x_train.shape)
    assert shapes[0][1:] == shapes[1][1:] or name == "label_leaking_feature"


def test_a_side_is_reproducible_for_a_seed():
    first = by_name("labels_shuffled_separately").buggy(3)
    second = by_name("labels_shuffled_separately").buggy(3)
    np.testing.assert_array_equal(first[1].x_train, second[1].x_train)
    np.testing.assert_allclose(first[0].get_weights()[0], second[0].get_weights()[0])


def test_the_shuffled_labels_bug_really_detaches_labels_from_rows():
    buggy, fixed = by_name("labels_shuffled_separately").buggy(0)[1], by_name("labels_shuffled_separately").fixed(0)[1]
    np.testing.assert_array_equal(buggy.y_train, fixed.y_train)
    assert not np.array_equal(buggy.x_train, fixed.x_train)
    assert sorted(map(tuple, buggy.x_train)) == sorted(map(tuple, fixed.x_train))  # same rows, other order


def test_score_reads_probabilities_classes_and_regression():
    class Constant:
        def __init__(self, output):
            self.output = np.asarray(output, dtype="float32")

        def predict(self, x, verbose=0):
            return self.output

    data = split("binary", np.zeros((10, 2)), np.array([0, 1] * 5, dtype="float32"), seed=0, shuffle=False)
    assert score(Constant([[0.1], [0.9]]), data) == 1.0  # the test rows' labels are [0, 1]
    assert score(Constant([[0.1], [0.1]]), data) == 0.5
    assert score(Constant([[0.1, 0.9], [0.8, 0.2]]), data) == 0.0  # two columns: argmax
    data.task = "regression"
    assert score(Constant([[0.0], [1.0]]), data) == pytest.approx(1.0)
    assert np.isnan(score(Constant([[np.nan], [1.0]]), data))


def test_benchmark_totals_count_accepted_causes_and_fixed_side_verdicts():
    pairs = {pair.name: pair for pair in PAIRS[:2]}
    first, second = list(pairs)
    outcomes = [
        {"pair": first, "seed": 0, "side": "buggy", "worst": "FAIL", "cause": pairs[first].causes[0], "problems": []},
        {"pair": first, "seed": 0, "side": "fixed", "worst": "WARN", "cause": "none", "problems": ["a.b=WARN"]},
        {"pair": second, "seed": 0, "side": "buggy", "worst": "WARN", "cause": "leakage", "problems": []},
        {"pair": second, "seed": 0, "side": "fixed", "worst": "FAIL", "cause": "n/a", "problems": ["c.d=FAIL"]},
    ]
    table = real_bug_benchmark.rows(outcomes, pairs)
    assert [row["accepted"] for row in table] == ["yes", "no" if "leakage" not in pairs[second].causes else "yes"]
    summary = real_bug_benchmark.totals(table)
    assert summary["fail_fixed"] == 0.5 and summary["warn_fixed"] == 0.5
    assert real_bug_benchmark.accepted("n/a", ("lr_too_high",)) == "n/a"


def test_diagnosis_cause_is_na_until_reports_have_one():
    class Bare:
        pass

    class WithDiagnosis:
        class diagnosis:  # noqa: N801 - stands in for the object report.diagnosis will be
            cause = "lr_too_high"

    assert real_bug_benchmark.diagnosis_cause(Bare()) == "n/a"
    assert real_bug_benchmark.diagnosis_cause(WithDiagnosis()) == "lr_too_high"
