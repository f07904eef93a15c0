"""The joblib launcher's worker processes, started and warmed as a sweep starts.

With ``+launcher=joblib`` each job runs in a loky worker process, and the first job of each worker found it
cold: it imported Keras, its backend and MLflow (8-11 s on 2 shared cores) only once the sweep process had
opened its MLflow parent run and (a search) validated the space and opened the study, 12 s after the
command started. Started from the sweep record's ``on_multirun_start``, before any of that, the workers import
while the sweep process does its own start; joblib keeps them for the jobs (the launcher's ``Parallel`` calls
reuse loky's executor when their arguments are the same).
"""

from __future__ import annotations

import logging
import os
import threading

from omegaconf import DictConfig, OmegaConf

from runner.runtime import compat

log = logging.getLogger("runner")
JOB_LIBRARIES = ("keras", "mlflow", "sklearn.metrics", "pandas", "matplotlib.figure")


def warm_up(config: DictConfig) -> threading.Thread | None:
    """Start the sweep's joblib workers importing what a job imports, in the background; None (nothing
    started) for another launcher, one worker, or trials that choose their own backend."""
    if config.hydra.runtime.choices.get("hydra/launcher") != "joblib" or _backend_is_searched(config):
        return None
    count = worker_count(config)
    if count < 2:
        return None
    settings = compat.joblib_parallel_settings(OmegaConf.to_container(config.hydra.launcher, resolve=True))
    backend = OmegaConf.select(config, "trainer.backend", default=None)
    thread = threading.Thread(target=_warm, args=(settings, count, backend), name="sweep-warm-up", daemon=True)
    thread.start()
    return thread


def worker_count(config: DictConfig) -> int:
    """The joblib workers the sweep keeps busy: the launcher's ``n_jobs`` (-1: one per core), at most the
    search's own ``hydra.sweeper.n_jobs`` when it sets one."""
    count = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=1) or 1)
    if count < 0:  # joblib's -1: one per core
        count = os.cpu_count() or 1
    searched = OmegaConf.select(config, "hydra.sweeper.n_jobs", default=None)
    return min(count, int(searched)) if isinstance(searched, int) and searched > 0 else count


def _backend_is_searched(config: DictConfig) -> bool:
    """Whether the jobs choose among backends: a worker warmed on one could not run another."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    params = OmegaConf.to_container(params) if params is not None else {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(lines)
    return any(o.key_or_group == "trainer.backend" and o.is_sweep_override() for o in overrides)


def _warm(settings: dict, count: int, backend: str | None) -> None:
    from joblib import Parallel, delayed

    try:
        Parallel(**settings)(delayed(import_job_modules)(backend) for _ in range(count))
    except Exception as error:  # noqa: BLE001 - the jobs then start their workers themselves, as before
        log.warning("could not start the sweep's worker processes ahead of its jobs: %s", error)


def import_job_modules(backend: str | None) -> None:
    """In a worker: choose the job's Keras backend, then import the libraries a job loads (Keras with its
    backend, MLflow, scikit-learn, pandas, Matplotlib): nearly all of a job's start-up. The runner's own modules
    take a fraction of a second, and the sweep wing does not reach into the job's (import contracts)."""
    import importlib

    from runner.runtime.backend_choice import choose_backend
    from runner.runtime.collection import paused_for_imports

    choose_backend(backend)
    with paused_for_imports():
        for module in JOB_LIBRARIES:
            importlib.import_module(module)
