"""The runner on Keras's JAX backend: the settings JAX takes only when it starts, float64 gradient checks,
``trainer.backend=jax``, and a representative part of the suite run with KERAS_BACKEND=jax (the whole suite passes on JAX too:
``KERAS_BACKEND=jax python -m pytest -n 2``; CI runs it on TensorFlow plus this part on JAX)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import REPO
from mlflow import MlflowClient
from test_cluster import check_children, run_sweep

from runner.diagnostics.gradients import float64_enabled
from runner.runtime.resources import available_cores

pytestmark = pytest.mark.backend

ON_JAX = keras.backend.backend() == "jax"
needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install -e '.[jax]')"
)
only_on_jax = pytest.mark.skipif(
    not ON_JAX, reason="needs KERAS_BACKEND=jax; test_a_representative_subset_passes_on_jax runs it so"
)

# Training, seeding, checkpoints and saving; the gradient paths of the diagnostics; a parallel sweep.
SUBSET = [
    "tests/test_end_to_end.py::test_tiny_synthetic_run_leaves_the_full_record",
    "tests/test_end_to_end.py::test_same_seed_gives_identical_metrics_and_another_seed_does_not",
    "tests/test_end_to_end.py::test_best_epoch_weights_are_used_for_the_final_evaluation",
    "tests/test_reliability.py::test_resume_refuses_another_config_then_reproduces_the_uninterrupted_run",
    "tests/test_diag_preflight.py::test_healthy_binary_mlp_has_no_fail_and_keeps_its_weights",
    "tests/test_diag_preflight.py::test_a_wrong_custom_gradient_fails_the_gradient_check",
    "tests/test_diag_monitors.py::test_subclassed_model_skips_activation_checks",
    "tests/test_diag_integration.py::test_full_adds_monitor_and_analysis_results_and_plots",
    "tests/test_jax_backend.py::test_float64_enabled_computes_in_float64_and_leaves_float32_after",
    "tests/test_jax_backend.py::test_a_joblib_sweep_on_jax_records_the_backend_its_versions_and_threads",
]

START_SCRIPT = """
import collections, json, os
from runner.runtime.placement import configure_job
from runner.runtime.resources import JobShare
first = configure_job(None, JobShare(2, 1), deterministic=True)  # 2 jobs on this machine, 1 core each
import jax, jax.numpy as jnp
float((jnp.ones((64, 64)) @ jnp.ones((64, 64))).sum())  # JAX starts here
again = configure_job(2, JobShare(1, 2))
tasks = "/proc/self/task"
names = [open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks)] if os.path.isdir(tasks) else None
print(json.dumps({"first": first.tags(), "again": again.tags(),
                  "xla_cpu_threads": None if names is None else sum(n.endswith("XLAEigen") for n in names),
                  "gpus": sum(d.platform == "gpu" for d in jax.devices()),
                  "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
                  "xla_flags": os.environ.get("XLA_FLAGS", "")}))
"""


def jax_env(**extra) -> dict[str, str]:
    unset = ("NPROC", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE")
    return {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "KERAS_BACKEND": "jax",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }


@needs_jax
def test_jax_gets_threads_gpu_sharing_and_determinism_before_it_starts_and_reports_them_after():
    shown = subprocess.run(
        [sys.executable, "-c", START_SCRIPT], capture_output=True, text=True, timeout=180, cwd=REPO, env=jax_env()
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    found = json.loads(shown.stdout.strip().splitlines()[-1])
    assert found["first"] == {
        "runner.threads": "1",
        "runner.inter_op_threads": "0",
        "runner.parallel_jobs": "2",
        "runner.gpus": str(found["gpus"]),
    }
    if found["xla_cpu_threads"] is not None:  # Linux: XLA's CPU pool really has the size reported
        assert found["xla_cpu_threads"] == 1
    assert found["again"]["runner.threads"] == "1", "a started JAX keeps its pool, and says so"
    assert found["preallocate"] == "false", "parallel jobs must not each take 75% of a GPU"
    assert "--xla_gpu_deterministic_ops=true" in found["xla_flags"].split()


def test_float64_enabled_computes_in_float64_and_leaves_float32_after():
    probe = np.array([1.0, 2.0**-30])  # its mean is 0.5 in float32, slightly more in float64
    with float64_enabled():
        inside = keras.ops.convert_to_numpy(keras.ops.mean(probe))
    after = keras.ops.convert_to_numpy(keras.ops.mean(probe))
    assert inside.dtype == np.float64 and float(inside) == np.mean(probe) != 0.5
    if ON_JAX:  # the switch ends with the block: training elsewhere stays float32, as JAX's default
        assert after.dtype == np.float32


@only_on_jax
def test_a_joblib_sweep_on_jax_records_the_backend_its_versions_and_threads(tmp_path):
    import jax
    import jaxlib

    run_sweep(tmp_path, "optimizer.learning_rate=1e-3,1e-2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    children = check_children(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db"), 2)
    for run in children:
        tags = run.data.tags
        assert tags["runner.keras_backend"] == "jax"
        assert tags["runner.version.jax"] == jax.__version__ and tags["runner.version.jaxlib"] == jaxlib.__version__
        assert tags["runner.threads"] == str(max(1, available_cores() // 2))
        assert tags["runner.inter_op_threads"] == "0"


@needs_jax
def test_trainer_backend_jax_in_the_config_runs_the_job_on_jax(tmp_path):
    store = f"sqlite:///{tmp_path}/store/mlflow.db"
    command = [sys.executable, "-m", "runner", "dataset=synthetic", "dataset.task=regression", "dataset.n_samples=200"]
    command += ["trainer.epochs=1", "evaluation.plots=false", "tracking.log_model=false", f"tracking.uri={store}"]
    env = {k: v for k, v in jax_env().items() if k not in ("KERAS_BACKEND", "JAX_COMPILATION_CACHE_DIR")}
    env["RUNNER_CACHE_DIR"] = str(tmp_path / "cache")  # the key alone chooses JAX; its programs are kept here
    shown = subprocess.run(
        [*command, "trainer.backend=jax"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert run.data.params["trainer.backend"] == "jax" and run.data.tags["runner.keras_backend"] == "jax"
    kept = list((tmp_path / "cache" / "jax").iterdir())  # trainer.compile_cache=true: for the next run
    assert len(kept) >= 3, kept  # the training step, the evaluation and prediction at least


@needs_jax
@pytest.mark.skipif(ON_JAX, reason="this session already runs every test on JAX")
def test_a_representative_subset_passes_on_jax():
    shown = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=jax_env(),
    )
    summary = shown.stdout.strip().splitlines()[-1] if shown.stdout.strip() else ""
    assert shown.returncode == 0, shown.stdout[-5000:] + shown.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= len(SUBSET), summary
    assert "skipped" not in summary and "deselected" not in summary, summary
