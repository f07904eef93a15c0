"""What differs between Keras backends on the runner's side, kept in one place (the diagnostics keep theirs in
``runner/diagnostics/gradients.py``).

Input pipeline. Given NumPy arrays, Keras's TensorFlow backend builds a new tf.data pipeline over the
arrays for every ``fit`` epoch and every validation pass: on a small model that costs more than the
arithmetic (wine: 35 ms of a 78 ms epoch went to the validation pass of 490 rows). ``fit_inputs`` builds
the pipelines once: the arrays become tensors once, each epoch shuffles only an index vector (seeded, so
runs repeat) and gathers one batch at a time. The JAX backend iterates NumPy arrays cheaply, so it gets
the arrays as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


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


def fit_inputs(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
               batch_size: int, shuffle: bool, seed: int, pipeline: str = "auto") -> FitInputs:
    """Training and validation inputs for ``model.fit``.

    ``pipeline``: "auto" (built once on TensorFlow, arrays elsewhere), "arrays" (hand the arrays to Keras,
    as a hand-written script does) or "tf_data" (force the built-once pipeline; TensorFlow only).
    """
    if pipeline == "auto":
        pipeline = "tf_data" if name() == "tensorflow" else "arrays"
    if pipeline == "arrays":
        return FitInputs(x=x_train, y=y_train, batch_size=batch_size, shuffle=shuffle,
                         validation_data=(x_val, y_val))
    if name() != "tensorflow":
        raise ValueError(f"trainer.pipeline=tf_data needs the TensorFlow backend (this run uses {name()}); "
                         "use trainer.pipeline=auto")
    return FitInputs(x=_batched(x_train, y_train, batch_size, shuffle, seed),
                     validation_data=_batched(x_val, y_val, batch_size, False, seed))


def _batched(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    features, targets = tf.constant(x), tf.constant(y)
    rows = tf.data.Dataset.range(len(x))
    if shuffle:
        rows = rows.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # A sequential map: gathering one batch costs microseconds, and a parallel map's threads would compete
    # with the training step's for the same cores.
    batches = rows.batch(batch_size).map(lambda index: (tf.gather(features, index), tf.gather(targets, index)))
    return batches.prefetch(tf.data.AUTOTUNE)
