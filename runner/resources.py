"""CPU threads and GPU memory for one job, so that jobs running side by side share a machine instead of
fighting over it.

TensorFlow sizes its thread pools to every core of the machine and grabs all GPU memory on first use. In a
parallel sweep (joblib processes, submitit jobs on one node, Ray workers) that means N jobs x all cores of
threads and one job owning the GPU. ``configure_job`` runs at the start of every job, before TensorFlow does
any work: it gives the job its share of the cores (TensorFlow intra-op pool, OpenMP/BLAS pools) and turns
on GPU memory growth. TensorFlow fixes its pool sizes when its runtime starts, so a process that already
ran a job (a reused joblib worker, a test session) keeps the sizes it started with; the plan reports the
sizes actually in force.

No Hydra here: ``job_share`` reads a launcher config given as a plain mapping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("runner")

# Libraries that size their pools from these when they load: NumPy's BLAS, OpenMP code, TensorFlow.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
MAX_INTER_OP_THREADS = 2  # independent ops of a small Keras graph: more only adds contention


@dataclass(frozen=True)
class JobShare:
    """How many jobs run on this machine at once, and the cores this job may use."""

    parallel_jobs: int = 1
    cores: int = 1


@dataclass(frozen=True)
class ResourcePlan:
    """What a job got: thread pool sizes in force and GPUs set to grow their memory."""

    threads: int
    inter_op_threads: int
    parallel_jobs: int
    gpus: int

    def tags(self) -> dict[str, str]:
        return {"runner.threads": str(self.threads), "runner.inter_op_threads": str(self.inter_op_threads),
                "runner.parallel_jobs": str(self.parallel_jobs), "runner.gpus": str(self.gpus)}


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


def configure_job(threads: int | None = None, share: JobShare | None = None,
                  gpu_memory_growth: bool = True) -> ResourcePlan:
    """Size this process's thread pools and GPU memory for one job; call before TensorFlow runs anything.

    ``threads`` (``trainer.threads``) wins when set; otherwise the job takes its share of the cores.
    """
    share = share or JobShare(1, available_cores())
    wanted = int(threads) if threads else share.cores
    if share.parallel_jobs > 1:
        # JAX preallocates 75% of GPU memory per process; parallel jobs on one GPU must not.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    gpus = enable_gpu_memory_growth() if gpu_memory_growth else 0
    intra, inter = configure_threads(wanted)
    plan = ResourcePlan(threads=intra, inter_op_threads=inter, parallel_jobs=share.parallel_jobs, gpus=gpus)
    log.info("resources: %d thread(s) (inter-op %d), %d parallel job(s), %d GPU(s) with memory growth",
             plan.threads, plan.inter_op_threads, plan.parallel_jobs, plan.gpus)
    return plan


def configure_threads(n: int, inter_op: int | None = None) -> tuple[int, int]:
    """Limit OpenMP/BLAS pools and TensorFlow's intra-op pool to ``n`` threads (inter-op: at most 2).

    Returns the TensorFlow pool sizes in force, which differ from the request when its runtime had
    already started in this process.
    """
    if n < 1:
        raise ValueError(f"a job needs at least 1 thread, got {n}")
    inter_op = inter_op or min(n, MAX_INTER_OP_THREADS)
    for name in THREAD_ENV_VARS:  # for libraries and child processes that start after this point
        os.environ[name] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
    _limit_loaded_pools(n)
    return _configure_tensorflow_threads(n, inter_op)


def _limit_loaded_pools(n: int) -> None:
    """BLAS/OpenMP libraries already loaded (NumPy's, scikit-learn's) read no environment any more."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n)


def _configure_tensorflow_threads(intra: int, inter: int) -> tuple[int, int]:
    tf = _tensorflow()
    if tf is None:
        return intra, inter
    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(intra)
        threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the runtime already started in this process: its pools are fixed
        in_force = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
        if in_force != (intra, inter):
            log.info("TensorFlow already started in this process with %s intra/inter-op threads; "
                     "keeping them (wanted %d/%d)", in_force, intra, inter)
        return in_force[0] or intra, in_force[1] or inter
    return intra, inter


def enable_gpu_memory_growth() -> int:
    """Let every visible GPU be shared: TensorFlow takes memory as it needs it instead of all at once.

    Returns the number of GPUs; 0 (and nothing changed) on a machine without any.
    """
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # for TensorFlow runtimes started later
    tf = _tensorflow()
    if tf is None:
        return 0
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: the setting it started with stays
            pass
    return len(gpus)


def _tensorflow():
    """TensorFlow if this job uses it (Keras's TensorFlow backend), else None; imported here, not at load."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf
