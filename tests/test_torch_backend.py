"""The runner on Keras's PyTorch backend, chosen with ``trainer.backend=torch``: a run with every diagnostic,
an interrupted run resumed, a parallel sweep and the gradients of the diagnostics, each in its own process
(Keras picks its backend once per process); and the key itself: set before Keras loads, refused when another
backend is already loaded. Without torch installed (it is not in the ``test`` extra, see pyproject.toml) the
PyTorch tests skip."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import fields

import keras
import pytest
from conftest import REPO
from mlflow import MlflowClient
from test_cluster import check_children, run_sweep
from test_reliability import (
    checkpointed_epoch,
    final_metrics,
    history,
    interrupt_after_epoch,
    only_run,
    runner_process,
    store_uri,
)

from runner.config.schema import TrainerConfig
from runner.errors import ConfigError
from runner.runtime import backend_choice
from runner.runtime.resources import MAX_INTER_OP_THREADS, available_cores

pytestmark = pytest.mark.backend

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="torch is not installed (pip install torch==2.13.0, the CPU wheel; see the torch extra in pyproject.toml)",
)
TORCH = "trainer.backend=torch"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}

# Each gradient function of the diagnostics on a linear network whose gradients are known in closed form:
# x (4x3) -> hidden = x W1 (L2 0.1 on W1) -> p = hidden W2; loss = mean((p - y)^2) + 0.1 sum(W1^2).
# Called inside torch.no_grad(), as from Keras's evaluation, which the diagnostics must not depend on.
GRADIENT_SCRIPT = """
import json
import numpy as np
from runner.runtime.backend_choice import choose_backend
choose_backend("torch")
import keras, torch
from runner.diagnostics import gradients as g
keras.utils.set_random_seed(0)
inputs = keras.Input((3,))
hidden = keras.layers.Dense(2, use_bias=False, kernel_regularizer=keras.regularizers.L2(0.1))(inputs)
outputs = keras.layers.Dense(1, use_bias=False)(hidden)
model = keras.Model(inputs, outputs)
model.compile(loss="mse", optimizer="sgd")
w1, w2 = model.get_weights()
rng = np.random.default_rng(0)
x, y = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 1)).astype("float32")
residual = 2 * (x @ w1 @ w2 - y) / len(x)
expected = {"loss": float(np.mean((x @ w1 @ w2 - y) ** 2) + 0.1 * np.sum(w1**2)),
            "w1": x.T @ residual @ w2.T + 0.2 * w1, "w2": (x @ w1).T @ residual,
            "input": np.tile((w1 @ w2)[:, 0], (len(x), 1)), "hidden": x @ w1, "hidden_grad": np.tile(w2[:, 0], (len(x), 1))}
score = lambda out: keras.ops.sum(out, axis=-1)
tap = keras.Model(inputs, [hidden, outputs])
with torch.no_grad():
    loss, (g1, g2) = g.loss_and_gradients(model, x, y)
    penalty, (r1, r2) = g.regularization_loss_and_gradients(model)
    inputs_grad = g.input_gradients(model, x, score)
    compiled_grad = g.input_gradient_function(model, score)(x)
    activations, activation_grad = g.activation_gradients(tap, x, score)
    forward = g.forward_loss(model, keras.losses.MeanSquaredError())(x, y)
with g.float64_enabled():
    inside = keras.ops.convert_to_numpy(keras.ops.mean(np.array([1.0, 2.0**-30])))
