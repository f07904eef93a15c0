"""The diagnostics wired into the runner: config group, MLflow record, report files, console, public API."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from runner.cli import CONF_DIR
from runner.diagnostics import CheckResult, Report, html
from runner.run.diagnostics_session import console_lines

REPO = Path(__file__).resolve().parents[1]
TINY = (
    "dataset=synthetic",
    "dataset.task=binary",
    "dataset.n_samples=300",
    "trainer.epochs=2",
    "trainer.verbose=0",
    "tracking.log_model=false",
    "evaluation.plots=false",
)


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run(tmp_path: Path, *overrides, name="run"):
    from runner.run.job import run_job

    overrides = [*TINY, *overrides, f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db"]
    return run_job(compose_config(*overrides), tmp_path / name, overrides=overrides)


def client_for(tmp_path: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def stand_in_report(plot_dir: Path | None = None) -> Report:
    """Hand-made results, so the report code is tested without the real checks."""
    report = Report()
    report.add(
        CheckResult("preflight.initial_loss", "PASS", 0.69, 1.0, "loss as expected"),
        CheckResult(
            "monitor.dead_units",
            "FAIL",
            0.8,
            0.5,
            "80% <dead> units",
            "lower the LR & re-init",
            stage="monitor",
            plots=["monitor/dead.png"],
        ),
        CheckResult(
            "analysis.slices", "WARN", float("nan"), "gap > 0.1", "slice 3 is worse", "more data", stage="analysis"
        ),
    )
    if plot_dir is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        (plot_dir / "monitor").mkdir(parents=True, exist_ok=True)
        figure = plt.figure(figsize=(1, 1))
        figure.savefig(plot_dir / "monitor" / "dead.png")
        plt.close(figure)
    return report


# ---------------------------------------------------------------- config


def test_diagnostics_group_defaults_to_none_and_takes_a_choice_without_plus():
    assert compose_config("dataset=synthetic").diagnostics.suite == "none"
    cfg = compose_config(
        "dataset=synthetic",
        "diagnostics=full",
        "diagnostics.disable=[monitor]",
        "+diagnostics.thresholds={preflight.initial_loss: 2.5}",
    )
    assert cfg.diagnostics.suite == "full"
    assert cfg.diagnostics.thresholds["preflight.initial_loss"] == 2.5
    assert list(cfg.diagnostics.disable) == ["monitor"]


def test_a_misspelt_suite_gets_hydras_list_of_choices():
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("dataset=synthetic", "diagnostics=quikc")
    message = str(error.value)
    assert "diagnostics/quikc" in message
    assert "full" in message and "quick" in message


def test_an_unknown_diagnostics_key_is_refused():
    with pytest.raises(ConfigCompositionException, match="stop_on_fial"):
        compose_config("dataset=synthetic", "diagnostics=quick", "diagnostics.stop_on_fial=true")


# ---------------------------------------------------------------- report files and console


def test_report_write_gives_json_and_a_self_contained_html(tmp_path):
    report = stand_in_report(tmp_path)
    json_path, html_path = report.write(tmp_path, title="Diagnostics: tiny")
    saved = json.loads(json_path.read_text())
    assert saved["worst"] == "FAIL"
    assert {c["check"] for c in saved["checks"]} == {"preflight.initial_loss", "monitor.dead_units", "analysis.slices"}
    page = html_path.read_text()
    assert "data:image/png;base64," in page  # the plot is inline, not a link
    assert "&lt;dead&gt;" in page and "lower the LR &amp; re-init" in page  # messages are escaped
    assert page.index("monitor.dead_units") < page.index("analysis.slices") < page.index("preflight.initial_loss")
    assert html.COLOURS["FAIL"] in page


def test_html_names_a_missing_plot_instead_of_failing(tmp_path):
    page = html.render(stand_in_report(None), tmp_path)
    assert "monitor/dead.png was not found" in page


def test_console_lines_list_problems_worst_first_with_fixes():
    lines = console_lines(stand_in_report(None))
    # The ranked diagnosis leads (runner/diagnostics/diagnosis.py): its one fix, not each check's own.
    assert lines[0].strip().startswith("diagnosis: dead_relu (FAIL)") and lines[1].strip().startswith("fix: ")
    assert "2 of 3 checks flagged (worst FAIL)" in lines[-1]
    assert lines[2].strip().startswith("FAIL monitor.dead_units")
    assert any(line.strip().startswith("WARN analysis.slices") for line in lines)
    assert (
        console_lines(Report([CheckResult("preflight.x", "PASS", 1, 1, "ok")]))[0].strip()
        == "diagnostics: all 1 checks passed"
    )


def test_a_crashing_stage_becomes_a_skip_that_names_the_error(caplog):
    from runner.diagnostics import DiagnosticData, DiagnosticOptions
    from runner.run.diagnostics_session import DiagnosticsSession

    session = DiagnosticsSession(
        "full", DiagnosticData("binary", np.zeros((4, 2)), np.zeros((4, 1))), DiagnosticOptions(), record=None
    )

    def broken():
        return 1.0 / 0.0

    report = session._guarded("monitor", broken)
    (result,) = report.results
    assert (result.check, result.verdict, result.stage) == ("monitor.crashed", "SKIP", "monitor")
    assert "ZeroDivisionError" in result.message
    assert "the monitor diagnostics crashed" in caplog.text


# ---------------------------------------------------------------- the runner


def test_quick_logs_preflight_verdicts_and_trains_like_none(tmp_path, capsys):
    disabled = "diagnostics.disable=[preflight.gradient_check,preflight.zeroed_inputs]"
    quick = run(tmp_path, "diagnostics=quick", disabled, name="quick")
    plain = run(tmp_path, "diagnostics=none", name="none")
    # The preflight checks draw random numbers; the job re-seeds after them, so training is unchanged.
    for key in ("train_accuracy", "val_roc_auc", "test_roc_auc"):
        assert quick.metrics[key] == plain.metrics[key], key
    assert quick.objective == plain.objective

    client = client_for(tmp_path)
    run_data = client.get_run(quick.run_id).data
    verdicts = {
        k[len("diag.") :]: v
        for k, v in run_data.tags.items()
        if k.startswith("diag.") and k not in ("diag.worst", "diag.suite", "diag.cause", "diag.cause2")
    }
    assert verdicts and all(check.startswith("preflight.") for check in verdicts)
    assert "preflight.initial_loss" in verdicts and "preflight.gradient_check" not in verdicts
    assert "preflight.zeroed_inputs" not in verdicts
    assert set(verdicts.values()) <= {"PASS", "WARN", "FAIL", "SKIP"}
    assert run_data.tags["diag.suite"] == "quick"
    assert run_data.tags["diag.worst"] in {"PASS", "WARN", "FAIL"}
    assert run_data.tags["diag.cause"]  # the ranked diagnosis (runner/diagnostics/diagnosis.py) is tagged too
    assert "diag.preflight.initial_loss" in run_data.metrics
    assert not any(k.startswith("diag.") for k in client.get_run(plain.run_id).data.tags)

    artifacts = artifact_paths(client, quick.run_id)
    assert {"diagnostics/report.json", "diagnostics/report.html"} <= artifacts
    saved = json.loads((quick.output_dir / "diagnostics" / "report.json").read_text())
    assert {c["check"] for c in saved["checks"]} == set(verdicts)

    printed = capsys.readouterr().out
    assert "diagnostics:" in printed
    assert quick.diagnostics and quick.diagnostics[0] in printed
    flagged = [c for c in saved["checks"] if c["verdict"] in ("WARN", "FAIL")]
    for check in flagged:
        assert f"{check['verdict']:<4} {check['check']}:" in printed


def test_full_adds_monitor_and_analysis_results_and_plots(tmp_path):
    result = run(tmp_path, "diagnostics=full", "diagnostics.disable=[preflight]", "diagnostics.probe_samples=64")
    client = client_for(tmp_path)
    tags = client.get_run(result.run_id).data.tags
    stages = {key.split(".")[1] for key in tags if key.startswith("diag.") and key.count(".") >= 2}
    assert stages == {"monitor", "analysis"}
    assert tags["diag.monitor.loss_numeric"] == "PASS"
    artifacts = artifact_paths(client, result.run_id)
    assert {"diagnostics/report.json", "diagnostics/report.html"} <= artifacts
    assert any(path.startswith("diagnostics/") and path.endswith(".png") for path in artifacts)
    page = (result.output_dir / "diagnostics" / "report.html").read_text()
    assert "data:image/png;base64," in page


def test_a_disabled_preflight_stage_neither_runs_nor_records_anything(tmp_path):
    """Nothing to publish means no upload, which would wait for the MLflow run to open before training."""
    from runner.diagnostics import DiagnosticOptions
    from runner.run.diagnostics_session import DiagnosticsSession

    class Unused:
        def __getattr__(self, name):
            raise AssertionError(f"the record was asked for {name}")

    options = DiagnosticOptions(disabled={"preflight"}, output_dir=tmp_path)
    session = DiagnosticsSession("full", data=None, options=options, record=Unused())
    assert session.preflight(model=None).results == []
    assert list(tmp_path.iterdir()) == []


def test_stop_on_fail_stops_before_training_and_keeps_the_verdicts(tmp_path):
    from runner.run.diagnostics_session import DiagnosticsStop

    # softmax over one unit always outputs 1: the loss/output pairing check must FAIL
    with pytest.raises(DiagnosticsStop, match="preflight.loss_output_pairing"):
        run(
            tmp_path,
            "diagnostics=quick",
            "diagnostics.stop_on_fail=true",
            "model.output_activation=softmax",
            "model.allow_unusual_output=true",
            "diagnostics.disable=[preflight.gradient_check,preflight.overfit_batch]",
        )
    client = client_for(tmp_path)
    (failed,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert failed.info.status == "FAILED"
    assert failed.data.tags["diag.preflight.loss_output_pairing"] == "FAIL"
    assert "loss" not in failed.data.metrics  # nothing was trained


def test_unknown_slice_column_is_refused_with_the_choices(tmp_path):
    from runner.errors import ConfigError

    with pytest.raises(ConfigError, match="diagnostics.slices='quality'.*row_id"):
        run(tmp_path, "diagnostics=quick", "diagnostics.slices=quality")


# ---------------------------------------------------------------- the public API


def test_importing_the_package_pulls_in_neither_hydra_nor_mlflow():
    import subprocess
    import sys

    code = (
        "import sys, runner.diagnostics; "
        "bad = [m for m in ('hydra', 'mlflow', 'keras', 'tensorflow') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


LIBRARY_PAGE = REPO / "docs" / "diagnostics" / "library.md"


def library_api_example() -> str:
    """The first Python example of the docs page "Diagnostics outside the runner"."""
    return re.search(r"```python\n(.*?)```", LIBRARY_PAGE.read_text(), re.DOTALL).group(1)


def test_docs_library_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(library_api_example(), str(LIBRARY_PAGE), "exec"), namespace)  # noqa: S102 - the docs' own code
    report = namespace["report"]
    checks = report.verdicts()
    assert any(c.startswith("preflight.") for c in checks) and any(c.startswith("monitor.") for c in checks)
    assert (tmp_path / "diag" / "report.json").is_file() and (tmp_path / "diag" / "report.html").is_file()


def test_diagnose_refuses_full_without_fit_kwargs_and_unknown_suites():
    from runner.diagnostics import DiagnosticData, diagnose

    data = DiagnosticData("binary", np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="suite must be one of"):
        diagnose(None, data, suite="quikc")
    with pytest.raises(ValueError, match="fit_kwargs"):
        diagnose(None, data, suite="full")
    assert diagnose(None, data, suite="none").results == []
