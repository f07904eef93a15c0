"""The runner_optuna sweeper: search space, seeded sampling, resume, failure tolerance and limit, pruning, and
the checks that refuse a bad objective or search key before any trial runs."""

import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import SMOKE_SWEEP as SMOKE
from conftest import compose_sweep
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from runner.cli import CONF_DIR
from runner.config import objective
from runner.config.schema import TrialLink
from runner.errors import ConfigError
from runner.runtime import compat, liveness
from runner.sweep import search, stale, workers


def sweep(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m runner -m`` in tmp_path with its own tracking store (and study storage beside it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        *SMOKE,
        f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db",
        *overrides,
    ]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def load_study(tmp_path: Path, name: str = "smoke") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/store/optuna.db")


def trial_runs(tmp_path: Path) -> list:
    """The MLflow runs of trials (tagged runner.trial), in every experiment of the store."""
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(ids, max_results=1000) if "runner.trial" in r.data.tags]


# ---------------------------------------------------------------- objective and search space (no training)


def test_objective_metric_names_agree_with_what_training_and_evaluation_log():
    pytest.importorskip("keras")
    from runner.run import evaluation, training

    rng = np.random.default_rng(0)
    y_binary, y_multi = rng.integers(0, 2, 50), rng.integers(0, 3, 50)
    final = {
        "regression": evaluation.regression_metrics(rng.normal(size=50), rng.normal(size=50), {"std": 2.0}),
        "binary": evaluation.binary_metrics(y_binary, rng.random(50), 0.5)[0],
        "multiclass": evaluation.multiclass_metrics(y_multi, rng.random((50, 3)), 3)[0],
        "multilabel": evaluation.multilabel_metrics(rng.integers(0, 2, (50, 3)), rng.random((50, 3)), 0.5),
    }
    for task, loss in training.DEFAULT_LOSS.items():
        compiled = training.task_metrics(task, loss, 0.5)
        assert set(objective.EPOCH_METRICS[task]) == {m.name for m in compiled}, task
        extra = {"mae_original", "rmse_original"} if task == "regression" else set()
        assert set(objective.FINAL_METRICS[task]) | extra == set(final[task]), task
    cfg = {"dataset": {"name": "seizure"}, "trainer": {"roc_auc_per_epoch": True}}
    compiled = training.task_metrics("binary", "binary_crossentropy", 0.5)
    logged = training.logged_metric_names(compiled, "binary", True) + ["learning_rate"]
    assert objective.epoch_metric_names(OmegaConf.create(cfg)) == logged
    for name in objective.metric_names(OmegaConf.create({**cfg, "dataset": {"name": "wine", "scale_target": True}})):
        assert objective.metric_direction(name) == (
            "maximize" if objective.monitor_mode(name, "auto") == "max" else "minimize"
        ), name


def test_objective_value_prefers_the_final_metric_then_the_kept_epoch():
    loss = objective.Objective("val_loss", "minimize", "val_loss", 1.0)
    history = {"val_loss": [0.9, 0.5, 0.7]}
    assert loss.value({"best_epoch": 2}, history) == 0.5
    assert loss.value({}, history) == 0.5  # no kept epoch: the best value
    accuracy = objective.Objective("val_accuracy", "maximize", "val_accuracy", 1.0)
    assert accuracy.value({"val_accuracy": 0.8, "best_epoch": 1}, {"val_accuracy": [0.1]}) == 0.8
    assert accuracy.value({}, {"val_accuracy": [0.1, float("nan"), 0.7, 0.7]}) == 0.7
    assert accuracy.better(0.8, 0.7) and not loss.better(0.8, 0.7) and loss.better(0.8, float("nan"))
    with pytest.raises(ConfigError, match="'val_accuracy' was not logged"):
        accuracy.value({"loss": 1.0}, {})


def test_pruning_monitor_stands_in_for_a_final_only_objective_with_the_right_sign():
    cfg = {
        "dataset": {"name": "mnist"},
        "trainer": {"roc_auc_per_epoch": True, "checkpoint": {"monitor": "val_loss", "mode": "auto"}},
        "objective": {"metric": "val_macro_f1", "direction": "auto"},
    }
    chosen = objective.Objective.of(OmegaConf.create(cfg))
    assert (chosen.direction, chosen.monitor, chosen.monitor_sign) == ("maximize", "val_loss", -1.0)  # a loss
    cfg["objective"]["metric"] = "val_accuracy"
    chosen = objective.Objective.of(OmegaConf.create(cfg))
    assert (chosen.monitor, chosen.monitor_sign) == ("val_accuracy", 1.0)


