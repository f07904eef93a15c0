"""Gradients for the diagnostics: the one place that knows which Keras backend is running.

Everything else in ``runner.diagnostics`` works on NumPy arrays returned from here, so the checks run
unchanged on the TensorFlow, JAX and PyTorch backends. TensorFlow records a tape, JAX differentiates
functions of the weights, PyTorch differentiates the tensors a call built (``torch.autograd.grad``, which
leaves the weights' ``.grad`` to the trainer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np

from runner.diagnostics import compat


def backend() -> str:
    return keras.backend.backend()


@contextlib.contextmanager
def float64_enabled():
    """Let float64 mean float64 inside the block (usable as a decorator).

    On JAX two things stand in the way of a float64 gradient check, each turning it into a comparison of
    float32 finite differences: JAX truncates float64 arrays to float32 unless 64-bit types are enabled,
    and Keras's type promotion (``result_type``, used by ``ops.mean`` and so by every loss) maps float64 to
    float32 on every backend but TensorFlow, to match JAX's default. The block enables JAX's 64-bit types
    (for this thread) and lifts that one mapping (for the process: the block is short, and the diagnostics
    run between training steps, not beside them), and restores both on leaving, so training stays float32.
    Lifting it reaches into Keras (runner/diagnostics/compat.py): should a Keras release rename the mapping,
    nothing is lifted and ``computes_in_float64`` says so.
    PyTorch computes in float64 natively and needs only the mapping lifted; TensorFlow needs neither.
    """
    if backend() == "torch":
        with compat.float64_promotion_kept():
            yield
        return
    if backend() != "jax":
        yield
        return
    import jax

    x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64  # before jax 0.8
    with x64(True), compat.float64_promotion_kept():
        yield


def computes_in_float64(model: keras.Model) -> bool:
    """Whether ``model``'s weights and Keras's arithmetic really are float64 here (see ``float64_enabled``)."""
    weights = all(keras.ops.convert_to_numpy(w).dtype == np.float64 for w in model.trainable_weights)
    probe = np.array([1.0, 2.0**-30])  # its mean differs from 0.5 only beyond float32's precision
    return weights and float(keras.ops.convert_to_numpy(keras.ops.mean(probe))) == float(np.mean(probe))


def loss_and_gradients(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    training: bool = False,
    loss_fn: Callable | None = None,
    include_regularization: bool = True,
) -> tuple[float, list[np.ndarray]]:
    """Mean loss on (x, y) and its gradient w.r.t. each of ``model.trainable_weights`` (same order).

    ``loss_fn(y_true, y_pred)`` defaults to the compiled loss; ``include_regularization`` adds the layers'
    regularisation losses (``model.losses``), as training does.
    """
    loss_fn = loss_fn or _compiled_loss(model)
    x = np.asarray(x)
    y = np.asarray(y)
    if backend() == "jax":
        return _jax_loss_and_gradients(model, x, y, training, loss_fn, include_regularization)
    if backend() == "torch":
        return _torch_loss_and_gradients(model, x, y, training, loss_fn, include_regularization)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        predictions = model(x, training=training)
        loss = keras.ops.mean(loss_fn(y, predictions))
        if include_regularization and model.losses:
            loss = loss + keras.ops.sum(keras.ops.stack(model.losses))
    grads = tape.gradient(loss, model.trainable_weights)
    return float(loss), [_numpy_or_zeros(g, w) for g, w in zip(grads, model.trainable_weights)]


def probe_gradients_function(
    model: keras.Model, x: np.ndarray, y: np.ndarray, *, include_regularization: bool = False
) -> Callable[[], tuple[float, list[np.ndarray]]]:
    """``loss_and_gradients(model, x, y, training=False)`` on one fixed batch, compiled once for many calls
    (the training monitors measure the same probe rows after every epoch): run eagerly, each call re-runs the
    model's ops one by one from Python, which cost more than a small model's training epoch."""
    loss_fn = _compiled_loss(model)
    x, y = np.asarray(x), np.asarray(y)
    if backend() == "jax":
        import jax

        trainable, others = model.trainable_variables, model.non_trainable_variables
        compute = _stateless_loss(model, x, y, False, loss_fn, include_regularization)
        compiled = jax.jit(jax.value_and_grad(compute))

        def jax_call():
            loss, grads = compiled([v.value for v in trainable], [v.value for v in others])
            return float(loss), [np.asarray(g) for g in grads]

        return jax_call
    if backend() != "tensorflow":
        return lambda: loss_and_gradients(
            model, x, y, training=False, loss_fn=loss_fn, include_regularization=include_regularization
        )
    import tensorflow as tf

    inputs, targets = tf.constant(x), tf.constant(y)

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=False)
            loss = keras.ops.mean(loss_fn(targets, predictions))
            if include_regularization and model.losses:
                loss = loss + keras.ops.sum(keras.ops.stack(model.losses))
        return loss, tape.gradient(loss, model.trainable_weights)

    def tf_call():
        loss, grads = gradients()
        return float(loss), [_numpy_or_zeros(g, w) for g, w in zip(grads, model.trainable_weights)]

    return tf_call


def probe_outputs_function(model: keras.Model, x: np.ndarray) -> Callable[[], list[np.ndarray]]:
    """``model(x, training=False)`` on one fixed batch as a list of NumPy arrays, compiled once for many
    calls (see ``probe_gradients_function``)."""
    x = np.asarray(x)

    def as_arrays(outputs):
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [keras.ops.convert_to_numpy(output) for output in outputs]

    if backend() == "jax":
        import jax

        trainable, others = model.trainable_variables, model.non_trainable_variables

        def forward(trainable_values, other_values):
            outputs, _ = model.stateless_call(trainable_values, other_values, x, training=False)
            return outputs

        compiled = jax.jit(forward)
        return lambda: as_arrays(compiled([v.value for v in trainable], [v.value for v in others]))
    if backend() != "tensorflow":
        return lambda: as_arrays(model(x, training=False))
    import tensorflow as tf

    inputs = tf.constant(x)
    compiled = tf.function(lambda: model(inputs, training=False))
    return lambda: as_arrays(compiled())


def input_gradients(model: keras.Model, x: np.ndarray, score_fn: Callable) -> np.ndarray:
    """d score / d x for each row of ``x``; ``score_fn(outputs)`` returns one scalar per row (e.g. the class
    probability of the true label, or the output at one time step).  Rows are independent in inference mode,
    so the gradient of the summed score gives every row's own gradient."""
    x = np.asarray(x, dtype="float32")
    if backend() == "jax":
        import jax

        def total(inputs):
            return keras.ops.sum(score_fn(model(inputs, training=False)))

        return np.asarray(jax.grad(total)(x))
    if backend() == "torch":
        return _torch_input_gradients(model, x, score_fn)
    import tensorflow as tf

    inputs = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        total = tf.reduce_sum(score_fn(model(inputs, training=False)))
    return tape.gradient(total, inputs).numpy()


