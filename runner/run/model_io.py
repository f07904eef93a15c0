"""Loading saved Keras models: code that came inside a file runs only when the user says it is trusted.

A `.keras` file can carry Python bytecode (a Lambda layer wrapping a Python lambda) that runs as the model
is rebuilt; Keras's safe mode (for `.keras` and legacy `.h5` files alike) refuses to deserialise it. Load
saved models through ``load_model`` here rather than calling Keras directly.
"""

from runner.errors import RunnerError


class UntrustedModelError(RunnerError):
    """A saved model holds code that would run while loading it, and it was not marked trusted."""


def load_model(path, trusted: bool = False, **kwargs):
    """``keras.saving.load_model`` in safe mode unless ``trusted``; a refusal says why and how to trust the file."""
    import keras  # here, not at the top: runner modules that need no model stay TensorFlow-free

    try:
        return keras.saving.load_model(path, safe_mode=not trusted, **kwargs)
    except ValueError as error:
        if trusted or "safe_mode" not in str(error):
            raise
        raise UntrustedModelError(
            f"refused to load {path}: it contains Python code (a Lambda layer with a Python lambda, or a "
            f"similar function) that would run while the model is rebuilt, and such code can do anything "
            f"your account can. If you trust where the file came from, load it with "
            f"load_model(path, trusted=True) (Keras: safe_mode=False)."
        ) from error


def load_network(path):
    """A saved network to train (``model=saved``): safe mode, and without its compiled loss and optimizer,
    which the run sets from its own config."""
    return load_model(path, compile=False)
