"""False alarms of the diagnostics on the healthy corpus (bench/healthy_corpus): code they were not tuned on.

    python bench/false_alarms.py                       # every setup, seeds 0 1 2
    python bench/false_alarms.py --seeds 0 --jobs 2 --json /tmp/false_alarms.json
    python bench/false_alarms.py --only mc_digits

Each run is ``diagnose(model, data, suite="full", options=DiagnosticOptions(seed=seed), fit_kwargs=...)``.
Printed: per check, how many runs it WARNed and FAILed on (count and % of runs); overall, the share of runs
with any FAIL (target <= 2%) and with any WARN (target <= 10%); the top diagnosis causes
(``report.diagnosis.cause``, "n/a" while the Report has none); seconds per run; then every WARN/FAIL with
its setup, seed and message, for calibration.  A run whose trained copy scores under the setup's floor is
listed too: such a run is not healthy, so an alarm on it is not false.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.healthy_corpus import BY_NAME, CORPUS
from bench.healthy_corpus.runs import diagnose_run, map_jobs

TARGET_ANY_FAIL, TARGET_ANY_WARN = 2.0, 10.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", default="", help="setups whose name contains this substring")
    parser.add_argument("--jobs", type=int, default=1, help="processes (each with 1 TensorFlow thread)")
    parser.add_argument("--json", type=Path, help="write every run's outcome here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    items = [(spec, seed) for spec in CORPUS if args.only in spec.name for seed in args.seeds]
    print(
        f"{len(items)} runs ({len(items) // max(1, len(args.seeds))} setups x {len(args.seeds)} seeds), "
        f"{args.jobs} job(s)",
        flush=True,
    )
    started = time.perf_counter()
    outcomes = map_jobs(diagnose_run, items, args.jobs, on_result=_progress)
    wall = time.perf_counter() - started
    print(render(outcomes, wall))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"wall_seconds": wall, "runs": outcomes}, indent=1, default=str))


def _progress(outcome: dict) -> None:
    flags = ",".join(f"{f['check']}={f['verdict']}" for f in outcome["flagged"]) or "-"
    score = "n/a" if outcome["score"] is None else f"{outcome['score']:.3f}"
    print(
        f"  {outcome['setup']:32s} seed {outcome['seed']}  {outcome['worst'] or 'ERROR':4s} score {score:>6s} "
        f"{outcome['seconds']:6.1f} s  {outcome['error'] or flags}",
        flush=True,
    )


def check_counts(outcomes: list[dict]) -> dict[str, Counter]:
    """check -> Counter of WARN/FAIL over the runs (one count per run and check)."""
    counts: dict[str, Counter] = {}
    for outcome in outcomes:
        for flag in outcome["flagged"]:
            counts.setdefault(flag["check"], Counter())[flag["verdict"]] += 1
    return counts


def summary(outcomes: list[dict]) -> dict:
    ran = [o for o in outcomes if not o["error"]]
    runs = max(1, len(ran))
    any_fail = sum(o["worst"] == "FAIL" for o in ran)
    any_warn = sum(any(f["verdict"] == "WARN" for f in o["flagged"]) for o in ran)
    flagged = sum(o["worst"] in ("WARN", "FAIL") for o in ran)
    return {
        "runs": len(ran),
        "errors": len(outcomes) - len(ran),
        "any_fail_pct": 100.0 * any_fail / runs,
        "any_warn_pct": 100.0 * any_warn / runs,
        "flagged_pct": 100.0 * flagged / runs,
        "any_fail": any_fail,
        "any_warn": any_warn,
        "flagged": flagged,
    }


def render(outcomes: list[dict], wall: float) -> str:
    ran = [o for o in outcomes if not o["error"]]
    runs = max(1, len(ran))
    lines = ["", f"{'check':40s} {'WARN':>5s} {'%':>6s} {'FAIL':>5s} {'%':>6s}"]
    for check, counter in sorted(check_counts(ran).items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(
            f"{check:40s} {counter['WARN']:5d} {100 * counter['WARN'] / runs:6.1f} "
            f"{counter['FAIL']:5d} {100 * counter['FAIL'] / runs:6.1f}"
        )
    total = summary(outcomes)
    lines += [
        "",
        (
            f"runs {total['runs']} (errors {total['errors']}); any FAIL {total['any_fail']} = "
            f"{total['any_fail_pct']:.1f}% (target <= {TARGET_ANY_FAIL:.0f}%); any WARN {total['any_warn']} = "
            f"{total['any_warn_pct']:.1f}% (target <= {TARGET_ANY_WARN:.0f}%); WARN or FAIL "
            f"{total['flagged']} = {total['flagged_pct']:.1f}%"
        ),
    ]
    lines.append("top diagnosis causes: " + _causes(ran))
    seconds = [o["seconds"] for o in outcomes]
    if seconds:
        lines.append(
            f"seconds per run: mean {statistics.mean(seconds):.1f}, median {statistics.median(seconds):.1f},"
            f" max {max(seconds):.1f}; wall {wall:.0f} s"
        )
    lines += _below_floor(ran) + _alarm_list(ran) + _errors(outcomes)
    return "\n".join(lines)


def _causes(ran: list[dict]) -> str:
    causes = Counter(o["cause"] for o in ran if o["cause"] is not None)
    if not causes:
        return "n/a"
    return ", ".join(f"{cause} {count}" for cause, count in causes.most_common(8))


def _below_floor(ran: list[dict]) -> list[str]:
    low = [o for o in ran if o["score"] is None or o["score"] < BY_NAME[o["setup"]].min_score]
    if not low:
        return ["every run reached its setup's floor score"]
    return ["runs under their setup's floor (not healthy: their alarms may be true):"] + [
        f"  {o['setup']} seed {o['seed']}: score {o['score']} < {BY_NAME[o['setup']].min_score}" for o in low
    ]


def _alarm_list(ran: list[dict]) -> list[str]:
    lines = ["", "every WARN/FAIL:"]
    for outcome in ran:
        for flag in outcome["flagged"]:
            message = " ".join(flag["message"].split())[:220]
            lines.append(f"  {outcome['setup']} seed {outcome['seed']} {flag['check']} {flag['verdict']}: {message}")
    return lines if len(lines) > 2 else lines + ["  none"]


def _errors(outcomes: list[dict]) -> list[str]:
    broken = [o for o in outcomes if o["error"]]
    return ["", "errors:"] + [f"  {o['setup']} seed {o['seed']}: {o['error']}" for o in broken] if broken else []


if __name__ == "__main__":
    main()
