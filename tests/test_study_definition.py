"""A study remembers what defines it (search space, the settings its trials train with, objective): a sweep with
other settings is refused before any trial, unless it asks for a study of its own or to continue all the same."""

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import SMOKE_SWEEP as SMOKE
from conftest import compose_sweep
from mlflow import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution

from runner.errors import ConfigError
from runner.sweep import definition
from runner.sweep.search import open_study, parse_space


def defined(tmp_path: Path, *overrides: str) -> dict:
    config = compose_sweep(tmp_path, *overrides)
    space = parse_space(OmegaConf.to_container(config.hydra.sweeper.params), list(config.hydra.overrides.task))
    return definition.build(config, space)


def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store/optuna.db"


def with_one_trial(study) -> optuna.Study:
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 1.0)
    return study


# ---------------------------------------------------------------- the definition and its comparison


def test_definition_holds_space_settings_and_objective_but_not_what_changes_no_result(tmp_path):
    made = defined(tmp_path)
    assert made["space"] == {
        "optimizer.learning_rate": "tag(log, interval(0.001, 0.1))",
        "model.hidden_units": "choice([8], [16,8])",
    }
    assert made["objective"] == {"metric": "val_loss", "direction": "minimize"}
    assert made["fixed"]["trainer.epochs"] == 2 and made["fixed"]["dataset.n_samples"] == 200
    assert not [key for key in made["fixed"] if key.split(".")[0] in ("tracking", "trial", "objective")]
    assert "optimizer.learning_rate" not in made["fixed"] and "model.hidden_units" not in made["fixed"]
    free = [
        "hydra.sweeper.n_trials=9",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.sampler.name=tpe",
        "verbosity=quiet",
        "tracking.log_model=false",
        "evaluation.plots=false",
    ]
    assert defined(tmp_path, *free) == made


def test_differences_are_one_line_each_with_both_values():
    stored = {
        "space": {"model.dropout": "interval(0.1, 0.5)", "model.l2": "interval(0.0, 0.1)"},
        "fixed": {"trainer.epochs": 20, "model.hidden_units": [8], "model.l2": 0.0, "optimizer.name": "adam"},
        "objective": {"metric": "val_loss", "direction": "minimize"},
    }
    now = {
        "space": {"model.dropout": "interval(0.1, 0.3)"},
        "fixed": {"trainer.epochs": 30, "model.hidden_units": [16, 8], "model.l2": 0.01, "optimizer.name": "adam"},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
    }
    assert definition.differences(stored, now) == [
        "objective: val_loss (minimize) in the study, val_accuracy (maximize) now",
        "searched model.dropout: interval(0.1, 0.5) in the study, interval(0.1, 0.3) now",
        "searched model.l2: interval(0.0, 0.1) in the study, not searched now",
        "model.hidden_units: [8] in the study, [16, 8] now",
        "trainer.epochs: 20 in the study, 30 now",
    ]
    assert definition.differences(stored, stored) == []
    # A setting the schema gained since the study was made, left unset, is no difference; set, it is one.
    upgraded = {**stored, "fixed": {**stored["fixed"], "trainer.backend": None}}
    assert definition.differences(stored, upgraded) == []
    upgraded["fixed"]["trainer.backend"] = "jax"
    assert definition.differences(stored, upgraded) == ["trainer.backend: (absent) in the study, jax now"]


# ---------------------------------------------------------------- open_study (no training)


def test_a_study_with_other_settings_is_refused_and_left_as_it_was(tmp_path):
    study = with_one_trial(open_study(compose_sweep(tmp_path)))
    stored = study.user_attrs[definition.DEFINITION_ATTR]
    with pytest.raises(ConfigError) as refused:
        open_study(compose_sweep(tmp_path, "trainer.epochs=3"))
    message = str(refused.value)
    assert "\n  trainer.epochs: 2 in the study, 3 now\n" in message
    assert "hydra.sweeper.study=new" in message and "hydra.sweeper.study=continue" in message
    again = optuna.load_study(study_name="smoke", storage=storage(tmp_path))
    assert len(again.trials) == 1 and again.user_attrs[definition.DEFINITION_ATTR] == stored
    assert [s.study_name for s in optuna.get_all_study_summaries(storage(tmp_path))] == ["smoke"]


