"""What differs between Keras backends on the runner's side, kept in one place (the diagnostics keep theirs in
``runner/diagnostics/gradients.py``).

Input pipeline. Given NumPy arrays, Keras's TensorFlow backend builds a new tf.data pipeline over the
arrays for every ``fit`` epoch and every validation pass: on a small model that costs more than the
arithmetic (wine: 35 ms of a 78 ms epoch went to the validation pass of 490 rows). ``fit_inputs`` builds
the pipelines once: the arrays become tensors once, each epoch shuffles only an index vector (seeded, so
runs repeat) and gathers one batch at a time. The JAX and PyTorch backends iterate NumPy arrays cheaply, so
they get the arrays as they are. PyTorch's loader shuffles them with torch's global generator, which a
checkpoint saves and restores (``random_state``) so that a resumed fit sees the data in the same order.

Compilation. Keras's PyTorch trainer runs one step per call (it refuses ``steps_per_execution`` above 1) and
eagerly unless ``jit_compile=True`` asks for ``torch.compile``; ``compile_settings`` adapts the trainer's.

Runtime settings. Thread pools, GPU memory and deterministic GPU kernels are fixed when the backend's
runtime starts, and each backend takes them differently: TensorFlow through ``tf.config`` until its runtime
starts; JAX (XLA) from the environment it finds at its first computation: ``NPROC`` sizes XLA's CPU thread
pool, ``XLA_PYTHON_CLIENT_PREALLOCATE`` and ``XLA_FLAGS`` the GPU side; PyTorch through ``torch.set_num_threads``
at any time, but its inter-op pool only before its first parallel work. Importing Keras or JAX starts
nothing, so a fresh process gets every setting; a process that already computed (a reused joblib worker, a
test session) keeps what it started with, and the functions here return what is in force.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from runner.diagnostics.compat import keep_tensorflow_unimported
from runner.runtime import collection, compat
from runner.runtime.resources import available_cores

log = logging.getLogger("runner")
JAX_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
# cuBLAS repeats its results only with a fixed workspace, read when CUDA starts (PyTorch's reproducibility notes).
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
# JAX's persistent compilation cache (``keep_compiled_programs``): every program, whatever its compile time (JAX's
# default, 1 s, keeps none of a small model's), and its least recently used programs dropped past 2 GiB.
JAX_CACHE_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0, "jax_compilation_cache_max_size": 2 * 1024**3}


def name() -> str:
    return keras.backend.backend()


@dataclass
class FitInputs:
    """What ``model.fit`` takes for one training run: ``fit(**inputs.fit_kwargs(), ...)``."""

    x: object
    y: object = None
    batch_size: int | None = None
    shuffle: bool = False
    validation_data: object = None

    def fit_kwargs(self) -> dict:
        kwargs = {"x": self.x, "validation_data": self.validation_data, "shuffle": self.shuffle}
        if self.y is not None:
            kwargs["y"] = self.y
        if self.batch_size is not None:
            kwargs["batch_size"] = self.batch_size
        return kwargs


def fit_inputs(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    pipeline: str = "auto",
) -> FitInputs:
    """Training and validation inputs for ``model.fit``.

    ``pipeline``: "auto" (built once on TensorFlow, arrays elsewhere), "arrays" (hand the arrays to Keras,
    as a hand-written script does) or "tf_data" (force the built-once pipeline; TensorFlow only).
    """
    if pipeline == "auto":
        pipeline = "tf_data" if name() == "tensorflow" else "arrays"
    if pipeline == "arrays":
        return FitInputs(x=x_train, y=y_train, batch_size=batch_size, shuffle=shuffle, validation_data=(x_val, y_val))
    if name() != "tensorflow":
        raise ValueError(
            f"trainer.pipeline=tf_data needs the TensorFlow backend (this run uses {name()}); use trainer.pipeline=auto"
        )
    return FitInputs(
        x=_batched(x_train, y_train, batch_size, shuffle, seed),
        validation_data=_batched(x_val, y_val, batch_size, False, seed),
    )


def compile_settings(steps_per_execution: int, jit_compile) -> dict:
    """``model.compile``'s execution settings from the trainer's, as this backend takes them: Keras's
    PyTorch trainer refuses more than one step per call, so it gets one."""
    if name() == "torch" and steps_per_execution > 1:
        log.debug("trainer.steps_per_execution=%d: the PyTorch backend runs 1 step per call", steps_per_execution)
        steps_per_execution = 1
    return {"steps_per_execution": steps_per_execution, "jit_compile": jit_compile}


def random_state() -> dict[str, np.ndarray]:
    """The backend's global generator state that the data order depends on, for a checkpoint: PyTorch's
    loader draws every epoch's shuffle (and each loader's base seed) from torch's global generator. Empty
    elsewhere (TensorFlow's pipeline is seeded per run, JAX's order comes from NumPy's generator)."""
    if name() != "torch":
        return {}
    import torch

    return {"torch_random": torch.get_rng_state().numpy().copy()}


def set_random_state(arrays) -> None:
    """Put back what ``random_state`` saved (``arrays``: a mapping that may hold more)."""
    if name() == "torch" and "torch_random" in arrays:
        import torch

        torch.set_rng_state(torch.from_numpy(np.asarray(arrays["torch_random"], dtype=np.uint8)))


# Keras's TensorFlow trainer opens two iterators over the training data per epoch (the one it trains on, and
# one it opens when the epoch's batches run out and then drops); each draws the next shuffle order.
TF_ITERATORS_PER_EPOCH = 2


def skip_epochs(inputs: FitInputs, epochs: int) -> bool:
    """Draw the shuffle orders of ``epochs`` epochs, so that a fit resumed after them sees the data in the
    order the uninterrupted fit saw it. Arrays need nothing where Keras shuffles them with a global generator
    whose state the checkpoint restores (NumPy's on JAX, torch's on PyTorch: ``random_state``); False for
    Keras's TensorFlow pipeline over shuffled arrays, whose order cannot be promised."""
    if isinstance(inputs.x, np.ndarray):
        return not inputs.shuffle or name() != "tensorflow"
    for _ in range(TF_ITERATORS_PER_EPOCH * epochs):
        iter(inputs.x)
    return True


def _batched(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    targets = tf.constant(y)
    if isinstance(x, np.memmap):
        # An array on disk (datasets/images.py) is read a batch at a time: tf.constant would copy it all into memory.
        def take(index):
            rows = tf.numpy_function(lambda i: np.asarray(x[i]), [index], tf.as_dtype(x.dtype), stateful=False)
            return tf.ensure_shape(rows, (None, *x.shape[1:]))
    else:
        features = tf.constant(x)

        def take(index):
            return tf.gather(features, index)

    rows = tf.data.Dataset.range(len(x))
    if shuffle:
        rows = rows.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # A sequential map: gathering one batch costs microseconds, and a parallel map's threads would compete
    # with the training step's for the same cores.
    batches = rows.batch(batch_size).map(lambda index: (take(index), tf.gather(targets, index)))
    return batches.prefetch(tf.data.AUTOTUNE)


MAPPED_CHUNK_BYTES = 64 << 20  # inputs per model.predict call when they are read from disk
# Inputs per prediction batch: large rows (images) get smaller batches, since a conv layer's activations
# are many times its input (2048 RGB 64x64 images: 1 GB after a 32-filter conv); rows up to 4 KB (MNIST's
# 784 floats) keep the caller's batch_size.
BATCH_BYTES = 8 << 20


def predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict`` as NumPy; an array on disk (np.memmap) a chunk at a time, because Keras's TensorFlow
    adapter would copy all of it into one tensor first."""
    batch_size = max(1, min(batch_size, BATCH_BYTES // max(1, x[:1].nbytes)))
    if not isinstance(x, np.memmap) or len(x) == 0:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    rows = max(batch_size, MAPPED_CHUNK_BYTES // max(1, x[:1].nbytes) // batch_size * batch_size)
    chunks = [
        model.predict(x[start : start + rows], batch_size=batch_size, verbose=0) for start in range(0, len(x), rows)
    ]
    return np.concatenate([np.asarray(chunk) for chunk in chunks])


# ----------------------------------------------------------------------------------- runtime settings


def limit_threads(intra: int, inter: int) -> tuple[int, int]:
    """Ask the backend for ``intra`` threads per op and ``inter`` ops at once; returns the pool sizes in
    force. JAX has a single pool (XLA runs independent ops on the same threads): its inter-op size is 0."""
    if name() == "tensorflow":
        return _limit_tensorflow_threads(intra, inter)
    if name() == "jax":
        return _limit_jax_threads(intra), 0
    if name() == "torch":
        return _limit_torch_threads(intra, inter)
    return intra, inter


def prepare_gpus(*, memory_growth: bool, shared: bool, deterministic: bool) -> int:
    """GPU settings for one job, then the number of GPUs it sees (0 without any).

    ``memory_growth``: TensorFlow takes GPU memory as it needs it; JAX, when ``shared`` (other jobs on this
    machine), stops preallocating 75% of it per process; PyTorch's caching allocator always grows as needed.
    ``deterministic``: JAX asks XLA for deterministic GPU kernels, PyTorch fixes cuBLAS's workspace before CUDA
    starts (TensorFlow's switch, ``seed``'s, can be thrown at any time). On JAX this starts the runtime:
    call it after ``limit_threads``.
    """
    if name() == "tensorflow":
        return _tensorflow_gpus(memory_growth)
    if name() == "torch":
        return _torch_gpus(deterministic)
    if name() != "jax":
        return 0
    if memory_growth and shared and not compat.jax_backends_started():
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if deterministic:
        _ask_jax_for_determinism()
    return _jax_gpus()


def keep_compiled_programs(enabled: bool) -> Path | None:
    """JAX: keep the XLA programs this process compiles on disk, in JAX's persistent compilation cache, for
    later processes that compile the same programs (a rerun, a sweep's trials, the diagnostics' probes); returns
    the cache's folder, or None (another backend, or ``trainer.compile_cache=false``).

    Measured on the seizure MLP with ``diagnostics=quick``, 5 epochs, 2 cores: a second process took 23-26 s
    against 38-45 s, its checks 7-8 s against 14-17 s. JAX's own default keeps only programs that took over 1 s
    to compile, which is none of a small model's. ``JAX_COMPILATION_CACHE_DIR``, when set, wins with JAX's
    settings. Switching the cache off takes effect in a process that has not compiled yet.
    """
    if name() != "jax":
        return None
    import jax

    jax.config.update("jax_enable_compilation_cache", bool(enabled))
    if not enabled:
        return None
    if not jax.config.jax_compilation_cache_dir:  # neither JAX_COMPILATION_CACHE_DIR nor an earlier job
        from datasets.fetch import user_cache_root

        jax.config.update("jax_compilation_cache_dir", str(user_cache_root() / "jax"))
    for option, value in JAX_CACHE_SETTINGS.items():
        if option.upper() not in os.environ:  # JAX reads its options from the environment too: those win
            jax.config.update(option, value)
    return Path(jax.config.jax_compilation_cache_dir)


def seed(value: int, deterministic: bool) -> None:
    """A fresh Keras session with Python, NumPy and backend generators seeded (torch's global one too), and
    deterministic kernels on request (on CPU every backend repeats a run bit for bit without them; on a GPU
    they need them)."""
    # Before the first job's model: clear_session's full collection then scans only what jobs made since, not
    # the million objects of the imports (0.34 s a job with TensorFlow, MLflow and Optuna loaded, against 0.02 s).
    collection.freeze_once()
    keras.backend.clear_session()
    keep_tensorflow_unimported()  # JAX and PyTorch jobs: 2.4 s of TensorFlow's import that Keras asks for
    keras.utils.set_random_seed(int(value))
    if not deterministic:
        return
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif name() == "jax":
        _ask_jax_for_determinism()
    elif name() == "torch":
        _ask_torch_for_determinism()


def _limit_tensorflow_threads(intra: int, inter: int) -> tuple[int, int]:
    import tensorflow as tf

    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(intra)
        threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the runtime already started in this process: its pools are fixed
        in_force = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
        if in_force != (intra, inter):
            log.info(
                "TensorFlow already started in this process with %s intra/inter-op threads; "
                "keeping them (wanted %d/%d)",
                in_force,
                intra,
                inter,
            )
        return in_force[0] or intra, in_force[1] or inter
    return intra, inter


def _tensorflow_gpus(memory_growth: bool) -> int:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if memory_growth:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # for TensorFlow runtimes started later
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: the setting it started with stays
                pass
    return len(gpus)


def _limit_torch_threads(intra: int, inter: int) -> tuple[int, int]:
    import torch

    torch.set_num_threads(intra)
    try:
        torch.set_num_interop_threads(inter)
    except RuntimeError:  # its inter-op pool is fixed once PyTorch ran parallel work in this process
        if torch.get_num_interop_threads() != inter:
            log.info(
                "PyTorch already started its inter-op pool in this process with %d thread(s); keeping them (wanted %d)",
                torch.get_num_interop_threads(),
                inter,
            )
    return torch.get_num_threads(), torch.get_num_interop_threads()


def _torch_gpus(deterministic: bool) -> int:
    import torch

    if deterministic:
        os.environ.setdefault(*CUBLAS_WORKSPACE)  # read when CUDA starts: before the first GPU tensor
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _ask_torch_for_determinism() -> None:
    import torch

    # warn_only: an op without a deterministic kernel warns (naming itself) instead of stopping the run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def _limit_jax_threads(n: int) -> int:
    # XLA sizes its CPU pool from NPROC when JAX starts, else from the cores this process may run on.
    if not compat.jax_backends_started():
        os.environ["NPROC"] = str(n)
        return n
    in_force = _positive_int(os.environ.get("NPROC")) or available_cores()
    if in_force != n:
        log.info("JAX already started in this process with %d thread(s); keeping them (wanted %d)", in_force, n)
    return in_force


def _ask_jax_for_determinism() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if JAX_DETERMINISTIC_FLAG in flags.split():
        return
    if not compat.jax_backends_started():
        os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISTIC_FLAG}".strip()
    elif _jax_gpus():
        log.warning(
            "JAX started on the GPU before this job could ask XLA for deterministic kernels "
            "(XLA_FLAGS=%s): runs may differ in the last digits. Run each job in a fresh process.",
            JAX_DETERMINISTIC_FLAG,
        )


def _jax_gpus() -> int:
    import jax

    # Starting, JAX logs at INFO each platform it could not open ("Unable to initialize backend 'tpu'"),
    # which Hydra's INFO logging would print in every run.
    compat.quiet_jax_backend_log()
    return sum(device.platform == "gpu" for device in jax.devices())


def _positive_int(text: str | None) -> int | None:
    try:
        return int(text) if text and int(text) > 0 else None
    except ValueError:
        return None
