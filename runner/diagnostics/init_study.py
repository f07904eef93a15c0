"""Weight initialisation study: how activations spread through a deep stack for each init and activation.

A ``layers``-deep fully connected network (``units`` wide, no biases) is fed standard-normal random inputs;
for every weight initialisation (N(0,1), N(0, 0.01^2), Glorot normal, He normal) and activation (sigmoid,
tanh, ReLU) it records each layer's activations.  The result is a table of per-layer statistics and, when an
output folder is given, one histogram grid per activation (rows: inits, columns: layers).

The forward pass is plain NumPy: the study is about the arithmetic of initialisation, so it needs no
framework and runs in a second.  ``python -m runner.diagnostics.init_study --out DIR`` writes the figures
and ``init_study.csv``.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

INITS = ("normal_1", "normal_0.01", "glorot", "he")
ACTIVATIONS = ("sigmoid", "tanh", "relu")
# Saturated: as close to an asymptote as sigmoid is at |z| = 5 (the monitors' rule); tanh(z) = 2 sigmoid(2z)
# - 1 gives the matching tanh edge.  For ReLU the share of exact zeros is reported instead.
_SIGMOID_EDGE = 1.0 / (1.0 + math.exp(5.0))


@dataclass
class LayerStats:
    init: str
    activation: str
    layer: int  # 1 = first hidden layer
    mean: float
    std: float
    saturated: float  # share of activations at an asymptote (sigmoid/tanh) or exactly zero (ReLU)


def weight_std(init: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation of the normal distribution the weights are drawn from."""
    stds = {
        "normal_1": 1.0,
        "normal_0.01": 0.01,
        "glorot": math.sqrt(2.0 / (fan_in + fan_out)),
        "he": math.sqrt(2.0 / fan_in),
    }
    if init not in stds:
        raise ValueError(f"init={init!r}: expected one of {tuple(stds)}")
    return stds[init]


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0.0)
    raise ValueError(f"activation={activation!r}: expected one of {ACTIVATIONS}")


def saturated_share(a: np.ndarray, activation: str) -> float:
    if activation == "sigmoid":
        return float(np.mean((a < _SIGMOID_EDGE) | (a > 1.0 - _SIGMOID_EDGE)))
    if activation == "tanh":
        return float(np.mean(np.abs(a) > 1.0 - 2.0 * _SIGMOID_EDGE))
    return float(np.mean(a == 0.0))


def forward(init: str, activation: str, layers: int, units: int, samples: int, seed: int) -> list[np.ndarray]:
    """Each hidden layer's activations (samples, units) for one init and activation."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((samples, units))
    outputs = []
    for _ in range(layers):
        h = activate(h @ (rng.standard_normal((units, units)) * weight_std(init, units, units)), activation)
        outputs.append(h)
    return outputs


def run_init_study(
    output_dir: Path | str | None = None,
    layers: int = 5,
    units: int = 500,
    samples: int = 1000,
    seed: int = 0,
    inits=INITS,
    activations=ACTIVATIONS,
) -> list[LayerStats]:
    """Per-layer statistics for every (init, activation) pair; figures and a CSV when ``output_dir`` is set."""
    if layers < 1 or units < 1 or samples < 2:
        raise ValueError("need layers >= 1, units >= 1 and samples >= 2")
    table, grids = [], {}
    for activation in activations:
        grids[activation] = []
        for init in inits:
            outputs = forward(init, activation, layers, units, samples, seed)
            grids[activation].append(outputs)
            table += [
                LayerStats(init, activation, depth, float(a.mean()), float(a.std()), saturated_share(a, activation))
                for depth, a in enumerate(outputs, start=1)
            ]
    if output_dir is not None:
        _write(Path(output_dir), table, grids, list(inits), layers)
    return table


def lookup(table: list[LayerStats], init: str, activation: str) -> list[LayerStats]:
    """The rows of one (init, activation) pair, first layer first."""
    return [row for row in table if row.init == init and row.activation == activation]


def _write(folder: Path, table, grids, inits, layers) -> None:
    from runner.diagnostics import figures

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "init_study.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(table[0])))
        writer.writeheader()
        writer.writerows(asdict(row) for row in table)
    ranges = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": None}
    for activation, grid in grids.items():
        figures.histogram_grid(
            folder / f"init_study_{activation}.png",
            grid,
            inits,
            [f"layer {d}" for d in range(1, layers + 1)],
            f"{activation} activations per layer, by weight initialisation",
            ranges.get(activation),
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.diagnostics.init_study", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the figures and init_study.csv")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = run_init_study(args.out, args.layers, args.units, args.samples, args.seed)
    print(
        f"{'init':<12}{'activation':<10}"
        + "".join(f"std L{d:<6}" for d in range(1, args.layers + 1))
        + "saturated/zero in last layer"
    )
    for activation in ACTIVATIONS:
        for init in INITS:
            rows = lookup(table, init, activation)
            print(
                f"{init:<12}{activation:<10}"
                + "".join(f"{row.std:<10.3g}" for row in rows)
                + f"{rows[-1].saturated:.0%}"
            )
    print(f"figures and init_study.csv in {args.out}")


if __name__ == "__main__":
    main()