def test_study_new_runs_other_settings_in_a_study_of_their_own_and_keeps_to_it(tmp_path, caplog):
    with_one_trial(open_study(compose_sweep(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="runner.sweep.study"):
        fresh = open_study(compose_sweep(tmp_path, "trainer.epochs=3", "hydra.sweeper.study=new"))
    assert fresh.study_name == "smoke-2" and not fresh.trials
    assert "this sweep runs in study 'smoke-2'" in caplog.text
    assert fresh.user_attrs[definition.DEFINITION_ATTR]["fixed"]["trainer.epochs"] == 3
    with_one_trial(fresh)
    assert open_study(compose_sweep(tmp_path, "trainer.epochs=3", "hydra.sweeper.study=new")).study_name == "smoke-2"
    third = open_study(compose_sweep(tmp_path, "trainer.epochs=4", "hydra.sweeper.study=new"))
    assert third.study_name == "smoke-3"
    assert open_study(compose_sweep(tmp_path)).study_name == "smoke", "the first settings still reach their study"


def test_study_continue_adds_to_the_study_and_keeps_its_definition(tmp_path, caplog):
    first = with_one_trial(open_study(compose_sweep(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="runner.sweep.study"):
        study = open_study(compose_sweep(tmp_path, "trainer.epochs=3", "hydra.sweeper.study=continue"))
    assert study.study_name == "smoke" and len(study.trials) == 1
    assert "trainer.epochs: 2 in the study, 3 now" in caplog.text
    assert study.user_attrs[definition.DEFINITION_ATTR] == first.user_attrs[definition.DEFINITION_ATTR]


def test_an_identical_rerun_continues_silently(tmp_path, caplog):
    with_one_trial(open_study(compose_sweep(tmp_path)))
    with caplog.at_level(logging.INFO, logger="runner.sweep.study"):
        study = open_study(compose_sweep(tmp_path, "hydra.sweeper.n_trials=9", "verbosity=quiet"))
    assert study.study_name == "smoke" and len(study.trials) == 1
    assert caplog.text == ""


def test_a_study_from_before_definitions_matches_and_stores_one(tmp_path):
    with_one_trial(open_study(compose_sweep(tmp_path)))
    old = optuna.load_study(study_name="smoke", storage=storage(tmp_path))
    old.set_user_attr(definition.DEFINITION_ATTR, None)  # Optuna cannot delete an attribute: None reads the same
    study = open_study(compose_sweep(tmp_path, "trainer.epochs=3"))
    assert study.study_name == "smoke" and study.user_attrs[definition.DEFINITION_ATTR]["fixed"]["trainer.epochs"] == 3


def test_a_study_without_trials_takes_the_new_settings(tmp_path):
    open_study(compose_sweep(tmp_path))  # a command refused before its first trial leaves such a study
    study = open_study(compose_sweep(tmp_path, "trainer.epochs=3", "objective.direction=maximize"))
    assert study.study_name == "smoke" and study.direction.name == "MAXIMIZE"
    assert study.user_attrs[definition.DEFINITION_ATTR]["fixed"]["trainer.epochs"] == 3


def test_an_unknown_study_option_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="hydra.sweeper.study='fresh' is not an option; choose one of: check, new"):
        open_study(compose_sweep(tmp_path, "hydra.sweeper.study=fresh"))


# ---------------------------------------------------------------- whole sweeps (python -m runner -m)


def sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        *SMOKE,
        "tracking.log_model=false",
        "evaluation.plots=false",
        f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db",
        *overrides,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    return done, command


def all_runs(tmp_path: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


def test_a_sweep_with_other_epochs_is_refused_before_any_run_and_study_new_gets_its_own_parent(tmp_path):
    first, _ = sweep(tmp_path, "hydra.sweeper.n_trials=1")
    assert first.returncode == 0, first.stderr[-3000:]
    runs = {run.info.run_id for run in all_runs(tmp_path)}
    assert len(runs) == 2  # the parent and its one trial

    refused, _ = sweep(tmp_path, "hydra.sweeper.n_trials=1", "trainer.epochs=3")
    assert refused.returncode != 0
    assert "trainer.epochs: 2 in the study, 3 now" in refused.stderr, refused.stderr[-3000:]
    assert "hydra.sweeper.study=new" in refused.stderr
    # One message, not Hydra's traceback, and not first as a warning from the sweep-record callback.
    assert "Traceback" not in refused.stderr and "UserWarning" not in refused.stderr, refused.stderr[-3000:]
    assert refused.stderr.count("was created with other settings") == 1, refused.stderr[-3000:]
    assert len(optuna.load_study(study_name="smoke", storage=storage(tmp_path)).trials) == 1
    assert {run.info.run_id for run in all_runs(tmp_path)} == runs, "no MLflow run was opened"

    fresh, command = sweep(tmp_path, "hydra.sweeper.n_trials=1", "trainer.epochs=3", "hydra.sweeper.study=new")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "runs in study 'smoke-2'" in fresh.stderr + fresh.stdout
    assert len(optuna.load_study(study_name="smoke-2", storage=storage(tmp_path)).trials) == 1
    new_runs = [run for run in all_runs(tmp_path) if run.info.run_id not in runs]
    (parent,) = [run for run in new_runs if run.data.tags.get("runner.sweep") == "true"]
    assert [run.data.tags["mlflow.parentRunId"] for run in new_runs if run is not parent] == [parent.info.run_id]
    typed = shlex.join(["python", *command[1:]])
    assert parent.data.tags["mlflow.note.content"] == f"Sweep: `{typed}`"
