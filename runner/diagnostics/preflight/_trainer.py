"""The training probes' machinery: a regularisation-free clone that can be reset to the model's own
weights, the one-batch trainer that overfit_batch and zeroed_inputs share, and ``Probes``, what the three
training probes (overfit_batch, zeroed_inputs, label_signal) receive besides the model, data and options."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from runner.diagnostics.compat import build_for_training
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import (
    compiled_loss,
    is_recurrent,
    leaf_layers,
    output_units,
)
from runner.diagnostics.preflight._shared import STAGE, batch_loss, clone, probe_batch
from runner.diagnostics.result import CheckResult

OVERFIT_ROWS, OVERFIT_MAX_STEPS = 16, 500
# Budgets are steps, never seconds: the same program must get the same verdict on a loaded machine.
# What "memorised" means (preflight.overfit_batch's threshold; the trainer stops once it holds): 95% accuracy
# on the batch, or a regression loss down to 5% of the loss of predicting the batch mean.
OVERFIT_ACCURACY, OVERFIT_RELATIVE_ERROR = 0.95, 0.05
# PyTorch: below this many steps eager training costs less than compiling a step. (TensorFlow, before
# label_signal shared the trainer's graph: 17 ms per eager step on the wine MLP against 0.2 s to trace the
# 32-step graph, then 0.2 ms a step.)
EAGER_STEPS = 10
# Compiled steps per call on TensorFlow (see tensorflow_steps); steps past the one that reaches the target are
# thrown away, so this changes the cost only.
CHUNK_STEPS = 32


def compiled_steps() -> bool:
    """``jit_compile`` for the probes' short trainings: XLA's compile time would exceed a few hundred small
    steps on TensorFlow (whose graph mode needs no XLA), and torch.compile more so; on JAX, jit is the only
    compiled mode (without it every op runs on its own: 30 ms a step against 2 ms)."""
    return keras.backend.backend() == "jax"


def multi_step_execution() -> bool:
    """Whether ``steps_per_execution`` above 1 may be asked for (Keras's torch backend refuses it)."""
    return keras.backend.backend() != "torch"


class FreshClone:
    """A regularisation-free clone of the model with a fresh optimiser of the same configuration, reset to
    the model's own weights (and the optimiser to its initial state) before each run; the model itself is
    never touched."""

    def __init__(self, model: keras.Model):
        self.clone = clone(model, regularized=False)
        self.optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
        self.optimizer.build(self.clone.trainable_variables)
        self.initial = (
            [w.copy() for w in self.clone.get_weights()],
            [keras.ops.convert_to_numpy(v) for v in self.optimizer.variables],
        )

    def reset(self) -> None:
        weights, slots = self.initial
        self.clone.set_weights(weights)
        for variable, value in zip(self.optimizer.variables, slots):
            variable.assign(value)


@dataclass
class Memorisation:
    reached: bool
    score: float
    steps: int
    seconds: float
    loss_before: float
    loss_after: float
    score_first: float = math.nan


class OneBatchTrainer(FreshClone):
    """A regularisation-free clone of the model, trained from the original weights with a fresh optimizer
    (same configuration) on one batch of ``OVERFIT_ROWS`` training rows; reusable for several runs.

    Steps run as ``train_on_batch`` runs them, whose loss and accuracy are per batch and in training mode (so
    a batch-norm model is judged as it trains).  Compiled steps (on TensorFlow, ``CHUNK_STEPS`` to a call,
    through the graph that label_signal reuses); on PyTorch the first ``EAGER_STEPS`` run eagerly: healthy
    classifiers memorise the batch within a few steps (MNIST MLP: 2, seizure MLP: 10).
    """

    def __init__(self, model: keras.Model, data: DiagnosticData, options: DiagnosticOptions):
        self.loss = compiled_loss(model)
        self.x, self.y = probe_batch(data, OVERFIT_ROWS, options.seed)
        super().__init__(model)
        self.max_steps = int(options.threshold(f"{STAGE}.overfit_batch.max_steps", OVERFIT_MAX_STEPS))
        self.classify = data.task != "regression"
        self.multilabel = data.task == "multilabel"
        self.eager = None
        self._steps_function = None  # TensorFlow's multi-step graph, traced on first use
        self.chunked = keras.backend.backend() == "tensorflow"  # several compiled steps per call
        # PyTorch only. On TensorFlow the multi-step graph is traced anyway, for label_signal, which runs on
        # this trainer after overfit_batch: eager steps before it were pure cost (seizure MLP: 7 steps, 1.7 s).
        # On JAX, eager mode compiles each op on its own the first time it meets it: one jit of the whole step
        # costs less. An eager recurrent layer runs its time loop step by step in Python.
        recurrent = any(is_recurrent(layer) for layer in leaf_layers(model))
        self.eager_steps = EAGER_STEPS if keras.backend.backend() == "torch" and not recurrent else 0
        if self.classify:
            self.criterion, self.higher_is_better = "accuracy", True
            self.target = options.threshold(f"{STAGE}.overfit_batch", OVERFIT_ACCURACY)
        else:
            self.criterion, self.higher_is_better = "loss / loss of the mean", False
            self.target = options.threshold(f"{STAGE}.overfit_batch", OVERFIT_RELATIVE_ERROR)
            constant = np.broadcast_to(np.mean(self.y, axis=0), self.y.shape).astype("float32")
            self.baseline = max(batch_loss(self.loss.fn, self.y, constant), 1e-12)

    def memorise(self, x: np.ndarray, max_steps: int | None = None) -> Memorisation:
        """Train from the initial state on (x, y) until the criterion holds or the steps run out."""
        self.reset()
        max_steps = max_steps or self.max_steps
        started = time.perf_counter()
        losses, scores = [], []
        while len(losses) < max_steps:
            for loss, accuracy in self._next_steps(x, max_steps - len(losses)):
                losses.append(loss)
                scores.append(accuracy if self.classify else loss / self.baseline)
                if self.reached(scores[-1]) or not math.isfinite(loss):
                    return self._memorisation(losses, scores, started)
        return self._memorisation(losses, scores, started)

    def _memorisation(self, losses: list[float], scores: list[float], started: float) -> Memorisation:
        score = scores[-1]
        seconds = time.perf_counter() - started
        return Memorisation(self.reached(score), score, len(losses), seconds, losses[0], losses[-1], scores[0])

    def _next_steps(self, x: np.ndarray, left: int) -> list[tuple[float, float]]:
        """(loss, accuracy) of the next step, or of the next ``CHUNK_STEPS`` on TensorFlow once compiled; the
        caller stops at the first step that reaches the target, so steps run past it change no result."""
        step = self.steps_taken
        if step >= self.eager_steps and self.chunked:
            count = min(CHUNK_STEPS, left)
            self.steps_taken += count
            losses, accuracies = self.tensorflow_steps(x[None], self.y[None], count)
            accuracies = accuracies if self.classify else [math.nan] * count
            return [(float(loss), float(accuracy)) for loss, accuracy in zip(losses, accuracies)]
        if step == self.eager_steps:
            self._compile(eager=False)
        self.steps_taken += 1
        logs = self.clone.train_on_batch(x, self.y, return_dict=True)
        return [(float(logs["loss"]), float(logs["accuracy"]) if self.classify else math.nan)]

    def tensorflow_steps(self, xs: np.ndarray, ys: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` training steps in one graph call (TensorFlow only), step i on batch ``(xs[i % len(xs)],
        ys[i % len(ys)])`` and each as ``train_on_batch`` runs it (metrics reset, then Keras's own
        ``train_step``); every step's loss and accuracy (the loss again for regression).  One call per step
        cost 3.6 ms on the wine MLP, nearly all of it the call itself.

        Traced once per trainer for any number and size of batches, so overfit_batch (one batch of
        OVERFIT_ROWS) and label_signal (SIGNAL_STEPS batches of 32) share one trace: tracing a train step
        is most of what these checks cost on TensorFlow.  It traces train_step itself, so the clone stays
        compiled as it was (recompiling would replace the metrics that the traced graph updates)."""
        import tensorflow as tf

        if self._steps_function is None:
            model, classify = self.clone, self.classify
            build_for_training(model, xs[0], ys[0])

            def stacked(array: np.ndarray) -> tf.TensorSpec:
                return tf.TensorSpec((None, None, *array.shape[2:]), tf.as_dtype(array.dtype))

            @tf.function(input_signature=[stacked(xs), stacked(ys), tf.TensorSpec((), tf.int32)])
            def steps(xs, ys, count):
                losses = tf.TensorArray(tf.float32, size=count)
                accuracies = tf.TensorArray(tf.float32, size=count)
                batches = tf.shape(xs)[0]
                for i in tf.range(count):
                    model.reset_metrics()
                    logs = model.train_step((xs[i % batches], ys[i % batches]))
                    losses = losses.write(i, tf.cast(logs["loss"], tf.float32))
                    accuracy = logs["accuracy"] if classify else logs["loss"]
                    accuracies = accuracies.write(i, tf.cast(accuracy, tf.float32))
                return losses.stack(), accuracies.stack()

            self._steps_function = steps
        losses, accuracies = self._steps_function(xs, ys, tf.constant(count, tf.int32))
        return losses.numpy(), accuracies.numpy()

    def reached(self, score: float) -> bool:
        return score >= self.target if self.higher_is_better else score <= self.target

    def reset(self) -> None:
        super().reset()
        self.steps_taken = 0
        self._compile(eager=self.eager_steps > 0)

    def _compile(self, eager: bool) -> None:
        if self.eager == eager:
            return
        metrics = [self._accuracy()] if self.classify else []
        # The optimiser instance carries over, so switching modes keeps its state.
        self.clone.compile(
            optimizer=self.optimizer,
            loss=self.loss.fn,
            metrics=metrics,
            run_eagerly=eager,
            jit_compile=compiled_steps(),
        )
        self.eager = eager

    def _accuracy(self):
        units = output_units(self.clone, self.x)
        if units == 1 or self.multilabel:
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if self.loss.from_logits else 0.5)
        if self.y.ndim > 1 and self.y.shape[-1] == units:
            return keras.metrics.CategoricalAccuracy(name="accuracy")
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


@dataclass
class Probes:
    """What the training probes share: one OneBatchTrainer, built on first use (overfit_batch builds it,
    zeroed_inputs replays it on zeroed inputs), and the stage's verdicts so far by check name (zeroed_inputs
    and label_signal read overfit_batch's)."""

    trainer: OneBatchTrainer | None = None
    results: dict[str, CheckResult] = field(default_factory=dict)

    def one_batch_trainer(
        self, model: keras.Model, data: DiagnosticData, options: DiagnosticOptions
    ) -> OneBatchTrainer:
        if self.trainer is None:
            self.trainer = OneBatchTrainer(model, data, options)
        return self.trainer

    def add(self, result: CheckResult) -> CheckResult:
        self.results[result.check] = result
        return result
