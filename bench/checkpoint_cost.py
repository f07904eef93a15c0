"""What the resumable checkpoint (runner/run/resume.py) costs per epoch, for the book's networks.

    python bench/checkpoint_cost.py                 # 20 checkpoints per network
    python bench/checkpoint_cost.py --saves 50

Each network is built as its preset builds it, trained one step on random data (so the optimizer has its
variables), then ``TrainingState.save`` is timed as the runner calls it after every epoch: the weights,
optimizer and random-generator arrays to ``.npz``, and ``state.json`` with a history that grows by one
epoch per call. Compare the median with the network's epoch time (bench/speed.py).
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

# architecture of each preset: input width, outputs, output activation, loss, hidden layers, dropout
NETWORKS = {
    "wine_mlp": (10, 1, "linear", "mse", [32], 0.0),
    "seizure_dnn": (178, 1, "sigmoid", "binary_crossentropy", [128, 64, 64, 32, 16], 0.0),
    "mnist_dropout": (784, 10, "softmax", "sparse_categorical_crossentropy", [512, 256, 128], 0.5),
}


def trained_one_step(inputs, outputs, activation, loss, hidden, dropout):
    import keras
    import numpy as np

    from models import build_mlp

    model = build_mlp((inputs,), outputs, activation, hidden_units=hidden, dropout=dropout)
    model.compile(optimizer="adam", loss=loss)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, inputs)).astype("float32")
    y = rng.integers(0, outputs, 32) if outputs > 1 else rng.random((32, 1)).astype("float32")
    model.train_on_batch(x, y)
    return model, keras


def checkpoint_times(name: str, saves: int) -> tuple[int, list[float], int]:
    from runner.run.resume import TrainingState

    model, keras = trained_one_step(*NETWORKS[name])
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "resume"
        state = TrainingState(folder, Path(work) / "best.weights.h5", [], {"config": {}, "run_id": "bench"})
        state.set_model(model)
        seconds = []
        for epoch in range(1, saves + 1):
            logs = {"loss": 0.5, "val_loss": 0.4}
            started = time.perf_counter()
            state.save(epoch, logs, logs)
            seconds.append(time.perf_counter() - started)
        size = sum(path.stat().st_size for path in folder.iterdir())
    return model.count_params(), seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saves", type=int, default=20)
    args = parser.parse_args()
    from runner.runtime.console import apply_verbosity, native_log_filtered

    apply_verbosity("normal")
    with native_log_filtered("normal"):  # TensorFlow's start-up notices would split the table
        import keras  # noqa: F401
    print(f"{'network':<16}{'parameters':>12}{'median ms':>11}{'max ms':>9}{'files MB':>10}")
    for name in NETWORKS:
        parameters, seconds, size = checkpoint_times(name, args.saves)
        print(
            f"{name:<16}{parameters:>12,}{statistics.median(seconds) * 1e3:>11.1f}"
            f"{max(seconds) * 1e3:>9.1f}{size / 1e6:>10.2f}"
        )


if __name__ == "__main__":
    main()
