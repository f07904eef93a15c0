"""Which execution settings the runner uses by default, and why: epoch time and final metric per setting.

    RUNNER_DATA_DIR=../shared/data python bench/execution_settings.py               # 2 repetitions
    RUNNER_DATA_DIR=../shared/data python bench/execution_settings.py --only wine --repeats 1

Every job runs in this one process (``run_job``), so TensorFlow's import is paid once and the settings are
compared on equal terms; the settings of one repetition run back to back, in a rotated order, so that a slow
spell of a shared machine does not favour one of them. Per setting: the median epoch time (epochs after the
first, which also traces the step), its ratio to Keras's defaults, and the test metric at the kept epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.diagnostics_overhead import common_overrides, time_job  # noqa: E402

EXPERIMENTS = {"wine_mlp": (30, "test_mae"), "seizure_dnn": (6, "test_accuracy"), "mnist_dropout": (3, "test_accuracy")}
# Keras's defaults first: arrays handed to fit, one step per call, XLA as Keras decides.
SETTINGS = {
    "keras defaults": ["trainer.pipeline=arrays", "trainer.steps_per_execution=1"],
    "tf.data once": ["trainer.pipeline=auto", "trainer.steps_per_execution=1"],
    "arrays, 32 steps/call": ["trainer.pipeline=arrays", "trainer.steps_per_execution=32"],
    "tf.data, 8 steps/call": ["trainer.pipeline=auto", "trainer.steps_per_execution=8"],
    "tf.data, 32 steps/call (default)": ["trainer.pipeline=auto", "trainer.steps_per_execution=32"],
    "tf.data, 128 steps/call": ["trainer.pipeline=auto", "trainer.steps_per_execution=128"],
    "default, no XLA": ["trainer.jit_compile=false"],
    "default, XLA": ["trainer.jit_compile=true"],
}


def epoch_times(run_dir: Path) -> list[float]:
    with open(run_dir / "reports" / "history.csv") as handle:
        return [float(row["epoch_seconds"]) for row in csv.DictReader(handle)]


def final_metric(run_dir: Path, name: str) -> float:
    return float(json.loads((run_dir / "reports" / "metrics.json").read_text())[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default=None, help="run only experiments whose name contains this")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="execution-settings-"))
    names = list(SETTINGS)
    print(f"| experiment | setting | median epoch s | vs Keras defaults | test metric | (work folder {work})")
    print("|---|---|---|---|---|")
    for experiment, (epochs, metric) in EXPERIMENTS.items():
        if args.only and args.only not in experiment:
            continue
        common = [f"+experiment={experiment}", *common_overrides(work, epochs)]
        time_job(common, work / f"{experiment}-warmup")  # the process's first fit also pays one-off costs
        epochs_by_setting, metrics = {}, {}
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                run_dir = work / f"{experiment}-{names.index(name)}-{repeat}"
                time_job([*common, *SETTINGS[name]], run_dir)
                epochs_by_setting.setdefault(name, []).extend(epoch_times(run_dir)[1:])
                metrics.setdefault(name, []).append(final_metric(run_dir, metric))
        base = statistics.median(epochs_by_setting[names[0]])
        for name in names:
            epoch = statistics.median(epochs_by_setting[name])
            values = ", ".join(f"{value:.4f}" for value in metrics[name])
            print(f"| {experiment} | {name} | {epoch:.3f} | {base / epoch:.2f}x | {metric} {values} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
