"""model=custom (a user's builder function) and model=saved (a .keras file): trust, import, shape checks, runs."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from runner.cli import CONF_DIR  # importing the CLI registers the schemas the YAML files extend
from runner.config.spec import prepare
from runner.errors import ConfigError
from runner.runtime.security import TargetNotAllowed, builder_refusal, check_targets

keras = pytest.importorskip("keras")

from runner.run import training, user_models  # noqa: E402
from runner.run.job import run_job  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "labnets_for_tests"  # unlikely to collide with anything installed
BUILDER = f"{PACKAGE}.nets:build"
NETS = """
import keras


def build(input_shape, output_units, output_activation, width=8):
    inputs = keras.Input(shape=input_shape)
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(output_units, activation=output_activation)(hidden))


def fixed_head(input_shape, output_units, output_activation):
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, keras.layers.Dense(5, activation=output_activation)(inputs))


def not_a_model(input_shape, output_units, output_activation):
    return {"layers": [input_shape, output_units]}


class Subclassed(keras.Model):
    def __init__(self, units, activation):
        super().__init__()
        self.head = keras.layers.Dense(units, activation=activation)

    def call(self, inputs):
        return self.head(inputs)


def subclassed(input_shape, output_units, output_activation):
    return Subclassed(output_units, output_activation)
