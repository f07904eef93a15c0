"""What the training monitor's figures cost to draw: ``write_plots`` on synthetic records of a model with N
weighted layers over E epochs (the gradient-norm figure and the three histogram heat maps).

    python bench/monitor_figures.py                      # 3, 6 and 12 layers, 21 epochs, 5 repetitions
    python bench/monitor_figures.py --layers 6 --epochs 201

Prints the median and minimum seconds of each size; the first drawing in the process (Matplotlib's import and
font loading) is left out. To compare two versions of the code, run this script with each tree first on
``sys.path`` (``--repo``), in turns, on the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 6, 12])
    parser.add_argument("--epochs", type=int, default=21, help="recorded epochs, 0 included")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="the code to time")
    return parser.parse_args(argv)


def synthetic_records(layers: int, epochs: int):
    import numpy as np

    from runner.diagnostics.monitors._measure import HIST_EDGES
    from runner.diagnostics.monitors.recording import Records

    rng = np.random.default_rng(0)
    records = Records(epochs=list(range(epochs)))
    for index in range(layers):
        name = f"dense_{index}"
        records.grad_norms[name] = list(rng.lognormal(size=epochs))
        for kind in records.histograms:
            records.histograms[kind][name] = [rng.integers(0, 1000, len(HIST_EDGES) + 1) for _ in range(epochs)]
    return records


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    from runner.diagnostics.monitors.plots import write_plots

    print(f"code: {args.repo.resolve()}; {args.epochs} epochs; median (min) of {args.repeats} drawings")
    with tempfile.TemporaryDirectory() as folder:
        write_plots(synthetic_records(2, 3), Path(folder))  # Matplotlib's import and fonts, not counted
        for layers in args.layers:
            records, seconds = synthetic_records(layers, args.epochs), []
            for _ in range(args.repeats):
                started = time.perf_counter()
                write_plots(records, Path(folder))
                seconds.append(time.perf_counter() - started)
            print(f"{layers:3d} layers: {statistics.median(seconds):.2f} s ({min(seconds):.2f} s)")


if __name__ == "__main__":
    main()
