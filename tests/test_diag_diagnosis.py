"""The ranked diagnosis (runner/diagnostics/diagnosis.py) on hand-made check results: no Keras, fast."""

import json
from pathlib import Path

import pytest

from runner.diagnostics import CheckResult, Report, html
from runner.diagnostics.diagnosis import (
    CAUSES,
    EXPLAINS,
    VOTES,
    Diagnosis,
    cause_ranges,
    rank,
)
from runner.run.diagnostics_session import console_lines, log_to_mlflow

REPO = Path(__file__).resolve().parents[1]


def check(name: str, verdict: str = "FAIL", message: str = "", fix: str = "", value=1.0, **evidence):
    stage = name.split(".", 1)[0]
    return CheckResult(name, verdict, value, None, message or f"{name} is {verdict}", fix, stage, evidence)


def passing(*names: str) -> list[CheckResult]:
    return [check(name, "PASS") for name in names]


HEALTHY = passing(
    "preflight.data_finite",
    "preflight.input_scale",
    "preflight.loss_output_pairing",
    "monitor.loss_stalled",
    "analysis.baseline",
)

# Each cause on its typical evidence (with a PASS background).
TYPICAL = {
    "loss_output_mismatch": [check("preflight.loss_output_pairing", message="softmax over one unit")],
    "lr_too_high": [
        check("monitor.loss_diverging"),
        check("monitor.loss_oscillating", "WARN"),
        check("monitor.update_ratio", "WARN", "large updates in the first steps in d1 (log10 -0.5)"),
    ],
    "lr_too_low": [
        check("monitor.update_ratio", message="updates are below 1e-6 of the weights in 3 of 3"),
        check("monitor.loss_stalled"),
    ],
    "unscaled_inputs": [check("preflight.input_scale", "WARN", "unscaled inputs: feature 6 has RMS 120")],
    "unscaled_targets": [check("preflight.target_scale", "WARN")],
    "bad_init": [
        check(
            "preflight.initial_weights",
            message="dense/kernel: every weight is about 0.1 (constant init)",
            layers={"dense/kernel": {"kind": "constant", "ratio": 0.0}},
        )
    ],
    "dead_relu": [
        check("preflight.initial_weights", message="dense/bias: 100% of the relu units start dead"),
        check("monitor.dead_units"),
    ],
    "vanishing_gradient": [check("monitor.gradient_norms", message="vanishing gradients: the first layer ...")],
    "exploding_gradient": [check("monitor.gradient_norms", message="exploding gradients: a norm was NaN")],
    "saturation": [check("monitor.saturation", "WARN")],
    "too_few_epochs": [check("monitor.still_improving", "WARN")],
    "wrong_labels": [check("preflight.label_signal", "WARN"), check("monitor.underfitting", "WARN")],
    "underfitting_capacity": [
        check("monitor.underfitting", "WARN"),
        check("analysis.baseline", "WARN"),
        check("analysis.receptive_field", "WARN"),
    ],
    "overfitting": [check("monitor.overfitting", "WARN")],
    "regularization_too_strong": [check("monitor.regularization"), check("monitor.underfitting", "WARN")],
    "split_shift": [check("preflight.split_shift", "WARN")],
    "leakage": [check("preflight.split_leakage")],
    "bad_data": [check("preflight.data_finite", message="12 NaN/Inf values in the data")],
    "missing_nonlinearity": [check("preflight.nonlinearity", "WARN")],
    "wrong_gradient": [check("preflight.gradient_check")],
}


def test_the_vocabulary_is_complete_and_every_vote_names_a_known_cause():
    assert set(TYPICAL) | {"none"} == set(CAUSES)
    assert {vote.cause for vote in VOTES} <= set(CAUSES)
    assert set(EXPLAINS) <= set(CAUSES)
    assert all(description and fix for description, fix in CAUSES.values())


@pytest.mark.parametrize("cause", sorted(TYPICAL))
def test_each_cause_wins_on_its_typical_evidence(cause):
    diagnosis = rank(HEALTHY + TYPICAL[cause])
    assert diagnosis.cause == cause
    assert diagnosis.fix == CAUSES[cause][1]
    assert diagnosis.verdict == max((r.verdict for r in TYPICAL[cause]), key={"WARN": 1, "FAIL": 2}.get)
    assert diagnosis.second is None
    assert {row["check"] for row in diagnosis.evidence} | set(diagnosis.consequences) == {
        r.check for r in TYPICAL[cause]
    }


