"""A sweep's MLflow record: one parent run, every job a child of it, the report on the parent, the best config."""

import csv
import io
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf

from runner.cli import CONF_DIR
from runner.config.objective import epoch_metric_names, final_metric_names
from runner.sweep.parent_run import job_identities, swept_keys, typed_command
from runner.sweep.report import (
    Objective,
    best_config_yaml,
    best_row,
    param_importances,
    write_html,
)
from runner.tracking import config_params

TINY = [
    "dataset=synthetic",
    "dataset.task=regression",
    "dataset.n_samples=200",
    "trainer.epochs=2",
    "model.hidden_units=[8]",
    "tracking.log_model=false",
    "evaluation.plots=false",
    "trainer.verbose=0",
]
PLOTS = {
    "sweep/objective_history.png",
    "sweep/objective_vs_optimizer.learning_rate.png",
    "sweep/objective_vs_model.dropout.png",
    "sweep/param_importance.png",
}


def run_sweep(tmp_path: Path, *overrides: str, base=TINY) -> subprocess.CompletedProcess:
    """``python -m runner -m ...`` in tmp_path with a fresh SQLite store there."""
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        *base,
        *overrides,
        f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def sweep_runs(tmp_path: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    parents = [run for run in runs if run.data.tags.get("runner.sweep") == "true"]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    return client, parents, children


def artifact_text(client: MlflowClient, run_id: str, path: str, folder: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(folder))).read_text()


def compose_config(*overrides, config_dir=None):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        extra = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
        return compose(config_name="config", overrides=[*overrides, *extra])


