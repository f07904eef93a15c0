"""The owners of the shared facts: datasets/specs.py (each data set's task, classes, slice, extra metrics, and
the split names) and models/losses.py (task -> output layer and default loss, loss -> task); both light."""

import subprocess
import sys

import pytest

from datasets import DATASET_NAMES, SPECS, SPLITS, load_dataset, spec_for, spec_of
from datasets.synthetic import TASKS as SYNTHETIC_OPTIONS
from models import losses, output_head
from runner.config.paths import CONF_DIR
from runner.config.schema import GROUP_SCHEMAS, WineDataset


def test_every_data_set_has_its_config_option_and_schema():
    assert set(GROUP_SCHEMAS["dataset"]) == set(DATASET_NAMES)
    assert {p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")} == set(DATASET_NAMES)
    for name, schema in GROUP_SCHEMAS["dataset"].items():
        # None: a task only the loaded data decides (images' class folders, task=auto of a user's own data)
        assert schema().name == name and spec_of(schema()).task in (*losses.TASKS, None)
    for name in ("table", "arrays", "sequence"):
        assert spec_for(name, {"task": "auto"}).task is None
        assert spec_for(name, {"task": "binary"}).n_classes == 2
        assert spec_for(name, {"task": "regression"}).extra_final_metrics == ("mae_original", "rmse_original")
        assert spec_for(name, {"task": "regression", "scale_target": False}).extra_final_metrics == ()


@pytest.mark.parametrize("task", SYNTHETIC_OPTIONS)
def test_a_loaded_data_set_poses_the_task_its_spec_states(task):
    data = load_dataset("synthetic", task=task, n_samples=60, n_classes=4)
    spec = spec_for("synthetic", {"task": task, "n_classes": 4})
    assert data.task == spec.task and tuple(data.splits()) == SPLITS
    if data.task != "regression":
        assert data.n_classes == spec.n_classes


def test_option_dependent_facts():
    assert spec_of(WineDataset()).extra_final_metrics == ("mae_original", "rmse_original")
    assert spec_of(WineDataset(scale_target=False)).extra_final_metrics == ()
    assert spec_for("seizure").natural_slice == "original_class" and spec_for("wine").natural_slice == "quality"
    assert spec_for("mnist").n_classes == 10 and spec_for("nowhere") is None
    assert SPECS["synthetic"].resolved({"task": "no such task"}).task is None
    # Several target columns can only be a multilabel target, one label per column; arrays count them on loading
    labels = spec_for("table", {"target": ["a", "b", "c"]})
    assert (labels.task, labels.n_classes) == ("multilabel", 3)
    assert spec_for("table", {"target": ["a"]}).task is None  # task=auto with one column: decided on loading
    assert (spec_for("arrays", {"task": "multilabel"}).task, spec_for("arrays", {"task": "multilabel"}).n_classes) == (
        "multilabel",
        None,
    )


def test_loss_rules_agree_with_each_other():
    for task, loss in losses.DEFAULT_LOSS.items():
        assert losses.loss_suits(losses.loss_task(loss), task)
        assert losses.loss_task(loss) == (task if task != "multilabel" else "binary")  # one binary loss per label
        assert output_head(task, 3)[1] == losses.TASK_OUTPUT[task]
    assert losses.loss_task("MAE") == losses.loss_task("MeanAbsoluteError") == "regression"
    assert losses.ONE_HOT_LOSSES <= {name for name, task in losses.LOSS_TASKS.items() if task == "multiclass"}
    assert losses.loss_task("hinge") is None


def test_the_owners_import_no_numpy_or_keras():
    code = (
        "import sys, datasets, models.losses, runner.config.validation\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'sklearn', 'keras', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
