"""What is known of each data set before it is loaded: its task, classes, natural slice and extra metrics.

Pure Python (no numpy): the config checks read these facts before anything is loaded or trained. Each spec
names its loader as ``"module:function"``; ``datasets.registry`` imports it only when the data set is loaded.
A new data set is a loader module plus one ``DatasetSpec`` here (and, for the runner, conf/dataset/NAME.yaml
and its dataclass in runner/config/schema.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

SPLITS = ("train", "val", "test")  # the splits every loader returns, in this order
HELD_OUT = SPLITS[1:]  # the splits no model trains on
# The synthetic loader's task option and the task each kind poses.
SYNTHETIC_TASKS = {
    "regression": "regression",
    "binary": "binary",
    "multiclass": "multiclass",
    "xor": "binary",
    "sequence": "regression",
}

Options = Mapping[str, Any]  # a loader's keyword options (a composed config's dataset node will do)


@dataclass(frozen=True)
class DatasetSpec:
    """The facts of one data set; a field may instead be a function of the loader's options."""

    name: str
    loader: str  # "module:function" under datasets/, imported on first load
    # regression | binary | multiclass | multilabel (None: unknown until loaded, e.g. task=auto)
    task: str | Callable[[Options], str | None]
    # classes when classifying, labels of a multilabel task; None otherwise (or not known before loading)
    n_classes: int | None | Callable[[Options], int | None] = None
    natural_slice: str | None = None  # the Split.meta column that diagnostics.slices=auto groups rows by
    # Final metrics beyond the task's own (runner/config/objective.py FINAL_METRICS), logged per split
    extra_final_metrics: tuple[str, ...] | Callable[[Options], tuple[str, ...]] = ()

    def resolved(self, options: Options) -> DatasetSpec:
        """This spec with every field that depends on the options computed for ``options``."""
        computed = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{key: value(options) for key, value in computed.items() if callable(value)})


def _wine_extra_metrics(options: Options) -> tuple[str, ...]:
    # A standardised target is also scored in its own unit (% alcohol): runner/run/evaluation.py
    return ("mae_original", "rmse_original") if options.get("scale_target", True) else ()


def _synthetic_task(options: Options) -> str | None:
    return SYNTHETIC_TASKS.get(options.get("task", "binary"))


def _synthetic_classes(options: Options) -> int | None:
    task = _synthetic_task(options)
    return options.get("n_classes") if task == "multiclass" else 2 if task == "binary" else None


# The task option of a user's own data (table, arrays, sequence); auto is decided from the target on loading.
OWN_DATA_TASKS = ("auto", "regression", "binary", "multiclass", "multilabel")


def _target_columns(options: Options) -> list | None:
    target = options.get("target")
    return list(target) if _is_sequence(target) else None


def _is_sequence(value) -> bool:
    # A composed config's list (OmegaConf ListConfig) is a sequence but no list
    return not isinstance(value, (str, bytes, Mapping)) and hasattr(value, "__iter__") and hasattr(value, "__len__")


def _own_task(options: Options) -> str | None:
    task = options.get("task", "auto")
    columns = _target_columns(options)
    if task == "auto" and columns is not None and len(columns) > 1:
        return "multilabel"  # several target columns can only be several labels (checked on loading)
    return task if task in OWN_DATA_TASKS[1:] else None


def _own_classes(options: Options) -> int | None:
    task = _own_task(options)
    if task == "multilabel":
        columns = _target_columns(options)  # arrays: the labels are the columns of y, counted on loading
        return len(columns) if columns is not None and len(columns) > 1 else None
    return 2 if task == "binary" else None  # multiclass: counted on loading


def _own_extra_metrics(options: Options) -> tuple[str, ...]:
    scaled = _own_task(options) == "regression" and options.get("scale_target", True)
    return ("mae_original", "rmse_original") if scaled else ()


def _image_classes(options: Options) -> int | None:
    # Counting the class folders reads no image; None when the folder is not there (yet)
    from .image_folders import class_names

    names = class_names(options.get("path"), options.get("split", "auto"), options.get("data_dir"))
    return len(names) if names and len(names) >= 2 else None


def _image_task(options: Options) -> str | None:
    classes = _image_classes(options)
    return None if classes is None else "binary" if classes == 2 else "multiclass"


SPECS = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "wine",
            "datasets.wine:load_wine",
            task="regression",
            natural_slice="quality",
            extra_final_metrics=_wine_extra_metrics,
        ),
        DatasetSpec(
            "seizure", "datasets.seizure:load_seizure", task="binary", n_classes=2, natural_slice="original_class"
        ),
        DatasetSpec("mnist", "datasets.mnist:load_mnist", task="multiclass", n_classes=10),
        DatasetSpec(
            "synthetic", "datasets.synthetic:load_synthetic", task=_synthetic_task, n_classes=_synthetic_classes
        ),
        *(
            DatasetSpec(name, f"datasets.{name}:load_{name}", _own_task, _own_classes, None, _own_extra_metrics)
            for name in ("table", "arrays", "sequence")
        ),
        DatasetSpec("images", "datasets.images:load_images", task=_image_task, n_classes=_image_classes),
    )
}
DATASET_NAMES = tuple(SPECS)


def spec_for(name: str, options: Options | None = None) -> DatasetSpec | None:
    """The facts of data set ``name`` under these loader options (defaults when None); None for an unknown name."""
    spec = SPECS.get(name)
    return None if spec is None else spec.resolved(options or {})


def spec_of(options: Options | Any) -> DatasetSpec | None:
    """``spec_for`` options that name their data set under ``name``: a mapping, or an object whose attributes
    are the options (a config dataclass such as the runner's dataset node)."""
    options = options if isinstance(options, Mapping) else vars(options)
    return spec_for(options["name"], options)
