"""The inputs every check receives: plain arrays and a few options, never a runner config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TASKS = ("regression", "binary", "multiclass", "multilabel")
CLASSIFICATION = ("binary", "multiclass")  # one class per row; multilabel rows hold a 0/1 column per label


@dataclass
class DiagnosticData:
    """Arrays for the checks.  ``y`` holds what the model is trained on (integer labels for sparse losses,
    one-hot rows for categorical ones, floats for regression, one 0/1 column per label for multilabel).
    ``slices`` maps a split name to one label per row (e.g. the seizure data's original classes 1-5) for stratified metrics."""

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    slice_name: str | None = None
    slices: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")

    @property
    def n_classes(self) -> int:
        """Classes (binary, multiclass), labels (multilabel: columns of y) or 1 (regression)."""
        if self.task == "regression":
            return 1
        if self.class_names:
            return len(self.class_names)
        y = np.asarray(self.y_train)
        if self.task == "multilabel":
            return int(y.shape[-1]) if y.ndim > 1 else 1
        if y.size == 0:
            return 2
        labels = y.reshape(-1) if y.ndim == 1 or y.shape[-1] == 1 else y.argmax(axis=-1)
        return max(2, int(np.nanmax(labels)) + 1)

    @property
    def single_label(self) -> bool:
        """Binary or multiclass: each row belongs to exactly one class."""
        return self.task in CLASSIFICATION

    def split(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def labels(self, name: str) -> np.ndarray | None:
        """Integer class labels of a split (classification), whatever the encoding of ``y``."""
        y = getattr(self, f"y_{name}")
        if y is None or not self.single_label:
            return y
        return y.argmax(axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1).astype(int)


@dataclass
class DiagnosticOptions:
    """``disabled`` holds check names (``preflight.gradient_check``) or whole stages (``monitor``) to skip;
    ``thresholds`` overrides a check's default threshold by check name."""

    output_dir: Path | None = None  # plots go here; None: no plots
    seed: int = 0
    probe_samples: int = 256  # rows used by the cheap per-epoch monitors and the analyses
    disabled: set[str] = field(default_factory=set)
    thresholds: dict[str, float] = field(default_factory=dict)

    def enabled(self, check: str) -> bool:
        stage = check.split(".", 1)[0]
        return check not in self.disabled and stage not in self.disabled

    def threshold(self, check: str, default: float) -> float:
        return float(self.thresholds.get(check, default))

    def plot_path(self, name: str) -> Path | None:
        if self.output_dir is None:
            return None
        path = Path(self.output_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
