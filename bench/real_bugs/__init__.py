"""Buggy/fixed pairs of small Keras 3 programs that reproduce real, publicly reported training bugs.

Every pair is a :class:`BugPair`: ``pair.buggy(seed)`` and ``pair.fixed(seed)`` each return
``(compiled untrained keras model, DiagnosticData, fit_kwargs)``, built on generated data (no downloads).
The facts behind each pair (what the bug was, where it was reported) are in ``SOURCES.md`` and in the
pair's own metadata; the code is ours, written to reproduce the reported mechanism, not the reporter's program.

    from bench.real_bugs import PAIRS, by_name
    model, data, fit_kwargs = by_name("softmax_single_unit").buggy(0)

Importing this package imports NumPy only; Keras is imported when a program is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# The vocabulary of root causes a diagnosis may name (the lead engineer's list).
CAUSES = (
    "loss_output_mismatch",
    "lr_too_high",
    "lr_too_low",
    "unscaled_inputs",
    "unscaled_targets",
    "bad_init",
    "dead_relu",
    "vanishing_gradient",
    "exploding_gradient",
    "saturation",
    "too_few_epochs",
    "wrong_labels",
    "underfitting_capacity",
    "overfitting",
    "regularization_too_strong",
    "split_shift",
    "leakage",
    "bad_data",
    "missing_nonlinearity",
    "wrong_gradient",
    "none",
)


@dataclass(frozen=True)
class BugPair:
    """One real bug: ``build(seed, buggy)`` makes either side; the rest says where the bug comes from.

    ``causes``: the top diagnoses we accept for the buggy side (first = the main one).  ``source``: the study
    or thread that reported it, ``url`` its address.  ``facts``: what was reported, in our words."""

    name: str
    title: str
    source: str
    url: str
    bug_class: str
    causes: tuple[str, ...]
    fix: str
    facts: str
    style: str  # model style, e.g. "Sequential MLP, Adam, BCE"
    build: Callable = field(repr=False, compare=False, default=None)

    def buggy(self, seed: int = 0):
        return self.build(seed, True)

    def fixed(self, seed: int = 0):
        return self.build(seed, False)


def all_pairs() -> list[BugPair]:
    """Every pair, in a stable order (the modules' registration order)."""
    from bench.real_bugs import pairs_data, pairs_model, pairs_training  # noqa: F401 - they register pairs
    from bench.real_bugs.registry import REGISTERED

    return list(REGISTERED)


def by_name(name: str) -> BugPair:
    for candidate in all_pairs():
        if candidate.name == name:
            return candidate
    raise KeyError(name)
