"""The book's way of training one of its networks, written by hand: what bench/speed.py holds the runner against.

    RUNNER_DATA_DIR=../shared/data python bench/plain_keras.py wine_mlp --epochs 200
    python bench/plain_keras.py mnist_dropout --epochs 3 --output /tmp/plain

Nothing of the runner is used. The arrays come from ``datasets.load_dataset`` (numpy and pandas only), so both
sides train on the same rows, split and scaling; the rest is the book's script: the network from plain
``keras.layers``, ``compile`` with Keras's defaults (one step per execution, jit_compile auto), ``model.fit`` on
the arrays with ``validation_data``, ``ModelCheckpoint(save_best_only)`` on the experiment's checkpoint monitor,
then ``evaluate`` on the test split with the kept weights.

Prints one JSON line: wall seconds (process start to the end of the evaluation), each epoch's seconds, seconds
from process start to the first training step, the test metric (wine: MAE in standardised units; seizure and
MNIST: accuracy), the kept epoch, and the training rows.

Two choices keep the work the same as the runner's: the checkpoint saves weights only (as the runner does), and
the epoch timer is the last callback (the runner's ``epoch_seconds`` also covers validation and every callback
before its logger).
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import process_start  # noqa: E402
from datasets import load_dataset  # noqa: E402


@dataclass(frozen=True)
class Book:
    """One of the book's experiments as its script would hard-code it."""

    dataset: str
    hidden: tuple[int, ...]
    dropout: float
    output: tuple[int, str]  # units, activation
    loss: str
    metric: str  # compiled metric, also the reported test metric
    monitor: str  # ModelCheckpoint's
    batch_size: int
    epochs: int


BOOK = {
    "wine_mlp": Book("wine", (32,), 0.0, (1, "linear"), "mean_absolute_error", "mae", "val_loss", 32, 200),
    "seizure_dnn": Book(
        "seizure", (128, 64, 64, 32, 16), 0.0, (1, "sigmoid"), "binary_crossentropy", "accuracy", "val_accuracy", 32, 20
    ),
    "mnist_dropout": Book(
        "mnist",
        (512, 256, 128),
        0.5,
        (10, "softmax"),
        "sparse_categorical_crossentropy",
        "accuracy",
        "val_loss",
        30,
        50,
    ),
}


def build(book: Book, n_features: int):
    layers = [keras.Input((n_features,))]
    for units in book.hidden:
        layers.append(keras.layers.Dense(units, activation="relu"))
        if book.dropout:
            layers.append(keras.layers.Dropout(book.dropout))
    units, activation = book.output
    layers.append(keras.layers.Dense(units, activation=activation))
    return keras.Sequential(layers)


def train(name: str, epochs: int, seed: int, output: Path) -> dict:
    book = BOOK[name]
    data = load_dataset(book.dataset)
    timer = EpochTimer()
    keras.utils.set_random_seed(seed)
    model = build(book, data.n_features)
    model.compile(optimizer="adam", loss=book.loss, metrics=[book.metric])
    best = output / f"{name}.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(
        best, monitor=book.monitor, save_best_only=True, save_weights_only=True
    )
    history = model.fit(
        data.train.x,
        data.train.y,
        batch_size=book.batch_size,
        epochs=epochs,
        validation_data=(data.val.x, data.val.y),
        callbacks=[checkpoint, timer],
        verbose=0,
    )
    model.load_weights(best)
    scores = model.evaluate(data.test.x, data.test.y, batch_size=book.batch_size, verbose=0, return_dict=True)
    monitored = history.history[book.monitor]
    pick = max if book.monitor.endswith("accuracy") else min
    return {
        "experiment": name,
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "batch_size": book.batch_size,
        "train_rows": len(data.train.x),
        "epoch_seconds": timer.seconds,
        "first_step_at": timer.first_step_at,
        "best_epoch": monitored.index(pick(monitored)) + 1,
        f"test_{book.metric}": float(scores[book.metric]),
    }


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch, and when the first training step began (time.time())."""

    def __init__(self):
        super().__init__()
        self.seconds, self.first_step_at, self._began = [], None, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._began)


def main() -> int:
    launched = process_start()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(BOOK))
    parser.add_argument("--epochs", type=int, default=None, help="default: the book's")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=None, help="where the checkpoint goes (default: a temp folder)")
    args = parser.parse_args()
    output = args.output or Path(tempfile.mkdtemp(prefix="plain-keras-"))
    output.mkdir(parents=True, exist_ok=True)
    result = train(args.experiment, args.epochs or BOOK[args.experiment].epochs, args.seed, output)
    result["first_step_seconds"] = result.pop("first_step_at") - launched
    result["wall_seconds"] = time.time() - launched
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
