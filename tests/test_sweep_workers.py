"""Several workers on one study: two sweep processes joining one SQLite study, and 8 parallel jobs on one fresh
SQLite MLflow store and study, with every run, param and metric step recorded and no trial lost."""

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import test_cluster
from mlflow import MlflowClient
from optuna.trial import TrialState

from runner.sweep import search, stale
from runner.sweep.study import storage_of

postgres = test_cluster.postgres  # the throw-away PostgreSQL server fixture

SMOKE = ["+experiment=wine_mlp", "+sweep=smoke", "trainer.verbose=0"]


def command(tmp_path: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runner",
        "-m",
        *SMOKE,
        f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db",
        *overrides,
    ]


def start(tmp_path: Path, name: str, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed when the process ends (wait_all)
    return subprocess.Popen(
        command(tmp_path, f"hydra.sweep.dir={tmp_path}/{name}", *overrides),
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def study_of(tmp_path: Path, storage: str | None = None) -> optuna.Study:
    # storage_of takes the runner's creation lock on SQLite: polling while the first worker creates the store
    # must not race its table creation (both would stamp alembic_version).
    return optuna.load_study(study_name="smoke", storage=storage_of(storage or f"sqlite:///{tmp_path}/store/optuna.db"))


def wait_for_parent(tmp_path: Path, process: subprocess.Popen, storage: str | None = None) -> None:
    """Until the first process's study remembers its MLflow parent run (a second worker then joins that run)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        try:
            ready = storage is not None or (tmp_path / "store" / "optuna.db").exists()
            if ready and "mlflow_parent_run_id" in study_of(tmp_path, storage).user_attrs:
                return
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.5)
    pytest.fail("the first worker never opened its parent run")


def check_study_and_runs(tmp_path: Path, n_trials: int, storage: str | None = None) -> tuple[optuna.Study, list]:
    """Exactly n_trials counted trials, numbered without gaps among themselves and without repeats, each with
    exactly one FINISHED MLflow child under the one parent run; no run left RUNNING."""
    study = study_of(tmp_path, storage)
    counted = search.counted_trials(study)
    assert len(counted) == n_trials and {t.state for t in counted} == {TrialState.COMPLETE}
    assert len({t.number for t in counted}) == n_trials
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("runner.sweep") == "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].info.run_id == study.user_attrs["mlflow_parent_run_id"]
    children = [r for r in runs if "runner.trial" in r.data.tags]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    finished = Counter(int(r.data.tags["runner.trial"]) for r in children if r.info.status == "FINISHED")
    assert finished == Counter({t.number: 1 for t in counted}), "one FINISHED child per counted trial"
    assert all(r.info.status != "RUNNING" for r in runs)
    return study, children


def test_two_worker_processes_drive_one_sqlite_study_to_exactly_n_trials(tmp_path):
    two_workers_on_one_study(tmp_path, None)


@pytest.mark.extended  # 9 minutes under load; the SQLite test above runs the same workers by default
def test_two_worker_processes_drive_one_postgresql_study_as_two_machines_would(tmp_path, postgres):
    # psycopg 3 (the .[team] extra) is SQLAlchemy's postgresql+psycopg driver.
    two_workers_on_one_study(tmp_path, postgres.replace("postgresql://", "postgresql+psycopg://", 1))


def two_workers_on_one_study(tmp_path: Path, storage: str | None) -> None:
    overrides = ["hydra.sweeper.n_trials=6", "trainer.epochs=10", "hydra.sweeper.heartbeat_interval=2"]
    overrides += [f"hydra.sweeper.storage={storage}"] if storage else []
    first = start(tmp_path, "first", *overrides)
    wait_for_parent(tmp_path, first, storage)
    second = start(tmp_path, "second", *overrides)
    for process, name in ((first, "first"), (second, "second")):
        assert process.wait(timeout=900) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    study, _ = check_study_and_runs(tmp_path, 6, storage)
    workers = Counter(t.user_attrs[stale.WORKER]["pid"] for t in search.counted_trials(study))
    assert set(workers) == {first.pid, second.pid}, f"both processes ran trials: {workers}"


@pytest.mark.extended  # 8 minutes on 2 cores: pytest -m extended
def test_eight_parallel_jobs_on_one_fresh_sqlite_store_record_everything_without_lock_errors(tmp_path):
    n_trials, epochs = 16, 3
    started = time.monotonic()
    process = start(
        tmp_path,
        "sweep",
        f"hydra.sweeper.n_trials={n_trials}",
        f"trainer.epochs={epochs}",
        "dataset.n_samples=120",
        "+launcher=joblib",
        "hydra.launcher.n_jobs=8",
        "hydra.sweeper.n_jobs=8",
    )
    assert process.wait(timeout=1800) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    wall = time.monotonic() - started
    logs = (tmp_path / "sweep.log").read_text() + "".join(
        path.read_text(errors="replace") for path in (tmp_path / "sweep").glob("**/*.log")
    )
    assert "database is locked" not in logs.lower()
    study, children = check_study_and_runs(tmp_path, n_trials)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    for run in children:
        assert {"optimizer.learning_rate", "model.hidden_units"} <= set(run.data.params)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert sorted(steps)[:epochs] == list(range(1, epochs + 1)), f"every epoch's step of {run.info.run_id}"
    print(f"8 jobs: {n_trials} trials, {len(children)} runs, {len(study.trials)} study trials in {wall:.0f} s")


def test_processes_opening_one_new_sqlite_study_storage_at_once_all_succeed(tmp_path):
    """Optuna's table creation stamps one alembic_version row: without the creation lock, processes opening a new
    SQLite file at the same instant failed with UNIQUE constraint failed: alembic_version.version_num."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    start_at = time.time() + 8  # every process past its imports, then all open the storage at once
    code = (
        "import sys, time; from runner.sweep.study import storage_of; "
        f"time.sleep(max(0.0, {start_at} - time.time())); storage_of(sys.argv[1]).get_all_studies(); print('ok')"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err[-2000:] for _, err in outcomes]
    assert optuna.get_all_study_names(storage=url) == []


def _job_modules_imported() -> bool:
    return all(name in sys.modules for name in ("keras", "mlflow", "pandas", "sklearn.metrics"))


def test_warmed_joblib_workers_run_the_jobs_with_the_job_modules_already_imported():
    # The warm-up must reach the very processes the launcher's own Parallel calls then use, or it only adds work.
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    from joblib import Parallel, delayed
    from omegaconf import OmegaConf

    from runner.runtime import compat
    from runner.sweep import warm_up

    launcher = {"n_jobs": 2, "pre_dispatch": "2*n_jobs", "batch_size": "auto", "prefer": "processes"}
    config = OmegaConf.create(
        {
            "hydra": {
                "runtime": {"choices": {"hydra/launcher": "joblib"}},
                "launcher": {
                    "_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                    **launcher,
                },
                "sweeper": {"n_jobs": None, "params": None},
                "overrides": {"task": ["+experiment=wine_mlp", "optimizer.learning_rate=1e-3,1e-2"]},
            },
            "trainer": {"backend": None},
        }
    )
    for other in (
        {"hydra.runtime.choices": {"hydra/launcher": "basic"}},
        {"hydra.sweeper.n_jobs": 1},
        {"hydra.overrides.task": ["trainer.backend=tensorflow,jax"]},
    ):
        changed = config.copy()
        for key, value in other.items():
            OmegaConf.update(changed, key, value, merge=False)
        assert warm_up.warm_up(changed) is None, other  # nothing to overlap, or workers that must stay cold
    warming = warm_up.warm_up(config)
    warming.join(timeout=240)
    assert not warming.is_alive()
    settings = compat.joblib_parallel_settings(JoblibLauncher(**launcher).joblib)
    warmed = Parallel(**settings)(delayed(_job_modules_imported)() for _ in range(4))
    assert warmed == [True] * 4
