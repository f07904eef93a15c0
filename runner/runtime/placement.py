"""Placing one job on the machine: its thread pools and GPUs, set before the backend runs anything.

Kept apart from ``resources.py`` (what the machine offers, keras-free so the CLI can size a sweep cheaply) so
that the backend module, which needs ``available_cores``, and this one import each other in one direction only.
"""

from __future__ import annotations

import logging
import os

from runner.runtime import backend
from runner.runtime.resources import (
    MAX_INTER_OP_THREADS,
    THREAD_ENV_VARS,
    JobShare,
    ResourcePlan,
    available_cores,
)

log = logging.getLogger("runner")


def configure_job(
    threads: int | None = None,
    share: JobShare | None = None,
    gpu_memory_growth: bool = True,
    deterministic: bool = False,
) -> ResourcePlan:
    """Size this process's thread pools and set up its GPUs for one job; call before the backend runs
    anything.

    ``threads`` (``trainer.threads``) wins when set; otherwise the job takes its share of the cores.
    ``deterministic`` (``trainer.deterministic``) is passed on here because JAX takes it only at start.
    """
    share = share or JobShare(1, available_cores())
    wanted = int(threads) if threads else share.cores
    intra, inter = configure_threads(wanted)  # first: on JAX, counting the GPUs starts the runtime
    gpus = backend.prepare_gpus(
        memory_growth=gpu_memory_growth, shared=share.parallel_jobs > 1, deterministic=deterministic
    )
    plan = ResourcePlan(threads=intra, inter_op_threads=inter, parallel_jobs=share.parallel_jobs, gpus=gpus)
    log.info(
        "resources: %d thread(s) (inter-op %d), %d parallel job(s), %d GPU(s)",
        plan.threads,
        plan.inter_op_threads,
        plan.parallel_jobs,
        plan.gpus,
    )
    return plan


def configure_threads(n: int, inter_op: int | None = None) -> tuple[int, int]:
    """Limit OpenMP/BLAS pools and the backend's pools to ``n`` threads (inter-op: at most 2).

    Returns the backend's pool sizes in force, which differ from the request when its runtime had already
    started in this process.
    """
    if n < 1:
        raise ValueError(f"a job needs at least 1 thread, got {n}")
    inter_op = inter_op or min(n, MAX_INTER_OP_THREADS)
    for name in THREAD_ENV_VARS:  # for libraries and child processes that start after this point
        os.environ[name] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
    _limit_loaded_pools(n)
    return backend.limit_threads(n, inter_op)


def enable_gpu_memory_growth() -> int:
    """Let every visible GPU be shared (see ``backend.prepare_gpus``); returns the number of GPUs, 0 (and
    nothing changed) on a machine without any."""
    return backend.prepare_gpus(memory_growth=True, shared=True, deterministic=False)


def _limit_loaded_pools(n: int) -> None:
    """BLAS/OpenMP libraries already loaded (NumPy's, scikit-learn's) read no environment any more."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n)
