"""One door to MLflow: every param, tag, metric, artifact and status of any run goes through runner.tracking,
so secrets are redacted by construction, whichever path writes them (a job's run, a sweep's parent, a pruned
or stale trial, the diagnostics, a resumed run)."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from runner.runtime.security import REDACTED
from runner.tracking import RunRecord, connect

REPO = Path(__file__).resolve().parents[1]
SECRET = "abc123"  # the value of secret-named keys: password=abc123, +dataset.api_token=abc123
ENV_SECRET = "env-secret-value-42"  # the value of a secret-named environment variable
ENV_NAME = "LAB_SERVICE_TOKEN"

# ---------------------------------------------------------------- no write outside runner/tracking.py

WRITE_APIS = {
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "log_batch",
    "set_tag",
    "set_tags",
    "delete_tag",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_figure",
    "log_image",
    "log_table",
    "log_input",
    "log_inputs",
    "log_outputs",
    "log_model",
    "autolog",
    "create_run",
    "start_run",
    "end_run",
    "update_run",
    "set_terminated",
    "delete_run",
    "restore_run",
    "set_experiment_tag",
    "set_experiment_tags",
}
# What an MLflow write is called on: the module (or a sub-module), a client by any name, a client made inline.
MLFLOW_RECEIVER = re.compile(r"(^|\.)mlflow(\.|$)|client$|MlflowClient\(", re.IGNORECASE)
ENTITIES_FOR_WRITES = {"Metric", "Param", "RunTag"}  # what log_batch takes


def mlflow_writes(source: str) -> list[str]:
    """Each MLflow write a module makes itself, as ``line: call``."""
    tree = ast.parse(source)
    aliases = {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] == "mlflow" and alias.asname
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_APIS:
            receiver = ast.unparse(node.func.value)
            if MLFLOW_RECEIVER.search(receiver) or receiver.split(".")[0] in aliases:
                found.append(f"{node.lineno}: {receiver}.{node.func.attr}(...)")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlflow":
            names = {alias.name for alias in node.names}
            bad = names & (WRITE_APIS | (ENTITIES_FOR_WRITES if node.module == "mlflow.entities" else set()))
            if bad:
                found.append(f"{node.lineno}: from {node.module} import {', '.join(sorted(bad))}")
    return found


def test_the_scan_finds_writes_in_any_form():
    source = """
