"""Wall time of one grid sweep run sequentially and with parallel joblib jobs, with and without thread limits.

    RUNNER_DATA_DIR=../shared/data python bench/sweep_speed.py            # 8 wine trials of 20 epochs
    python bench/sweep_speed.py --trials 4 --epochs 5                      # shorter
    python bench/sweep_speed.py --quick                                    # generated data, a smoke test
    python bench/sweep_speed.py --search --trials 12 --epochs 27          # an Optuna search with pruning

Each configuration is the command a user types (``python -m runner -m +experiment=wine_mlp
optimizer.learning_rate=...``), in a folder of its own under --output, so times include process start-up,
TensorFlow's import and MLflow logging. The folder's MLflow store and Optuna storage exist, empty, before the
timed command, as they do after a user's first sweep (``--fresh-stores``: the command creates them, which adds
about 2 s to each on 2 idle cores: MLflow's table migrations 1.8 s, Optuna's tables 0.4 s). The configurations:

- sequential: Hydra's basic launcher, one job after another in one process, every core for each job;
- N jobs, limited: joblib with N worker processes, each job limited to cores // N threads (the default);
- N jobs, unlimited: the same, but every job sized for the whole machine (``trainer.threads=<cores>``), as
  TensorFlow would be without the limits.

``--search`` runs the wine search preset instead (``+sweep=wine_search``, TPE and successive halving from
``--min-resource`` epochs) with --trials trials, once with one job at a time (Hydra's basic launcher, every
core) and once with --jobs parallel jobs (``+launcher=joblib``, ``hydra.sweeper.n_jobs``); a trial counts when
its run ended FINISHED or was pruned. ``short s`` is the time, between the first trial's run start and the last
one's end, with fewer trial runs open than parallel jobs (a job's own start-up before its run opens counts too).

A benchmark, not a test; results depend on what else runs on the machine.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from runner.runtime.resources import available_cores  # noqa: E402

LEARNING_RATES = ["1e-4", "2e-4", "5e-4", "1e-3", "2e-3", "5e-3", "1e-2", "2e-2", "5e-2", "1e-1"]


@dataclass
class Outcome:
    label: str
    seconds: float
    finished: int
    trials: int
    short_s: float = 0.0  # seconds of the trials' span with fewer runs open than jobs: workers without a trial
    cpu_s: float = 0.0  # CPU seconds of the command and the worker processes it waited for

    @property
    def trials_per_hour(self) -> float:
        return self.finished * 3600 / self.seconds


def configurations(jobs: int, cores: int, skip_unlimited: bool) -> list[tuple[str, list[str]]]:
    parallel = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    chosen = [("sequential (1 job)", []), (f"{jobs} jobs, threads limited", parallel)]
    if not skip_unlimited:
        chosen.append((f"{jobs} jobs, no thread limit", [*parallel, f"trainer.threads={cores}"]))
    return chosen


def search_configurations(jobs: int) -> list[tuple[str, list[str]]]:
    parallel = ["+launcher=joblib", f"hydra.launcher.n_jobs={jobs}", f"hydra.sweeper.n_jobs={jobs}"]
    return [("search, 1 job", []), (f"search, {jobs} jobs", parallel)]


def search_overrides(experiment: str, trials: int, epochs: int, min_resource: int) -> list[str]:
    """The seeded wine search with successive halving, shortened to ``epochs`` epochs a trial."""
    return [
        f"+experiment={experiment}",
        "+sweep=wine_search",
        f"trainer.epochs={epochs}",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.pruner.min_resource={min_resource}",
        "hydra.sweeper.sampler.n_startup_trials=4",
    ]


def sweep_overrides(experiment: str, trials: int, epochs: int, synthetic: bool) -> list[str]:
    """The grid sweep's overrides: one trial per learning rate, on generated data when ``synthetic``."""
    base = [
        f"+experiment={experiment}",
        f"trainer.epochs={epochs}",
        f"optimizer.learning_rate={','.join(LEARNING_RATES[:trials])}",
    ]
    if synthetic:
        base += ["dataset=synthetic", "dataset.task=regression", "dataset.n_samples=300"]
    return base


def run_sweep(
    label: str, extra: list[str], base: list[str], folder: Path, trials: int, fresh_stores: bool = False
) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    if not fresh_stores:
        create_stores(folder)
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        *base,
        *extra,
        f"hydra.sweep.dir={folder}/multirun",
        f"tracking.uri=sqlite:///{folder}/mlflow.db",
        "tracking.experiment=sweep-speed",
        "trainer.verbose=0",
    ]
    print(f"\n[{label}] {' '.join(command[1:])}", flush=True)
    started, cpu_before = time.perf_counter(), children_cpu_seconds()
    shown = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    seconds, cpu_seconds = time.perf_counter() - started, children_cpu_seconds() - cpu_before
    if shown.returncode != 0:
        print(shown.stdout[-2000:], shown.stderr[-4000:], sep="\n", file=sys.stderr)
    jobs = next((int(o.split("=")[1]) for o in extra if o.startswith("hydra.launcher.n_jobs=")), 1)
    database = folder / "mlflow.db"
    outcome = Outcome(label, seconds, count_finished(database), trials, idle_seconds(database, jobs), cpu_seconds)
    print(f"[{label}] {seconds:.1f} s, {outcome.finished}/{trials} trials finished", flush=True)
    return outcome


