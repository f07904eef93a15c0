"""The rules tying a task to its output layer and its losses: one owner for the config checks, the training
and the diagnostics.  Pure Python (no Keras), so a config can be checked before TensorFlow loads.

Loss names are Keras's snake_case names (what ``keras.losses.get`` accepts and the diagnostics report);
``loss_task`` also takes Keras's aliases and class names (``mae``, ``MeanSquaredError``).
"""

from __future__ import annotations

# The output activation; multilabel: one independent sigmoid per label (the labels do not compete).
TASK_OUTPUT = {"regression": "linear", "binary": "sigmoid", "multiclass": "softmax", "multilabel": "sigmoid"}
TASKS = tuple(TASK_OUTPUT)
DEFAULT_LOSS = {
    "regression": "mean_absolute_error",  # the book's choice for the wine regression
    "binary": "binary_crossentropy",
    "multiclass": "sparse_categorical_crossentropy",
    "multilabel": "binary_crossentropy",  # averaged over the labels, each a binary decision
}

# Loss families by what they expect of the output layer and of the targets.
BINARY_CE = frozenset({"binary_crossentropy", "binary_focal_crossentropy"})
CATEGORICAL_CE = frozenset({"categorical_crossentropy", "categorical_focal_crossentropy"})
SPARSE_CE = frozenset({"sparse_categorical_crossentropy"})
CROSS_ENTROPY = BINARY_CE | CATEGORICAL_CE | SPARSE_CE
REGRESSION_LOSSES = frozenset(
    {
        "mean_absolute_error",
        "mean_squared_error",
        "huber",
        "log_cosh",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
    }
)
# Losses that take one-hot targets (the others take class indices).
ONE_HOT_LOSSES = CATEGORICAL_CE | {"kl_divergence"}
# The task each loss suits, and Keras's short aliases of them.
LOSS_TASKS = {
    **dict.fromkeys(REGRESSION_LOSSES, "regression"),
    **dict.fromkeys(BINARY_CE, "binary"),
    **dict.fromkeys(CATEGORICAL_CE | SPARSE_CE | {"kl_divergence"}, "multiclass"),
}
ALIASES = {
    "mae": "mean_absolute_error",
    "mse": "mean_squared_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
}


def _key(name: str) -> str:
    return name.lower().replace("_", "")


_TASK_BY_KEY = {_key(name): task for name, task in LOSS_TASKS.items()} | {
    _key(alias): LOSS_TASKS[name] for alias, name in ALIASES.items()
}


def loss_task(name: str) -> str | None:
    """The task a loss suits, by any of its Keras spellings (case and underscores ignored); None if unknown."""
    return _TASK_BY_KEY.get(_key(name))


def loss_suits(loss_task: str | None, task: str) -> bool:
    """Whether a loss of ``loss_task`` (``loss_task``'s answer) suits ``task``: a binary loss also suits
    multilabel, whose labels are each a binary decision. An unknown loss (None) is not judged."""
    return loss_task is None or loss_task == task or (loss_task, task) == ("binary", "multilabel")


def output_head(task: str, n_classes: int | None) -> tuple[int, str]:
    """The conventional output layer for a task: (units, activation); ``n_classes`` counts the classes
    (multiclass) or the labels (multilabel)."""
    if task not in TASK_OUTPUT:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return (n_classes if task in ("multiclass", "multilabel") else 1), TASK_OUTPUT[task]
