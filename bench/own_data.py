"""Bring-your-own-data paths against scikit-learn on the same rows: public data sets shipped with scikit-learn
(no download) written to files in a temporary folder, trained through the runner, and a linear baseline fitted
on the very train rows the runner trained on and scored on its test rows.

    python bench/own_data.py                 # 40 epochs each
    python bench/own_data.py --epochs 10 --only diabetes

- diabetes (442 rows, regression of disease progression): dataset=table (CSV) and dataset=arrays (.npz), MLP;
  baseline Ridge on standardised inputs. Metrics in the target's own unit.
- breast cancer (569 rows, malignant vs benign): table (CSV, text labels) and arrays (.npz, 0/1), MLP;
  baseline LogisticRegression on standardised inputs.
- digits (1797 8x8 images, 10 classes): dataset=images (a folder of class folders of PNGs), CNN; baseline
  LogisticRegression on the pixels.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MLP = ["model=mlp", "model.hidden_units=[64,32]"]
TABULAR = {
    "diabetes": {"task": "regression", "target": "progression", "metrics": ("mae_original", "rmse_original")},
    "breast_cancer": {"task": "binary", "target": "diagnosis", "metrics": ("accuracy", "roc_auc")},
}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from runner.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def run(overrides: list[str], work: Path, name: str, epochs: int) -> tuple[dict, float]:
    """One job through the runner; its final metrics and wall seconds."""
    from runner.run.job import run_job

    overrides = [
        *overrides,
        f"trainer.epochs={epochs}",
        "trainer.verbose=0",
        "diagnostics=none",
        "evaluation.plots=false",
        f"tracking.uri=sqlite:///{work}/mlflow.db",
        "verbosity=quiet",
    ]
    started = time.perf_counter()
    result = run_job(compose(overrides), work / "runs" / name, overrides=overrides)
    return result.metrics, time.perf_counter() - started


def split_rows(name: str, options: dict) -> dict:
    """The source-row indices of each split, as the runner's loader made them (read from its cache)."""
    from datasets import load_dataset

    data = load_dataset(name, **options)
    if name == "images":  # meta['file'] is each row's image, named after its row in load_digits
        return {split: [int(Path(str(f)).stem) for f in part.meta["file"]] for split, part in data.splits().items()}
    return {split: part.meta["row_id"] - 1 for split, part in data.splits().items()}


def write_tabular(work: Path) -> dict:
    """Each tabular set as a CSV (named columns, breast cancer with text labels) and as an .npz."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_diabetes

    written = {}
    for name, loader in (("diabetes", load_diabetes), ("breast_cancer", load_breast_cancer)):
        bunch = loader(as_frame=True)
        frame = bunch.frame.rename(columns={"target": TABULAR[name]["target"]})
        y = bunch.target.to_numpy()
        if name == "breast_cancer":
            frame[TABULAR[name]["target"]] = np.asarray(bunch.target_names)[y]
            # The CSV's sorted labels make malignant the positive class (1); the .npz codes it the same way, so
            # both paths stratify alike and cut the same rows (scikit-learn codes malignant as 0).
            y = (y == 0).astype(np.int64)
        frame.to_csv(work / f"{name}.csv", index=False)
        np.savez(work / f"{name}.npz", x=bunch.data.to_numpy(), y=y)
        written[name] = (bunch.data.to_numpy(), y)
    return written


def write_digits(work: Path):
    """load_digits as a folder of class folders of 8x8 grayscale PNGs, each named after its row."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = work / "digits"
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{index:04d}.png")
    return root, digits.data, digits.target


def baseline(task: str, x, y, rows: dict) -> dict:
    """Ridge / LogisticRegression on standardised inputs, fitted on the runner's train rows, scored on its test rows."""
    import numpy as np
    from sklearn import metrics
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = np.asarray(rows["train"]), np.asarray(rows["test"])
    if task == "regression":
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[train], y[train])
        predicted = model.predict(x[test])
        return {
            "mae_original": metrics.mean_absolute_error(y[test], predicted),
            "rmse_original": float(np.sqrt(metrics.mean_squared_error(y[test], predicted))),
        }
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x[train], y[train])
    scores = model.predict_proba(x[test])
    result = {"accuracy": metrics.accuracy_score(y[test], scores.argmax(axis=1))}
    if task == "binary":
        result["roc_auc"] = metrics.roc_auc_score(y[test], scores[:, 1])
    else:
        result["macro_f1"] = metrics.f1_score(y[test], scores.argmax(axis=1), average="macro")
    return result


def tabular_rows(work: Path, name: str, epochs: int, arrays: dict) -> list[tuple]:
    spec = TABULAR[name]
    x, y = arrays[name]
    loaders = {
        "table": {"path": str(work / f"{name}.csv"), "target": spec["target"]},
        "arrays": {"path": str(work / f"{name}.npz")},
    }
    lines, seen = [], {}
    for path, options in loaders.items():
        overrides = [f"dataset={path}", *(f"dataset.{key}={value}" for key, value in options.items()), *MLP]
        final, seconds = run(overrides, work, f"{name}-{path}", epochs)
        seen[path] = split_rows(path, options)
        reference = baseline(spec["task"], x, y, seen[path])
        lines += [(name, path, m, final[f"test_{m}"], reference[m], seconds) for m in spec["metrics"]]
    same = all(list(seen["table"][s]) == list(seen["arrays"][s]) for s in ("train", "val", "test"))
    print(f"{name}: table and arrays {'share' if same else 'do NOT share'} their train/val/test rows", file=sys.stderr)
    return lines


def digits_rows(work: Path, epochs: int) -> list[tuple]:
    root, x, y = write_digits(work)
    overrides = ["dataset=images", f"dataset.path={root}", "dataset.image_size=[8,8]", "dataset.color_mode=grayscale"]
    final, seconds = run([*overrides, "model=cnn"], work, "digits-images", epochs)
    rows = split_rows("images", {"path": str(root), "image_size": [8, 8], "color_mode": "grayscale"})
    reference = baseline("multiclass", x, y, rows)
    return [("digits", "images", m, final[f"test_{m}"], reference[m], seconds) for m in ("accuracy", "macro_f1")]


def markdown(lines: list[tuple], epochs: int) -> str:
    out = [
        f"| data set | runner path | test metric | runner ({epochs} epochs) | scikit-learn baseline | run seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, path, metric, ours, theirs, seconds in lines:
        out.append(f"| {name} | `dataset={path}` | {metric} | {ours:.4f} | {theirs:.4f} | {seconds:.1f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--only", choices=[*TABULAR, "digits"], action="append")
    args = parser.parse_args()
    chosen = args.only or [*TABULAR, "digits"]
    with tempfile.TemporaryDirectory(prefix="own-data-bench-") as folder:
        work = Path(folder)
        os.environ["RUNNER_CACHE_DIR"] = str(work / "cache")  # parsed arrays stay in the temporary folder
        arrays = write_tabular(work)
        lines = []
        for name in chosen:
            if name in TABULAR:
                lines += tabular_rows(work, name, args.epochs, arrays)
            else:
                lines += digits_rows(work, args.epochs)
    print(markdown(lines, args.epochs))


if __name__ == "__main__":
    main()