def test_parallel_grid_sweep_records_parent_children_report_and_best_config(tmp_path):
    done = run_sweep(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "optimizer.learning_rate=1e-3,1e-2",
        "model.dropout=0,0.2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client, parents, children = sweep_runs(tmp_path)

    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    assert {run.info.experiment_id for run in children} == {parent.info.experiment_id}
    assert sorted(run.info.run_name for run in children) == [f"custom-{n}" for n in range(4)]
    assert {(r.data.params["optimizer.learning_rate"], r.data.params["model.dropout"]) for r in children} == {
        ("0.001", "0.0"),
        ("0.001", "0.2"),
        ("0.01", "0.0"),
        ("0.01", "0.2"),
    }

    # Every child has every per-epoch point and every final metric: nothing was lost to parallel writes.
    cfg = OmegaConf.create(
        {"dataset": {"name": "synthetic", "task": "regression"}, "trainer": {"roc_auc_per_epoch": True}}
    )
    for run in children:
        assert run.info.status == "FINISHED"
        epochs = int(run.data.metrics["epochs_run"])
        assert epochs == 2
        for name in epoch_metric_names(cfg):
            steps = {point.step for point in client.get_metric_history(run.info.run_id, name)}
            assert set(range(1, epochs + 1)) <= steps, (run.info.run_name, name)
        for name in final_metric_names(cfg):
            assert math.isfinite(run.data.metrics[name]), (run.info.run_name, name)

    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/trials.csv", "sweep/trials.html", "sweep/definition.yaml", "sweep/best_config.yaml"} <= artifacts
    assert PLOTS <= artifacts
    table = list(csv.DictReader(io.StringIO(artifact_text(client, parent.info.run_id, "sweep/trials.csv", tmp_path))))
    assert len(table) == 4 and {row["state"] for row in table} == {"FINISHED"}
    assert {row["run_id"] for row in table} == {run.info.run_id for run in children}

    # The best trial is the lowest val_loss at each child's kept epoch, and the parent says which it is.
    def kept_val_loss(run):
        history = client.get_metric_history(run.info.run_id, "val_loss")
        return next(p.value for p in history if p.step == int(run.data.metrics["best_epoch"]))

    best = min(children, key=kept_val_loss)
    assert parent.data.tags["runner.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_loss"] == pytest.approx(kept_val_loss(best))
    assert parent.data.metrics["trials_finished"] == 4
    assert "runner.best_run_id" in parent.data.tags and "Sweep:" in parent.data.tags["mlflow.note.content"]

    # The best config reruns the trial: composing it gives the trial's params.
    best_file = Path(parent.data.tags["runner.best_config"])
    assert best_file.is_file() and best_file.parent == tmp_path / "store" / "conf" / "experiment" / "best"
    logged = artifact_text(client, parent.info.run_id, "sweep/best_config.yaml", tmp_path / "dl")
    assert logged == best_file.read_text()
    rerun = compose_config(f"+experiment=best/{best_file.stem}", config_dir=best_file.parent.parent.parent)
    composed = config_params(OmegaConf.to_container(rerun, resolve=True))
    trial_params = {k: v for k, v in best.data.params.items() if k not in ("model.parameters", "model.resolved_loss")}
    assert composed == trial_params
    assert f"+experiment=best/{best_file.stem}" in done.stdout and "4 finished" in done.stdout


def test_failed_trial_is_recorded_and_the_sweep_ends_its_parent(tmp_path):
    # SGD with an absurd learning rate turns the loss into NaN/Inf: that job fails, the other one finishes.
    done = run_sweep(tmp_path, "optimizer=sgd", "optimizer.learning_rate=1e-3,1e12")
    client, parents, children = sweep_runs(tmp_path)

    assert done.returncode == 1, "Hydra's basic sweeper exits 1 when a job failed"
    assert len(parents) == 1 and len(children) == 2
    states = {run.data.params["optimizer.learning_rate"]: run.info.status for run in children}
    assert states == {"0.001": "FINISHED", "1000000000000.0": "FAILED"}
    parent = client.get_run(parents[0].info.run_id)
    assert parent.info.status == "FINISHED", "every job ran and one finished: the sweep is complete"
    assert parent.data.metrics["trials_failed"] == 1 and parent.data.metrics["trials_finished"] == 1
    table = pd.read_csv(io.StringIO(artifact_text(client, parent.info.run_id, "sweep/trials.csv", tmp_path)))
    assert sorted(table["state"]) == ["FAILED", "FINISHED"]
    assert parent.data.tags["runner.best_run_id"] == table.loc[table["state"] == "FINISHED", "run_id"].item()


def test_a_sweep_that_stops_early_ends_its_parent_failed_with_the_report_so_far(tmp_path):
    # Batches of one job: Hydra's basic sweeper raises after the first (failing) job and never starts the second.
    done = run_sweep(tmp_path, "hydra.sweeper.max_batch_size=1", "optimizer=sgd", "optimizer.learning_rate=1e12,1e-3")
    client, parents, children = sweep_runs(tmp_path)

    assert done.returncode == 1
    assert [run.info.status for run in children] == ["FAILED"]
    parent = client.get_run(parents[0].info.run_id)
    assert parent.info.status == "FAILED" and "stopped before its end" in parent.data.tags["runner.error"]
    assert "runner.best_run_id" not in parent.data.tags
    table = pd.read_csv(io.StringIO(artifact_text(client, parent.info.run_id, "sweep/trials.csv", tmp_path)))
    assert list(table["state"]) == ["FAILED"] and table["objective"].isna().all()
    assert "no trial finished" in done.stdout


def test_a_resumed_search_keeps_its_one_parent_run(tmp_path):
    import optuna

    search = [
        "+experiment=wine_mlp",
        "+sweep=smoke",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "evaluation.plots=false",
    ]
    first = run_sweep(tmp_path, "hydra.sweeper.n_trials=1", base=search)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_sweep(tmp_path, "hydra.sweeper.n_trials=2", base=search)
    assert second.returncode == 0, second.stderr[-3000:]
    client, parents, children = sweep_runs(tmp_path)

    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    assert sorted(run.info.run_name for run in children) == ["wine_mlp-trial-0", "wine_mlp-trial-1"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_finished"] == 2
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/store/optuna.db")
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    # The parent's best is the study's best (compared by value: two trials may tie).
    best = client.get_run(parent.data.tags["runner.best_run_id"])
    assert study.trials[int(best.data.tags["runner.trial"])].value == pytest.approx(study.best_value)
    assert parent.data.metrics["best_val_loss"] == pytest.approx(study.best_value)

    # The parent records each command as typed, hydra.* overrides included: the note the first, the definition
    # the latest.
    def typed(n_trials):
        store = f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db"
        return shlex.join(["python", "-m", "runner", "-m", *search, f"hydra.sweeper.n_trials={n_trials}", store])

    assert parent.data.tags["mlflow.note.content"] == f"Sweep: `{typed(1)}`"
    definition = yaml.safe_load(artifact_text(client, parent.info.run_id, "sweep/definition.yaml", tmp_path))
    assert definition["command"] == typed(2)


def test_the_recorded_command_is_the_one_typed_quoted_for_the_shell():
    module = ["/repo/runner/__main__.py", "-m", "+sweep=smoke", "hydra.sweeper.n_trials=4"]
    assert typed_command(module) == "python -m runner -m +sweep=smoke hydra.sweeper.n_trials=4"
    script = ["/venv/bin/runner", "-m", "+experiment=glob(mnist_*)", "tracking.run_name=a b"]
    assert typed_command(script) == "runner -m '+experiment=glob(mnist_*)' 'tracking.run_name=a b'"
    secrets = ["runner", "+dataset.api_token=two words", "hydra.sweeper.storage=postgresql://u:pw@db/optuna"]
    hidden = "runner '+dataset.api_token=***' 'hydra.sweeper.storage=postgresql://u:***@db/optuna'"
    assert typed_command(secrets) == hidden


def test_jobs_of_a_glob_share_one_experiment_and_mixed_data_sets_are_detected():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config")
        presets, experiments = job_identities(cfg, "config", ["+experiment=glob(mnist_*)", "trainer.epochs=1"])
        assert presets == ["mnist_cnn", "mnist_dropout", "mnist_l2", "mnist_mlp"] and experiments == ["mnist"]
        presets, experiments = job_identities(cfg, "config", ["+experiment=wine_mlp,seizure_dnn"])
        assert presets == ["seizure_dnn", "wine_mlp"] and experiments == ["seizure", "wine"]
        _, experiments = job_identities(cfg, "config", ["+experiment=wine_mlp", "+debug=fast"])
        assert experiments == ["debug"]


def test_swept_keys_come_from_grid_overrides_and_search_params():
    cfg = compose_config()
    keys = swept_keys(
        cfg, ["+experiment=glob(mnist_*)", "optimizer=adam,rmsprop", "model.dropout=0,0.2", "trainer.epochs=1"]
    )
    assert keys == ["experiment", "optimizer", "model.dropout"]


def trials(objectives, states=None, lrs=None) -> pd.DataFrame:
    states = states or ["FINISHED"] * len(objectives)
    lrs = lrs or [str(10.0 ** -(i + 1)) for i in range(len(objectives))]
    return pd.DataFrame(
        {
            "trial": range(len(objectives)),
            "run_name": [f"r-{i}" for i in range(len(objectives))],
            "state": states,
            "objective": objectives,
            "duration_s": 1.0,
            "optimizer.learning_rate": lrs,
            "run_id": [f"id{i}" for i in range(len(objectives))],
        }
    )


def test_best_row_follows_the_direction_and_skips_failed_and_nan_trials():
    table = trials([0.5, 0.1, math.nan, 0.9], states=["FINISHED", "FAILED", "FINISHED", "FINISHED"])
    assert best_row(table, Objective("val_loss", "minimize"))["trial"] == 0
    assert best_row(table, Objective("val_accuracy", "maximize"))["trial"] == 3
    assert best_row(trials([0.1], states=["FAILED"]), Objective("val_loss", "minimize")) is None


def test_html_table_highlights_the_best_trial(tmp_path):
    table = trials([0.5, 0.2, 0.7])
    path = tmp_path / "trials.html"
    write_html(
        table, best_row(table, Objective("val_loss", "minimize")), Objective("val_loss", "minimize"), "sweep x", path
    )
    rows = [line for line in path.read_text().splitlines() if line.startswith("<tr class=")]
    assert [row.split('"')[1] for row in rows] == ["finished", "best", "finished"]
    assert "best: trial 1 with val_loss = 0.2" in path.read_text()


def test_importance_needs_enough_finished_trials_and_a_varying_param():
    objective = Objective("val_loss", "minimize")
    assert param_importances(trials([0.3, 0.2, 0.1]), ["optimizer.learning_rate"], objective) == {}
    assert (
        param_importances(trials([0.4, 0.3, 0.2, 0.1], lrs=["0.1"] * 4), ["optimizer.learning_rate"], objective) == {}
    )
    importances = param_importances(trials([0.4, 0.3, 0.2, 0.1]), ["optimizer.learning_rate"], objective)
    assert list(importances) == ["optimizer.learning_rate"]


def test_best_config_reconstructs_group_choices_when_the_run_did_not_record_them(tmp_path):
    resolved = resolved_config("+experiment=wine_mlp", "optimizer=rmsprop", "model.dropout=0.3")
    text = best_config_yaml(resolved, {}, "wine-best", "best of a test", ["a header line"])
    assert text.startswith("# @package _global_\n# a header line\n")
    assert yaml.safe_load(text)["defaults"] == [
        {"override /dataset": "wine"},
        {"override /model": "mlp"},
        {"override /optimizer": "rmsprop"},
    ]
    folder = tmp_path / "conf" / "experiment" / "best"
    folder.mkdir(parents=True)
    (folder / "wine-best.yaml").write_text(text)
    rerun = compose_config("+experiment=best/wine-best", config_dir=tmp_path / "conf")
    assert config_params(OmegaConf.to_container(rerun, resolve=True)) == config_params(resolved)
    assert rerun.name == "wine-best" and rerun.optimizer.name == "rmsprop" and rerun.model.dropout == 0.3


def resolved_config(*overrides) -> dict:
    return OmegaConf.to_container(compose_config(*overrides), resolve=True)
