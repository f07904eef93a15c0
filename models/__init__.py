"""Keras model builders: plain functions from keyword options to an uncompiled ``keras.Model``.

Nothing here knows about Hydra or MLflow, so the builders can be used from any script::

    from models import build_model
    model = build_model("mlp", input_shape=(10,), output_units=1, hidden_units=[32])
"""

from models.bilstm import build_bilstm
from models.mlp import build_mlp

BUILDERS = {"mlp": build_mlp, "bilstm": build_bilstm}
ARCHITECTURES = tuple(BUILDERS)


def build_model(architecture: str, **options):
    """Build the network named by ``architecture`` ("mlp" or "bilstm") from keyword options."""
    try:
        builder = BUILDERS[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    return builder(**options)


def output_head(task: str, n_classes: int) -> tuple[int, str]:
    """The conventional output layer for a task: (units, activation)."""
    if task == "regression":
        return 1, "linear"
    if task == "binary":
        return 1, "sigmoid"
    if task == "multiclass":
        return n_classes, "softmax"
    raise ValueError(f"unknown task {task!r}; expected regression, binary or multiclass")


__all__ = ["ARCHITECTURES", "build_bilstm", "build_mlp", "build_model", "output_head"]