def children_cpu_seconds() -> float:
    """User and system CPU seconds of this process's ended children, theirs included (a sweep waits for its
    joblib workers before it exits, so their time is counted)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def create_stores(folder: Path) -> None:
    """Empty MLflow and Optuna stores where the sweep will find them (the search's storage defaults to optuna.db
    beside the MLflow store), made in a child process so that this one stays free of their imports."""
    code = (
        f"import mlflow, optuna; mlflow.MlflowClient('sqlite:///{folder}/mlflow.db').search_experiments(); "
        f"optuna.storages.RDBStorage('sqlite:///{folder}/optuna.db')"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)


def trial_runs(database: Path) -> list:
    """The sweep's trial runs (children of its parent run) in the store, none when it does not exist."""
    from mlflow import MlflowClient

    if not database.exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("sweep-speed")
    runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    return [run for run in runs if "mlflow.parentRunId" in run.data.tags]


def count_finished(database: Path) -> int:
    """Trial runs that ran to the end (FINISHED) or were pruned on purpose (KILLED, tagged so)."""
    return sum(
        run.info.status == "FINISHED" or run.data.tags.get("runner.trial_state") == "PRUNED"
        for run in trial_runs(database)
    )


def idle_seconds(database: Path, jobs: int) -> float:
    """Seconds between the first trial run's start and the last one's end with fewer than ``jobs`` runs open."""
    spans = [(run.info.start_time, run.info.end_time) for run in trial_runs(database)]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans if end])
    idle, running, last = 0.0, 0, events[0][0] if events else 0
    for moment, change in events:
        idle += (moment - last) / 1000 if running < jobs else 0.0
        running, last = running + change, moment
    return idle


def report(outcomes: list[Outcome], cores: int) -> str:
    """The table; ``CPU s`` is the command's CPU time with its workers', and ``ceiling`` the speed-up over the
    first configuration that this CPU time would allow with every core busy from start to end."""
    baseline = outcomes[0].seconds
    lines = [
        f"\n{cores} core(s) available to this process",
        "",
        f"{'configuration':<28} {'wall s':>8} {'trials':>7} {'trials/hour':>12} {'speed-up':>9} {'short s':>8} "
        f"{'CPU s':>7} {'ceiling':>8}",
    ]
    for outcome in outcomes:
        lines.append(
            f"{outcome.label:<28} {outcome.seconds:>8.1f} {outcome.finished:>3}/{outcome.trials:<3} "
            f"{outcome.trials_per_hour:>12.0f} {baseline / outcome.seconds:>8.2f}x {outcome.short_s:>8.0f} "
            f"{outcome.cpu_s:>7.1f} {ceiling(baseline, outcome.cpu_s, cores):>7.2f}x"
        )
    return "\n".join(lines)


def ceiling(baseline_seconds: float, cpu_seconds: float, cores: int) -> float:
    """The speed-up over ``baseline_seconds`` that ``cpu_seconds`` of work allows with ``cores`` busy throughout."""
    return baseline_seconds * cores / max(cpu_seconds, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help=f"learning rates to try (at most {len(LEARNING_RATES)})")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="parallel joblib jobs")
    parser.add_argument("--experiment", default="wine_mlp")
    parser.add_argument("--skip-unlimited", action="store_true", help="leave out the run without thread limits")
    parser.add_argument("--quick", action="store_true", help="generated data, 3 trials of 2 epochs")
    parser.add_argument("--search", action="store_true", help="the wine Optuna search with pruning instead")
    parser.add_argument("--min-resource", type=int, default=3, help="--search: epochs every trial runs")
    parser.add_argument("--output", type=Path, default=None, help="where the stores go (default: a temp folder)")
    parser.add_argument("--fresh-stores", action="store_true", help="time the creation of the stores too")
    args = parser.parse_args()
    if not args.search and not 1 <= args.trials <= len(LEARNING_RATES):
        parser.error(f"--trials must be between 1 and {len(LEARNING_RATES)}")
    trials, epochs = (3, 2) if args.quick else (args.trials, args.epochs)
    cores = available_cores()
    if args.search:
        base = search_overrides(args.experiment, args.trials, args.epochs, args.min_resource)
        chosen = search_configurations(args.jobs)
    else:
        base = sweep_overrides(args.experiment, trials, epochs, synthetic=args.quick)
        chosen = configurations(args.jobs, cores, args.skip_unlimited)
    output = args.output or Path(tempfile.mkdtemp(prefix="sweep-speed-"))
    outcomes = [
        run_sweep(label, extra, base, output / f"run{i}", trials, args.fresh_stores)
        for i, (label, extra) in enumerate(chosen)
    ]
    print(report(outcomes, cores))
    print(f"\nstores and sweep folders: {output}")
    return 0 if all(o.finished == o.trials for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
