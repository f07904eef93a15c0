"""The book's chapter-6 MNIST search with the mnist_search preset, against the book's best validation loss.

    RUNNER_DATA_DIR=../shared/data python bench/mnist_search.py                      # the whole preset
    python bench/mnist_search.py --n-trials 2 trainer.epochs=1 dataset.max_samples=2000   # a quick check
    python bench/mnist_search.py hydra/launcher=joblib hydra.launcher.n_jobs=2           # any other override

Each call records into a fresh folder (its own MLflow store and study), so it never resumes an earlier call;
``--out`` picks the folder, and running again with the same ``--out`` continues that search instead.
"""

import argparse
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parent.parent
BOOK_BEST_VAL_LOSS = 0.0574
STUDY = "mnist_search"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=int, help="trials to run (default: the preset's)")
    parser.add_argument("--out", type=Path, help="folder for the MLflow store, the study and the job folders")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. trainer.epochs=1")
    args = parser.parse_args()
    out = (args.out or REPO / "outputs" / "bench" / f"mnist_search-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    out.mkdir(parents=True, exist_ok=True)

    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        "+experiment=mnist_dropout",
        "+sweep=mnist_search",
        f"tracking.uri=sqlite:///{out}/mlflow.db",
        f"hydra.sweep.dir={out}/jobs",
        "trainer.verbose=0",
    ]
    if args.n_trials:
        command.append(f"hydra.sweeper.n_trials={args.n_trials}")
    command += args.overrides
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=False)
    wall = time.perf_counter() - started
    print_table(out, wall)
    return finished.returncode


def print_table(out: Path, wall_seconds: float) -> None:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out}/optuna.db")
    counts = {
        state: sum(t.state == state for t in study.trials)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    complete = counts[TrialState.COMPLETE]
    best = study.best_trial if complete else None
    test_accuracy = best_run_metric(out, best.number, "test_accuracy") if best else math.nan
    rows = [
        ("trials (complete / pruned / failed)", " / ".join(str(n) for n in counts.values())),
        ("best val loss (book: 0.0574)", f"{best.value:.4f}" if best else "-"),
        ("best trial", f"{best.number}: {best.params}" if best else "-"),
        ("best trial's test accuracy", f"{test_accuracy:.4f}" if math.isfinite(test_accuracy) else "-"),
        ("wall time", f"{wall_seconds:.0f} s"),
        ("records", str(out)),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def best_run_metric(out: Path, trial_number: int, metric: str) -> float:
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.`runner.trial` = '{trial_number}' and tags.`runner.study` = '{STUDY}'"
    )
    return float(runs[0].data.metrics.get(metric, math.nan)) if runs else math.nan


if __name__ == "__main__":
    sys.exit(main())
