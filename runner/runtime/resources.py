"""CPU threads and GPU memory for one job, so that jobs running side by side share a machine instead of
fighting over it.

TensorFlow and JAX size their thread pools to every core of the machine and grab GPU memory up front (all
of it, or 75%). In a parallel sweep (joblib processes, submitit jobs on one node, Ray workers) that means
N jobs x all cores of threads and one job owning the GPU. ``configure_job`` runs at the start of every job,
before the backend does any work: it gives the job its share of the cores (the backend's pools, OpenMP/BLAS
pools) and sets up GPU sharing; how each backend takes these is in ``runner/runtime/backend.py``. A backend fixes
its pools when its runtime starts, so a process that already ran a job (a reused joblib worker, a test
session) keeps the sizes it started with; the plan reports the sizes actually in force.

No Hydra here: ``job_share`` reads a launcher config given as a plain mapping. Keras is imported only when
a job is configured (``runner.cli`` imports this module and must not import TensorFlow).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("runner")

# Libraries that size their pools from these when they load: NumPy's BLAS, OpenMP code, TensorFlow.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)
MAX_INTER_OP_THREADS = 2  # independent ops of a small Keras graph: more only adds contention


@dataclass(frozen=True)
class JobShare:
    """How many jobs run on this machine at once, and the cores this job may use."""

    parallel_jobs: int = 1
    cores: int = 1


@dataclass(frozen=True)
class ResourcePlan:
    """What a job got: thread pool sizes in force (inter-op 0: the backend has no separate inter-op pool,
    as on JAX) and the GPUs it sees."""

    threads: int
    inter_op_threads: int
    parallel_jobs: int
    gpus: int

    def tags(self) -> dict[str, str]:
        return {
            "runner.threads": str(self.threads),
            "runner.inter_op_threads": str(self.inter_op_threads),
            "runner.parallel_jobs": str(self.parallel_jobs),
            "runner.gpus": str(self.gpus),
        }


def available_cores() -> int:
    """Cores this process may run on: the affinity mask (what SLURM, taskset or a cpuset allow) if known."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def job_share(launcher_cfg: Mapping[str, Any] | None, cores: int | None = None) -> JobShare:
    """This job's share of the machine under a Hydra launcher config (None: a single run, all cores).

    joblib runs ``n_jobs`` jobs on this machine at once; a launcher that reserves CPUs per job (submitit's
    ``cpus_per_task``, Ray's ``remote.num_cpus``) gives each job exactly that many; Hydra's basic launcher runs
    one job at a time.
    """
    cores = cores or available_cores()
    if not launcher_cfg:
        return JobShare(1, cores)
    target = str(launcher_cfg.get("_target_", ""))
    if "JoblibLauncher" in target:
        jobs = _joblib_workers(launcher_cfg.get("n_jobs"), cores)
        return JobShare(jobs, max(1, cores // jobs))
    reserved = launcher_cfg.get("cpus_per_task") or (launcher_cfg.get("ray") or {}).get("remote", {}).get("num_cpus")
    if reserved:
        return JobShare(max(1, cores // int(reserved)), min(cores, int(reserved)))
    return JobShare(1, cores)


def _joblib_workers(n_jobs: int | None, cores: int) -> int:
    """joblib's reading of n_jobs: that many processes (even beyond the cores), -1 one per core, -2 all but
    one, ...; None is 1."""
    if n_jobs is None or n_jobs == 0:
        return 1
    n_jobs = int(n_jobs)
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