def test_search_space_reads_hydra_sweep_syntax():
    space = search.parse_space(
        {
            "model.dropout": "interval(0.1, 0.5)",
            "optimizer.learning_rate": "tag(log, interval(1e-4, 1e-2))",
            "trainer.batch_size": "choice(32, 64)",
            "trainer.epochs": "3",
        },
        [
            "+experiment=mnist_dropout",
            "optimizer=rmsprop,adam",
            "model.hidden_units=[512,256],[128]",
            "dataset.max_samples=range(100,400,100)",
            "trainer.batch_size=16,32",
        ],
    )
    dims = space.dimensions
    assert dims["model.dropout"].distribution == FloatDistribution(0.1, 0.5)
    assert dims["optimizer.learning_rate"].distribution == FloatDistribution(1e-4, 1e-2, log=True)
    assert dims["optimizer"].distribution == CategoricalDistribution(["rmsprop", "adam"])
    assert dims["trainer.batch_size"].distribution == CategoricalDistribution([16, 32]), "the command wins"
    assert dims["dataset.max_samples"].distribution == IntDistribution(100, 300, step=100)
    assert dims["model.hidden_units"].distribution == CategoricalDistribution(["[512,256]", "[128]"])
    assert space.fixed == ["trainer.epochs=3", "+experiment=mnist_dropout"]
    overrides = space.overrides(
        {
            "model.dropout": 0.25,
            "optimizer.learning_rate": 1e-3,
            "trainer.batch_size": 16,
            "optimizer": "adam",
            "model.hidden_units": "[128]",
            "dataset.max_samples": 200,
        }
    )
    assert "model.hidden_units=[128]" in overrides and "optimizer.learning_rate=0.001" in overrides
    with pytest.raises(ConfigError, match="glob"):
        search.parse_space({}, ["+experiment=glob(mnist_*)"])


def test_override_text_round_trips_through_hydra():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in (None, True, 3, 1e-05, 0.25, "adam", "it's a path/with spaces", "sqlite:////tmp/x/optuna.db"):
        (parsed,) = parser.parse_overrides([f"key={search.override_text(value)}"])
        assert parsed.value() == value


def test_same_command_gives_the_same_trials_and_another_seed_does_not(tmp_path):
    def first_params(folder: Path, *overrides):
        study = search.open_study(compose_sweep(folder, *overrides))
        space = search.parse_space(OmegaConf.to_container(compose_sweep(folder).hydra.sweeper.params), [])
        return [study.ask(space.distributions()).params for _ in range(3)]

    same = first_params(tmp_path / "a"), first_params(tmp_path / "b")
    assert same[0] == same[1]
    assert first_params(tmp_path / "c", "trainer.seed=7") != same[0]


def process_mark(process: subprocess.Popen) -> dict:
    """The ``runner.worker`` mark of another process of this machine (alive or not)."""
    return {"host": socket.gethostname(), "pid": process.pid, "start": liveness._start_token(process.pid)}


def test_interrupted_trials_are_failed_and_their_params_run_again(tmp_path):
    study = search.open_study(compose_sweep(tmp_path))
    dist = {"x": FloatDistribution(0, 1)}
    done, stopped = study.ask(dist), study.ask(dist)
    study.tell(done, 0.5)
    dead = subprocess.Popen(["sleep", "0.1"])
    mark = process_mark(dead)
    stopped.set_user_attr(stale.WORKER, mark)
    dead.wait()
    assert search.requeue_interrupted(study) == 1
    assert [t.number for t in search.counted_trials(study)] == [done.number]
    assert study.trials[stopped.number].state == TrialState.FAIL
    rerun = study.ask(dist)
    assert rerun.params == stopped.params and rerun.user_attrs[stale.RERUN_OF] == stopped.number
    assert search.requeue_interrupted(study) == 0, "an unmarked trial younger than the grace period may be live"
    rerun.set_user_attr(stale.WORKER, mark)
    assert search.requeue_interrupted(study) == 1  # that re-run's worker died too: once more


