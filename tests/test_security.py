"""Security guards: config-selected Python targets, Keras safe mode, secrets kept out of MLflow, a local UI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf

from runner.cli import CONF_DIR, help_text
from runner.runtime.console import ui_command
from runner.runtime.security import (
    REDACTED,
    TRUSTED_TARGETS_ENV,
    TargetNotAllowed,
    check_targets,
    is_secret_name,
    redact_mapping,
    redact_text,
    target_problems,
)
from runner.tracking import RunRecord, config_params, connect

REPO = Path(__file__).resolve().parents[1]
SECRET = "abc123"


def compose_config(*overrides, hydra_config=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)


def run_cli(cwd: Path, *args, env=None):
    """The command line in a fresh process; prints whether TensorFlow was imported after it returns."""
    code = (
        "import sys; from runner.cli import main; sys.argv = ['runner', *sys.argv[1:]]\n"
        "try:\n    main()\nfinally:\n"
        "    print('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'TENSORFLOW_NOT_IMPORTED')"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


# ---------------------------------------------------------------- `_target_` allow-list


def open_callback(path: Path) -> list[str]:
    """A Hydra callback whose instantiation creates ``path``: builtins.open is not on Hydra's own blocklist."""
    return [
        "+hydra.callbacks.probe._target_=builtins.open",
        f"+hydra.callbacks.probe.file={path}",
        "+hydra.callbacks.probe.mode=w",
    ]


@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_callback_target_outside_our_packages_is_refused_before_anything_runs(tmp_path, mode):
    created = tmp_path / "created-by-callback"
    flags = ["-m"] if mode == "multirun" else []
    result = run_cli(tmp_path, *flags, "+experiment=wine_mlp", *open_callback(created))
    assert result.returncode == 1
    assert "hydra.callbacks.probe._target_='builtins.open'" in result.stderr
    assert "refused to instantiate" in result.stderr and TRUSTED_TARGETS_ENV in result.stderr
    assert not created.exists()
    assert not (tmp_path / "outputs").exists()  # no run folder, no MLflow store
    assert "TENSORFLOW_NOT_IMPORTED" in result.stdout


def test_the_allow_list_is_what_stops_the_callback(tmp_path):
    """Trusting the prefix lets Hydra instantiate it: without the guard the file would be written."""
    created = tmp_path / "created-by-callback"
    # model.dropout=1.5 makes the job itself stop at validation, after Hydra instantiated the callbacks.
    result = run_cli(
        tmp_path,
        "+experiment=wine_mlp",
        *open_callback(created),
        "model.dropout=1.5",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={TRUSTED_TARGETS_ENV: "builtins.open"},
    )
    assert created.exists()
    assert "model.dropout=1.5 is out of range" in result.stderr


def test_target_in_a_user_config_file_is_refused(tmp_path):
    touched = tmp_path / "touched"
    (tmp_path / "extra" / "experiment").mkdir(parents=True)
    (tmp_path / "extra" / "experiment" / "evil.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /experiment/wine_mlp\n  - _self_\n"
        f"hydra:\n  callbacks:\n    evil:\n      _target_: subprocess.call\n      args: [touch, {touched}]\n"
    )
    result = run_cli(tmp_path, "--config-dir", str(tmp_path / "extra"), "+experiment=evil")
    assert result.returncode == 1
    assert "hydra.callbacks.evil._target_='subprocess.call'" in result.stderr
    assert not touched.exists() and not (tmp_path / "outputs").exists()


def test_os_system_override_and_env_interpolated_targets_are_refused(tmp_path):
    result = run_cli(
        tmp_path,
        "+experiment=wine_mlp",
        "+hydra.callbacks.evil._target_=os.system",
        "+hydra.callbacks.evil.command=true",
    )
    assert result.returncode == 1 and "'os.system'" in result.stderr
    result = run_cli(
        tmp_path,
        "+experiment=wine_mlp",
        "+hydra.callbacks.evil._target_=${oc.env:EVIL_TARGET}",
        env={"EVIL_TARGET": "shutil.rmtree"},
    )
    assert result.returncode == 1 and "'shutil.rmtree'" in result.stderr  # checked as resolved


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["+sweep=smoke"],
        *[[f"+launcher={p.stem}", "+sweep=smoke"] for p in sorted((CONF_DIR / "launcher").glob("*.yaml"))],
    ],
)
def test_every_shipped_target_is_allowed(extra):
    config = compose_config("+experiment=wine_mlp", *extra, hydra_config=True)
    assert target_problems(config) == []
    assert config.hydra.callbacks.sweep_record._target_ == "runner.sweep.record.SweepRecord"  # one was checked


