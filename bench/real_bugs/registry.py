"""The list the pair modules append to, and the decorator they use (kept apart to avoid circular imports)."""

from __future__ import annotations

REGISTERED: list = []


def bug_pair(**metadata):
    """Register ``build(seed, buggy) -> (model, data, fit_kwargs)`` as a BugPair with this metadata."""
    from bench.real_bugs import BugPair

    def register(build):
        REGISTERED.append(BugPair(build=build, **metadata))
        return build

    return register
