"""A run's local folder: every path in it named once, and the tables and records written into it."""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from runner.errors import TrackingError

# Sub-folders uploaded to the run's MLflow artifacts as they are (the diagnostics upload their own).
UPLOADED = ("reports", "plots", "model", "tensorboard")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def model_file(self) -> Path:
        return self.root / "model" / "model.keras"

    @property
    def architecture_image(self) -> Path:
        """The network drawn by Keras's plot_model (runner/run/architecture.py), when Graphviz is installed."""
        return self.root / "model" / "architecture.png"

    @property
    def preprocessing(self) -> Path:
        """The fitted input preprocessing of a user's own table or arrays (datasets/tablecode.py describes it)."""
        return self.root / "model" / "preprocessing.json"

    @property
    def best_weights(self) -> Path:
        return self.root / "checkpoints" / "best.weights.h5"

    @property
    def resume_state(self) -> Path:
        """The full training state ``trainer.resume`` continues from."""
        return self.root / RESUME_STATE

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's logs (trainer.tensorboard): ``tensorboard --logdir <run>/tensorboard``."""
        return self.root / "tensorboard"

    @property
    def diagnostics(self) -> Path:
        return self.root / "diagnostics"

    @property
    def log_file(self) -> Path:
        """The run's log, written by Hydra's file handler (conf/config.yaml)."""
        return self.root / "runner.log"

    def create(self) -> None:
        """Make the folder, or fail with what to do, before any run is recorded."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise TrackingError(
                f"the output folder {self.root} is not writable: {error}. Choose another with "
                f"hydra.run.dir=... (or run from a folder you can write to)."
            ) from error

    def uploads(self) -> list[tuple[Path, str]]:
        """The (local folder, artifact path) pairs that hold files, for the upload at the end of a run."""
        return [
            (self.root / name, name)
            for name in UPLOADED
            if (self.root / name).is_dir() and any((self.root / name).iterdir())
        ]


RESUME_STATE = Path("checkpoints") / "resume"  # inside a run's folder


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def history_table(history: dict[str, list[float]]) -> pd.DataFrame:
    """One row per epoch (numbered from 1), one column per logged metric."""
    epochs = len(next(iter(history.values()), []))
    table = pd.DataFrame({name: np.asarray(values, dtype="float64") for name, values in history.items()})
    table.index = pd.RangeIndex(1, epochs + 1, name="epoch")
    return table


def predictions_table(data, outputs: np.ndarray) -> pd.DataFrame:
    """One row per test example: the label and the raw model outputs (and the target in its own unit when the
    data set standardised it); multilabel: ``y_true_<label>`` and ``output_<label>`` for each label."""
    if data.task == "multilabel":
        truth = {f"y_true_{name}": data.test.y[:, k] for k, name in enumerate(data.class_names)}
        scores = {f"output_{name}": outputs[:, k] for k, name in enumerate(data.class_names)}
        return pd.DataFrame({name: np.asarray(v, dtype="float64") for name, v in {**truth, **scores}.items()})
    columns = {"y_true": data.test.y}
    for index in range(outputs.shape[1]):
        columns[f"output_{index}"] = outputs[:, index]
    if data.target_scaling:
        mean, std = data.target_scaling["mean"], data.target_scaling["std"]
        columns["y_true_original"] = data.test.y * std + mean
        columns["y_pred_original"] = outputs[:, 0] * std + mean
    # float64 throughout: every value written at full precision, labels too ("3.0"), as the record always had.
    return pd.DataFrame({name: np.asarray(values, dtype="float64") for name, values in columns.items()})


def dataset_record(data) -> dict:
    """What the run trained on, for reports/dataset.json."""
    return {
        "name": data.name,
        "task": data.task,
        "split": data.split_source,
        "rows": {split: len(part.y) for split, part in data.splits().items()},
        "input_shape": list(data.input_shape),
        "target": data.target_name,
        "classes": data.class_names,
        "features": data.feature_names,
        "feature_scaling": data.feature_scaling,
        "target_scaling": data.target_scaling,
        "files": data.files,
        "notes": data.notes,
    }


def write_reports(folder: RunFolder, data, result, history: dict, final: dict) -> None:
    """The run's tables and records under reports/: final metrics, data set, history, evaluation reports,
    test predictions."""
    reports = folder.reports
    write_json(reports / "metrics.json", final)
    write_json(reports / "dataset.json", dataset_record(data))
    history_table(history).to_csv(reports / "history.csv", na_rep="nan")
    for name, text in result.reports.items():
        (reports / name).write_text(text)
    predictions_table(data, result.predictions["test"]).to_csv(
        reports / "test_predictions.csv", index=False, na_rep="nan"
    )
