"""preflight.split_leakage: validation and test rows that also occur in the training split."""

from __future__ import annotations

from collections import Counter

import numpy as np

from datasets import HELD_OUT
from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.preflight._shared import STAGE, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

NAME = f"{STAGE}.split_leakage"
# Share of held-out rows found in train: 1% already inflates held-out scores a little (WARN), 10% makes
# them unreliable (FAIL).
LEAKAGE_WARN, LEAKAGE_FAIL = 0.01, 0.10
DUPLICATES_EXPLAIN = 1.5  # held-out overlap up to this x the within-train twin rate: the data's own repeats
FIX = (
    "Deduplicate the rows before splitting (or keep duplicates in the same split), or the held-out scores "
    "overstate generalisation."
)


def row_hashes(x) -> list[int]:
    # float32 so that a float64 and a float32 copy of the same row hash alike.
    rows = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1), dtype=np.float32)
    return [hash(row.tobytes()) for row in rows]


def overlap(data: DiagnosticData, held_out: list[tuple[str, np.ndarray]]) -> tuple[float, dict, dict, int, int]:
    """The share of training rows with a twin in train; per held-out split, its rows found in train (count:
    evidence, share: shares) and the totals over the held-out splits (leaked, total)."""
    train_counts = Counter(row_hashes(data.x_train))
    twin_rate = sum(count for count in train_counts.values() if count > 1) / max(1, len(data.x_train))
    evidence = {"train_rows_with_a_twin_in_train": round(twin_rate, 4)}
    leaked = total = 0
    shares = {}
    for split, x in held_out:
        hits = sum(h in train_counts for h in row_hashes(x))
        evidence[f"{split}_rows_in_train"] = hits
        leaked, total = leaked + hits, total + len(x)
        shares[split] = hits / max(1, len(x))
    return twin_rate, evidence, shares, leaked, total


@check(
    NAME,
    what="the share of validation/test rows whose inputs occur verbatim in the training split",
    threshold=f"WARN > {LEAKAGE_WARN:g}, FAIL > {LEAKAGE_FAIL:g}",
    fix=FIX,
    scope="data",
)
def check_split_leakage(data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """Share of val/test rows whose inputs occur verbatim in the training split.

    A data set that repeats rows (the white wine data: 29% of the book's training rows have a twin among
    them) shows the same overlap under any random split; only an overlap well above that rate points at the
    split itself, so only such an overlap can FAIL.
    """
    held_out = [(split, data.split(split)[0]) for split in HELD_OUT if data.split(split)[0] is not None]
    if not held_out:
        return result(NAME, SKIP, None, None, "no validation or test split to compare with")
    twin_rate, evidence, shares, leaked, total = overlap(data, held_out)
    share = leaked / max(1, total)
    warn = options.threshold(NAME, LEAKAGE_WARN)
    fail = options.threshold(f"{NAME}.fail", LEAKAGE_FAIL)
    threshold = f"WARN > {warn:g}, FAIL > {fail:g} unless the training split repeats rows at a similar rate"
    if share <= warn:
        return result(
            NAME,
            PASS,
            share,
            threshold,
            f"{leaked} of {total} held-out rows occur in the training split",
            evidence=evidence,
        )
    message = f"{share:.1%} of the validation/test rows ({leaked} of {total}) also occur in the training split"
    # Per split: copies pushed into one split (the test set) stand out against the data's own repeat rate even
    # when the other split dilutes the total.
    if max(shares.values()) <= DUPLICATES_EXPLAIN * twin_rate:
        # What any random split of this data gives is not a fault of the split: a WARN on every run of such a
        # data set (the white wine data) would teach users to ignore WARNs.
        message += (
            f"; the data set itself repeats rows ({twin_rate:.1%} of training rows have a twin within "
            "the training split), so this overlap is what any random split of it gives"
        )
        return result(NAME, PASS, share, threshold, message, evidence=evidence)
    return result(NAME, FAIL if share > fail else WARN, share, threshold, message, FIX, evidence=evidence)
