"""bench/speed.py's arithmetic and table, bench/common.py's process clock, and plain_keras.py's book settings.

The benchmark itself takes minutes; these check what its numbers are made of.
"""

import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common, speed, sweep_speed  # noqa: E402


def run(variant, wall, epochs, first=5.0, metric=0.9, rows=None):
    return speed.Run(variant, wall, epochs, first, metric, rows)


def test_mnist_flops_follow_the_layer_widths():
    assert speed.mlp_macs((784, 512, 256, 128, 10)) == 784 * 512 + 512 * 256 + 256 * 128 + 128 * 10 == 566_528
    assert speed.epoch_flops((784, 512, 256, 128, 10), 55_000, 5_000) == pytest.approx(1.926195e11, rel=1e-6)
    assert speed.epoch_flops((2, 3), 10, 0) == 6 * 6 * 10


def test_median_epoch_leaves_out_the_first_unless_it_is_alone():
    assert speed.median_epoch([9.0, 1.0, 3.0, 2.0]) == 2.0
    assert speed.median_epoch([9.0, 1.0]) == 1.0
    assert speed.median_epoch([4.0]) == 4.0


def test_summary_takes_medians_over_repetitions_and_rows_per_epoch_second():
    runs = [
        run("runner", 10.0, [5, 0.5, 0.5], first=2.0, metric=0.90),
        run("runner", 30.0, [5, 1.0, 1.0], first=4.0, metric=0.96),
        run("runner", 20.0, [5, 2.0, 2.0], first=None, metric=0.93),
    ]
    summary = speed.summarise(runs, train_rows=1000)
    assert summary.wall == 20.0
    assert summary.epoch == 1.0
    assert summary.samples_per_second == 1000.0
    assert summary.first_step == 3.0  # the run without one is left out
    assert summary.metric == 0.93 and summary.metric_range == (0.90, 0.96)


def test_experiment_rows_put_speed_ups_above_one_when_the_runner_is_faster():
    summaries = {
        "plain": speed.summarise([run("plain", 40.0, [3, 0.4, 0.4], rows=4000)], 4000),
        "runner": speed.summarise([run("runner", 20.0, [3, 0.1, 0.1], metric=0.95)], 4000),
    }
    rows = {row[1]: row for row in speed.experiment_rows("wine_mlp", 200, summaries, 1)}
    assert rows["wall s (whole command)"][-1] == "2.00x"
    assert rows["epoch s (median, first left out)"][-1] == "4.00x"
    assert rows["samples/s"][2:4] == ["10,000", "40,000"] and rows["samples/s"][-1] == "4.00x"
    assert rows["test_mae"][-1] == "diff +0.0500"
    assert rows["test_mae"][4:6] == ["", ""]  # no JAX run, no torch run


def test_experiment_rows_name_each_other_backend_beside_its_ratio():
    summaries = {
        "plain": speed.summarise([run("plain", 40.0, [3, 0.4, 0.4], rows=4000)], 4000),
        "runner": speed.summarise([run("runner", 20.0, [3, 0.1, 0.1])], 4000),
        "runner-torch": speed.summarise([run("runner-torch", 80.0, [3, 0.8, 0.8])], 4000),
    }
    row = {row[1]: row for row in speed.experiment_rows("wine_mlp", 200, summaries, 1)}["wall s (whole command)"]
    assert len(row) == len(speed.HEADER)
    assert row[4:6] == ["", "80.0"] and row[-1] == "2.00x / torch: 0.50x"


