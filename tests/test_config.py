"""Config composition (Hydra compose API), schema errors and range checks, and the fast CLI paths."""

import dataclasses
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from runner.cli import CONF_DIR, help_text
from runner.config.schema import GROUP_SCHEMAS
from runner.config.validation import validate
from runner.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
BOOK_PRESETS = {
    "wine_mlp",
    "wine_deep_mlp",
    "wine_broken_init",
    "seizure_dnn",
    "seizure_bilstm",
    "mnist_mlp",
    "mnist_dropout",
    "mnist_l2",
}


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_all_book_presets_exist():
    assert BOOK_PRESETS <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose_config(f"+experiment={experiment}")
    validate(cfg)
    assert cfg.name == experiment
    assert cfg.description
    assert cfg.tracking.experiment == cfg.dataset.name  # interpolation resolves


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_debug_preset_shrinks_every_experiment(experiment):
    cfg = compose_config(f"+experiment={experiment}", "+debug=fast")
    validate(cfg)
    assert cfg.trainer.epochs == 2 and cfg.dataset.max_samples == 256


@pytest.mark.parametrize("group", ["dataset", "model", "optimizer"])
def test_every_group_option_composes(group):
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        # An option with required keys is refused without them, naming them; a data set's own files are read
        # only when it loads, so with its keys' examples it composes (a model's file is checked at once).
        schema = GROUP_SCHEMAS[group].get(path.stem)
        needed = [f for f in dataclasses.fields(schema) if "example" in f.metadata] if schema else []
        if needed:
            with pytest.raises(ConfigError, match=f"{group}.{needed[0].name} is not set"):
                validate(compose_config(f"{group}={path.stem}"))
        if not needed or group == "dataset":
            examples = [f"{group}.{f.name}={f.metadata['example']}" for f in needed]
            validate(compose_config(f"{group}={path.stem}", *examples))


def test_book_settings_are_in_the_presets():
    wine = compose_config("+experiment=wine_deep_mlp")
    assert list(wine.model.hidden_units) == [32, 32, 32, 32, 16]
    assert wine.trainer.epochs == 500 and wine.trainer.batch_size == 32
    seizure = compose_config("+experiment=seizure_dnn")
    assert list(seizure.model.hidden_units) == [128, 64, 64, 32, 16]
    assert seizure.trainer.checkpoint.monitor == "val_accuracy"
    dropout = compose_config("+experiment=mnist_dropout")
    assert dropout.model.dropout == 0.5 and dropout.trainer.batch_size == 30
    assert compose_config("+experiment=mnist_l2").model.l2 == 0.01
    broken = compose_config("+experiment=wine_broken_init")
    assert broken.model.kernel_initializer == "constant"


def test_command_line_overrides_apply():
    cfg = compose_config("+experiment=wine_deep_mlp", "trainer.epochs=50", "optimizer.learning_rate=3e-4")
    assert cfg.trainer.epochs == 50 and cfg.optimizer.learning_rate == pytest.approx(3e-4)


