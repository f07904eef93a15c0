"""The parsed-data cache: hits skip parsing, every input that shapes the result is in the key, damaged
entries are reported and repaired, cache=False stays away, and parallel loaders agree."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_mnist_arrays
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from datasets import cache, load_dataset, mnist, seizure, wine
from datasets.fetch import sha256_of
from runner.cli import CONF_DIR

PARSERS = {"wine": (wine, "parse_wine"), "seizure": (seizure, "parse_seizure"), "mnist": (mnist, "parse_mnist")}
CASES = [
    ("wine", {}),
    ("wine", {"split": "random", "scale_target": False, "max_samples": 50}),
    ("seizure", {}),
    ("seizure", {"split": "random", "scale": "none"}),
    ("mnist", {"val_size": 20, "flatten": False}),
]


def entries(cache_dir) -> list:
    parsed = cache_dir / "parsed"
    return sorted(parsed.iterdir()) if parsed.exists() else []


def count_parses(monkeypatch, name: str) -> list:
    """Wrap the loader's parse function; the returned list grows by one per call."""
    module, attr = PARSERS[name]
    real_parse = getattr(module, attr)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(module, attr, counted)
    return calls


def forbid_parsing(monkeypatch, name: str) -> None:
    module, attr = PARSERS[name]

    def fail(*args, **kwargs):
        raise AssertionError(f"{attr} ran although the cache holds the data")

    monkeypatch.setattr(module, attr, fail)


def assert_same_data(actual, expected, cache_note: bool) -> None:
    """Every array with its dtype, every metadata field; notes plus the cache note on a hit."""
    for name, split in expected.splits().items():
        got = actual.splits()[name]
        for what in ("x", "y"):
            assert getattr(got, what).dtype == getattr(split, what).dtype, (name, what)
            np.testing.assert_array_equal(getattr(got, what), getattr(split, what))
        assert list(got.meta) == list(split.meta)
        for key, values in split.meta.items():
            assert got.meta[key].dtype == values.dtype, (name, key)
            np.testing.assert_array_equal(got.meta[key], values)
    for field in (
        "name",
        "task",
        "feature_names",
        "target_name",
        "class_names",
        "split_source",
        "files",
        "feature_scaling",
        "target_scaling",
    ):
        assert getattr(actual, field) == getattr(expected, field), field
    extra = [note for note in actual.notes if note.startswith("parsed arrays read from cache ")]
    assert [n for n in actual.notes if n not in extra] == [n for n in expected.notes if n not in extra]
    assert len(extra) == (1 if cache_note else 0)


# ---------------------------------------------------------------- hits and misses


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_second_load_is_a_hit_with_identical_data(fake_data, isolated_env, monkeypatch, name, options):
    first = fake_data.load(name, **options)
    assert len(entries(isolated_env)) == 1
    forbid_parsing(monkeypatch, name)
    second = fake_data.load(name, **options)
    assert_same_data(second, first, cache_note=True)
    entry = entries(isolated_env)[0]
    assert second.notes[-1] == f"parsed arrays read from cache {entry}"
    # files name the real sources with their digests (the runner logs them as data checksums)
    assert second.files == {path: sha256_of(Path(path)) for path in first.files}
    assert all(Path(path).is_relative_to(fake_data.root.resolve()) for path in second.files)
    assert second.train.x.flags.writeable


def test_seizure_segment_ids_keep_their_object_dtype(fake_data, monkeypatch):
    first = fake_data.load("seizure")
    forbid_parsing(monkeypatch, "seizure")
    second = fake_data.load("seizure")
    assert first.train.meta["segment_id"].dtype == object
    assert second.train.meta["segment_id"].tolist() == first.train.meta["segment_id"].tolist()
    assert all(type(v) is str for v in second.train.meta["segment_id"])


def test_changed_source_file_misses(fake_data, isolated_env, monkeypatch):
    before = fake_data.load("wine", split="random")
    changed = fake_data.wine.copy()
    changed.loc[0, "alcohol"] = 9.9 if changed.loc[0, "alcohol"] != 9.9 else 10.1
    fake_data.write_wine_full(changed)
    calls = count_parses(monkeypatch, "wine")
    after = fake_data.load("wine", split="random")
    assert calls == [1] and len(entries(isolated_env)) == 2
    assert after.files != before.files
    assert_same_data(after, fake_data.load("wine", split="random", cache=False), cache_note=False)


def test_options_that_shape_the_result_are_in_the_key(fake_data, isolated_env, monkeypatch):
    fake_data.load("wine", split="random")
    calls = count_parses(monkeypatch, "wine")
    fake_data.load("wine", split="random", split_seed=7)
    fake_data.load("wine", split="random", target="pH")
    assert calls == [1, 1] and len(entries(isolated_env)) == 3
    # download and verify_checksum only fetch or check files; the files' digests are in the key
    fake_data.load("wine", split="random", download=True)
    assert calls == [1, 1]


