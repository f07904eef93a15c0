"""Library internals are reached only from the two compat modules, and each of their functions still works
against the installed libraries (a failure here after an upgrade names the reach to re-check)."""

import logging
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner.runtime import compat

REPO = Path(__file__).resolve().parents[1]
COMPAT_MODULES = {"runner/runtime/compat.py", "runner/diagnostics/compat.py"}
LIBRARIES = r"(?:hydra|omegaconf|optuna|keras|jax|jaxlib|tensorflow|mlflow)"
# A private name of a library: its private modules, and the private attributes the runner has used.
INTERNAL_REACHES = [
    rf"^\s*(?:from|import)\s+{LIBRARIES}(?:\.\w+)*\._\w*",  # from hydra._internal..., import jax._src
    r"\bkeras\.src\b",
    r"\btensorflow\.python\b",
    r"\bjax\._src\b",
    r"\bhydra\._internal\.(?!core_plugins\.\")",  # the allow-list's "hydra._internal.core_plugins." is a target
    r"\.compose_config\s*=",
    r"\._query\b",
    r"\._return_value\b",
    r"\._storage\b",
    r"\._trial_id\b",
    r"\._study_id\b",
    r"\._is_none\(",
    r"\._is_missing\(",
    r"\._get_node\(",
    r"\._get_root\(",
    r"\._get_parent\(",
    r"\._value\(",
    r"\._set_value\(",
    r"\._metadata\b",
    r"\bBIT64_TO_BIT32_DTYPE\b",
    r"\._symbolic_build\(",
    r"\breusable_executor\._executor\b",
]
# Reaches in modules this change could not edit: remove each entry once the module calls runner.runtime.compat.
PENDING = set()  # reaches allowed for now, each with the compat function that will take it


def reaches(path: Path) -> list[tuple[str, int, str]]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith(("'", '"')) else line
        found += [(pattern, number, line.strip()) for pattern in INTERNAL_REACHES if re.search(pattern, code)]
    return found


def test_no_module_outside_the_compat_modules_reaches_into_a_library():
    offending, pending_seen = [], set()
    for path in sorted([*(REPO / "runner").rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py")]):
        name = path.relative_to(REPO).as_posix()
        if name in COMPAT_MODULES:
            continue
        for pattern, number, line in reaches(path):
            if (name, pattern) in PENDING:
                pending_seen.add((name, pattern))
            else:
                offending.append(f"{name}:{number}: {line}")
    assert not offending, "move these into runner/runtime/compat.py or runner/diagnostics/compat.py:\n" + "\n".join(
        offending
    )
    assert pending_seen == PENDING, f"no longer there, drop from PENDING: {PENDING - pending_seen}"


def test_the_scan_sees_each_reach_the_compat_modules_hold():
    """The patterns match what they are meant to (else the scan above would pass vacuously)."""
    held = {pattern for name in COMPAT_MODULES for pattern, _, _ in reaches(REPO / name)}
    for pattern in (r"\bkeras\.src\b", r"\bjax\._src\b", r"\._storage\b", r"\._trial_id\b", r"\._get_node\("):
        assert pattern in held, pattern


# ---------------------------------------------------------------- Hydra


def test_after_hydra_compose_sees_every_composed_config(monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra._internal.hydra import Hydra

    from runner.config.paths import CONF_DIR
    from runner.config.schema import register_configs

    register_configs()
    monkeypatch.setattr(Hydra, "compose_config", getattr(Hydra.compose_config, "__wrapped__", Hydra.compose_config))
    seen = []
    compat.after_hydra_compose(seen.append)
    compat.after_hydra_compose(seen.append)  # idempotent: one check per compose
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = compose(config_name="config", overrides=["+experiment=wine_mlp"])
    assert len(seen) == 1 and seen[0].name == config.name


def test_filter_completions_drops_words(monkeypatch):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra._internal.utils import create_config_search_path
    from hydra.plugins.completion_plugin import CompletionPlugin

    from runner.config.paths import CONF_DIR

    monkeypatch.setattr(
        CompletionPlugin, "_query", getattr(CompletionPlugin._query, "__wrapped__", None) or CompletionPlugin._query
    )
    completion = BashCompletion(ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR))))
    assert "schema/" in completion._query("config", "")
    compat.filter_completions(lambda word: not word.startswith("schema/"))
    words = completion._query("config", "")
    assert "schema/" not in words and "optimizer=" in words


def test_job_outcome_returns_the_value_or_the_exception():
    from hydra.core.utils import JobReturn, JobStatus

    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.25)
    assert compat.job_outcome(done) == done.return_value == 0.25
    error = ValueError("bad")
    assert compat.job_outcome(JobReturn(status=JobStatus.FAILED, _return_value=error)) is error


# ---------------------------------------------------------------- OmegaConf


