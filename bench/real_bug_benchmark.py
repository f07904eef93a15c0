"""Real-bug benchmark of the diagnostics: buggy/fixed pairs of small Keras programs (bench/real_bugs/,
facts and sources in bench/real_bugs/SOURCES.md) run through ``diagnose(..., suite="full")``.

    python bench/real_bug_benchmark.py --jobs 2                     # every pair, seed 0
    python bench/real_bug_benchmark.py --only lr --seeds 0,1 --scores --json out.json

Per pair and seed: the buggy side's worst verdict and top diagnosis (``report.diagnosis.cause``; "n/a" while
reports have no diagnosis) and whether that cause is one the pair accepts, then the fixed side's worst verdict
and diagnosis.  Totals: right top diagnosis on buggy runs (target >= 80%), fixed runs with a FAIL (target
<= 10%), fixed runs with any WARN.  ``--scores`` also trains each side once more outside the diagnostics and
prints its test score (accuracy or R^2), to show that the buggy side does worse.
Each job runs in its own process with one TensorFlow thread (set before TensorFlow is imported).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {"right_buggy": 0.80, "fail_fixed": 0.10}


def single_threaded_worker() -> None:
    """Pool initialiser: one TF thread per job, so --jobs N uses about N cores; must run before TF loads."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))


def diagnosis_cause(report) -> str:
    """The report's top diagnosis, or "n/a" where reports do not have one (yet)."""
    diagnosis = getattr(report, "diagnosis", None)
    cause = getattr(diagnosis, "cause", None) if diagnosis is not None else None
    return str(cause) if cause else "n/a"


def run_side(name: str, side: str, seed: int, with_score: bool) -> dict:
    """Diagnose one side of one pair (in a worker process); never raises."""
    from bench.real_bugs import by_name
    from runner.diagnostics import DiagnosticOptions, diagnose

    outcome = {
        "pair": name,
        "side": side,
        "seed": seed,
        "worst": "ERROR",
        "cause": "n/a",
        "problems": [],
        "score": None,
        "seconds": 0.0,
        "error": "",
    }
    started = time.perf_counter()
    try:
        model, data, fit_kwargs = getattr(by_name(name), side)(seed)
        report = diagnose(model, data, suite="full", options=DiagnosticOptions(seed=seed), fit_kwargs=fit_kwargs)
        outcome.update(
            worst=report.worst,
            cause=diagnosis_cause(report),
            problems=[f"{r.check}={r.verdict}" for r in report.problems()],
        )
        if with_score:
            from bench.real_bugs.data import train_and_score

            outcome["score"] = train_and_score(*getattr(by_name(name), side)(seed))
    except Exception as error:  # noqa: BLE001 - one broken program must not sink the benchmark
        outcome["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def run_all(names: list[str], seeds: list[int], jobs: int, with_score: bool) -> list[dict]:
    tasks = [(name, side, seed, with_score) for seed in seeds for name in names for side in ("buggy", "fixed")]
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=get_context("spawn"), initializer=single_threaded_worker
    ) as pool:
        futures = [pool.submit(run_side, *task) for task in tasks]
        outcomes = []
        for future in futures:
            outcomes.append(future.result())
            done = outcomes[-1]
            print(
                f"  done {done['pair']}/{done['side']}/seed {done['seed']}: {done['worst']} "
                f"cause={done['cause']} ({done['seconds']:.0f} s){'  ' + done['error'] if done['error'] else ''}",
                flush=True,
            )
    return outcomes


def accepted(cause: str, causes: tuple[str, ...]) -> str:
    return "n/a" if cause == "n/a" else ("yes" if cause in causes else "no")


def format_score(value) -> str:
    if value is None:
        return "-"
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}"


def rows(outcomes: list[dict], pairs: dict) -> list[dict]:
    """One row per (pair, seed), both sides side by side."""
    by_key = {(o["pair"], o["seed"], o["side"]): o for o in outcomes}
    table = []
    for (name, seed, side), buggy in by_key.items():
        if side != "buggy":
            continue
        fixed = by_key[(name, seed, "fixed")]
        table.append(
            {
                "pair": name,
                "seed": seed,
                "buggy": buggy,
                "fixed": fixed,
                "accepted": accepted(buggy["cause"], pairs[name].causes),
            }
        )
    return table


def print_table(table: list[dict], pairs: dict) -> None:
    print(
        f"\n{'pair':<30} {'seed':>4}  {'buggy':<5} {'diagnosis':<22} {'ok':<3}  {'fixed':<5} "
        f"{'diagnosis':<22} {'score b/f':<13} buggy's first problems"
    )
    for row in table:
        b, f = row["buggy"], row["fixed"]
        scores = f"{format_score(b['score'])}/{format_score(f['score'])}"
        print(
            f"{row['pair']:<30} {row['seed']:>4}  {b['worst']:<5} {b['cause'][:22]:<22} {row['accepted']:<3}  "
            f"{f['worst']:<5} {f['cause'][:22]:<22} {scores:<13} {', '.join(b['problems'][:3]) or '-'}"
            + (f"  [buggy error: {b['error']}]" if b["error"] else "")
            + (f"  [fixed error: {f['error']}]" if f["error"] else "")
        )
        if not pairs[row["pair"]].causes:
            print("    (pair has no accepted causes)")


def totals(table: list[dict]) -> dict:
    n = len(table) or 1
    fixed = [row["fixed"] for row in table]
    return {
        "runs": len(table),
        "right_buggy": sum(row["accepted"] == "yes" for row in table) / n,
        "diagnosis_missing": sum(row["accepted"] == "n/a" for row in table) / n,
        "fail_fixed": sum(o["worst"] == "FAIL" for o in fixed) / n,
        "warn_fixed": sum(any(p.endswith("=WARN") for p in o["problems"]) for o in fixed) / n,
        "flagged_buggy": sum(row["buggy"]["worst"] in ("WARN", "FAIL") for row in table) / n,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="run only pairs whose name contains this")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, one TF thread each")
    parser.add_argument("--scores", action="store_true", help="also train each side again and print test scores")
    parser.add_argument("--json", type=Path, default=None, help="also write every outcome here")
    args = parser.parse_args()

    from bench.real_bugs import all_pairs

    pairs = {pair.name: pair for pair in all_pairs() if not args.only or args.only in pair.name}
    if not pairs:
        parser.error(f"no pair name contains {args.only!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    outcomes = run_all(list(pairs), seeds, max(1, args.jobs), args.scores)
    table = rows(outcomes, pairs)
    print_table(table, pairs)
    summary = totals(table)
    elapsed = time.perf_counter() - started
    print(
        f"\n{summary['runs']} pair runs, {elapsed:.0f} s with {args.jobs} job(s): right top diagnosis on buggy "
        f"{summary['right_buggy']:.0%} (target >= {TARGETS['right_buggy']:.0%}; no diagnosis in "
        f"{summary['diagnosis_missing']:.0%}), buggy flagged WARN/FAIL {summary['flagged_buggy']:.0%}, "
        f"fixed with a FAIL {summary['fail_fixed']:.0%} (target <= {TARGETS['fail_fixed']:.0%}), "
        f"fixed with any WARN {summary['warn_fixed']:.0%}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"summary": summary, "seconds": elapsed, "outcomes": outcomes}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