def test_edited_loader_code_misses(fake_data, isolated_env, monkeypatch):
    fake_data.load("mnist", val_size=20)
    calls = count_parses(monkeypatch, "mnist")
    monkeypatch.setattr(cache, "code_version", lambda: "edited")
    fake_data.load("mnist", val_size=20)
    assert calls == [1] and len(entries(isolated_env)) == 2


def test_code_version_changes_when_any_module_is_edited(tmp_path, monkeypatch):
    copy = tmp_path / "datasets"
    shutil.copytree(REPO / "datasets", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "__file__", str(copy / "cache.py"))
    versions = []
    for edited in (None, "splitting.py", "wine.py"):
        if edited:
            (copy / edited).write_text((copy / edited).read_text() + "# edited\n")
        cache.code_version.cache_clear()
        versions.append(cache.code_version())
    cache.code_version.cache_clear()
    assert len(set(versions)) == 3


def test_synthetic_data_is_not_cached(isolated_env):
    load_dataset("synthetic", n_samples=50, cache=True)
    assert entries(isolated_env) == []


# ---------------------------------------------------------------- damaged entries


def flip_byte(path, offset_from_end=1):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped data byte": lambda entry: flip_byte(entry / "train.x.npy"),
    "flipped meta byte": lambda entry: flip_byte(entry / "val.meta0.npy"),
    "truncated array": lambda entry: (entry / "train.x.npy").write_bytes((entry / "train.x.npy").read_bytes()[:-40]),
    "trailing bytes": lambda entry: (entry / "test.y.npy").write_bytes((entry / "test.y.npy").read_bytes() + b"\0"),
    "broken header": lambda entry: (entry / "train.y.npy").write_bytes(b"not an npy file"),
    "missing array": lambda entry: (entry / "test.x.npy").unlink(),
    "garbage meta.json": lambda entry: (entry / "meta.json").write_text("{"),
    "meta.json of another entry": lambda entry: (entry / "meta.json").write_text(
        json.dumps({**json.loads((entry / "meta.json").read_text()), "key": {"loader": "other"}})
    ),
    "missing meta.json": lambda entry: (entry / "meta.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_reported_reparsed_and_repaired(fake_data, isolated_env, monkeypatch, caplog, damage):
    fake_data.load("seizure")
    entry = entries(isolated_env)[0]
    DAMAGE[damage](entry)
    calls = count_parses(monkeypatch, "seizure")
    with caplog.at_level(logging.WARNING, logger="datasets"):
        repaired = fake_data.load("seizure")
    warnings = [r for r in caplog.records if r.name == "datasets" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0].getMessage() and "damaged" in warnings[0].getMessage()
    assert calls == [1]
    assert_same_data(repaired, fake_data.load("seizure", cache=False), cache_note=False)

    caplog.clear()
    forbid_parsing(monkeypatch, "seizure")
    with caplog.at_level(logging.WARNING, logger="datasets"):
        again = fake_data.load("seizure")
    assert not caplog.records and entries(isolated_env) == [entry]
    assert_same_data(again, repaired, cache_note=True)


def test_verifying_an_entry_reads_every_array(fake_data, isolated_env, monkeypatch):
    fake_data.load("mnist", val_size=20)
    entry = entries(isolated_env)[0]
    read = []
    real_read = cache.read_verified
    monkeypatch.setattr(cache, "read_verified", lambda path, sha: read.append(path.name) or real_read(path, sha))
    fake_data.load("mnist", val_size=20)
    assert sorted(read) == sorted(p.name for p in entry.glob("*.npy")) and len(read) == 9


# ---------------------------------------------------------------- cache=False, failed writes, publishing


def test_cache_false_neither_reads_nor_writes(fake_data, isolated_env, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the cache was used with cache=False")

    with monkeypatch.context() as patch:
        patch.setattr(cache, "read_entry", forbidden)
        patch.setattr(cache, "write_entry", forbidden)
        fake_data.load("wine", cache=False)
    assert not (isolated_env / "parsed").exists()

    fake_data.load("wine")
    entry = entries(isolated_env)[0]
    stamps = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    monkeypatch.setattr(cache, "read_entry", forbidden)
    monkeypatch.setattr(cache, "write_entry", forbidden)
    calls = count_parses(monkeypatch, "wine")
    fake_data.load("wine", cache=False)
    assert calls == [1] and {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == stamps


def test_config_option_reaches_the_loader(fake_data, isolated_env):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        default = compose(config_name="config", overrides=["+experiment=wine_mlp"])
        off = compose(config_name="config", overrides=["+experiment=wine_mlp", "dataset.cache=false"])
    assert default.dataset.cache is True and off.dataset.cache is False
    options = OmegaConf.to_container(off.dataset)
    options.update(data_dir=str(fake_data.root), download=False, verify_checksum=False)
    load_dataset(options.pop("name"), **options)
    assert not (isolated_env / "parsed").exists()


def test_a_failed_write_leaves_nothing_and_still_returns_the_data(fake_data, isolated_env, monkeypatch, caplog):
    real_write_array = cache.write_array
    written = []

    def disk_full_after_two(path, values):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(path.name)
        return real_write_array(path, values)

    monkeypatch.setattr(cache, "write_array", disk_full_after_two)
    with caplog.at_level(logging.WARNING, logger="datasets"):
        data = fake_data.load("wine")
    assert "No space left on device" in caplog.text and "could not save" in caplog.text
    assert list((isolated_env / "parsed").iterdir()) == []  # neither an entry nor a temporary folder
    assert_same_data(data, fake_data.load("wine", cache=False), cache_note=False)


def test_publishing_an_entry_that_exists_keeps_the_first(fake_data, isolated_env):
    data = fake_data.load("wine")
    entry = entries(isolated_env)[0]
    key = json.loads((entry / "meta.json").read_text())["key"]
    first = entry.stat().st_ino
    cache.write_entry(entry, data, key)  # as if another process had published it first
    assert entry.stat().st_ino == first and [p.name for p in entry.parent.iterdir()] == [entry.name]
    cache.write_entry(entry, data, key, replace=True)  # a damaged entry is replaced
    assert entry.stat().st_ino != first and [p.name for p in entry.parent.iterdir()] == [entry.name]
    assert_same_data(cache.read_entry(entry, key), data, cache_note=False)


def test_leftovers_of_killed_writers_are_removed(fake_data, isolated_env):
    parsed = isolated_env / "parsed"
    old, recent = parsed / ".wine-abc.x.tmp", parsed / ".wine-def.y.tmp"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "train.x.npy").write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * 3600,) * 2)
    fake_data.load("wine")
    assert not old.exists() and recent.exists()  # a recent one may belong to a writer still at work


