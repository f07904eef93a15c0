"""Run the book's experiments at the book's settings and print ours against the published numbers.

    RUNNER_DATA_DIR=../shared/data python bench/reproduce_book.py               # the four with targets
    python bench/reproduce_book.py --experiments wine_mlp,mnist_l2               # any presets
    python bench/reproduce_book.py --quick                                       # smoke test (+debug=fast)

Every run is recorded in the MLflow store (experiment "book-reproduction" unless --tracking-experiment).
A benchmark, not a test: it takes tens of minutes on two cores.
"""

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runner.cli import CONF_DIR  # noqa: E402

# (metric, book value as printed, target as (comparison, bound) or None)
BOOK = {
    "wine_mlp": [("train_mae", "0.190", None), ("val_mae", "0.213", ("<=", 0.22)), ("test_mae", "0.200", None)],
    "wine_deep_mlp": [("train_mae", "0.075", None), ("val_mae", "0.190", ("<=", 0.21)), ("test_mae", "0.190", None)],
    "seizure_dnn": [
        ("val_accuracy", "0.971-0.985", (">=", 0.97)),
        ("test_accuracy", "-", None),
        ("test_roc_auc", "-", None),
    ],
    "mnist_dropout": [("val_accuracy", "-", None), ("test_accuracy", "-", (">=", 0.98))],
    "mnist_mlp": [("val_accuracy", "-", None), ("test_accuracy", "-", None)],
    "mnist_l2": [("val_accuracy", "-", None), ("test_accuracy", "-", None)],
    "wine_broken_init": [("val_mae", "stuck high", None)],
    "seizure_bilstm": [("val_accuracy", "-", None), ("test_roc_auc", "-", None)],
}
DEFAULT = ["wine_mlp", "wine_deep_mlp", "seizure_dnn", "mnist_dropout"]


def run_preset(name: str, extra: list[str], output_root: Path):
    from runner.run.job import run_job

    overrides = [f"+experiment={name}", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    started = time.perf_counter()
    result = run_job(cfg, output_root / name, overrides=overrides)
    return result, time.perf_counter() - started


def delta(ours: float, book: str) -> str:
    try:
        return f"{ours - float(book):+.3f}"
    except ValueError:
        return ""


def verdict(ours: float, target) -> str:
    if target is None:
        return ""
    comparison, bound = target
    ok = ours <= bound if comparison == "<=" else ours >= bound
    return f"{'PASS' if ok else 'FAIL'} ({comparison} {bound})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", default=",".join(DEFAULT), help="comma-separated presets")
    parser.add_argument("--quick", action="store_true", help="add +debug=fast (checks the script, not the book)")
    parser.add_argument("--tracking-experiment", default="book-reproduction")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()

    extra = [f"tracking.experiment={args.tracking_experiment}", "trainer.verbose=0", *args.overrides]
    if args.quick:
        extra.append("+debug=fast")
        extra.append(f"tracking.experiment={args.tracking_experiment}-quick")
    output_root = Path("outputs") / "bench" / f"reproduce_{datetime.now():%Y%m%d-%H%M%S}"
    rows, failures, total = [], 0, time.perf_counter()
    for name in args.experiments.split(","):
        result, seconds = run_preset(name, extra, output_root)
        for metric, book, target in BOOK.get(name, [("val_loss", "-", None)]):
            ours = result.metrics[metric]
            check = verdict(ours, target)
            failures += check.startswith("FAIL")
            rows.append((name, metric, book, f"{ours:.4f}", delta(ours, book), check, f"{seconds:.0f}"))
        print(f"[{name}] done in {seconds:.0f} s, run {result.run_id}", flush=True)

    header = ("experiment", "metric", "book", "ours", "delta", "target", "time (s)")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) + " |" for row in [header, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    table = "\n".join(lines)
    print("\n" + table)
    print(
        f"\ntotal {time.perf_counter() - total:.0f} s; MAE in standardised units; "
        f"the final evaluation uses the best epoch by each preset's checkpoint monitor"
    )
    output_root.mkdir(parents=True, exist_ok=True)
    (output_root / "table.md").write_text(table + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