def test_switching_optimizer_changes_its_schema():
    cfg = compose_config("+experiment=wine_mlp", "optimizer=sgd_nesterov")
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.nesterov is True


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.dropuot=0.1", "dropuot"),
        ("trainer.epoch=3", "epoch"),
        ("optimizer.momentum=0.9", "momentum"),  # Adam has no momentum: refused, not ignored
        ("dataset.flatten=false", "flatten"),  # an MNIST option on the wine data set
    ],
)
def test_unknown_key_is_refused_naming_it(override, key):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("+experiment=wine_mlp", override)
    assert key in str(error.value.__cause__ or error.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.epochs=many", "trainer.epochs"),
        ("model.dropout=half", "model.dropout"),
        ("trainer.deterministic=perhaps", "trainer.deterministic"),
    ],
)
def test_wrong_type_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("+experiment=wine_mlp", override)
    assert key in str(error.value.__cause__)


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(Exception) as error:
        compose_config("+experiment=wine_mlpp")
    message = str(error.value)
    assert "experiment/wine_mlpp" in message and "wine_mlp" in message


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.dropout=1.0", "model.dropout=1.0 is out of range: must be in [0.0, 1.0)"),
        ("model.dropout=-0.1", "model.dropout=-0.1 is out of range"),
        ("trainer.epochs=0", "trainer.epochs=0 is out of range: must be >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size=0 is out of range"),
        ("optimizer.learning_rate=0", "optimizer.learning_rate=0.0 is out of range: must be > 0.0"),
        ("optimizer.learning_rate=nan", "optimizer.learning_rate=nan is out of range"),
        ("dataset.split=shuffled", "dataset.split='shuffled' is not allowed; choose one of: auto, book, random"),
        ("trainer.checkpoint.mode=maximum", "trainer.checkpoint.mode='maximum' is not allowed"),
        ("evaluation.threshold=1.5", "evaluation.threshold=1.5 is out of range"),
        ("optimizer.schedule.name=linear", "optimizer.schedule.name='linear' is not allowed"),
        ("dataset.val_fraction=0.5", "leaves no rows to train on"),  # with test_fraction 0.5 below
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override, message):
    cfg = compose_config("+experiment=wine_mlp", override, "dataset.test_fraction=0.5")
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)


def test_every_bad_value_is_reported_at_once():
    cfg = compose_config("+experiment=wine_mlp", "model.dropout=2", "trainer.epochs=0")
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert "model.dropout" in str(error.value) and "trainer.epochs" in str(error.value)


def test_help_lists_groups_and_experiments():
    text = help_text()
    for name in EXPERIMENTS:
        assert name in text
    for group in ("dataset", "model", "optimizer", "trainer", "tracking", "diagnostics", "+sweep", "+launcher"):
        assert f"  {group} " in text
    assert "mnist_search" in text and "wine_constant_init" in text  # sweep presets and seeded faults
    assert "schema" not in text  # internal schema groups are not options for users


def _run_cli(*args, check=True):
    code = (
        "import sys; from runner.cli import main; sys.argv = ['runner', *sys.argv[1:]]; main(); "
        "print('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'TENSORFLOW_NOT_IMPORTED')"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=check, timeout=120)


def test_help_and_cfg_job_do_not_import_tensorflow():
    shown = _run_cli("--help")
    assert "Experiments (+experiment=NAME)" in shown.stdout and "TENSORFLOW_NOT_IMPORTED" in shown.stdout
    printed = _run_cli("+experiment=wine_mlp", "--cfg", "job")
    assert "hidden_units" in printed.stdout and "TENSORFLOW_NOT_IMPORTED" in printed.stdout


def test_the_program_freezes_its_objects_before_exit_and_main_does_not():
    # The program's exit then skips Python's full collection of them (bench figures in runner/cli.py); a program
    # that calls main keeps collecting its garbage.
    code = (
        "import gc, sys; from runner import cli; sys.argv = ['runner', '--cfg', 'job', '+experiment=wine_mlp']; "
        "cli.{}(); print('FROZEN', gc.get_freeze_count())"
    )
    for function, frozen in (("command", True), ("main", False)):
        shown = subprocess.run(
            [sys.executable, "-c", code.format(function)], capture_output=True, text=True, timeout=120
        )
        assert shown.returncode == 0, shown.stderr
        count = int(shown.stdout.split("FROZEN")[-1])
        assert (count > 0) == frozen, (function, count)


def test_cli_refuses_out_of_range_value_before_importing_tensorflow():
    result = _run_cli("+experiment=wine_mlp", "model.dropout=1.5", "hydra.run.dir=" + "/tmp/never-used", check=False)
    assert result.returncode == 1
    assert "model.dropout=1.5 is out of range" in result.stderr
    assert "TENSORFLOW" not in result.stdout  # exited before the marker line