def test_targets_are_found_at_any_depth_and_in_logging_config():
    config = OmegaConf.create(
        {
            "model": {"kernel_initializer_args": {"_target_": "os.getcwd"}},
            "steps": [{"_target_": "runner.sweep.record.SweepRecord"}, {"inner": {"_target_": "builtins.eval"}}],
            "hydra": {
                "job_logging": {"handlers": {"h": {"class": "logging.StreamHandler"}, "x": {"()": "subprocess.Popen"}}}
            },
        }
    )
    assert target_problems(config) == [
        "model.kernel_initializer_args._target_='os.getcwd'",
        "steps[1].inner._target_='builtins.eval'",
        "hydra.job_logging.handlers.x.()='subprocess.Popen'",
    ]
    with pytest.raises(TargetNotAllowed, match="os.getcwd"):
        check_targets(config)


# ---------------------------------------------------------------- Keras safe mode


def lambda_model():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0 + 1.0)(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_carrying_a_python_lambda_is_refused_unless_trusted(tmp_path, suffix):
    import numpy as np

    from runner.run.model_io import UntrustedModelError, load_model

    path = tmp_path / f"foreign{suffix}"
    lambda_model().save(path)
    with pytest.raises(UntrustedModelError) as refused:
        load_model(path)
    message = str(refused.value)
    assert str(path) in message and "Lambda" in message and "trusted=True" in message
    model = load_model(path, trusted=True)
    np.testing.assert_allclose(model.predict(np.ones((2, 3), "float32"), verbose=0), np.full((2, 3), 3.0))


def test_a_plain_model_loads_in_safe_mode(tmp_path):
    keras = pytest.importorskip("keras")
    from runner.run.model_io import load_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "plain.keras")
    assert load_model(tmp_path / "plain.keras").output_shape == (None, 2)


def test_no_module_loads_models_around_the_safe_loader():
    """Models are loaded through runner.run.model_io.load_model; weights files (load_weights) hold no code."""
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("runner", "models", "datasets", "bench")
        for path in (REPO / folder).rglob("*.py")
        if path.name != "model_io.py" and ("load_model(" in path.read_text() or "safe_mode=False" in path.read_text())
    ]
    assert offenders == []


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "name, secret",
    [
        ("api_key", True),
        ("MLFLOW_TRACKING_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("dbPassword", True),
        ("dataset.api_token", True),
        ("monkey", False),
        ("keyboard", False),
        ("kernel_initializer_args", False),
        ("keys", False),
        ("trainer.checkpoint.monitor", False),
    ],
)
def test_secret_names_are_whole_words(name, secret):
    assert is_secret_name(name) is secret


def test_redaction_of_urls_assignments_and_environment(monkeypatch):
    monkeypatch.setenv("LAB_SERVICE_TOKEN", "env-secret-value-42")
    text = (
        "uri=https://alice:abc123@mlflow.lab:5000 +dataset.api_token=abc123 monkey=ok\n"
        "  password: abc123\nconfig={'api_key': 'abc123'} \"secret\": \"abc123\" token in env-secret-value-42"
    )
    redacted = redact_text(text)
    assert SECRET not in redacted and "env-secret-value-42" not in redacted
    assert "https://alice:***@mlflow.lab:5000" in redacted and "+dataset.api_token=***" in redacted
    assert "monkey=ok" in redacted and "password: ***" in redacted
    assert redact_mapping({"x.password": SECRET, "x.token": "None", "uri": "postgresql://u:abc123@db/x"}) == {
        "x.password": REDACTED,
        "x.token": "None",
        "uri": "postgresql://u:***@db/x",
    }


def test_no_shipped_setting_is_mistaken_for_a_secret():
    """Redaction must never hide an ordinary setting: no key of any preset's params looks like a secret."""
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        resolved = OmegaConf.to_container(compose_config(f"+experiment={path.stem}"), resolve=True)
        assert [key for key in config_params(resolved) if is_secret_name(key)] == [], path.stem