# ---------------------------------------------------------------- parallel processes

CHILD = """
import pickle, sys, time
from pathlib import Path
from datasets import load_dataset
ready, everyone = Path(sys.argv[1]), int(sys.argv[3])
ready.touch()
while len(list(ready.parent.glob("ready-*"))) < everyone:  # start together, so that the loads overlap
    time.sleep(0.002)
ds = load_dataset("mnist", data_dir=sys.argv[2], download=False, verify_checksum=False, val_size=100)
ready.with_suffix(".pickle").write_bytes(pickle.dumps(ds))
"""


def test_processes_loading_at_once_all_get_correct_data(fake_data, isolated_env, tmp_path, monkeypatch):
    fake_data.write_mnist(make_mnist_arrays(n_train=3000, n_test=500, seed=3))
    expected = fake_data.load("mnist", val_size=100, cache=False)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(barrier / f"ready-{i}"), str(fake_data.root), "3"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for child in children:
        err = child.communicate(timeout=120)[1]
        assert child.returncode == 0 and "damaged" not in err, err
    for result in barrier.glob("*.pickle"):
        loaded = pickle.loads(result.read_bytes())
        assert_same_data(loaded, expected, cache_note=any(n.startswith("parsed arrays read") for n in loaded.notes))
    assert len(list(barrier.glob("*.pickle"))) == 3
    assert [p.name.startswith("mnist-") for p in (isolated_env / "parsed").iterdir()] == [True]
    forbid_parsing(monkeypatch, "mnist")
    assert_same_data(fake_data.load("mnist", val_size=100), expected, cache_note=True)


def test_an_entry_appears_only_when_complete(fake_data, isolated_env, monkeypatch):
    real_write_array = cache.write_array
    visible = []

    def watching(path, values):
        visible.append([p.name for p in path.parent.parent.iterdir() if not p.name.startswith(".")])
        return real_write_array(path, values)

    monkeypatch.setattr(cache, "write_array", watching)
    fake_data.load("seizure")
    assert len(visible) == 15 and visible == [[]] * 15  # while arrays are written, readers find no entry
    assert len(entries(isolated_env)) == 1


def test_numpy_option_values_still_hit(fake_data, monkeypatch, caplog):
    fake_data.load("wine", max_samples=np.int64(50))
    forbid_parsing(monkeypatch, "wine")
    with caplog.at_level(logging.WARNING, logger="datasets"):
        assert len(fake_data.load("wine", max_samples=np.int64(50)).train) == 50
    assert not caplog.records