def test_trials_of_live_workers_stay_running_and_silent_ones_of_other_machines_are_stale(tmp_path):
    study = search.open_study(
        compose_sweep(tmp_path, "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=1")
    )
    live = subprocess.Popen(["sleep", "60"])
    try:
        mine, elsewhere = study.ask({"x": FloatDistribution(0, 1)}), study.ask({"x": FloatDistribution(0, 1)})
        mine.set_user_attr(stale.WORKER, process_mark(live))
        elsewhere.set_user_attr(stale.WORKER, {"host": "another-machine", "pid": 1, "start": ""})
        for trial in (mine, elsewhere):
            compat.record_heartbeat(study, compat.trial_id(trial))
        assert stale.stale_trials(study) == [], "fresh heartbeats, live process"
        time.sleep(2.5)  # both heartbeats go silent; only the other machine's trial is judged by its heartbeat
        assert [t.number for t in stale.stale_trials(study)] == [elsewhere.number]
    finally:
        live.kill()
        live.wait()
    assert sorted(t.number for t in stale.stale_trials(study)) == [mine.number, elsewhere.number]


def test_a_trial_asked_beyond_n_trials_by_a_racing_worker_is_failed_as_surplus_and_not_counted(tmp_path):
    study = search.open_study(compose_sweep(tmp_path))
    dist = {"x": FloatDistribution(0, 1)}
    other = subprocess.Popen(["sleep", "60"])
    ask = study.ask

    def racing_ask(distributions):  # another process asks between this worker's count and its ask
        rival = ask(distributions)
        rival.set_user_attr(stale.WORKER, process_mark(other))
        return ask(distributions)

    study.ask = racing_ask
    job = workers.Search(
        study=study,
        distributions=dist,
        n_trials=1,
        run_trial=lambda trial: pytest.fail("a surplus trial must not run"),
        counted=search.counted_of,
        settle_stale=lambda held: 0,
        check=lambda: None,
    )
    try:
        assert workers.claim(job) == (None, False)
        study.ask = ask
        assert workers.claim(job) == (None, False), "the rival's trial fills n_trials: wait for it"
        rival, surplus = study.trials
        assert surplus.state == TrialState.FAIL and surplus.user_attrs[workers.SURPLUS]
        assert job.held == set() and search.counted_trials(study) == []
        study.tell(rival.number, 1.0)
        assert workers.claim(job) == (None, True)
    finally:
        other.kill()
        other.wait()


def test_failure_rate_limit_names_the_failures():
    trials = [optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0)]
    trials += [
        optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={search.ERROR: f"ValueError: bad {i}"})
        for i in range(2)
    ]
    search.check_failure_rate(trials, 0.5, min_trials=4)  # too few finished trials to judge
    search.check_failure_rate(trials, 0.7, min_trials=2)
    with pytest.raises(search.SweepError, match=r"2 of 3 finished trials failed(.|\n)*ValueError: bad 1"):
        search.check_failure_rate(trials, 0.5, min_trials=2)


# ---------------------------------------------------------------- whole sweeps (python -m runner -m)


def test_objective_typo_is_refused_before_any_trial(tmp_path):
    result = sweep(tmp_path, "objective.metric=val_acc")
    assert result.returncode != 0
    assert "objective.metric='val_acc' is not a metric of this run; choose one of: loss, mae," in result.stderr, (
        result.stderr[-3000:]
    )
    assert not list(tmp_path.glob("outputs/multirun/*/*/0")), "no job started"
    storage = tmp_path / "store" / "optuna.db"
    assert not storage.exists() or all(s.n_trials == 0 for s in optuna.get_all_study_summaries(f"sqlite:///{storage}"))


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.dropuot=interval(0.1,0.5)",
            "searched key 'model.dropuot' is not in the composed config; did you mean model.dropout",
        ),
        ("optimizer=choice(adam,adamm)", "adamm"),
        ("model.dropout=interval(0.5,1.0)", "model.dropout=1.0 is out of range"),
    ],
)
def test_bad_search_space_is_refused_before_any_trial(tmp_path, override, message):
    config = compose_sweep(tmp_path)
    space = search.parse_space(OmegaConf.to_container(config.hydra.sweeper.params), [*SMOKE, override])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with pytest.raises(Exception, match=re.escape(message)):
            search.validate_space(
                config, space, lambda overrides: compose(config_name="config", overrides=list(overrides))
            )


