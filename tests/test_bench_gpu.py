"""bench/gpu.py, the script for a lease of a GPU machine: its table, its plain-JAX floors and its refusal to run
without a GPU. Its measurements need the GPU; these check what they are made of, on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import gpu  # noqa: E402


def summary(epoch, metric=0.97):
    return {"wall": 20.0, "epoch": epoch, "samples_per_second": 55_000 / epoch, "first_step": 6.0, "metric": metric}


def sweep_outcome(label, seconds, processes):
    return {"label": label, "seconds": seconds, "finished": 4, "trials": 4, "cpu_s": 30.0,
            "gpu_processes": processes, "gpu_memory_mib": 900, "trial_gpus": ["1"] * 4}  # fmt: skip


REPORT = {
    "devices": {"platform": "gpu", "kinds": ["NVIDIA H200"], "jax": "0.11.2", "keras": "3.15.1"},
    "mnist": {"gpu": summary(0.5), "cpu": summary(2.0), f"gpu-batch{gpu.LARGE_BATCH}": summary(0.05, 0.9)},
    "limit": {"epoch_flops": 1.926e11, "compiled_30x784x512": 4e12, "eager_30x784x512": 1e11, "large_size": 4096,
              "compiled_large": 4e14, "step_floor_batch30": 0.1, f"step_floor_batch{gpu.LARGE_BATCH}": 0.01},
    "diagnostics": {"full_wall": 40.0, "worst": "WARN", "verdicts": {"PASS": 30, "WARN": 1}, "raised": [],
                    "slowest": [[3.0, "analysis.attributions"]],
                    "overhead": {"none": [10.0, 8.0], "quick": [10.5, 8.0], "monitors": [11.0, 8.5]}},
    "sweep": [sweep_outcome("sequential (1 job)", 40.0, 1), sweep_outcome("2 jobs, threads limited", 25.0, 2)],
    "skipped": {"search": "budget: 470 s spent, about 110 s more"},
    "errors": {},
}  # fmt: skip


def test_table_compares_the_gpu_with_the_cpu_and_with_its_limits():
    rows = gpu.table(REPORT, epochs=3).splitlines()
    assert any("mnist_dropout, 3 ep.: gpu" in r and "4.0x the CPU's epoch speed" in r for r in rows)
    flops_row = next(r for r in rows if "30x784x512 products in one compiled loop" in r)
    assert "4.000 TFLOP/s -> 48.15 ms/epoch" in flops_row and "is 10x this" in flops_row  # 0.5 s / 48 ms
    assert any("batch 30, one program: 0.100 s" in r and "5.0x this" in r for r in rows)
    assert any("quick at 3 epochs: +0.5 s on a 10.0 s job" in r and "+5%" in r for r in rows)
    assert any("at most 2 processes on the GPU" in r and "1.60x vs 1 job" in r for r in rows)
    assert any(r.startswith("| search ") and "skipped" in r for r in rows)


def test_plain_jax_floors_are_measured_times_and_rates():
    pytest.importorskip("jax")
    assert 0 < gpu.compiled_epoch_seconds(batch=100, rows=1000) < 60
    assert gpu.compiled_matmul_rate(8, 16, 8, steps=10) > 0


def test_refuses_to_run_without_a_gpu_unless_asked(tmp_path):
    pytest.importorskip("jax")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, str(REPO / "bench" / "gpu.py"), "--only", "devices", "--json", str(tmp_path / "g.json")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert json.loads((tmp_path / "g.json").read_text())["errors"]["devices"] == "no GPU: JAX runs on cpu"
    allowed = subprocess.run([*command, "--allow-cpu"], cwd=REPO, env=env, capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr[-2000:]


def test_kit_reads_the_machines_packages_from_a_list_or_pip_output():
    from bench import gpu_kit

    listed = "absl-py, jax, Typing_Extensions,\nscikit-learn"
    pip_list = "Package    Version\n---------- -------\njax        0.11.2\nml_dtypes  0.7.0\n"
    frozen = "jax==0.11.2\nnumpy @ file:///tmp/numpy.whl\n"
    assert gpu_kit.installed_names(listed) == {"absl-py", "jax", "typing-extensions", "scikit-learn"}
    assert gpu_kit.installed_names(pip_list) == {"jax", "ml-dtypes"}
    assert gpu_kit.installed_names(frozen) == {"jax", "numpy"}


def test_kit_carries_the_projects_dependencies_but_not_tensorflow():
    from bench import gpu_kit

    wanted = [gpu_kit.normalised(r.split("=")[0].split(">")[0].split(";")[0]) for r in gpu_kit.requirements()]
    assert {"keras", "hydra-core", "mlflow", "optuna", "nvidia-ml-py"} <= set(wanted)
    assert not any(name.startswith("tensorflow") for name in wanted)