def test_unscaled_inputs_explain_a_stalled_loss_and_its_contradicting_fix():
    results = HEALTHY[:1] + [
        check("preflight.input_scale", "WARN", "unscaled inputs: feature 6 has RMS 120", "Standardise the inputs."),
        check("monitor.loss_stalled", "FAIL", "the training loss never dropped", "raise the learning rate (by 10x)"),
        check(
            "monitor.update_ratio",
            "FAIL",
            "updates are below 1e-6 of the weights in 2 of 2 layers",
            "raise the learning rate (by 10x or more)",
        ),
        check("preflight.overfit_batch", "FAIL", "could not overfit one batch", "raise the learning rate"),
    ]
    diagnosis = rank(results)
    assert (diagnosis.cause, diagnosis.verdict) == ("unscaled_inputs", "FAIL")  # as serious as the FAIL it explains
    assert [row["check"] for row in diagnosis.evidence] == ["preflight.input_scale"]
    assert set(diagnosis.consequences) == {"monitor.loss_stalled", "monitor.update_ratio", "preflight.overfit_batch"}
    assert diagnosis.second is None
    # The fixes shown never contradict the diagnosis: the symptoms' "raise the learning rate" is not printed.
    text = "\n".join(console_lines(Report(results)))
    assert "raise the learning rate" not in text
    assert f"fix: {CAUSES['unscaled_inputs'][1]}" in text


def test_a_root_cause_fail_outranks_a_mechanism_fail_and_a_fail_outranks_a_warn_of_its_standing():
    mixed = [check("monitor.loss_diverging"), check("preflight.loss_output_pairing")]
    assert rank(mixed).cause == "loss_output_mismatch"
    same_standing = [check("preflight.split_shift", "WARN"), check("preflight.data_finite", "FAIL")]
    top = rank(same_standing)
    assert top.cause == "bad_data" and top.second.cause == "split_shift"


def test_none_when_everything_passed_or_was_skipped():
    results = HEALTHY + [check("monitor.saturation", "SKIP"), check("preflight.gradient_check", "SKIP")]
    diagnosis = rank(results)
    assert (diagnosis.cause, diagnosis.verdict, diagnosis.evidence, diagnosis.second) == ("none", "PASS", [], None)
    assert rank([]).cause == "none"


def test_a_flagged_check_no_rule_knows_stays_visible():
    diagnosis = rank([check("preflight.class_balance", "WARN", "class 3 has 2% of the rows")])
    assert (diagnosis.cause, diagnosis.verdict) == ("none", "WARN")
    assert [row["check"] for row in diagnosis.evidence] == ["preflight.class_balance"]


def test_an_independent_second_cause_is_reported_with_its_own_evidence():
    results = [
        check("preflight.split_leakage", "FAIL", "30% of test rows occur in train"),
        check("monitor.saturation", "WARN"),
        check("monitor.gradient_norms", "FAIL", "vanishing gradients: the first layer ..."),
    ]
    top = rank(results)
    assert top.cause == "leakage" and top.consequences == []
    assert top.second is not None and top.second.cause == "vanishing_gradient"
    assert [row["check"] for row in top.second.evidence] == ["monitor.gradient_norms"]
    assert top.second.consequences == ["monitor.saturation"]
    assert top.second.second is None


def test_update_ratio_warn_reads_its_direction_from_the_evidence():
    high = check(
        "monitor.update_ratio",
        "WARN",
        "update/weight ratio outside the healthy band in d1",
        value=-0.5,
        median_log10={"d1": -0.5, "d2": -0.3},
    )
    low = check(
        "monitor.update_ratio",
        "WARN",
        "update/weight ratio outside the healthy band in d1",
        value=-5.0,
        median_log10={"d1": -5.0, "d2": -3.0},
    )
    assert rank([high]).cause == "lr_too_high" and rank([low]).cause == "lr_too_low"
    odd = check("monitor.update_ratio", "WARN", "something new", value=None, median_log10="not a dict")
    assert rank([odd]).cause == "none"  # evidence of an unexpected shape does not crash


def test_report_json_round_trip(tmp_path):
    report = Report(TYPICAL["unscaled_inputs"] + [check("monitor.loss_stalled"), check("preflight.split_leakage")])
    path = report.write_json(tmp_path / "report.json")
    saved = json.loads(path.read_text())["diagnosis"]
    assert saved["cause"] == "leakage" and saved["second"]["cause"] == "unscaled_inputs"  # a FAIL first
    assert Diagnosis.from_dict(saved) == report.diagnosis


