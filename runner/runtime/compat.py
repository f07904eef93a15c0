"""Every reach into a library's internals outside ``runner.diagnostics`` (which keeps its own in
``runner/diagnostics/compat.py``), one small function each.

Each says the version it was checked against and the public API that will replace it. When a library is
upgraded, this module is the list to re-check; tests/test_compat.py exercises every function against the
installed libraries and fails if another module reaches into a library on its own. Libraries are imported
inside the functions: the command line imports this module, and ``--help`` must stay fast.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

# ---------------------------------------------------------------- Hydra


def after_hydra_compose(check: Callable) -> None:
    """Call ``check(config)`` on every config Hydra composes, before it instantiates ``hydra.callbacks``.

    hydra-core 1.3.8: wraps the private ``hydra._internal.hydra.Hydra.compose_config``. No public API yet: the
    ``Callback.on_compose_config`` of Hydra's main branch (1.4.dev) would replace it, registered outside the
    config it checks. Idempotent.
    """
    from hydra._internal.hydra import Hydra

    compose = Hydra.compose_config
    if getattr(compose, "runner_check", None) is not None:
        return

    @functools.wraps(compose)
    def compose_and_check(self, *args, **kwargs):
        config = compose(self, *args, **kwargs)
        check(config)
        return config

    compose_and_check.runner_check = check
    Hydra.compose_config = compose_and_check


def on_hydra_compose_error(handle: Callable[[Exception], None]) -> None:
    """Call ``handle(error)`` on an exception Hydra's composition raises, before Hydra reports it: ``handle``
    may raise another exception in its place (else the original goes on).

    hydra-core 1.3.8: wraps the private ``hydra._internal.hydra.Hydra.compose_config``, as
    ``after_hydra_compose`` does. No public API: Hydra prints any composition error itself, as a traceback
    unless it is one of its own. Idempotent.
    """
    from hydra._internal.hydra import Hydra

    compose = Hydra.compose_config
    if getattr(compose, "runner_on_error", None) is not None:
        return

    @functools.wraps(compose)
    def compose_or_handle(self, *args, **kwargs):
        try:
            return compose(self, *args, **kwargs)
        except Exception as error:
            handle(error)
            raise

    compose_or_handle.runner_on_error = handle
    Hydra.compose_config = compose_or_handle


def filter_completions(keep: Callable[[str], bool]) -> None:
    """Offer only the shell-completion words for which ``keep(word)`` holds.

    hydra-core 1.3.8: wraps the private ``CompletionPlugin._query``. No public API yet (a completion plugin
    of our own, registered through ``hydra_plugins``, would replace it). Idempotent.
    """
    from hydra.plugins.completion_plugin import CompletionPlugin

    query = CompletionPlugin._query
    if getattr(query, "runner_keep", None) is not None:
        return

    @functools.wraps(query)
    def filtered(self, *args, **kwargs):
        return [word for word in query(self, *args, **kwargs) if keep(word)]

    filtered.runner_keep = keep
    CompletionPlugin._query = filtered


def job_outcome(job_return):
    """A finished job's return value, or the exception a failed job raised (also across joblib).

    hydra-core 1.3.8: ``JobReturn._return_value``. The public ``JobReturn.return_value`` gives the value of a
    completed job but raises (and prints) a failed job's exception instead of returning it.
    """
    return job_return._return_value


def joblib_parallel_settings(launcher_settings: dict) -> dict:
    """The ``joblib.Parallel`` arguments Hydra's joblib launcher runs its jobs with, from its settings
    (``hydra.launcher`` without ``_target_``), so that another ``Parallel`` call made with them
    (``runner.sweep.warm_up``) reuses the same loky worker processes.

    hydra-joblib-launcher 1.2.0: its ``launch`` forces ``backend="loky"`` and converts some values with the
    private ``_core.process_joblib_cfg``. No public API exposes the arguments.
    """
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

    settings = {key: value for key, value in launcher_settings.items() if key != "_target_"}
    settings["backend"] = "loky"
    process_joblib_cfg(settings)
    return settings


def stop_joblib_workers() -> None:
    """Stop the idle worker processes of joblib's reusable loky executor, if it has any, without waiting for
    them to wind down: left to exit with the program, each worker tears down its TensorFlow and MLflow, which
    kept a 2-job sweep's command alive 2-3 s after its last job (measured on 2 cores).

    joblib 1.5: the module global ``joblib.externals.loky.reusable_executor._executor``. The public
    ``get_reusable_executor()`` would start an executor where there is none, or replace one with other settings.
    """
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


# ---------------------------------------------------------------- MLflow


def index_installed_packages() -> None:
    """Build, once per process, the map from module names to installed distributions that MLflow's
    ``save_model`` reads to check the model's pip requirements against the environment.

    mlflow 3.x: the private ``mlflow.utils.requirements_utils._init_modules_to_packages_map``, which calls
    ``importlib_metadata.packages_distributions()`` on first use: 1.3-2.6 s on 2 cores here with our ~190
    distributions, paid inside every first ``log_model`` of a process. Public: none; ``save_model`` builds it
    itself. Does nothing if the function is gone (``save_model`` then pays as before).
    """
    from mlflow.utils import requirements_utils

    build = getattr(requirements_utils, "_init_modules_to_packages_map", None)
    if build is not None:
        build()


# ---------------------------------------------------------------- OmegaConf


def is_none_or_missing(node) -> bool:
    """Whether a config node is None or ``???``, without resolving it.

    omegaconf 2.3.1: ``Node._is_none()`` and ``Node._is_missing()``. Public: ``OmegaConf.is_missing(parent,
    key)``, which needs the parent and has no None counterpart; ``parent[key] is None`` resolves.
    """
    return node._is_none() or node._is_missing()


def child_node(node, key):
    """The child node under ``key``, its interpolations unresolved.

    omegaconf 2.3.1: ``Container._get_node(key)``. No public API yet: ``node[key]`` resolves, and
    ``OmegaConf.to_container(node, resolve=False)`` gives plain values, not nodes.
    """
    return node._get_node(key)


def raw_node_value(node, key):
    """The value under ``key`` as written (``${oc.env:X}`` for an interpolation), without resolving it.

    omegaconf 2.3.1: ``Node._value()``. Public: ``OmegaConf.to_container(node, resolve=False)[key]`` gives the
    same for a plain value, at the cost of converting the whole container.
    """
    return node._get_node(key)._value()


def config_root(node):
    """The root config a node belongs to (the node itself when it is a root).

    omegaconf 2.3.1: ``Node._get_root()``. No public API yet: pass the root along instead.
    """
    return node._get_root()


# ---------------------------------------------------------------- Optuna


def trial_id(trial) -> int:
    """The storage's id of a trial (a ``Trial`` or a ``FrozenTrial``), which ``optuna.trial.Trial(study, id)``
    takes to reopen it in another process.

    optuna 5.1.0: ``_trial_id``. No public API yet: ``trial.number`` names a trial within its study, and
    ``BaseStorage.get_trial_id_from_study_id_trial_number`` maps it, given the study's private id.
    """
    return trial._trial_id


def trial_state(study, trial_id: int):
    """The ``TrialState`` of the study's trial with this storage id, read from storage (one trial, not all).

    optuna 5.1.0: ``Study._storage.get_trial``. Public: ``study.get_trials(deepcopy=False)`` searched by
    ``trial.number``, which reads every trial of the study.
    """
    return study._storage.get_trial(trial_id).state


def mark_trial_attr(study, trial, key: str, value) -> None:
    """Set a user attribute on a stored trial this process does not run (a ``FrozenTrial``).

    optuna 5.1.0: ``Study._storage.set_trial_user_attr``. Public: ``Trial.set_user_attr``, only on the live
    ``Trial`` the process that asked for it holds; a ``FrozenTrial``'s setter changes the copy only.
    """
    study._storage.set_trial_user_attr(trial_id(trial), key, value)


def set_trial_state(study, trial, state, values) -> bool:
    """End a stored trial this process does not run; False (or UpdateFinishedTrialError) if it already ended.

    optuna 5.1.0: ``Study._storage.set_trial_state_values``, atomic in an RDB storage, so of several workers
    settling one dead worker's trial exactly one wins. Public: ``study.tell``, which does not say who won.
    """
    return study._storage.set_trial_state_values(trial_id(trial), state=state, values=values)


def stale_trial_ids(study) -> list[int]:
    """Storage ids of the study's RUNNING trials whose heartbeat is older than the storage's grace period.

    optuna 5.1.0: ``BaseHeartbeat._get_stale_trial_ids``. Public: ``optuna.storages.fail_stale_trials``, which
    fails them at once, before the caller can look at what their jobs recorded.
    """
    storage = _rdb_storage(study)
    if getattr(storage, "heartbeat_interval", None) is None:
        return []
    return storage._get_stale_trial_ids(study._study_id)


def heartbeat_grace_s(study) -> float:
    """The storage's grace period in seconds (optuna's default: twice the interval); 0 without heartbeats."""
    storage = _rdb_storage(study)
    interval = getattr(storage, "heartbeat_interval", None)
    if interval is None:
        return 0.0
    return float(storage.grace_period or 2 * interval)


def record_heartbeat(study, trial_id: int) -> None:
    """Mark a running trial alive now (nothing without heartbeats).

    optuna 5.1.0: ``RDBStorage.record_heartbeat``, public on the storage, which a study keeps in ``_storage``;
    ``study.optimize`` records heartbeats itself, ``study.ask`` does not.
    """
    storage = _rdb_storage(study)
    if getattr(storage, "heartbeat_interval", None) is not None:
        storage.record_heartbeat(trial_id)


def _rdb_storage(study):
    """The study's storage under optuna's cache (optuna 5.1.0: ``_CachedStorage._backend``)."""
    return getattr(study._storage, "_backend", study._storage)


# ---------------------------------------------------------------- JAX

JAX_BACKEND_LOGGER = "jax._src.xla_bridge"  # jax 0.10.2: the module that logs each platform it cannot open


def jax_backends_started() -> bool:
    """Whether JAX has started its backends in this process (after which XLA's settings are fixed).

    jax 0.10.2: ``jax._src.xla_bridge.backends_are_initialized``. No public API yet: ``jax.extend.backend``
    exposes ``backends()``, which starts them. Unknown (the function renamed): True, so callers report the
    settings they find rather than set ones that no longer apply.
    """
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return started() if started else True


def quiet_jax_backend_log() -> None:
    """Keep JAX's INFO lines about each platform it could not open ("Unable to initialize backend 'tpu'") out of
    the log.

    jax 0.10.2: the logger of the private module ``jax._src.xla_bridge``. No public API yet (raising the
    ``jax`` logger would hide every other JAX message too).
    """
    logging.getLogger(JAX_BACKEND_LOGGER).setLevel(logging.WARNING)
