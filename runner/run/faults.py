"""Seeded bugs injected into loaded arrays, for the diagnostics benchmark (conf/experiment/faults/).

Most seeded faults are plain config (a bad initializer, learning rate or loss); the ones here change the data
after loading, the way a bug in a preprocessing script would: labels detached from their inputs, inputs
scaled twice or not at all, test rows copied from the training set.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from datasets.containers import Dataset, Split
from runner.config.schema import FaultConfig

log = logging.getLogger("runner")


def inject(data: Dataset, fault: FaultConfig) -> Dataset:
    """``data`` with the injections that ``fault`` (the config's ``fault`` block) switches on."""
    rng = np.random.default_rng(fault.seed)
    changes = []
    if fault.shuffle_labels:
        data = shuffle_labels(data, rng)
        changes.append("labels shuffled in every split")
    scale = float(fault.input_scale)
    if scale != 1.0:
        data = scale_inputs(data, scale)
        changes.append(f"inputs multiplied by {scale:g}")
    share = float(fault.duplicate_into_test)
    if share > 0:
        data = duplicate_into_test(data, share, rng)
        changes.append(f"{share:.0%} of the test rows replaced by training rows")
    if changes:
        log.warning("fault %s injected: %s", fault.name or "(unnamed)", "; ".join(changes))
        data = dataclasses.replace(data, notes=[*data.notes, f"seeded fault: {'; '.join(changes)}"])
    return data


def shuffle_labels(data: Dataset, rng: np.random.Generator) -> Dataset:
    """Targets permuted within each split: the class balance stays, the link to the inputs is gone."""
    splits = {
        name: Split(part.x, part.y[rng.permutation(len(part.y))], part.meta) for name, part in data.splits().items()
    }
    return dataclasses.replace(data, **splits)


def scale_inputs(data: Dataset, factor: float) -> Dataset:
    splits = {
        name: Split((part.x * factor).astype(part.x.dtype), part.y, part.meta) for name, part in data.splits().items()
    }
    return dataclasses.replace(data, **splits)


def duplicate_into_test(data: Dataset, share: float, rng: np.random.Generator) -> Dataset:
    """Leakage: ``share`` of the test rows become copies of random training rows (inputs, targets, meta)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"duplicate_into_test must be in (0, 1], not {share}")
    test, train = data.test, data.train
    count = max(1, round(share * len(test)))
    targets = rng.choice(len(test), size=count, replace=False)
    sources = rng.choice(len(train), size=count, replace=len(train) < count)
    x, y = test.x.copy(), test.y.copy()
    x[targets], y[targets] = train.x[sources], train.y[sources]
    meta = {}
    for key, values in test.meta.items():
        values = values.copy()
        if key in train.meta:
            values[targets] = train.meta[key][sources]
        meta[key] = values
    return dataclasses.replace(data, test=Split(x, y, meta))