def test_console_leads_with_the_diagnosis_and_counts_skips():
    results = [
        check("preflight.input_scale", "WARN", "unscaled inputs", "scale them"),
        check("monitor.loss_stalled", "FAIL", "loss flat", "raise the learning rate"),
        check("preflight.split_leakage", "WARN", "leak", "dedupe"),
        check("analysis.slices", "SKIP"),
        *passing("preflight.data_finite"),
    ]
    lines = console_lines(Report(results))
    assert lines[0].strip().startswith("diagnosis: unscaled_inputs (FAIL): ")
    assert lines[1].strip() == f"fix: {CAUSES['unscaled_inputs'][1]}"
    text = "\n".join(lines)
    assert "FAIL monitor.loss_stalled: loss flat" in text and "raise the learning rate" not in text
    assert text.index("monitor.loss_stalled") < text.index("second cause: leakage (WARN)")
    assert lines[-1].strip() == "diagnostics: 3 of 5 checks flagged (worst FAIL), 1 skipped"
    assert (
        console_lines(Report(passing("preflight.a", "monitor.b") + [check("analysis.c", "SKIP")]))[0].strip()
        == "diagnostics: 2 passed, 1 skipped"
    )
    assert console_lines(Report(passing("preflight.a")))[0].strip() == "diagnostics: all 1 checks passed"


class Record:
    def __init__(self):
        self.tags, self.metrics = {}, {}

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_metrics(self, metrics):
        self.metrics.update(metrics)


def test_mlflow_tags_name_the_cause_and_a_stale_second_cause_is_overwritten():
    record = Record()
    first = Report([check("preflight.input_scale", "WARN"), check("preflight.split_leakage")])
    tagged = log_to_mlflow(record, first, first.worst, first.diagnosis)
    assert (record.tags["diag.cause"], record.tags["diag.cause2"], tagged) == ("leakage", "unscaled_inputs", True)
    single = Report([check("preflight.input_scale", "WARN")])
    fresh = Record()
    assert not log_to_mlflow(fresh, single, single.worst, single.diagnosis)
    assert fresh.tags["diag.cause"] == "unscaled_inputs" and "diag.cause2" not in fresh.tags
    log_to_mlflow(record, single, single.worst, single.diagnosis, cause2_tagged=tagged)
    assert record.tags["diag.cause2"] == "none"


def test_html_puts_the_diagnosis_on_top_and_links_non_image_files(tmp_path):
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "confident_errors.csv").write_text("index,label\n1,0\n")
    results = [
        check("preflight.input_scale", "WARN", "unscaled <inputs>"),
        check("monitor.loss_stalled"),
        CheckResult(
            "analysis.confident_errors",
            "WARN",
            0.1,
            None,
            "confident errors",
            "",
            "analysis",
            plots=["analysis/confident_errors.csv"],
        ),
        check("preflight.split_leakage"),
    ]
    page = html.render(Report(results), tmp_path)
    assert page.index("Diagnosis: leakage") < page.index("Second cause: unscaled_inputs") < page.index("<table>")
    assert "unscaled &lt;inputs&gt;" in page
    assert "<a href='analysis/confident_errors.csv'>" in page
    assert "<img alt='analysis/confident_errors.csv'" not in page


def test_cause_ranges_names_the_separating_threshold_and_category():
    trials = [
        {
            "cause": "lr_too_high" if lr > 0.01 else "none",
            "params": {"optimizer.learning_rate": str(lr), "model.width": width},
        }
        for lr in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
        for width in ("small", "large")
    ]
    trials += [
        {"cause": "underfitting_capacity", "params": {"optimizer.learning_rate": "0.001", "model.width": "tiny"}},
        {"cause": "underfitting_capacity", "params": {"optimizer.learning_rate": "0.003", "model.width": "tiny"}},
        {"cause": None, "params": {"optimizer.learning_rate": "1.0", "model.width": "small"}},
    ]
    lines = cause_ranges(trials)
    assert lines[0] == "diagnoses over 14 trials: lr_too_high 6, none 6, underfitting_capacity 2"
    assert "lr_too_high in 6 of 6 trials with optimizer.learning_rate > 0.01" in lines
    assert "underfitting_capacity in 2 of 2 trials with model.width = tiny" in lines
    assert not any(line.startswith("lr_too_high") and "model.width" in line for line in lines)  # no link
    assert cause_ranges([{"cause": None, "params": {"a": 1}}]) == []


def test_every_fault_preset_names_known_causes():
    import yaml

    for path in sorted((REPO / "conf" / "experiment" / "faults").glob("*.yaml")):
        cause = yaml.safe_load(path.read_text())["fault"].get("cause")
        causes = [cause] if isinstance(cause, str) else cause
        assert causes and set(causes) <= set(CAUSES) - {"none"}, path.name