def test_run_record_redacts_params_tags_text_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_SERVICE_TOKEN", "env-secret-value-42")
    tracker = connect(f"sqlite:///{tmp_path}/mlflow.db", "secrets")
    record = RunRecord(tracker, "r", {"runner.note": "token=abc123", "mlflow.note.content": "env-secret-value-42"})
    record.log_params(
        {"dataset.api_token": SECRET, "trial.storage": "postgresql://optuna:abc123@db/optuna", "trainer.epochs": "3"}
    )
    record.log_text("dataset:\n  api_token: abc123\n", "config/config.yaml")
    log = tmp_path / "runner.log"
    log.write_text("connecting to https://bob:abc123@host\n")
    record.log_artifact(log, "logs")
    record.fail(RuntimeError("the server said: password=abc123"))

    run = tracker.client.get_run(record.run_id)
    assert run.data.params["dataset.api_token"] == REDACTED  # the key stays: users see it was set
    assert run.data.params["trial.storage"] == "postgresql://optuna:***@db/optuna"
    assert run.data.params["trainer.epochs"] == "3"
    assert_nowhere(tracker.client, record.run_id, tmp_path / "download", SECRET, "env-secret-value-42")


def assert_nowhere(client: MlflowClient, run_id: str, folder: Path, *secrets: str) -> None:
    """None of ``secrets`` in any param, tag or text artifact of the run."""
    run = client.get_run(run_id)
    fields = {**run.data.params, **run.data.tags}
    local = Path(client.download_artifacts(run_id, "", str(folder)))
    texts = {
        str(p.relative_to(local)): p.read_text(errors="replace")
        for p in local.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".txt", ".json", ".csv", ".log", ".html")
    }
    assert texts, "the run has text artifacts to check"
    for secret in secrets:
        assert [key for key, value in fields.items() if secret in value] == [], secret
        assert [name for name, text in texts.items() if secret in text] == [], secret


def test_secrets_in_a_real_run_reach_no_param_tag_or_artifact(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from runner.run.job import run_job

    monkeypatch.setenv("LAB_SERVICE_TOKEN", "env-secret-value-42")
    store = f"sqlite:///{tmp_path}/store/mlflow.db"
    healthy = compose_config(
        "dataset=synthetic",
        "dataset.n_samples=200",
        "trainer.epochs=2",
        "model.hidden_units=[4]",
        "description=${oc.env:LAB_SERVICE_TOKEN}",
        f"trial.storage=postgresql://optuna:{SECRET}@db.example/optuna",
        f"tracking.uri={store}",
    )
    result = run_job(healthy, tmp_path / "healthy", overrides=[f"trial.storage=postgresql://optuna:{SECRET}@db/x"])
    client = MlflowClient(tracking_uri=store)
    assert client.get_run(result.run_id).data.params["trial.storage"] == "postgresql://optuna:***@db.example/optuna"
    assert_nowhere(client, result.run_id, tmp_path / "healthy-download", SECRET, "env-secret-value-42")

    # A secret-named key in a free-form dict: Keras rejects the argument, the run fails, the value stays hidden.
    failing = compose_config(
        "dataset=synthetic",
        "dataset.n_samples=200",
        "trainer.epochs=2",
        f"+model.kernel_initializer_args.api_token={SECRET}",
        f"tracking.uri={store}",
    )
    with pytest.raises((TypeError, ValueError)):  # Keras refuses the unknown initializer argument
        run_job(failing, tmp_path / "failing", overrides=[f"+model.kernel_initializer_args.api_token={SECRET}"])
    (failed,) = client.search_runs([result.experiment_id], "attributes.status = 'FAILED'")
    assert failed.data.params["model.kernel_initializer_args.api_token"] == REDACTED
    assert "runner.error" in failed.data.tags
    assert_nowhere(client, failed.info.run_id, tmp_path / "failing-download", SECRET)


# ---------------------------------------------------------------- the UI binds to localhost


def test_printed_ui_commands_bind_to_localhost():
    assert "mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///outputs/mlflow.db" in ui_command(
        "sqlite:///outputs/mlflow.db"
    )
    assert "mlflow ui --host 127.0.0.1 " in help_text()
    assert ui_command("https://alice:abc123@mlflow.lab") == "open https://alice:***@mlflow.lab in a browser"
