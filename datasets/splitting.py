"""Seeded random splits, per-split subsampling and train-only standard scaling."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from .containers import Split
from .options import CommonOptions
from .specs import SPLITS


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) row counts; 4898 rows at 0.1/0.1 give 3918/490/490 like the book."""
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if min(n_test, n_val, n - n_test - n_val) < 1:
        raise ValueError(
            f"cannot split {n} rows into non-empty train/val/test with "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return n - n_val - n_test, n_val, n_test


def _split_off(
    index: np.ndarray, size: int, seed: int, strata: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(rest, taken, stratified): fall back to a plain shuffle when a stratum is too small."""
    if strata is not None:
        try:
            rest, taken = train_test_split(index, test_size=size, random_state=seed, stratify=strata[index])
            return rest, taken, True
        except ValueError:
            pass
    rest, taken = train_test_split(index, test_size=size, random_state=seed)
    return rest, taken, False


def random_split(n: int, opts: CommonOptions, strata: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """Row indices per split (sorted, disjoint) and whether stratification was achieved."""
    _, n_val, n_test = split_sizes(n, opts.val_fraction, opts.test_fraction)
    rest, test, strat_test = _split_off(np.arange(n), n_test, opts.split_seed, strata)
    train, val, strat_val = _split_off(rest, n_val, opts.split_seed, strata)
    parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    check_disjoint(parts)
    return parts, strat_test and strat_val


def check_disjoint(parts: dict[str, np.ndarray]) -> None:
    # A leak between splits silently inflates every metric, so fail loudly instead.
    seen = np.concatenate(list(parts.values()))
    if len(np.unique(seen)) != len(seen):
        raise RuntimeError("internal error: a row was assigned to more than one split")


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin number (0..n_bins-1) of each value by quantiles, so a regression target can be stratified."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def subsample(split: Split, max_samples: int, seed: int, stratify: bool) -> Split:
    """At most max_samples rows, chosen at random (stratified on y when asked), in original order."""
    if len(split) <= max_samples:
        return split
    index = np.arange(len(split))
    rest, kept, _ = _split_off(index, max_samples, seed, split.y if stratify else None)
    return split.take(np.sort(kept))


def fit_standard(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (ddof=0, like StandardScaler); constant features get std 1."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    std = flat.std(axis=0, dtype=np.float64)
    # Test for constant columns directly: float rounding leaves their std at ~1e-16, not 0.
    std[np.ptp(flat, axis=0) == 0] = 1.0
    return mean, std


def apply_standard(split: Split, mean: np.ndarray, std: np.ndarray) -> Split:
    flat = split.x.reshape(len(split.x), -1)
    scaled = ((flat - mean) / std).astype(np.float32).reshape(split.x.shape)
    return Split(scaled, split.y, split.meta)


def finalize(
    splits: dict[str, Split], opts: CommonOptions, stratify: bool
) -> tuple[dict[str, Split], dict | None, list[str]]:
    """Apply max_samples then feature scaling (fitted on train only). Returns splits, scaling, notes."""
    notes = []
    if opts.max_samples is not None:
        splits = {k: subsample(s, int(opts.max_samples), opts.split_seed, stratify) for k, s in splits.items()}
        notes.append(
            f"max_samples={opts.max_samples}: each split capped by a seeded random subsample"
            + (" (stratified on y)" if stratify else "")
        )
    if opts.scale == "none":
        return {k: Split(s.x.astype(np.float32, copy=False), s.y, s.meta) for k, s in splits.items()}, None, notes
    mean, std = fit_standard(splits["train"].x)
    splits = {k: apply_standard(splits[k], mean, std) for k in SPLITS}
    scaling = {"method": "standard", "mean": mean.tolist(), "std": std.tolist()}
    return splits, scaling, notes