def test_corner_points_that_change_plain_values_are_checked_without_composing_again(tmp_path, monkeypatch):
    # A value set on the first point's composed config must be the config Hydra composes for that point.
    config = compose_sweep(tmp_path)
    searched = ["trainer.batch_size=choice(16,64)", "model.dropout=interval(0.0,0.4)", "optimizer=choice(adam,sgd)"]
    space = search.parse_space(OmegaConf.to_container(config.hydra.sweeper.params), [*SMOKE, *searched])
    checked, composed = [], []
    monkeypatch.setattr(search, "validate", checked.append)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):

        def compose_job(overrides):
            composed.append(list(overrides))
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)

        search.validate_space(config, space, compose_job)
        points = search.corner_points(space)
        assert len(checked) == len(points) == 6
        # The first point, the other list of hidden_units (a choice written as override text) and the optimizer
        # group's other choice; learning rate, batch size and dropout are set on the first point's config.
        assert len(composed) == 3
        for point, job_cfg in zip(points, checked):
            expected = compose_job(space.overrides(point))
            assert OmegaConf.to_container(job_cfg)["trainer"] == OmegaConf.to_container(expected)["trainer"]
            for key in ("model", "optimizer", "dataset"):
                assert OmegaConf.to_container(job_cfg[key]) == OmegaConf.to_container(expected[key]), (point, key)


def test_an_out_of_range_plain_value_is_refused_without_composing_it(tmp_path):
    config = compose_sweep(tmp_path)
    space = search.parse_space(
        OmegaConf.to_container(config.hydra.sweeper.params), [*SMOKE, "model.dropout=interval(0.5,1.0)"]
    )
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with pytest.raises(ConfigError, match=re.escape("model.dropout=1.0 is out of range")):
            search.validate_space(
                config,
                space,
                lambda overrides: compose(config_name="config", overrides=list(overrides), return_hydra_config=True),
            )


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    first = sweep(tmp_path, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = sweep(tmp_path, "hydra.sweeper.n_trials=4")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 of 4 trials finished" in second.stderr + second.stdout
    study = load_study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    runs = trial_runs(tmp_path)
    assert sorted(int(r.data.tags["runner.trial"]) for r in runs) == [0, 1, 2, 3], "each trial ran once"
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["runner.trial_state"] for r in runs} == {"COMPLETE"}
    for trial in study.trials:  # the value told is the run's objective (val_loss at the kept epoch)
        (run,) = [r for r in runs if r.data.tags["runner.trial"] == str(trial.number)]
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
        val_loss = [p.value for p in client.get_metric_history(run.info.run_id, "val_loss")]
        assert trial.value == pytest.approx(val_loss[int(run.data.metrics["best_epoch"]) - 1])


def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    result = sweep(
        tmp_path,
        "optimizer=sgd",
        "model.loss=mean_squared_error",
        "hydra.sweeper.sampler.name=grid",
        "hydra.sweeper.n_trials=4",
        "model.hidden_units=[8]",
        "optimizer.learning_rate=choice(0.01,1e30)",
        "trainer.batch_size=choice(16,32)",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path)
    states = {t.params["optimizer.learning_rate"]: set() for t in study.trials}
    for trial in study.trials:
        states[trial.params["optimizer.learning_rate"]].add(trial.state)
    assert states == {0.01: {TrialState.COMPLETE}, 1e30: {TrialState.FAIL}}
    assert all("loss became" in t.user_attrs[search.ERROR] for t in study.trials if t.state == TrialState.FAIL)
    runs = trial_runs(tmp_path)
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]


def test_failure_rate_limit_stops_a_sweep_broken_as_a_whole(tmp_path):
    result = sweep(
        tmp_path,
        "optimizer=sgd",
        "model.loss=mean_squared_error",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.min_trials_for_failure_rate=2",
        "hydra.sweeper.max_failure_rate=0.5",
        "optimizer.learning_rate=tag(log,interval(1e29,1e31))",
    )
    assert result.returncode != 0
    assert "2 of 2 finished trials failed, more than max_failure_rate=0.5" in result.stderr, result.stderr[-3000:]
    assert "TrainingError: the training loss became" in result.stderr
    assert [t.state for t in load_study(tmp_path).trials] == [TrialState.FAIL] * 2