import mlflow as mf
from mlflow import log_metric
from mlflow.entities import RunTag, ViewType
record.client.log_artifacts(record.run_id, path, folder)
client.set_tag(
    run_id, "a", "b"
)
mlflow.keras.log_model(model, "model")
MlflowClient(tracking_uri=uri).set_terminated(run_id, "KILLED")
mf.log_text("x", "a.txt")
record.log_params({"a": "b"}); record.terminate("KILLED"); client.get_run(run_id)  # through tracking, or reads
"""
    lines = sorted(int(found.split(":")[0]) for found in mlflow_writes(source))
    assert lines == [3, 4, 5, 6, 9, 10, 11], mlflow_writes(source)


# The door: RunRecord, and the lineage half it calls (dataset inputs, the MLflow Model).
DOOR = {REPO / "runner" / "tracking.py", REPO / "runner" / "tracking_model.py"}


def test_only_runner_tracking_writes_to_mlflow():
    modules = sorted(path for path in (REPO / "runner").rglob("*.py") if path not in DOOR)
    assert len(modules) > 20, "the scan sees runner's modules"
    offenders = {str(path.relative_to(REPO)): found for path in modules if (found := mlflow_writes(path.read_text()))}
    assert offenders == {}, (
        "these modules write to MLflow themselves; go through runner.tracking.RunRecord instead, which "
        f"redacts secrets: {offenders}"
    )


# ---------------------------------------------------------------- each path, redacted in the store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its tables is the slow part); each test has its own runs."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"
    connect(uri, "door")
    return uri


@pytest.fixture
def tracker(store, monkeypatch):
    monkeypatch.setenv(ENV_NAME, ENV_SECRET)
    return connect(store, "door")


def leaks(client, run_id: str, folder: Path, *secrets: str) -> list[str]:
    """Where any of ``secrets`` is in the run: its name, a param, a tag or a text artifact."""
    run = client.get_run(run_id)
    fields = {"run name": run.info.run_name, **run.data.params, **run.data.tags}
    local = Path(client.download_artifacts(run_id, "", str(folder)))
    texts = {
        str(path.relative_to(local)): path.read_text(errors="replace") for path in local.rglob("*") if path.is_file()
    }
    return [
        f"{place} holds {secret!r}"
        for secret in secrets
        for place, text in {**fields, **texts}.items()
        if secret in str(text)
    ]


def artifacts(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for entry in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


def test_a_run_redacts_its_name_params_tags_texts_files_and_folders(tracker, tmp_path):
    record = RunRecord(tracker, f"run-password={SECRET}", {"runner.note": f"token={SECRET}", "x": ENV_SECRET})
    record.log_params({"dataset.api_token": SECRET, "trial.storage": f"postgresql://u:{SECRET}@db/x", "n": "3"})
    record.set_tags({"runner.description": f"uses {ENV_SECRET}"})
    record.log_metrics({"loss": 0.5}, step=1)
    record.log_text(f"dataset:\n  api_token: {SECRET}\n", "config/config.yaml")
    record.log_json({"password": SECRET}, "config/extra.json")
    single = tmp_path / "runner.log"
    single.write_text(f"connecting to https://bob:{SECRET}@host\n")
    record.log_artifact(single, "logs")
    reports = tmp_path / "reports"
    (reports / "nested").mkdir(parents=True)
    (reports / "metrics.csv").write_text("name,value\nloss,0.5\n")
    (reports / "nested" / "notes.txt").write_text(f"the key came from {ENV_SECRET}\n")
    (reports / "weights.bin").write_bytes(b"\x00\x01binary")
    record.log_folder(reports, "reports")
    plain = tmp_path / "plots"
    (plain / "sub").mkdir(parents=True)
    (plain / "sub" / "curve.csv").write_text("epoch,loss\n1,0.5\n")
    record.log_folder(plain, "plots")  # nothing to redact: uploaded as it is, same layout
    record.fail(RuntimeError(f"the server said: password={SECRET}"))

    client = tracker.client
    run = client.get_run(record.run_id)
    assert run.info.status == "FAILED"
    assert run.data.params["dataset.api_token"] == REDACTED and run.data.params["n"] == "3"
    assert run.data.params["trial.storage"] == "postgresql://u:***@db/x"
    assert run.data.metrics["loss"] == 0.5
    assert artifacts(client, record.run_id) >= {
        "config/config.yaml",
        "config/extra.json",
        "logs/runner.log",
        "reports/metrics.csv",
        "reports/nested/notes.txt",
        "reports/weights.bin",
        "plots/sub/curve.csv",
        "error/traceback.txt",
    }
    assert leaks(client, record.run_id, tmp_path / "download", SECRET, ENV_SECRET) == []


@pytest.fixture
def sweep_config(store, tmp_path, monkeypatch):
    """A composed grid sweep's config, as Hydra hands it to the sweep callback, with secrets in its overrides."""
    from runner.cli import CONF_DIR
    from runner.sweep import parent_run
    from runner.sweep.report import Objective

    # The objective's reading is tested elsewhere; here only what the parent run records matters.
    monkeypatch.setattr(parent_run, "sweep_objective", lambda config: Objective("val_loss", "minimize"))
    monkeypatch.setenv(ENV_NAME, ENV_SECRET)
    monkeypatch.chdir(tmp_path)
    fixed = ["dataset=synthetic", f"+dataset.api_token={SECRET}", f"description={ENV_SECRET}", f"tracking.uri={store}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        with open_dict(config):
            config.hydra.overrides.task = [*fixed, "trainer.epochs=1,2"]
            config.hydra.runtime.cwd = str(tmp_path)
            config.hydra.sweep.dir = "sweep"
        yield config


def test_a_sweep_parent_redacts_what_it_records_when_opened_resumed_and_closed(sweep_config, tmp_path, monkeypatch):
    from runner.sweep import closing, parent_run

    parent = parent_run.open_sweep(sweep_config, "config", str(tmp_path / "best"), "sweeps")
    tracker = connect(parent.tracking_uri, parent.experiment)
    stale = RunRecord(tracker, "trial-0", {"runner.trial": "0"}, parent_run_id=parent.parent_run_id)
    # A secret the parent's process knows and the job's did not: it reaches the report through the trials table.
    failed = RunRecord(tracker, "trial-1-late-secret-value-77", {"runner.trial": "1"}, parent.parent_run_id)
    failed.log_params({"trainer.epochs": "late-secret-value-77"})
    failed.fail(RuntimeError("diverged"))
    monkeypatch.setenv("LAB_OTHER_PASSWORD", "late-secret-value-77")

    class Study:  # a resumed search: the study remembers its parent run
        user_attrs = {parent_run.STUDY_PARENT_ATTR: parent.parent_run_id}

    monkeypatch.setattr(parent_run, "optuna_study", lambda config: Study())
    resumed = parent_run.open_sweep(sweep_config, "config", str(tmp_path / "best"), "sweeps")
    assert resumed.parent_run_id == parent.parent_run_id
    assert tracker.client.get_run(parent.parent_run_id).info.status == "RUNNING"
    closing.close_sweep(resumed, stopped=f"stopped early: password={SECRET}")

    client = tracker.client
    run = client.get_run(parent.parent_run_id)
    assert run.info.status == "FAILED" and run.data.tags["runner.error"] == "stopped early: password=***"
    assert "runner.resumed_at" in run.data.tags and run.data.metrics["trials_total"] == 2
    assert artifacts(client, parent.parent_run_id) >= {"sweep/definition.yaml", "sweep/trials.csv", "sweep/trials.html"}
    killed = client.get_run(stale.run_id)
    assert killed.info.status == "KILLED" and "killed?" in killed.data.tags["runner.error"]
    secrets = (SECRET, ENV_SECRET, "late-secret-value-77")
    assert leaks(client, parent.parent_run_id, tmp_path / "download", *secrets) == []


def test_a_sweep_whose_report_fails_still_ends_its_parent_redacted(sweep_config, tmp_path, monkeypatch):
    from runner.sweep import closing, parent_run

    parent = parent_run.open_sweep(sweep_config, "config", str(tmp_path / "best"), "sweeps")

    def broken(*args, **kwargs):
        raise RuntimeError(f"cannot reach https://u:{SECRET}@host with {ENV_SECRET}")

    monkeypatch.setattr(closing, "build_report", broken)
    closing.close_safely(parent)
    run = connect(parent.tracking_uri, parent.experiment).client.get_run(parent.parent_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["runner.error"] == "the sweep report failed: cannot reach https://u:***@host with ***"


def test_the_best_config_on_the_parent_is_redacted(tracker, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from runner.sweep.closing import write_best_config
    from runner.sweep.parent_run import ParentRun
    from runner.sweep.report import Objective

    parent_record = RunRecord(tracker, "sweep", {"runner.sweep": "true"})
    trial = RunRecord(tracker, "trial-0", {}, parent_run_id=parent_record.run_id)
    trial.log_text("name: wine\ndataset:\n  path: /data/late-secret-value-77\n", "config/config.yaml")
    monkeypatch.setenv("LAB_OTHER_PASSWORD", "late-secret-value-77")  # known to the sweep's process only
    parent = ParentRun(
        sweep_name="sweep",
        sweep_dir=str(tmp_path),
        tracking_uri=tracker.uri,
        experiment="door",
        experiment_id=tracker.experiment_id,
        parent_run_id=parent_record.run_id,
        objective=Objective("val_loss", "minimize"),
        swept_keys=[],
        best_config_dir=str(tmp_path / "conf" / "experiment" / "best"),
        grid_jobs=None,
    )
    best = {"run_id": trial.run_id, "trial": 0, "objective": 0.5}
    write_best_config(parent_record, parent, SimpleNamespace(best=best, objective=parent.objective))
    assert "sweep/best_config.yaml" in artifacts(tracker.client, parent_record.run_id)
    assert leaks(tracker.client, parent_record.run_id, tmp_path / "download", "late-secret-value-77") == []


def test_a_pruned_trial_is_killed_with_its_reason_redacted(tracker, tmp_path):
    import optuna

    from runner.sweep.pruning import mark_pruned

    record = RunRecord(tracker, "trial-3", {"runner.trial": "3"})
    mark_pruned(record, optuna.TrialPruned(f"trial 3 pruned: password={SECRET} via {ENV_SECRET}"))
    run = tracker.client.get_run(record.run_id)
    assert run.info.status == "KILLED" and run.data.tags["runner.trial_state"] == "PRUNED"
    assert run.data.tags["runner.pruned"] == "trial 3 pruned: password=*** via ***"


def test_the_diagnostics_redact_their_tags_reports_and_files(tracker, tmp_path):
    from runner.diagnostics import DiagnosticData, DiagnosticOptions, Report
    from runner.diagnostics.report import CheckResult
    from runner.run.diagnostics_session import DiagnosticsSession

    folder = tmp_path / "run" / "diagnostics"
    (folder / "analysis").mkdir(parents=True)
    (folder / "analysis" / "confident_errors.csv").write_text(f"index,source\n1,{ENV_SECRET}\n")
    record = RunRecord(tracker, "diagnosed", {})
    data = DiagnosticData("binary", np.zeros((4, 2)), np.zeros((4, 1)))
    session = DiagnosticsSession("quick", data, DiagnosticOptions(output_dir=folder), record)
    message = f"the loader read https://u:{SECRET}@host/data and {ENV_SECRET}"
    session._publish(Report([CheckResult("preflight.input_scale", "WARN", 3.0, 1.0, message, "scale it")]))

    run = tracker.client.get_run(record.run_id)
    assert run.data.tags["diag.preflight.input_scale"] == "WARN" and "diag.preflight.input_scale" in run.data.metrics
    assert artifacts(tracker.client, record.run_id) >= {
        "diagnostics/report.json",
        "diagnostics/report.html",
        "diagnostics/analysis/confident_errors.csv",
    }
    assert leaks(tracker.client, record.run_id, tmp_path / "download", SECRET, ENV_SECRET) == []


def test_a_resumed_run_redacts_its_new_tags_and_logs_the_missing_epoch_once(tracker, tmp_path):
    from runner.run.resume import Saved, log_missing_epoch

    interrupted = RunRecord(tracker, "interrupted", {})
    interrupted.log_metrics({"loss": 0.9}, step=1)
    interrupted.fail(KeyboardInterrupt(f"password={SECRET}"))
    record = RunRecord.reopen(tracker, interrupted.run_id, {"runner.resumed_from": f"/runs/x?token={SECRET}"})
    saved = Saved(tmp_path, {"epoch": 2, "metrics": {"loss": 0.7}})
    log_missing_epoch(record, saved)
    log_missing_epoch(record, saved)  # logged already: not twice

    run = tracker.client.get_run(record.run_id)
    assert run.info.status == "RUNNING" and "runner.error" not in run.data.tags
    assert run.data.tags["runner.resumed_from"] == "/runs/x?token=***"
    assert [(p.step, p.value) for p in tracker.client.get_metric_history(record.run_id, "loss")] == [(1, 0.9), (2, 0.7)]
    assert leaks(tracker.client, record.run_id, tmp_path / "download", SECRET, ENV_SECRET) == []
