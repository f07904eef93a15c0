"""What the diagnostics cost: 5-epoch trainings with diagnostics none / quick / monitors only / full.

    RUNNER_DATA_DIR=../shared/data python bench/diagnostics_overhead.py              # 3 repetitions each
    RUNNER_DATA_DIR=../shared/data python bench/diagnostics_overhead.py --repeats 1 --only wine_mlp

For each experiment and suite, the median over repetitions of the whole job's wall time and of fit's own
time.  Overhead = (job time with the suite - job time with none) / fit time with none, i.e. the extra time
as a share of the 5-epoch training.  Targets: quick <= 10%, monitors <= 15%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXPERIMENTS = ("seizure_dnn", "mnist_dropout", "wine_mlp")
SUITES = {
    "none": ["diagnostics=none"],
    "quick": ["diagnostics=quick"],
    "monitors": ["diagnostics=full", "diagnostics.disable=[preflight,analysis]"],
    "full": ["diagnostics=full"],
}
TARGETS = {"quick": 0.10, "monitors": 0.15}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from runner.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def time_job(overrides: list[str], output_dir: Path) -> tuple[float, float]:
    """(wall seconds of the whole job, seconds fit took)."""
    from runner.run.job import run_job

    started = time.perf_counter()
    result = run_job(compose(overrides), output_dir, overrides=overrides)
    return time.perf_counter() - started, result.metrics["train_seconds"]


def common_overrides(work: Path, epochs: int) -> list[str]:
    return [
        f"tracking.uri=sqlite:///{work}/mlflow.db",
        f"trainer.epochs={epochs}",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "evaluation.plots=false",
    ]


def measure(experiment: str, suites: list[str], repeats: int, common: list[str], work: Path) -> dict:
    """suite -> (median job seconds, median fit seconds) for one experiment."""
    timings = {}
    # One discarded job first: the first fit in a process also pays for tracing TensorFlow's functions.
    time_job([f"+experiment={experiment}", *common, *SUITES["none"]], work / f"{experiment}-warmup")
    for repeat in range(repeats):
        for suite in suites:  # interleaved, so that a slow spell of a shared machine hits every suite
            overrides = [f"+experiment={experiment}", *common, *SUITES[suite]]
            wall, fit = time_job(overrides, work / f"{experiment}-{suite}-{repeat}")
            timings.setdefault(suite, []).append((wall, fit))
    return {
        suite: (statistics.median(w for w, _ in values), statistics.median(f for _, f in values))
        for suite, values in timings.items()
    }


def overhead(medians: dict, suite: str) -> float:
    """The suite's extra job seconds as a share of fit's seconds without diagnostics."""
    base_wall, base_fit = medians["none"]
    return (medians[suite][0] - base_wall) / base_fit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--only", default=None, help="run only experiments whose name contains this")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated subset of " + ",".join(SUITES))
    args = parser.parse_args()
    suites = [s for s in args.suites.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown or "none" not in suites:
        parser.error(f"--suites must include none and may hold only {', '.join(SUITES)} (got {args.suites})")

    work = Path(tempfile.mkdtemp(prefix="diag-overhead-"))
    common = common_overrides(work, args.epochs)
    rows = [
        (experiment, measure(experiment, suites, args.repeats, common, work))
        for experiment in EXPERIMENTS
        if not args.only or args.only in experiment
    ]

    print(f"\n{args.epochs}-epoch trainings, median of {args.repeats}; seconds = whole job (fit)")
    print(f"{'experiment':<16}" + "".join(f"{suite:>22}" for suite in suites))
    for experiment, medians in rows:
        cells = []
        for suite in suites:
            wall, fit = medians[suite]
            extra = overhead(medians, suite)
            target = TARGETS.get(suite)
            mark = "" if target is None else (" ok" if extra <= target else " OVER")
            cells.append(f"{wall:6.1f} ({fit:5.1f})" + ("" if suite == "none" else f" {extra:+.0%}{mark}"))
        print(f"{experiment:<16}" + "".join(f"{cell:>22}" for cell in cells))
    print(
        "overhead = (job seconds - job seconds with none) / fit seconds with none; "
        f"targets: {', '.join(f'{k} <= {v:.0%}' for k, v in TARGETS.items())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
