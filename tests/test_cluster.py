"""Parallel and cluster launchers, per-job thread limits and GPU sharing, and team tracking on PostgreSQL."""

import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import REPO, free_port
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf

from runner.cli import CONF_DIR
from runner.config.validation import validate
from runner.runtime.placement import configure_threads
from runner.runtime.resources import JobShare, available_cores, job_share

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
TINY_RUN = (
    "dataset=synthetic",
    "dataset.task=regression",
    "dataset.n_samples=200",
    "trainer.epochs=2",
    "trainer.verbose=0",
    "model.hidden_units=[8]",
)


def compose_config(*overrides, hydra=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def has_plugin(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------- a job's share of the machine


@pytest.mark.parametrize(
    "n_jobs, expected",
    [
        (2, JobShare(2, 4)),
        (3, JobShare(3, 2)),
        (16, JobShare(16, 1)),
        (-1, JobShare(8, 1)),
        (-2, JobShare(7, 1)),
        (None, JobShare(1, 8)),
    ],
)
def test_joblib_jobs_split_the_cores(n_jobs, expected):
    assert job_share({"_target_": JOBLIB, "n_jobs": n_jobs}, cores=8) == expected


def test_launchers_that_reserve_cpus_give_each_job_its_reservation():
    assert job_share({"_target_": SUBMITIT_LOCAL, "cpus_per_task": 3}, cores=8) == JobShare(2, 3)
    assert job_share({"_target_": RAY, "ray": {"init": {}, "remote": {"num_cpus": 2}}}, cores=8) == JobShare(4, 2)
    # A reservation larger than this machine (a login node) cannot give more than its cores.
    assert job_share({"_target_": SUBMITIT_LOCAL, "cpus_per_task": 32}, cores=8).cores == 8


def test_a_single_run_or_the_basic_launcher_uses_every_core():
    assert job_share(None, cores=6) == JobShare(1, 6)
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert job_share({"_target_": basic}, cores=6) == JobShare(1, 6)
    assert job_share(None).cores == available_cores() >= 1


def test_thread_limits_reach_tensorflow_blas_and_the_environment():
    """In a fresh process: pools sized before TensorFlow starts, then kept (and reported) once it has."""
    script = """
import json, os
from threadpoolctl import threadpool_info
import numpy
import tensorflow as tf
from runner.runtime.placement import configure_threads, enable_gpu_memory_growth
first = configure_threads(1)
in_tf = [tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()]
float(tf.reduce_sum(tf.ones((64, 64)) @ tf.ones((64, 64))))  # the runtime starts here
again = configure_threads(2)
print(json.dumps({"first": first, "in_tf": in_tf, "again": again, "omp": os.environ["OMP_NUM_THREADS"],
                  "blas": sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}),
                  "gpus": enable_gpu_memory_growth(), "visible_gpus": len(tf.config.list_physical_devices("GPU")),
                  "growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")}))
"""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    shown = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    found = json.loads(shown.stdout.strip().splitlines()[-1])
    assert found["first"] == [1, 1] and found["in_tf"] == [1, 1]
    assert found["again"] == [1, 1], "a started runtime keeps its pools, and says so"
    assert found["omp"] == "2"  # processes started later do get the new limit
    assert found["blas"] in ([], [2]), "NumPy's already-loaded BLAS pool follows the latest limit"
    # No GPU on this machine: memory growth is a no-op that reports 0 GPUs (with one, every GPU is set).
    assert found["gpus"] == found["visible_gpus"]
    assert found["growth"] == "true"


def test_a_job_asks_for_at_least_one_thread():
    with pytest.raises(ValueError, match="at least 1 thread"):
        configure_threads(0)


def test_trainer_threads_is_validated():
    assert compose_config("dataset=synthetic").trainer.threads is None
    with pytest.raises(Exception, match="trainer.threads"):
        validate(compose_config("dataset=synthetic", "trainer.threads=0"))


# ---------------------------------------------------------------- launcher presets


@pytest.mark.parametrize(
    "preset, target, module",
    [
        ("joblib", JOBLIB, "hydra_plugins.hydra_joblib_launcher"),
        ("submitit_local", SUBMITIT_LOCAL, "hydra_plugins.hydra_submitit_launcher"),
        (
            "slurm",
            "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
            "hydra_plugins.hydra_submitit_launcher",
        ),
        ("ray_local", RAY, "hydra_plugins.hydra_ray_launcher"),
        ("ray_remote", RAY, "hydra_plugins.hydra_ray_launcher"),
    ],
)
def test_launcher_presets_select_their_launcher(preset, target, module, monkeypatch):
    if not has_plugin(module):
        pytest.skip(f"{module} is not installed (pip install -e '.[cluster]')")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    cfg = compose_config("+experiment=wine_mlp", f"+launcher={preset}", hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"] == target
    assert job_share(launcher, cores=8).cores >= 1
    if preset == "slurm":
        assert cfg.hydra.launcher.partition == "gpu" and cfg.hydra.launcher.cpus_per_task == 4
    if preset == "ray_remote":
        assert cfg.hydra.launcher.ray.init.address == "10.0.0.5:6379"


def test_team_tracking_reads_the_server_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.lab.internal:5000")
    assert compose_config("dataset=synthetic", "tracking=team").tracking.uri == "http://mlflow.lab.internal:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert compose_config("dataset=synthetic", "tracking=team").tracking.uri == "http://127.0.0.1:5000"


# ---------------------------------------------------------------- real sweeps (slow)


def run_sweep(tmp_path: Path, *overrides, env=None, timeout=540) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "runner", "-m", *TINY_RUN, f"hydra.sweep.dir={tmp_path}/multirun", *overrides]
    if not any(o.startswith("tracking") for o in overrides):
        command.append(f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db")
    shown = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-5000:]
    return shown


def child_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    return [run for run in runs if "mlflow.parentRunId" in run.data.tags]


def check_children(client: MlflowClient, expected: int, epochs: int = 2) -> list:
    """Every job of the sweep is a FINISHED child run with its params, full metric histories and model."""
    children = child_runs(client)
    assert len(children) == expected
    assert len({run.data.tags["mlflow.parentRunId"] for run in children}) == 1, "one parent run"
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.params["trainer.epochs"] == str(epochs)
        for name in ("loss", "val_loss"):
            assert [p.step for p in client.get_metric_history(run.info.run_id, name)][:epochs] == [1, 2]
        assert {"test_mae", "test_rmse", "epochs_run"} <= set(run.data.metrics)
        assert client.list_artifacts(run.info.run_id, "model"), "the model was uploaded"
    return children


@pytest.mark.slow
def test_four_joblib_jobs_on_a_fresh_sqlite_store_record_every_run_and_metric(tmp_path):
    rates = ["1e-3", "3e-3", "1e-2", "3e-2"]
    run_sweep(
        tmp_path, f"optimizer.learning_rate={','.join(rates)}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    children = check_children(client, 4)
    assert sorted(float(run.data.params["optimizer.learning_rate"]) for run in children) == sorted(map(float, rates))
    for run in children:  # 4 jobs on this machine's cores: each limited to its share
        assert run.data.tags["runner.parallel_jobs"] == "4"
        assert run.data.tags["runner.threads"] == str(max(1, available_cores() // 4))
    spans = sorted((run.info.start_time, run.info.end_time) for run in children)
    assert any(later[0] < earlier[1] for earlier, later in pairwise(spans)), "jobs ran at the same time"


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    if not has_plugin("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("hydra-submitit-launcher is not installed (pip install -e '.[cluster]')")
    run_sweep(tmp_path, "optimizer.learning_rate=1e-3,1e-2", "+launcher=submitit_local")
    children = check_children(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db"), 2)
    assert {run.data.tags["runner.threads"] for run in children} == {"1"}, "cpus_per_task: 1"
    assert list((tmp_path / "multirun" / ".submitit").rglob("*_log.out")), "submitit kept each job's log"


@pytest.mark.slow
def test_ray_local_runs_a_two_job_sweep(tmp_path):
    if not has_plugin("hydra_plugins.hydra_ray_launcher") or not has_plugin("ray"):
        pytest.skip("hydra-ray-launcher is not installed (pip install -e '.[cluster]')")
    run_sweep(
        tmp_path,
        "optimizer.learning_rate=1e-3,1e-2",
        "+launcher=ray_local",
        f"hydra.launcher.ray.init.num_cpus={max(2, available_cores())}",
        env={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
    )
    children = check_children(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db"), 2)
    assert {run.data.tags["runner.threads"] for run in children} == {"1"}, "remote.num_cpus: 1"


# ---------------------------------------------------------------- team tracking on PostgreSQL (slow)


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or PATH")
    return Path(on_path).parent


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on a free loopback port; yields its URL for database ``mlflow``."""
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed (pip install -e '.[team]')")
    bin_dir = postgres_bin()
    # initdb refuses to run as root: run the server as the postgres account when the tests run as root.
    as_user = []
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres account to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="runner-pg-"))  # not under pytest's root-only tmp folder
    if as_user:
        os.chown(root, account.pw_uid, account.pw_gid)
    data, port = root / "data", free_port()

    def pg(*command, **options):
        return subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120, check=False, **options)

    try:
        made = pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        assert made.returncode == 0, made.stderr
        started = pg(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        )
        assert started.returncode == 0, started.stderr + (root / "server.log").read_text()
        created = pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        assert created.returncode == 0, created.stderr
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_team_server_on_postgresql_records_a_sweep(tmp_path, postgres, mlflow_server):
    import psycopg

    artifacts = tmp_path / "artifacts"
    uri = mlflow_server(postgres, artifacts)
    run_sweep(tmp_path, "optimizer.learning_rate=1e-3,1e-2", "tracking=team", env={"MLFLOW_TRACKING_URI": uri})
    client = MlflowClient(tracking_uri=uri)
    children = check_children(client, 2)
    assert {run.data.tags["mlflow.parentRunId"] for run in children} <= {
        run.info.run_id for run in client.search_runs([children[0].info.experiment_id])
    }
    saved = list(artifacts.rglob("model.keras"))
    assert len([path for path in saved if path.parent.name == "model"]) == 2, (
        "artifacts went to the server's destination"
    )
    assert len(saved) == 4, "each child's MLflow Model (data/model.keras) went there too"
    with psycopg.connect(postgres) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == 3, "the parent and both children live in PostgreSQL"
        cursor.execute("SELECT count(DISTINCT run_uuid) FROM metrics WHERE key = 'val_loss'")
        assert cursor.fetchone()[0] == 2
