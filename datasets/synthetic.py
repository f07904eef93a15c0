"""Generated data sets for tests and smoke runs: no files, deterministic for a given seed."""

from __future__ import annotations

import numpy as np

from .containers import Dataset, Split
from .options import CommonOptions
from .specs import SYNTHETIC_TASKS
from .splitting import finalize, random_split

TASKS = tuple(SYNTHETIC_TASKS)  # the task option; SYNTHETIC_TASKS maps each to the task it poses


def load_synthetic(
    *,
    task: str = "binary",
    n_samples: int = 1000,
    n_features: int = 8,
    n_classes: int = 3,
    seq_len: int = 32,
    noise: float = 0.1,
    seed: int = 0,
    **common,
) -> Dataset:
    """A seeded random problem of the given kind, split at random like the real data sets."""
    # data_dir, download, verify_checksum and cache are accepted so that generic callers can pass the
    # common options to every data set, but mean nothing here (no file is parsed, so none is cached);
    # a book split does not exist.
    if common.get("split", "auto") == "book":
        raise ValueError("synthetic data has no book split: use split='auto' or 'random'")
    opts = CommonOptions(**common)
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {TASKS}")
    if n_samples < 3 or n_features < 1 or seq_len < 2 or n_classes < 2:
        raise ValueError("need n_samples >= 3, n_features >= 1, seq_len >= 2 and n_classes >= 2")

    kind = SYNTHETIC_TASKS[task]
    x, y, classes, names = _generate(task, n_samples, n_features, n_classes, seq_len, noise, seed)
    table = Split(x, y, {"row_id": np.arange(1, n_samples + 1)})
    parts, stratified = random_split(n_samples, opts, strata=y if kind != "regression" else None)
    splits = {name: table.take(index) for name, index in parts.items()}
    splits, feature_scaling, notes = finalize(splits, opts, stratify=kind != "regression")
    if kind == "regression":
        splits = {k: Split(s.x, s.y.astype(np.float32), s.meta) for k, s in splits.items()}
    notes.insert(
        0,
        f"synthetic '{task}' data (seed {seed}, noise {noise}), random split seed {opts.split_seed}"
        + (", stratified on y" if stratified else ""),
    )
    return Dataset(
        name="synthetic",
        task=kind,
        **splits,
        feature_names=names,
        target_name="y",
        class_names=classes,
        split_source="generated",
        files={},
        feature_scaling=feature_scaling,
        target_scaling=None,
        notes=notes,
    )


def _generate(task, n, n_features, n_classes, seq_len, noise, seed):
    """(x, y, class names, feature names) for one synthetic task."""
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(1, n_features + 1)]
    if task == "xor":
        bits = rng.integers(0, 2, size=(n, 2))
        x = bits + noise * rng.standard_normal((n, 2))
        return x, (bits[:, 0] ^ bits[:, 1]).astype(np.int64), ["0", "1"], ["x1", "x2"]
    if task == "sequence":
        walks = np.cumsum(rng.standard_normal((n, seq_len)), axis=1)
        half = seq_len // 2
        y = walks[:, :half].std(axis=1) - walks[:, half:].std(axis=1)
        x = walks + noise * rng.standard_normal(walks.shape)
        return x, y, None, [f"t{i}" for i in range(1, seq_len + 1)]
    x = rng.standard_normal((n, n_features))
    if task == "regression":
        y = x @ rng.standard_normal(n_features) + noise * rng.standard_normal(n)
        return x, y, None, names
    if task == "binary":
        score = x @ rng.standard_normal(n_features) + noise * rng.standard_normal(n)
        return x, (score > 0).astype(np.int64), ["0", "1"], names
    scores = x @ rng.standard_normal((n_features, n_classes)) + noise * rng.standard_normal((n, n_classes))
    return x, scores.argmax(axis=1).astype(np.int64), [str(k) for k in range(n_classes)], names