def test_aggressive_pruner_prunes_and_marks_the_runs(tmp_path):
    # A finished trial with a perfect val_loss at every epoch: the median pruner stops any real trial at epoch 1.
    (tmp_path / "store").mkdir()
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/store/optuna.db", study_name="smoke")
    study.set_user_attr("runner.config.objective", "val_loss")
    study.add_trial(optuna.trial.create_trial(value=0.0, intermediate_values={1: 0.0, 2: 0.0, 3: 0.0}))
    result = sweep(
        tmp_path,
        "trainer.epochs=3",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner.name=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state for t in load_study(tmp_path).trials] == [TrialState.COMPLETE] + [TrialState.PRUNED] * 2
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    runs = trial_runs(tmp_path)
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "KILLED" and run.data.tags["runner.trial_state"] == "PRUNED"
        assert "pruned after epoch 1" in run.data.tags["runner.pruned"]
        assert [p.step for p in client.get_metric_history(run.info.run_id, "val_loss")] == [1]
    assert all(math.isfinite(t.value) for t in load_study(tmp_path).trials)


def test_a_study_keeps_its_objective_unless_it_never_ran_a_trial(tmp_path):
    assert search.open_study(compose_sweep(tmp_path, "objective.direction=maximize")).direction.name == "MAXIMIZE"
    assert search.open_study(compose_sweep(tmp_path)).direction.name == "MINIMIZE"  # no trial yet: it may change
    study = search.open_study(compose_sweep(tmp_path))
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 1.0)
    with pytest.raises(ConfigError, match=r"objective: val_loss \(minimize\) in the study, val_rmse \(minimize\)"):
        search.open_study(compose_sweep(tmp_path, "objective.metric=val_rmse"))
    assert search.open_study(compose_sweep(tmp_path)).user_attrs["runner.config.objective"] == "val_loss"


def test_a_job_reaches_its_running_trial_with_the_study_pruner_and_no_other(tmp_path):
    study = search.open_study(compose_sweep(tmp_path, "hydra.sweeper.pruner.name=median"))
    storage = f"sqlite:///{tmp_path.resolve()}/store/optuna.db"
    running, finished = study.ask(), study.ask()
    study.tell(finished, 1.0)
    link = TrialLink(number=running.number, id=compat.trial_id(running), study="smoke", storage=storage)
    trial = search.load_trial(link)
    assert trial.number == running.number and isinstance(trial.study.pruner, optuna.pruners.MedianPruner)
    ended = TrialLink(number=finished.number, id=compat.trial_id(finished), study="smoke", storage=storage)
    assert search.load_trial(ended) is None


def test_prune_on_cause_prunes_trials_whose_preflight_diagnosis_fails(tmp_path):
    # Every trial starts from constant kernels: preflight.initial_weights FAILs, the diagnosis is bad_init (FAIL),
    # so with the opt-in each trial is pruned before it trains and its run says why.
    result = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "diagnostics=quick",
        "diagnostics.prune_on_cause=true",
        "model.kernel_initializer=constant",
        "+model.kernel_initializer_args={value: 0.1}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state for t in load_study(tmp_path).trials] == [TrialState.PRUNED] * 2
    runs = trial_runs(tmp_path)
    assert len(runs) == 2
    for run in runs:
        assert run.data.tags["runner.trial_state"] == "PRUNED"
        assert "diagnosis bad_init (FAIL) before training" in run.data.tags["runner.pruned"]
        assert run.data.tags["diag.cause"] == "bad_init"
        assert "val_loss" not in run.data.metrics  # nothing was trained


def test_a_trial_its_launcher_cannot_launch_fails_with_the_error_instead_of_staying_running(tmp_path):
    # The launcher composes the job before it runs (the sweeper no longer composes it a second time first):
    # a launch that raises fails the trial, names the error, and stops the sweep with it.
    config = compose_sweep(tmp_path)
    study = search.open_study(config)
    space = search.parse_space(OmegaConf.to_container(config.hydra.sweeper.params), [])

    class Unlaunchable:
        def launch(self, batch, initial_job_idx):
            raise ValueError("Could not override 'model.hidden_units'")

    run_trial = search._trial_runner(config, study, space, Unlaunchable(), [])
    trial = study.ask(space.distributions())
    with pytest.raises(ValueError, match="Could not override"):
        run_trial(trial)
    (failed,) = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[search.ERROR] == "ValueError: Could not override 'model.hidden_units'"
