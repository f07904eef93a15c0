"""Every reach of the diagnostics into a library's internals, one small function each (the rest of the runner
keeps its own in ``runner/runtime/compat.py``: the diagnostics import nothing from the runner outside
``runner.diagnostics``).

Each says the version it was checked against and the public API that will replace it; tests/test_compat.py
exercises them against the installed libraries and fails if another module reaches into a library on its own.
"""

from __future__ import annotations

import contextlib
import sys
from unittest import mock


@contextlib.contextmanager
def float64_promotion_kept():
    """Inside the block Keras's type promotion keeps float64 as float64 (for the process), as it does on
    TensorFlow; outside it, off TensorFlow, ``keras.backend.result_type`` maps float64 to float32 (as JAX does).

    keras 3.15.1: patches ``keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE``. No public API yet:
    ``keras.config.set_floatx("float64")`` does not lift that mapping. Should a release rename it, nothing is
    lifted (``runner.diagnostics.gradients.computes_in_float64`` then says so).
    """
    from keras.src.backend.common import dtypes

    mapping = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {})
    with mock.patch.dict(mapping, {"float64": "float64"} if mapping else {}):
        yield


def build_for_training(model, x, y) -> None:
    """Build the model's compiled loss and metrics for batches like ``(x, y)``, as Keras does before its first
    training step, so that a training loop traced in a graph of our own finds them built (a metric built while
    the loop body is traced is reset nowhere in that body, and its value accumulates over the steps).

    keras 3.15.1: calls ``Trainer._symbolic_build(data_batch=...)``, as ``train_on_batch`` and ``fit`` do. No
    public API builds the compiled metrics without running a step. Idempotent.
    """
    model._symbolic_build(data_batch=(x, y))


# Keras modules that ask ``tensorflow.available`` on every backend, for objects that exist only once TensorFlow
# is imported (its shapes, dtypes and specs) or to seed its generator.
TENSORFLOW_ASKERS = (
    "keras.src.saving.serialization_lib",
    "keras.src.utils.rng_utils",
    "keras.src.legacy.saving.json_utils",
)


class _TensorFlowIfImported:
    """Keras's lazy ``tensorflow`` module, saying it is available only once something has imported it."""

    def __init__(self, lazy):
        self.lazy = lazy

    @property
    def available(self) -> bool:
        return "tensorflow" in sys.modules and self.lazy.available

    def __getattr__(self, name):
        return getattr(self.lazy, name)


def keep_tensorflow_unimported() -> None:
    """On a backend other than TensorFlow, stop Keras from importing TensorFlow only to ask about it.

    keras 3.15.1 asks ``keras.src.utils.module_utils.tensorflow.available`` whatever the backend, which imports
    TensorFlow when it is installed: in ``serialize_keras_object`` (every ``get_config``: clones, saving) to
    recognise TensorFlow's shapes and dtypes, and in ``keras.utils.set_random_seed`` to seed it. That import
    costs 2.4 s on 2 cores, in every JAX or PyTorch process that never uses TensorFlow. Those modules' lazy
    module is replaced by one that answers "available" only once TensorFlow is imported: before that no object
    of it exists, and no generator of it is used (the runner gives JAX and PyTorch NumPy arrays, not tf.data). An
    explicit use (``tf.xxx``), and Keras's lookup and hashing layers, still import it. No public API: a Keras
    that checks ``sys.modules`` itself would replace this. Idempotent; nothing on the TensorFlow backend.
    """
    import importlib

    import keras

    if keras.backend.backend() == "tensorflow":
        return
    for name in TENSORFLOW_ASKERS:
        module = importlib.import_module(name)
        lazy = getattr(module, "tf", None)
        if lazy is not None and not isinstance(lazy, _TensorFlowIfImported):
            module.tf = _TensorFlowIfImported(lazy)