def test_omegaconf_nodes_are_read_without_resolving():
    config = OmegaConf.create({"none": None, "missing": "???", "nested": {"_target_": "${oc.env:COMPAT_UNSET_VAR}"}})
    assert compat.is_none_or_missing(compat.child_node(config, "none"))
    assert compat.is_none_or_missing(compat.child_node(config, "missing"))
    nested = compat.child_node(config, "nested")
    assert not compat.is_none_or_missing(nested) and not compat.is_none_or_missing(config)
    assert compat.raw_node_value(nested, "_target_") == "${oc.env:COMPAT_UNSET_VAR}"
    assert compat.config_root(nested) is config and compat.config_root(config) is config


# ---------------------------------------------------------------- Optuna


def test_optuna_trials_by_storage_id():
    optuna = pytest.importorskip("optuna")
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.trial_id(trial) == compat.trial_id(frozen)
    assert optuna.trial.Trial(study, compat.trial_id(frozen)).number == trial.number
    assert compat.trial_state(study, compat.trial_id(trial)) == TrialState.RUNNING
    compat.mark_trial_attr(study, frozen, "runner.interrupted", True)
    assert study.get_trials()[0].user_attrs == {"runner.interrupted": True}
    study.tell(trial, 1.0)
    assert compat.trial_state(study, compat.trial_id(trial)) == TrialState.COMPLETE


# ---------------------------------------------------------------- JAX and Keras


def test_jax_backend_state_and_log():
    pytest.importorskip("jax")
    from jax._src import xla_bridge

    assert hasattr(xla_bridge, "backends_are_initialized"), "jax_backends_started would always say True"
    assert compat.jax_backends_started() == xla_bridge.backends_are_initialized()
    assert xla_bridge.logger.name == compat.JAX_BACKEND_LOGGER
    logger = logging.getLogger(compat.JAX_BACKEND_LOGGER)
    level = logger.level
    try:
        compat.quiet_jax_backend_log()
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(level)


def test_keras_keeps_float64_inside_the_block():
    keras = pytest.importorskip("keras")
    from keras.src.backend.common import dtypes

    from runner.diagnostics import compat as diagnostics_compat

    assert "float64" in dtypes.BIT64_TO_BIT32_DTYPE, "float64_promotion_kept would lift nothing"
    before = keras.backend.result_type("float64")
    with diagnostics_compat.float64_promotion_kept():
        assert keras.backend.result_type("float64") == "float64"
    assert (
        keras.backend.result_type("float64")
        == before
        == ("float64" if keras.backend.backend() == "tensorflow" else "float32")
    )


KEEP_TENSORFLOW_UNIMPORTED = r"""
import json, sys, tempfile
import keras, numpy as np
from runner.diagnostics import compat
from runner.diagnostics.preflight._shared import clone

compat.keep_tensorflow_unimported()
compat.keep_tensorflow_unimported()  # idempotent
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
model.compile("adam", "mse")
keras.utils.set_random_seed(1)
copy = clone(model, regularized=False)
model.save(tempfile.mkdtemp() + "/m.keras")
quiet = "tensorflow" not in sys.modules
asked = keras.src.saving.serialization_lib.tf.available
keras.layers.StringLookup(vocabulary=["a", "b"])  # a layer that needs TensorFlow still gets it
print(json.dumps({"quiet": quiet, "asked": asked, "imported": "tensorflow" in sys.modules,
                  "available": keras.src.saving.serialization_lib.tf.available,
                  "same": all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), model.get_weights()))}))
"""


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_job_off_tensorflow_does_not_import_it_to_ask_about_it(backend):
    """Seeding, cloning and saving a model leave TensorFlow unimported on JAX; on TensorFlow nothing changes."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", KEEP_TENSORFLOW_UNIMPORTED], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    on_jax = backend == "jax"
    assert seen == {"quiet": on_jax, "asked": not on_jax, "imported": True, "available": True, "same": True}


def test_build_for_training_builds_the_compiled_metrics_before_any_step():
    keras = pytest.importorskip("keras")
    import numpy as np

    from runner.diagnostics import compat as diagnostics_compat

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((4, 3), "float32"), np.zeros(4, "int64")
    compiled = {m.name: m for m in model.metrics}["compile_metrics"]
    assert not compiled.built
    diagnostics_compat.build_for_training(model, x, y)
    assert compiled.built and [v.name for v in compiled.variables] == ["total", "count"]


def test_stop_joblib_workers_ends_the_reusable_executors_processes():
    import os

    from joblib import Parallel, delayed
    from joblib.externals.loky import reusable_executor

    pids = set(Parallel(n_jobs=2, backend="loky")(delayed(os.getpid)() for _ in range(4)))
    assert pids and os.getpid() not in pids
    processes = list(reusable_executor._executor._processes.values())
    compat.stop_joblib_workers()
    for process in processes:
        process.join(timeout=30)
        assert not process.is_alive()
    compat.stop_joblib_workers()  # a stopped executor: nothing left to stop, no error


def test_index_installed_packages_builds_the_map_mlflow_checks_requirements_against():
    from mlflow.utils import requirements_utils

    compat.index_installed_packages()
    assert "keras" in requirements_utils._MODULES_TO_PACKAGES["keras"]