def test_console_lists_a_third_problem_with_its_own_fix():
    results = [
        check("preflight.split_leakage", "FAIL", "leak"),
        check("preflight.input_scale", "WARN", "unscaled"),
        check("preflight.nonlinearity", "WARN", "no activation", "add relu"),
    ]
    lines = console_lines(Report(results))
    text = "\n".join(lines)
    assert "diagnosis: leakage (FAIL)" in text and "second cause: unscaled_inputs (WARN)" in text
    assert text.index("also flagged:") < text.index("WARN preflight.nonlinearity: no activation")
    assert "fix: add relu" in text


def test_the_sweep_report_reads_the_trials_cause_tags():
    from types import SimpleNamespace

    import pandas as pd

    from runner.sweep.report import trial_diagnoses

    rates = ["0.001", "0.01", "0.1", "0.5", "1.0"]
    causes = ["none", "none", "lr_too_high", "lr_too_high", None]  # the last trial ran no diagnostics
    runs = [
        SimpleNamespace(
            info=SimpleNamespace(run_id=f"r{i}"), data=SimpleNamespace(tags={"diag.cause": cause} if cause else {})
        )
        for i, cause in enumerate(causes)
    ]
    table = pd.DataFrame({"run_id": [f"r{i}" for i in range(5)], "optimizer.learning_rate": rates})
    lines = trial_diagnoses(runs, table, ["optimizer.learning_rate"])
    assert lines == [
        "diagnoses over 4 trials: lr_too_high 2, none 2",
        "lr_too_high in 2 of 2 trials with optimizer.learning_rate > 0.01",
    ]


def test_labels_that_look_unlearnable_outrank_training_symptoms_but_not_unscaled_inputs():
    # label_signal only runs once the model memorised a batch (preflight skips it otherwise), so a FAIL there
    # speaks for the labels; slow updates are then their consequence, not the cause.
    label_signal = check("preflight.label_signal", "FAIL", "labels look unrelated to the inputs")
    slow = rank([label_signal, check("monitor.update_ratio", "WARN", "updates below 1e-4 of the weights in d1")])
    assert slow.cause == "wrong_labels" and slow.consequences == ["monitor.update_ratio"]
    unscaled = rank([label_signal, check("preflight.input_scale", "FAIL", "unscaled inputs")])
    assert unscaled.cause == "unscaled_inputs" and unscaled.second is None
    assert rank([label_signal, check("analysis.baseline", "WARN")]).cause == "wrong_labels"


def test_a_target_scale_hint_names_the_root_only_when_training_misbehaves():
    hinted = CheckResult(
        "preflight.target_scale",
        "PASS",
        60.0,
        100.0,
        "targets are within 60 of unit scale",
        stage="preflight",
        evidence={"hint": "unscaled_targets"},
    )
    blown = rank([hinted, check("monitor.loss_diverging", "FAIL", "the training loss blew up")])
    assert blown.cause == "unscaled_targets" and blown.consequences == ["monitor.loss_diverging"]
    assert blown.verdict == "FAIL"
    assert rank([hinted]).cause == "none"  # targets in the tens that train well are no problem
    slow = rank(
        [
            hinted,
            check("monitor.update_ratio", "FAIL", "updates below 1e-6 of the weights in d1"),
            check("monitor.loss_stalled", "FAIL", "never dropped"),
        ]
    )
    assert slow.cause == "lr_too_low"  # direct evidence of tiny steps beats a hint
    penalised = rank(
        [
            hinted,
            check("monitor.regularization", "FAIL", "strong regularisation"),
            check("monitor.loss_stalled", "FAIL", "never dropped"),
        ]
    )
    assert penalised.cause == "regularization_too_strong"  # a flagged mechanism of another kind keeps its place
    assert rank([hinted, check("monitor.overfitting", "WARN", "overfitting")]).cause == "overfitting"


def test_dead_units_beside_a_blow_up_are_the_blow_up_s_consequence():
    dead = check("monitor.dead_units", "FAIL", "dead units dominate: dense 90%")
    alone = rank([dead])
    assert alone.cause == "dead_relu"
    with_blowup = rank([dead, check("monitor.early_blowup", "WARN", "the loss ended the first epoch 70% above")])
    assert with_blowup.cause == "lr_too_high" and "monitor.dead_units" in with_blowup.consequences


def test_a_stalled_loss_after_healthy_steps_in_a_short_run_is_too_few_epochs():
    short = CheckResult(
        "monitor.loss_stalled", "FAIL", 0.01, 0.05, "never dropped", stage="monitor", evidence={"short_run": True}
    )
    long = CheckResult(
        "monitor.loss_stalled", "FAIL", 0.01, 0.05, "never dropped", stage="monitor", evidence={"short_run": False}
    )
    assert rank([short]).cause == "too_few_epochs"
    assert rank([long]).cause == "lr_too_low"
