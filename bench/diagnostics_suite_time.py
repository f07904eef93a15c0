"""Wall time of ``diagnose(suite="quick")`` and ``diagnose(suite="full")`` on small models, each in a fresh
process (so TensorFlow's start-up and tracing are counted as a user pays them), and the slowest checks.

    python bench/diagnostics_suite_time.py            # MLP, CNN and LSTM, 1 repeat
    python bench/diagnostics_suite_time.py --repeats 3 --only mlp

Targets (issue "Diagnostics you can trust"): quick <= 10 s and full <= 30 s on a small model.  ``full`` trains
a copy of the model for 5 epochs; the table shows that training's share separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("mlp", "cnn", "lstm")
TARGETS = {"quick": 10.0, "full": 30.0}

WORKER = r"""
import json, sys, time
started = time.perf_counter()
import keras
import numpy as np
from runner.diagnostics import DiagnosticData, DiagnosticOptions, diagnose

kind, suite = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)
if kind == "mlp":
    x = rng.standard_normal((2000, 20)).astype("float32")
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype("int64")
    layers = [keras.Input((20,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(32, activation="relu"),
              keras.layers.Dense(1, activation="sigmoid")]
    loss = "binary_crossentropy"
elif kind == "cnn":
    x = rng.random((1200, 16, 16, 1)).astype("float32")
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype("int64")
    layers = [keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
              keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    loss = "sparse_categorical_crossentropy"
else:
    x = rng.standard_normal((1200, 30, 2)).astype("float32")
    y = x[:, -5:, 0].sum(axis=1).astype("float32")
    layers = [keras.Input((30, 2)), keras.layers.LSTM(16), keras.layers.Dense(1)]
    loss = "mse"
task = "regression" if kind == "lstm" else "binary"
model = keras.Sequential(layers)
model.compile(optimizer="adam", loss=loss)
n = len(x)
data = DiagnosticData(task, x[: int(0.7 * n)], y[: int(0.7 * n)], x[int(0.7 * n): int(0.85 * n)],
                      y[int(0.7 * n): int(0.85 * n)], x[int(0.85 * n):], y[int(0.85 * n):])
imported = time.perf_counter()
report = diagnose(model, data, suite=suite, options=DiagnosticOptions(seed=0), fit_kwargs={"epochs": 5, "batch_size": 32})
done = time.perf_counter()
slowest = sorted(((r.seconds, r.check) for r in report.results), reverse=True)[:3]
print(json.dumps({"diagnose": done - imported, "process": done - started, "worst": report.worst,
                  "cause": report.diagnosis.cause, "slowest": slowest}))
"""


def run_once(kind: str, suite: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, kind, suite], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    print(
        f"{'model':<6} {'suite':<6} {'diagnose s (median)':>20} {'process s':>10} {'target':>8}  worst / cause"
        "  slowest checks"
    )
    for kind in (k for k in MODELS if args.only in k):
        for suite in ("quick", "full"):
            runs = [run_once(kind, suite) for _ in range(args.repeats)]
            seconds = statistics.median(r["diagnose"] for r in runs)
            process = statistics.median(r["process"] for r in runs)
            verdict = "ok" if seconds <= TARGETS[suite] else "OVER"
            slowest = ", ".join(f"{name} {s:.1f}" for s, name in runs[-1]["slowest"])
            print(
                f"{kind:<6} {suite:<6} {seconds:>20.1f} {process:>10.1f} {TARGETS[suite]:>6.0f} {verdict}  "
                f"{runs[-1]['worst']} / {runs[-1]['cause']}  {slowest}"
            )


if __name__ == "__main__":
    main()