def input_gradient_function(model: keras.Model, score_fn: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``input_gradients`` compiled once for many calls on same-shaped batches (gradient ascent on the input):
    run eagerly, each step would re-trace the model's ops one by one."""
    if backend() == "jax":
        import jax

        def total(inputs):
            return keras.ops.sum(score_fn(model(inputs, training=False)))

        compiled = jax.jit(jax.grad(total))
        return lambda x: np.asarray(compiled(np.asarray(x, dtype="float32")))
    if backend() == "torch":  # eager: each call runs the ops once, with no tracing to repeat
        return lambda x: _torch_input_gradients(model, np.asarray(x, dtype="float32"), score_fn)
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def gradient(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            total = tf.reduce_sum(score_fn(model(inputs, training=False)))
        return tape.gradient(total, inputs)

    return lambda x: gradient(tf.convert_to_tensor(np.asarray(x, dtype="float32"))).numpy()


def activation_gradients(tap: keras.Model, x: np.ndarray, score_fn: Callable) -> tuple[np.ndarray, np.ndarray]:
    """For ``tap`` mapping the inputs to [a layer's activations, later outputs]: the activations on ``x`` and
    d score / d activations, where ``score_fn(later outputs)`` returns one scalar per row (Grad-CAM's class
    score).  Rows are independent in inference mode, as in ``input_gradients``."""
    x = np.asarray(x, dtype="float32")
    if backend() == "jax":
        import jax

        activations = keras.ops.convert_to_numpy(tap(x, training=False)[0])
        # JAX differentiates functions, not tensors: the gradient at an inner layer needs the graph from that
        # layer on as a function of its own (a Functional model can be cut at any of its tensors).
        head = keras.Model(tap.outputs[0], tap.outputs[1])

        def total(values):
            return keras.ops.sum(score_fn(head(values, training=False)))

        return activations, np.asarray(jax.grad(total)(activations))
    if backend() == "torch":
        return _torch_activation_gradients(tap, x, score_fn)
    import tensorflow as tf

    inputs = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        # Watching the input records the activations even when the layers before them are frozen.
        tape.watch(inputs)
        activations, later = tap(inputs, training=False)
        total = tf.reduce_sum(score_fn(later))
    return activations.numpy(), tape.gradient(total, activations).numpy()


def regularization_loss_and_gradients(model: keras.Model) -> tuple[float, list[np.ndarray]]:
    """The weight regularisers' penalty (sum of ``model.losses``) and its gradient w.r.t. each of
    ``model.trainable_weights``, without a forward pass: the penalties depend on the weights only.
    A model without regularisers gives 0.0 and zero gradients."""
    weights = model.trainable_weights
    if not model.losses:
        return 0.0, [np.zeros(tuple(w.shape), dtype="float32") for w in weights]
    if backend() == "jax":
        import jax

        def penalty(values):
            with keras.StatelessScope(state_mapping=list(zip(weights, values))):
                return keras.ops.sum(keras.ops.stack(model.losses))

        loss, grads = jax.value_and_grad(penalty)([w.value for w in weights])
        return float(loss), [np.asarray(g) for g in grads]
    if backend() == "torch":
        with _torch_grad_enabled():
            loss = keras.ops.sum(keras.ops.stack(model.losses))
            return float(loss.detach()), _torch_gradients(loss, weights)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.sum(keras.ops.stack(model.losses))
    grads = tape.gradient(loss, weights)
    return float(loss), [_numpy_or_zeros(g, w) for g, w in zip(grads, weights)]


def _compiled_loss(model: keras.Model) -> Callable:
    from runner.diagnostics.introspect import (
        compiled_loss,  # introspect is the one owner of this rule
    )

    return compiled_loss(model).fn


def _numpy_or_zeros(grad, weight) -> np.ndarray:
    # A weight the loss does not depend on has no gradient (None): report zeros of its shape.
    if grad is None:
        return np.zeros(tuple(weight.shape), dtype="float32")
    return keras.ops.convert_to_numpy(grad)


def _jax_loss_and_gradients(model, x, y, training, loss_fn, include_regularization):
    import jax

    trainable = model.trainable_variables
    fixed = [v.value for v in model.non_trainable_variables]
    compute = _stateless_loss(model, x, y, training, loss_fn, include_regularization)
    # Compiled as one program: run eagerly, JAX compiles every op it meets in a new dtype or shape on its own
    # (the float64 gradient check met dozens, seconds each on a loaded machine).
    loss, grads = jax.jit(jax.value_and_grad(compute))([v.value for v in trainable], fixed)
    return float(loss), [np.asarray(g) for g in grads]


def _stateless_loss(model, x, y, training, loss_fn, include_regularization):
    """The mean loss (plus the regularisation losses, if asked) as a pure function of the weights' values, which
    JAX can differentiate and compile: ``compute(trainable_values, non_trainable_values)``."""
    trainable, others = model.trainable_variables, model.non_trainable_variables

    def compute(trainable_values, other_values):
        # model(...) rather than model.stateless_call(...): __call__ passes `training` only to a call()
        # that takes it, as the TensorFlow path does.
        mapping = list(zip(trainable, trainable_values)) + list(zip(others, other_values))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=include_regularization):
            predictions = model(x, training=training)
            losses = model.losses if include_regularization else []
        loss = keras.ops.mean(loss_fn(y, predictions))
        if losses:
            loss = loss + keras.ops.sum(keras.ops.stack(losses))
        return loss

    return compute


@contextlib.contextmanager
def _torch_grad_enabled():
    # The diagnostics may run inside Keras's evaluation or prediction, which turn PyTorch's autograd off.
    import torch

    with torch.enable_grad():
        yield


def _torch_gradients(loss, weights) -> list[np.ndarray]:
    import torch

    grads = torch.autograd.grad(loss, [w.value for w in weights], allow_unused=True)
    return [_numpy_or_zeros(g, w) for g, w in zip(grads, weights)]


def _torch_loss_and_gradients(model, x, y, training, loss_fn, include_regularization):
    with _torch_grad_enabled():
        loss = keras.ops.mean(loss_fn(y, model(x, training=training)))
        if include_regularization and model.losses:
            loss = loss + keras.ops.sum(keras.ops.stack(model.losses))
        return float(loss.detach()), _torch_gradients(loss, model.trainable_weights)


def _torch_input_gradients(model, x: np.ndarray, score_fn: Callable) -> np.ndarray:
    import torch

    with _torch_grad_enabled():
        inputs = keras.ops.convert_to_tensor(x).requires_grad_(True)
        total = keras.ops.sum(score_fn(model(inputs, training=False)))
        return keras.ops.convert_to_numpy(torch.autograd.grad(total, inputs)[0])


def _torch_activation_gradients(tap, x: np.ndarray, score_fn: Callable) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with _torch_grad_enabled():
        # An input that needs a gradient records the activations even when the layers before them are frozen.
        inputs = keras.ops.convert_to_tensor(x).requires_grad_(True)
        activations, later = tap(inputs, training=False)
        total = keras.ops.sum(score_fn(later))
        grads = torch.autograd.grad(total, activations)[0]
        return keras.ops.convert_to_numpy(activations), keras.ops.convert_to_numpy(grads)


def forward_loss(model: keras.Model, loss_fn: Callable) -> Callable[[np.ndarray, np.ndarray], float]:
    """``(x, y) -> mean loss`` in inference mode through the same path as ``loss_and_gradients``.

    On TensorFlow a sigmoid/softmax output keeps its logits (``_keras_logits``) when the model is called
    directly, and cross-entropy uses them; ``predict`` returns clipped probabilities instead, so a loss
    computed from ``predict`` differs from the one backprop differentiates on confident outputs.  The call is
    traced once (a recurrent layer run eagerly steps through time in Python)."""

    def compute(x, y):
        return keras.ops.mean(loss_fn(y, model(x, training=False)))

    if backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(compute, reduce_retracing=True)
        return lambda x, y: float(compiled(np.asarray(x), np.asarray(y)))
    if backend() == "jax":
        import jax

        # The weights are arguments, not constants of the trace: the gradient check shifts them between calls.
        # Run eagerly, every op of every call was dispatched on its own (tens of seconds on the MNIST MLP).
        trainable, others = model.trainable_variables, model.non_trainable_variables

        def stateless(trainable_values, other_values, x, y):
            mapping = list(zip(trainable, trainable_values)) + list(zip(others, other_values))
            with keras.StatelessScope(state_mapping=mapping):
                return compute(x, y)

        jitted = jax.jit(stateless)
        return lambda x, y: float(
            jitted([v.value for v in trainable], [v.value for v in others], np.asarray(x), np.asarray(y))
        )
    if backend() == "torch":
        import torch

        def without_graph(x, y):
            with torch.no_grad():  # no graph to record: nothing is differentiated here
                return float(keras.ops.convert_to_numpy(compute(np.asarray(x), np.asarray(y))))

        return without_graph
    return lambda x, y: float(keras.ops.convert_to_numpy(compute(np.asarray(x), np.asarray(y))))
