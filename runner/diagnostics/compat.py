"""Every reach of the diagnostics into a library's internals, one small function each (the rest of the runner
keeps its own in ``runner/runtime/compat.py``: the diagnostics import nothing from the runner outside
``runner.diagnostics``).

Each says the version it was checked against and the public API that will replace it; tests/test_compat.py
exercises them against the installed libraries and fails if another module reaches into a library on its own.
"""

from __future__ import annotations

import contextlib
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
