"""Keras model builders: plain functions from keyword options to an uncompiled ``keras.Model``.

Nothing here knows about Hydra or MLflow, so the builders can be used from any script::

    from models import build_model
    model = build_model("mlp", input_shape=(10,), output_units=1, hidden_units=[32])

``import models`` (and ``models.losses``, the task/loss/output rules) does not load Keras: the builders are
imported on first use, so a config can be checked against the rules before TensorFlow starts.
"""

from importlib import import_module

from models.losses import output_head

# architecture -> (module, builder); the module is imported on first use (it imports Keras).
_BUILDERS = {
    "mlp": ("models.mlp", "build_mlp"),
    "bilstm": ("models.bilstm", "build_bilstm"),
    "cnn": ("models.cnn", "build_cnn"),
}
ARCHITECTURES = tuple(_BUILDERS)


def build_model(architecture: str, **options):
    """Build the network named by ``architecture`` ("mlp", "bilstm" or "cnn") from keyword options."""
    try:
        module, builder = _BUILDERS[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    return getattr(import_module(module), builder)(**options)


def __getattr__(name: str):
    """build_mlp, build_bilstm, build_cnn, ...: the builders, imported on first use (PEP 562)."""
    for module, builder in _BUILDERS.values():
        if name == builder:
            return getattr(import_module(module), builder)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "build_bilstm", "build_cnn", "build_mlp", "build_model", "output_head"]
