"""The Split and Dataset containers that every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .specs import SPLITS


@dataclass
class Split:
    """One split: inputs, targets and per-row metadata of the same length."""

    x: np.ndarray
    y: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        # Mismatched lengths would otherwise surface much later as a confusing Keras error.
        n = len(self.x)
        if len(self.y) != n:
            raise ValueError(f"Split has {n} inputs but {len(self.y)} targets")
        for key, values in self.meta.items():
            if len(values) != n:
                raise ValueError(f"Split meta[{key!r}] has {len(values)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray) -> Split:
        """Rows at `index`, metadata included."""
        return Split(self.x[index], self.y[index], {k: v[index] for k, v in self.meta.items()})


@dataclass
class Dataset:
    """A loaded data set: three splits plus everything needed to describe and reproduce them."""

    name: str
    task: str  # "regression" | "binary" | "multiclass"
    train: Split
    val: Split
    test: Split
    feature_names: list[str]
    target_name: str
    class_names: list[str] | None
    split_source: str  # "book" | "random" | "fixed" | "generated"
    files: dict[str, str] = field(default_factory=dict)
    feature_scaling: dict | None = None
    target_scaling: dict | None = None
    notes: list[str] = field(default_factory=list)
    # The fitted input transformation as JSON-ready data, for predictions on raw rows (datasets/table.py transform)
    preprocessing: dict | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_classes(self) -> int:
        if self.task == "regression":
            return 1
        return len(self.class_names)

    def splits(self) -> dict[str, Split]:
        return {name: getattr(self, name) for name in SPLITS}
