"""Which Keras backend a job runs on: ``trainer.backend``, applied before Keras is imported.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and cannot switch afterwards; so the CLI calls
``choose_backend`` before TensorFlow loads, and this module imports no Keras. A process where Keras is already
loaded (an in-process test, a reused sweep worker) can only run the backend it loaded: another one is refused
rather than silently replaced. Sweep workers started by joblib inherit the environment, and each job sets it
again in its own process.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from runner.errors import ConfigError

# Set for PyTorch before it loads, unless the environment says otherwise: OpenMP's threads (PyTorch's intra-op
# pool) otherwise spin while they wait for work, and on cores shared with other jobs that spinning costs more
# than the work (a small MLP's step on 2 loaded cores: 40 ms of CPU with 2 spinning threads, 5 ms without).
TORCH_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}
# Each backend's package, and the install that brings it.
PACKAGES = {
    "tensorflow": ("tensorflow", "pip install -e ."),
    "jax": ("jax", "pip install -e '.[jax]'"),
    "torch": ("torch", "pip install -e '.[torch]' (a CPU-only machine: the CPU wheel, see the README)"),
}


def choose_backend(requested: str | None) -> str:
    """Make ``requested`` the backend Keras loads with, and return the backend this job runs on.

    None keeps ``KERAS_BACKEND`` from the environment (else Keras's own default, TensorFlow unless
    ~/.keras/keras.json says otherwise). Refuses a backend whose package is not installed, and one that differs
    from the backend of a Keras already loaded in this process.
    """
    keras = sys.modules.get("keras")
    if keras is not None:
        return _loaded_backend(keras, requested)
    if requested is not None:
        package, install = PACKAGES[requested]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"trainer.backend={requested} needs {package}, which is not installed: {install}")
        os.environ["KERAS_BACKEND"] = requested
    chosen = os.environ.get("KERAS_BACKEND", "tensorflow")
    if chosen == "torch":
        for name, value in TORCH_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    return chosen


def _loaded_backend(keras, requested: str | None) -> str:
    running = keras.backend.backend()
    if requested is not None and requested != running:
        raise ConfigError(
            f"trainer.backend={requested}, but Keras is already loaded in this process on {running}, and it picks "
            "its backend once, when it is imported. Run this job in a fresh process (one command per backend; "
            "a sweep over trainer.backend with the basic or joblib launcher reuses processes), or drop "
            f"trainer.backend to run on {running}"
        )
    return running