after = keras.ops.convert_to_numpy(keras.ops.mean(np.array([1.0, 2.0**-30])))
error = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
print(json.dumps({
    "backend": keras.backend.backend(),
    "loss": error(loss, expected["loss"]), "w1": error(g1, expected["w1"]), "w2": error(g2, expected["w2"]),
    "penalty": error(penalty, 0.1 * np.sum(w1**2)), "penalty_w1": error(r1, 0.2 * w1), "penalty_w2": error(r2, 0 * w2),
    "input": error(inputs_grad, expected["input"]), "compiled_input": error(compiled_grad, expected["input"]),
    "hidden": error(activations, expected["hidden"]), "hidden_grad": error(activation_grad, expected["hidden_grad"]),
    "forward": error(forward, expected["loss"] - 0.1 * np.sum(w1**2)),
    "float64_inside": bool(float(inside) == np.mean([1.0, 2.0**-30]) != 0.5), "float32_after": float(after) == 0.5,
}))
"""


def other_backend() -> str:
    return "jax" if keras.backend.backend() != "jax" else "tensorflow"


def test_the_keys_choices_are_the_backends_the_runner_knows_how_to_install():
    (spec,) = [spec for spec in fields(TrainerConfig) if spec.name == "backend"]
    assert spec.default is None
    assert spec.metadata["choices"] == (None, *backend_choice.PACKAGES)


def test_the_key_sets_the_backend_before_keras_loads_and_keeps_an_explicit_environment():
    script = (
        "import os, sys\n"
        "from runner.runtime.backend_choice import choose_backend\n"
        "print(choose_backend(sys.argv[1] if sys.argv[1] != 'None' else None), os.environ.get('KERAS_BACKEND'), "
        "os.environ.get('OMP_WAIT_POLICY'), 'keras' in sys.modules)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "OMP_WAIT_POLICY")}

    def shown(requested: str, **env) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script, requested],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**clean, **env},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split()

    assert shown("jax") == ["jax", "jax", "None", "False"]
    assert shown("None") == ["tensorflow", "None", "None", "False"], "null: Keras's default"
    assert shown("None", KERAS_BACKEND="jax") == ["jax", "jax", "None", "False"], "null: the environment's"
    if importlib.util.find_spec("torch") is not None:
        assert shown("torch") == ["torch", "torch", "PASSIVE", "False"], "no spinning OpenMP threads"
        assert shown("torch", OMP_WAIT_POLICY="ACTIVE")[2] == "ACTIVE", "the user's setting wins"


def test_another_backend_than_the_loaded_keras_is_refused_before_anything_runs(tmp_path):
    from test_end_to_end import compose_config

    from runner.run.job import run_job

    running = keras.backend.backend()
    assert backend_choice.choose_backend(running) == running
    assert backend_choice.choose_backend(None) == running
    with pytest.raises(
        ConfigError, match=f"trainer.backend={other_backend()}, but Keras is already loaded .* {running}"
    ):
        backend_choice.choose_backend(other_backend())
    cfg = compose_config(
        "dataset=synthetic", f"trainer.backend={other_backend()}", f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db"
    )
    with pytest.raises(ConfigError, match="fresh process"):
        run_job(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "store").exists(), "refused before any record"


def test_a_backend_whose_package_is_missing_is_refused_with_its_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "keras")  # as before Keras loads; monkeypatch puts it back
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ConfigError, match=r"trainer.backend=torch needs torch, which is not installed: pip install"):
        backend_choice.choose_backend("torch")
    assert os.environ["KERAS_BACKEND"] == "tensorflow", "nothing changed"


@needs_torch
def test_the_diagnostics_gradients_on_torch_match_their_closed_form():
    done = subprocess.run(
        [sys.executable, "-c", GRADIENT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, **QUIET},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found.pop("backend") == "torch"
    # Keras on PyTorch computes a float64 mean in float32 outside float64_enabled (its mean is 0.5 there).
    assert found.pop("float64_inside") and found.pop("float32_after")
    assert all(error < 1e-5 for error in found.values()), found


@needs_torch
def test_a_run_with_every_diagnostic_on_torch_trains_evaluates_and_records_its_backend(tmp_path):
    command = [sys.executable, "-m", "runner", "dataset=synthetic", "dataset.task=binary", "dataset.n_samples=300"]
    command += ["trainer.epochs=3", "diagnostics=full", TORCH, f"tracking.uri={store_uri(tmp_path)}"]
    command += [f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, **QUIET}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished 3 epochs" in done.stdout

    run = only_run(MlflowClient(tracking_uri=store_uri(tmp_path)))
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert params["trainer.backend"] == "torch" and tags["runner.keras_backend"] == "torch"
    assert tags["runner.version.torch"] == importlib.metadata.version("torch")
    assert {"test_accuracy", "test_roc_auc", "val_loss", "epochs_run"} <= set(metrics)
    requirements = (tmp_path / "store").rglob("requirements.txt")
    assert any(f"torch=={tags['runner.version.torch']}" in path.read_text() for path in requirements)

    report = json.loads((tmp_path / "run" / "diagnostics" / "report.json").read_text())
    verdicts = {check["check"]: check for check in report["checks"]}
    gradient = verdicts["preflight.gradient_check"]
    assert gradient["verdict"] == "PASS" and gradient["evidence"]["float64"], "float64 gradients on torch"
    assert verdicts["monitor.gradient_norms"]["verdict"] == "PASS"
    assert not [name for name, check in verdicts.items() if check["verdict"] not in ("PASS", "WARN", "SKIP")]
    skipped = " ".join(check["message"] for check in verdicts.values() if check["verdict"] == "SKIP")
    assert "torch" not in skipped and "backend" not in skipped, skipped


@needs_torch
def test_sigterm_then_resume_on_torch_ends_as_the_uninterrupted_run(tmp_path):
    # Shuffled rows and dropout: a resumed epoch that saw another order or other masks would change the result.
    # PyTorch's loader draws each epoch's order from torch's global generator, which the checkpoint keeps.
    longer = [TORCH, "dataset.n_samples=1000", "trainer.epochs=8"]
    reference = runner_process(tmp_path, "reference", *longer, "tracking.experiment=reference")
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]

    interrupted = runner_process(tmp_path, "interrupted", *longer)
    out, err = interrupt_after_epoch(interrupted, tmp_path / "interrupted", 2, signal.SIGTERM)
    assert interrupted.returncode == 143, err[-3000:]
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    run = only_run(client)
    kept = checkpointed_epoch(tmp_path / "interrupted")
    assert run.info.status == "KILLED" and 2 <= kept < 8

    resumed = runner_process(tmp_path, "resumed", *longer, f"trainer.resume={run.info.run_id}")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resumed after epoch {kept}" in out + err
    (expected,) = client.search_runs([client.get_experiment_by_name("reference").experiment_id])
    assert client.get_run(run.info.run_id).data.tags["runner.keras_backend"] == "torch"
    assert history(client, run.info.run_id) == history(client, expected.info.run_id)
    assert final_metrics(client, run.info.run_id) == final_metrics(client, expected.info.run_id)

    # The interrupted folder keeps its checkpoint; on the session's backend it is refused, naming the backends.
    again = runner_process(
        tmp_path, "again", *longer[1:], "trainer.backend=tensorflow", f"trainer.resume={tmp_path / 'interrupted'}"
    )
    out, err = again.communicate(timeout=600)
    assert again.returncode == 1, err[-3000:]
    assert "Keras backend: torch in the checkpoint, tensorflow now" in err
    assert "trainer.backend: torch in the checkpoint, tensorflow now" in err


@needs_torch
def test_a_joblib_sweep_on_torch_records_the_backend_and_each_jobs_threads(tmp_path):
    run_sweep(tmp_path, "optimizer.learning_rate=1e-3,1e-2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", TORCH)
    children = check_children(MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db"), 2)
    threads = max(1, available_cores() // 2)
    for run in children:
        tags = run.data.tags
        assert run.data.params["trainer.backend"] == "torch" and tags["runner.keras_backend"] == "torch"
        assert tags["runner.threads"] == str(threads)
        assert tags["runner.inter_op_threads"] == str(min(threads, MAX_INTER_OP_THREADS))