"""
REFUSAL = (
    f"refused to import model.builder='{BUILDER}': user code is trusted only when the config names its package "
    f"in model.trusted_modules or $RUNNER_TRUSTED_TARGETS holds a prefix of it, and neither names {PACKAGE}. If you "
    f"trust it, add model.trusted_modules=[{PACKAGE}] (trusted_modules: [{PACKAGE}] in the YAML), or export "
    f"RUNNER_TRUSTED_TARGETS={PACKAGE}. Nothing was imported."
)
TINY = (
    "dataset=synthetic",
    "dataset.task=binary",
    "dataset.n_samples=200",
    "dataset.n_features=6",
    "trainer.epochs=1",
    "evaluation.plots=false",
)
BINARY = SimpleNamespace(name="synthetic", task="binary", n_classes=None, input_shape=(6,))
MULTICLASS = SimpleNamespace(name="synthetic", task="multiclass", n_classes=3, input_shape=(6,))


@pytest.fixture
def user_package(tmp_path, monkeypatch) -> Path:
    """A package of builders in tmp_path, importable, and forgotten again after the test."""
    root = tmp_path / "user_code"
    (root / PACKAGE).mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "nets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("RUNNER_TRUSTED_TARGETS", raising=False)
    yield root
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def custom(builder=BUILDER, trusted=(PACKAGE,), options=None, allow_unusual_output=False):
    return user_models.CustomModel(
        builder=builder,
        trusted_modules=list(trusted),
        options=dict(options or {}),
        allow_unusual_output=allow_unusual_output,
    )


def tracked(tmp_path: Path) -> tuple[str, ...]:
    return (f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db",)


# ---------------------------------------------------------------- trust


def test_an_untrusted_builder_is_refused_before_its_module_is_imported(user_package):
    cfg = compose_config(*TINY, "model=custom", f"model.builder={BUILDER}")
    with pytest.raises(TargetNotAllowed) as at_config_time:
        check_targets(cfg)  # what the command line runs on every composed config, before TensorFlow
    assert str(at_config_time.value) == REFUSAL
    with pytest.raises(ConfigError) as at_build_time:
        training.build_network(prepare(cfg).model, BINARY)  # for programs that call run_job themselves
    assert str(at_build_time.value) == REFUSAL
    assert PACKAGE not in sys.modules


def test_a_builder_is_trusted_through_the_config_or_the_environment(user_package, monkeypatch):
    named = compose_config("model=custom", f"model.builder={BUILDER}", f"model.trusted_modules=[{PACKAGE}]")
    assert builder_refusal(named) is None
    check_targets(named)
    assert callable(user_models.import_builder(BUILDER, [f"{PACKAGE}.nets"]))  # a module is as good as its package
    for other in ("labnets", f"{PACKAGE}.other"):  # a name's prefix, a sibling module: neither trusts it
        with pytest.raises(ConfigError, match="refused to import"):
            user_models.import_builder(BUILDER, [other])
    monkeypatch.setenv("RUNNER_TRUSTED_TARGETS", f"mylab.callbacks.:{PACKAGE}.")
    assert builder_refusal(compose_config("model=custom", f"model.builder={BUILDER}")) is None
    assert callable(user_models.import_builder(BUILDER))


def test_the_command_line_refuses_an_untrusted_builder_before_tensorflow_loads(user_package, tmp_path):
    code = (
        "import sys; from runner.cli import main; sys.argv = ['runner', *sys.argv[1:]]\n"
        "try:\n    main()\nfinally:\n"
        "    print('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'TENSORFLOW_NOT_IMPORTED')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(user_package)])}
    env.pop("RUNNER_TRUSTED_TARGETS", None)
    result = subprocess.run(
        [sys.executable, "-c", code, *TINY, "model=custom", f"model.builder={BUILDER}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 1
    assert REFUSAL in result.stderr
    assert "TENSORFLOW_NOT_IMPORTED" in result.stdout and not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=custom"], "model.builder is not set: set it, e.g. model.builder=my_package.my_module:build"),
        (
            ["model=custom", "model.builder=labnets.nets.build"],
            "model.builder='labnets.nets.build' is not of the form package.module:function",
        ),
        (
            ["model=custom", f"model.builder={BUILDER}", "+model.options.output_units=4"],
            "model.options.output_units is set, but the runner passes output_units to the builder itself",
        ),
        (
            ["model=custom", f"model.builder={BUILDER}", "model.trusted_modules=[my-lab]"],
            "model.trusted_modules has 'my-lab', which is no module name",
        ),
        (["model=saved"], "model.path is not set: set it, e.g. model.path=path/to/model.keras"),
        (["model=saved", "model.path=README.md"], "model.path='README.md' is not a Keras model file"),
        (["model=custom", f"model.builder={BUILDER}", "+model.widht=3"], "model.widht is not a setting of this run"),
    ],
)
def test_bad_model_settings_are_refused_before_anything_runs(overrides, message):
    with pytest.raises(ConfigError) as refused:
        prepare(compose_config(*TINY, *overrides))
    assert message in str(refused.value)


def test_a_custom_model_keeps_its_options_in_the_typed_spec():
    spec = prepare(
        compose_config(
            *TINY,
            "model=custom",
            f"model.builder={BUILDER}",
            f"model.trusted_modules=[{PACKAGE}]",
            "+model.options.width=12",
            "model.loss=binary_focal_crossentropy",
        )
    )
    assert isinstance(spec.model, user_models.CustomModel)
    assert spec.model.options == {"width": 12} and spec.model.trusted_modules == [PACKAGE]
    with pytest.raises(ConfigError, match="with loss mae on a binary task: mae is a regression loss"):
        prepare(compose_config(*TINY, "model=custom", f"model.builder={BUILDER}", "model.loss=mae"))


# ---------------------------------------------------------------- building


def test_the_builder_gets_the_task_head_and_the_options(user_package):
    network = training.build_network(custom(options={"width": 12}), MULTICLASS)
    assert network.input_shape == (None, 6) and network.output_shape == (None, 3)
    assert network.get_layer("hidden").units == 12
    assert network.layers[-1].activation.__name__ == "softmax"


def test_a_subclassed_model_is_checked_by_calling_it(user_package):
    network = training.build_network(custom(builder=f"{PACKAGE}.nets:subclassed"), MULTICLASS)
    assert network.built and network(np.zeros((2, 6), "float32")).shape == (2, 3)


def test_a_missing_module_names_the_module_and_the_search_path(user_package):
    with pytest.raises(ConfigError) as refused:
        user_models.import_builder("nowhere_pkg.nets:build", ["nowhere_pkg"])
    message = str(refused.value)
    assert "no module named 'nowhere_pkg'" in message and "sys.path" in message and "PYTHONPATH" in message
    assert str(user_package) in message  # the folder the test put first on sys.path
    with pytest.raises(ConfigError, match="nets.py has no function 'biuld'"):
        user_models.import_builder(f"{PACKAGE}.nets:biuld", [PACKAGE])


def test_a_builder_module_whose_own_import_fails_says_so(user_package):
    (user_package / PACKAGE / "broken.py").write_text("import not_installed_anywhere\n")
    with pytest.raises(ConfigError) as refused:
        user_models.import_builder(f"{PACKAGE}.broken:build", [PACKAGE])
    assert f"importing {PACKAGE}.broken failed: No module named 'not_installed_anywhere'" in str(refused.value)


def test_a_builder_that_returns_no_model_is_refused(user_package):
    with pytest.raises(ConfigError) as refused:
        training.build_network(custom(builder=f"{PACKAGE}.nets:not_a_model"), BINARY)
    assert str(refused.value) == (
        f"model.builder={PACKAGE}.nets:not_a_model returned builtins.dict, not a keras.Model: return the model "
        f"itself, uncompiled (keras.Model(inputs, outputs))"
    )


def test_options_the_builder_does_not_take_are_refused_before_calling_it(user_package):
    with pytest.raises(ConfigError) as refused:
        training.build_network(custom(options={"depth": 3}), BINARY)
    message = str(refused.value)
    assert f"model.builder={BUILDER} cannot be called with input_shape, output_units, output_activation, depth" in (
        message
    )
    assert "unexpected keyword argument 'depth'" in message


def test_a_builder_output_that_does_not_fit_the_task_is_refused_unless_allowed(user_package):
    fixed = custom(builder=f"{PACKAGE}.nets:fixed_head")
    with pytest.raises(ConfigError) as refused:
        training.build_network(fixed, MULTICLASS)
    assert str(refused.value) == (
        f"model.builder={PACKAGE}.nets:fixed_head: the model outputs shape (batch, 5), but a multiclass task "
        f"with 3 classes needs (batch, 3). Set model.allow_unusual_output=true to train it anyway."
    )
    fixed.allow_unusual_output = True
    assert training.build_network(fixed, MULTICLASS).output_shape == (None, 5)


# ---------------------------------------------------------------- saved models


def saved_network(path: Path, features=6, units=1, activation="sigmoid") -> keras.Model:
    network = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(units, activation=activation),
        ]
    )
    network.compile(optimizer="sgd", loss="mse")  # the run compiles it afresh with its own settings
    network.save(path)
    return network


def test_a_saved_model_starts_from_its_weights_and_is_recompiled(tmp_path):
    original = saved_network(tmp_path / "net.keras")
    spec = prepare(compose_config(*TINY, "model=saved", f"model.path={tmp_path / 'net.keras'}"))
    compiled = training.build(BINARY, spec.model, spec.optimizer, spec.trainer, 0.5)
    for loaded, saved in zip(compiled.model.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, saved)
    assert compiled.loss == "binary_crossentropy"
    assert type(compiled.model.optimizer).__name__ == "Adam"


def test_a_missing_saved_model_names_the_path_and_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        training.build_network(user_models.SavedModel(path="nowhere/net.keras"), BINARY)
    assert str(refused.value) == f"model.path='nowhere/net.keras': no such file (relative paths start from {tmp_path})"


def test_a_saved_model_with_another_input_shape_is_refused(tmp_path):
    saved_network(tmp_path / "net.keras", features=4)
    model = user_models.SavedModel(path=str(tmp_path / "net.keras"))
    with pytest.raises(ConfigError) as refused:
        training.build_network(model, BINARY)
    assert str(refused.value) == (
        f"model.path={tmp_path / 'net.keras'}: the model takes inputs of shape (batch, 4), but the rows of "
        f"synthetic have shape (batch, 6)"
    )


def test_a_saved_model_with_the_wrong_output_units_is_refused(tmp_path):
    saved_network(tmp_path / "net.keras", units=2, activation="softmax")
    with pytest.raises(ConfigError, match=r"outputs shape \(batch, 2\), but a binary task needs \(batch, 1\)"):
        training.build_network(user_models.SavedModel(path=str(tmp_path / "net.keras")), BINARY)


def test_a_saved_model_carrying_code_is_refused(tmp_path):
    inputs = keras.Input((6,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, :1] * 2.0)(inputs)).save(tmp_path / "code.keras")
    with pytest.raises(ConfigError, match="loads files in Keras's safe mode only"):
        training.build_network(user_models.SavedModel(path=str(tmp_path / "code.keras")), BINARY)


# ---------------------------------------------------------------- whole runs


def test_a_saved_model_trains_and_is_recorded(tmp_path):
    saved_network(tmp_path / "net.keras")
    overrides = [*TINY, "model=saved", f"model.path={tmp_path / 'net.keras'}", *tracked(tmp_path)]
    result = run_job(compose_config(*overrides), tmp_path / "run", overrides=overrides)
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db").get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.architecture"] == "saved"
    assert run.data.params["model.path"] == str(tmp_path / "net.keras")
    assert run.data.params["model.parameters"] == str(6 * 4 + 4 + 4 + 1)
    assert np.isfinite(result.metrics["test_roc_auc"]) and result.metrics["epochs_run"] == 1
    assert (result.output_dir / "model" / "model.keras").is_file()


@pytest.mark.slow  # about 20 s: a run with the quick diagnostics
def test_a_custom_model_trains_with_diagnostics(user_package, tmp_path):
    overrides = [
        *TINY,
        "model=custom",
        f"model.builder={BUILDER}",
        f"model.trusted_modules=[{PACKAGE}]",
        "+model.options.width=5",
        "diagnostics=quick",
        "tracking.log_model=false",
        *tracked(tmp_path),
    ]
    result = run_job(compose_config(*overrides), tmp_path / "run", overrides=overrides)
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db").get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.builder"] == BUILDER and run.data.params["model.options.width"] == "5"
    assert result.metrics["parameters"] == 6 * 5 + 5 + 5 + 1
    assert (result.output_dir / "diagnostics").is_dir()
