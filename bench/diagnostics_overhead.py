"""What the diagnostics cost: trainings with diagnostics none / quick / monitors only / full.

    RUNNER_DATA_DIR=../shared/data python bench/diagnostics_overhead.py              # 5 epochs, 3 repetitions
    RUNNER_DATA_DIR=../shared/data python bench/diagnostics_overhead.py --epochs book --only wine_mlp
    KERAS_BACKEND=jax python bench/diagnostics_overhead.py --repeats 1 --json jax.json

For each experiment and suite, the median over repetitions of the whole job's wall time and of fit's own
time, every job in this one process (its backend: KERAS_BACKEND).  Extra = job time with the suite - job
time with none.  Targets (issue 16): at 5 epochs the extra seconds are a fixed cost, under 3 s; at the book's
epochs (``--epochs book``: wine_mlp 200, seizure_dnn 20, mnist_dropout 3) quick adds <= 10% and the monitors
<= 15% to the run's wall time.
"""

from __future__ import annotations

import argparse
import json
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
TARGETS = {"quick": 0.10, "monitors": 0.15}  # shares of the run's wall time at the book's epochs
FIXED_COST_TARGET_S = 3.0  # extra seconds at 5 epochs
BOOK_EPOCHS = {"wine_mlp": 200, "seizure_dnn": 20, "mnist_dropout": 3}


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


def jax_cache(work: Path, cold: bool) -> str | None:
    """On JAX: the compilation cache the jobs use (``trainer.compile_cache``), emptied first if ``cold``; a line
    saying what it held before the first job (a warm cache makes the diagnostics' probes cheaper: they load
    programs that earlier runs compiled)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    from runner.runtime.backend import keep_compiled_programs

    if cold:
        jax.config.update("jax_compilation_cache_dir", str(work / "jax-cache"))
    folder = keep_compiled_programs(True)
    held = len(list(folder.iterdir())) if folder.is_dir() else 0
    return f"JAX compilation cache: {folder}, {held} programs before the first job ({'cold' if cold else 'as found'})"


def extra_seconds(medians: dict, suite: str) -> float:
    return medians[suite][0] - medians["none"][0]


def overhead(medians: dict, suite: str) -> float:
    """The suite's extra job seconds as a share of the job's wall time without diagnostics."""
    return extra_seconds(medians, suite) / medians["none"][0]


def meets_target(medians: dict, suite: str, book: bool) -> bool | None:
    """None for a suite without a target."""
    if suite not in TARGETS:
        return None
    return overhead(medians, suite) <= TARGETS[suite] if book else extra_seconds(medians, suite) < FIXED_COST_TARGET_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", default="5", help="epochs of every training, or 'book' (the presets' own)")
    parser.add_argument("--only", default=None, help="run only experiments whose name contains this")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated subset of " + ",".join(SUITES))
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    parser.add_argument(
        "--cold-cache", action="store_true", help="JAX: an empty compilation cache, not the runner's (earlier runs')"
    )
    args = parser.parse_args()
    book = args.epochs == "book"
    if not book and not args.epochs.isdigit():
        parser.error(f"--epochs takes a number or 'book' (got {args.epochs})")
    suites = [s for s in args.suites.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown or "none" not in suites:
        parser.error(f"--suites must include none and may hold only {', '.join(SUITES)} (got {args.suites})")

    work = Path(tempfile.mkdtemp(prefix="diag-overhead-"))
    cache_line = jax_cache(work, args.cold_cache)
    rows = []
    for experiment in (e for e in EXPERIMENTS if not args.only or args.only in e):
        epochs = BOOK_EPOCHS[experiment] if book else int(args.epochs)
        rows.append((experiment, measure(experiment, suites, args.repeats, common_overrides(work, epochs), work)))
    if args.json:
        args.json.write_text(json.dumps(dict(rows)))

    print(f"\n{args.epochs} epochs, median of {args.repeats}; seconds = whole job (fit)")
    if cache_line:
        print(cache_line)
    print(f"{'experiment':<16}" + "".join(f"{suite:>22}" for suite in suites))
    for experiment, medians in rows:
        cells = []
        for suite in suites:
            wall, fit = medians[suite]
            met = meets_target(medians, suite, book)
            mark = "" if met is None else (" ok" if met else " OVER")
            extra = f" {overhead(medians, suite):+.0%}" if book else f" {extra_seconds(medians, suite):+.1f}s"
            cells.append(f"{wall:6.1f} ({fit:5.1f})" + ("" if suite == "none" else f"{extra}{mark}"))
        print(f"{experiment:<16}" + "".join(f"{cell:>22}" for cell in cells))
    print(
        "extra = job seconds - job seconds with none (at the book's epochs: as a share of those); targets: "
        + (", ".join(f"{k} <= {v:.0%}" for k, v in TARGETS.items()) if book else f"< {FIXED_COST_TARGET_S:g} s")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
