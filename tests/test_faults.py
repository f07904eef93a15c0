"""Seeded faults: the presets compose, declare what they expect, and the data injections really happen."""

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from datasets.synthetic import load_synthetic
from runner.cli import CONF_DIR
from runner.config.schema import FaultConfig
from runner.config.validation import validate
from runner.diagnostics.report import STAGES
from runner.run import faults

FAULT_DIR = Path(CONF_DIR) / "experiment" / "faults"


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def small_binary():
    return load_synthetic(task="binary", n_samples=400, n_features=5, seed=3)


def test_at_least_fifteen_faults_over_every_data_set():
    names = [path.stem for path in FAULT_DIR.glob("*.yaml")]
    assert len(names) >= 15
    for prefix in ("wine_", "seizure_", "mnist_", "bilstm_"):
        assert any(name.startswith(prefix) for name in names), prefix


@pytest.mark.parametrize("name", sorted(path.stem for path in FAULT_DIR.glob("*.yaml")))
def test_fault_preset_composes_with_an_expectation(name):
    cfg = compose_config(f"+experiment=faults/{name}", "diagnostics=full")
    validate(cfg)
    assert cfg.fault.name == name
    assert cfg.fault.description
    assert cfg.fault.expect, "a fault must name the checks that should trip"
    for check in cfg.fault.expect:
        assert check.split(".")[0] in STAGES, check


def test_fault_overrides_reach_the_groups():
    cfg = compose_config("+experiment=faults/seizure_batch1_high_lr")
    assert cfg.optimizer.name == "sgd" and cfg.trainer.batch_size == 1
    assert cfg.dataset.name == "seizure"
    cfg = compose_config("+experiment=faults/wine_leakage")
    assert cfg.fault.duplicate_into_test == pytest.approx(0.3)


def test_shuffled_labels_keep_the_balance_but_lose_the_order():
    data = small_binary()
    shuffled = faults.inject(data, FaultConfig(shuffle_labels=True, seed=1))
    for split in ("train", "val", "test"):
        before, after = data.splits()[split].y, shuffled.splits()[split].y
        assert np.array_equal(np.sort(before), np.sort(after))
        np.testing.assert_array_equal(data.splits()[split].x, shuffled.splits()[split].x)
    # 320 balanced binary labels: a permutation keeping more than 90% of them in place is vanishingly rare.
    assert np.mean(data.train.y == shuffled.train.y) < 0.9
    assert any("seeded fault" in note for note in shuffled.notes)


def test_leakage_copies_training_rows_into_the_test_split():
    data = small_binary()
    leaked = faults.inject(data, FaultConfig(duplicate_into_test=0.5, seed=0))
    train_rows = {row.tobytes() for row in data.train.x}
    copied = [i for i, row in enumerate(leaked.test.x) if row.tobytes() in train_rows]
    assert len(copied) == round(0.5 * len(data.test.x))
    assert not any(row.tobytes() in train_rows for row in data.test.x)
    for i in copied:  # target and metadata travel with the row
        source = next(j for j, row in enumerate(data.train.x) if np.array_equal(row, leaked.test.x[i]))
        assert leaked.test.y[i] == data.train.y[source]
        assert leaked.test.meta["row_id"][i] == data.train.meta["row_id"][source]
    np.testing.assert_array_equal(leaked.train.x, data.train.x)


def test_input_scale_multiplies_every_split():
    data = small_binary()
    scaled = faults.inject(data, FaultConfig(input_scale=1000.0))
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(scaled.splits()[split].x, data.splits()[split].x * 1000.0, rtol=1e-6)


def test_no_fault_leaves_the_data_alone():
    data = small_binary()
    assert faults.inject(data, FaultConfig()) is data


def test_bad_leakage_share_is_refused():
    with pytest.raises(ValueError, match="duplicate_into_test"):
        faults.duplicate_into_test(small_binary(), 1.5, np.random.default_rng(0))


def test_out_of_range_fault_setting_is_refused_by_the_schema():
    from runner.errors import ConfigError

    cfg = compose_config("dataset=synthetic", "fault.duplicate_into_test=2")
    with pytest.raises(ConfigError, match="fault.duplicate_into_test"):
        validate(cfg)