def test_markdown_table_lines_up():
    text = speed.markdown(["a", "bb"], [["long cell", "x"], ["y", "z"]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("|---") and lines[2].startswith("| long cell | x ")


def test_startup_rows_fail_on_tensorflow_or_a_slow_start():
    rows = speed.startup_rows(
        {
            "--help": {"seconds": 0.3, "heavy_imports": []},
            "--cfg job": {"seconds": 0.4, "heavy_imports": ["tensorflow"]},
            "slow": {"seconds": 1.5, "heavy_imports": []},
        }
    )
    assert [row[-1].endswith("pass") for row in rows] == [True, False, False]
    assert "imports tensorflow" in rows[1][-1]


def test_imported_packages_reads_importtime_output():
    output = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       330 |        330 |   tensorflow.python.eager\n"
        "import time:       210 |       1405 | json\n"
        "something else | keras\n"
    )
    assert speed.imported_packages(output) & speed.HEAVY_PACKAGES == {"tensorflow"}


def test_only_selects_sections_by_part_of_their_name():
    assert speed.selected("wine,startup") == ["startup", "wine_mlp"]
    assert speed.selected(None) == list(speed.SECTIONS)
    with pytest.raises(ValueError, match="cifar"):
        speed.selected("wine,cifar")


def test_repetitions_rotate_the_order_of_the_commands():
    assert speed.rotated(["plain", "tensorflow", "jax"], 1) == ["tensorflow", "jax", "plain"]
    assert speed.rotated(["plain", "tensorflow"], 2) == ["plain", "tensorflow"]


def test_default_run_is_estimated_under_35_minutes_and_quick_under_default():
    # 35: the diagnostics section measures each suite at the book's epochs on TensorFlow and JAX (issue 16).
    default = {name: epochs for name, (epochs, _, _) in speed.EXPERIMENTS.items()}
    quick = {name: epochs for name, (_, epochs, _) in speed.EXPERIMENTS.items()}
    full = speed.estimate_seconds(list(speed.SECTIONS), default, 3, True, speed.SWEEP["default"])
    assert 5 * 60 < full < 35 * 60
    assert speed.estimate_seconds(list(speed.SECTIONS), quick, 1, True, speed.SWEEP["quick"], quick=True) < full / 3
    assert speed.estimate_seconds(["wine_mlp"], default, 3, False, (8, 20)) < full


def test_process_start_matches_the_launch_of_a_child():
    launched = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        assert common.process_start(child.pid) == pytest.approx(launched, abs=0.2)
    finally:
        child.kill()
        child.wait()


def test_speed_help_runs_without_tensorflow():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "bench" / "speed.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--quick" in done.stdout and "sections: startup" in done.stdout
    assert not speed.imported_packages(done.stderr) & speed.HEAVY_PACKAGES


def test_plain_script_hard_codes_the_presets_settings():
    from hydra import compose, initialize_config_dir

    from runner.config.schema import register_configs

    plain_keras = pytest.importorskip("bench.plain_keras")
    register_configs()
    for name, book in plain_keras.BOOK.items():
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
            preset = compose("config", overrides=[f"+experiment={name}"])
        assert list(book.hidden) == list(preset.model.hidden_units), name
        assert book.dropout == preset.model.dropout, name
        assert book.batch_size == preset.trainer.batch_size, name
        assert book.epochs == preset.trainer.epochs, name
        assert book.monitor == preset.trainer.checkpoint.monitor, name
        assert speed.EXPERIMENTS[name][2] == f"test_{book.metric}", name


def test_sweep_table_shows_the_speed_up_that_the_cpu_time_allows():
    one = sweep_speed.Outcome("search, 1 job", 60.0, 16, 16, short_s=8, cpu_s=62.0)
    two = sweep_speed.Outcome("search, 2 jobs", 45.0, 16, 16, short_s=11, cpu_s=76.0)
    table = sweep_speed.report([one, two], cores=2).splitlines()
    assert table[-1].split()[-2:] == ["76.0", "1.58x"]  # 60 s / (76 CPU s over 2 cores)
    assert "1.33x" in table[-1] and "1.00x" in table[-2]
    rows = speed.sweep_rows([{**asdict(o), "trials_per_hour": o.trials_per_hour, "epochs": 27,
                              "group": "search"} for o in (one, two)])  # fmt: skip
    assert "CPU 76 s" in rows[1][3] and rows[1][-1].startswith("1.33x vs 1 job (ceiling ")


def test_sweep_bench_counts_the_cpu_time_of_a_child_and_its_workers():
    before = sweep_speed.children_cpu_seconds()
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'sum(range(3 * 10**7))'])"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert sweep_speed.children_cpu_seconds() - before > 0.2  # the grandchild's loop, counted through its parent


def test_a_failed_section_is_a_row_of_the_table():
    text = speed.table({"errors": {"sweep": "RuntimeError: exit 1 | no store"}}, {}, 1)
    row = text.splitlines()[-1]
    assert row.startswith("| sweep ") and "FAILED" in row and "exit 1 / no store" in row
    assert row.count("|") == len(speed.HEADER) + 1


def test_checkpoint_bench_builds_the_presets_networks():
    from hydra import compose, initialize_config_dir

    from bench import checkpoint_cost
    from runner.config.schema import register_configs

    register_configs()
    for name, (_, _, _, _, hidden, dropout) in checkpoint_cost.NETWORKS.items():
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            model = compose(config_name="config", overrides=[f"+experiment={name}"]).model
        assert list(model.hidden_units) == hidden, name
        assert model.get("dropout", 0.0) == dropout, name


def test_checkpoint_bench_times_every_save_and_leaves_one_checkpoint():
    from bench import checkpoint_cost

    parameters, seconds, size = checkpoint_cost.checkpoint_times("wine_mlp", 3)
    assert parameters == 10 * 32 + 32 + 32 + 1
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert size > parameters * 4 * 3  # weights and Adam's two moments, as float32


def test_diagnostics_rows_judge_fixed_seconds_at_5_epochs_and_shares_of_the_run_at_the_books_epochs():
    fixed = {"none": (10.0, 5.0), "quick": (12.5, 5.0), "monitors": (13.5, 5.0)}  # +2.5 s pass, +3.5 s OVER
    book = {"none": (40.0, 30.0), "quick": (43.0, 30.0), "monitors": (47.0, 30.0)}  # +7.5% pass, +17.5% OVER
    result = {
        "fixed": {"wine_mlp": {"epochs": 5, "repeats": 2, "tensorflow": fixed, "jax": book}},
        "book": {"wine_mlp": {"epochs": 200, "repeats": 1, "tensorflow": book}},
    }
    rows = {row[1]: row for row in speed.diagnostics_rows(result)}
    assert rows["wine_mlp quick, 5 ep. (2 rep.)"][-1] == "target < 3 s: tensorflow: pass, jax: OVER"
    assert rows["wine_mlp monitors, 5 ep. (2 rep.)"][-1] == "target < 3 s: tensorflow: OVER, jax: OVER"
    assert rows["wine_mlp quick, 200 ep. (book, 1 rep.)"][-1] == "target <= 10% of the run: tensorflow: pass"
    assert rows["wine_mlp monitors, 200 ep. (book, 1 rep.)"][3] == "+7.0 s on a 40.0 s run (+18%)"
    assert rows["wine_mlp monitors, 200 ep. (book, 1 rep.)"][-1] == "target <= 15% of the run: tensorflow: OVER"
