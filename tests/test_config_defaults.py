"""Each default has one home, its dataclass in runner/config/schema.py: the files in conf/ set only what differs.

Checked: conf/config.yaml (over RunConfig) and every option of the groups merged straight onto a schema
(dataset, model, optimizer, trainer, tracking, diagnostics), against what the file is merged onto: its schema's
defaults, plus the option files it extends (``defaults: [mlp]``).  The presets (experiment, sweep, debug,
launcher) are left out: they override the chosen group options, so a value there that equals a schema default
may still change the run, and it is the preset's meaning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from runner.config.paths import CONF_DIR, GROUPS
from runner.config.schema import GROUP_SCHEMAS, RunConfig

# (file, key) -> why the file restates the schema's default: the value is the option's reason to exist.
ALLOWED = {
    ("dataset/wine.yaml", "scale_target"): "the book standardises the target: its published MAEs are in SDs",
    ("optimizer/adadelta.yaml", "learning_rate"): "the paper's rate, 1000x Keras 3's: why the option exists",
}


def checked_files(conf_dir: Path = CONF_DIR) -> list[str]:
    return ["config.yaml"] + [
        p.relative_to(conf_dir).as_posix() for g in GROUPS for p in sorted((conf_dir / g).glob("*.yaml"))
    ]


def _read(conf_dir: Path, rel: str) -> dict:
    return yaml.safe_load((conf_dir / rel).read_text()) or {}


def merged_onto(conf_dir: Path, rel: str) -> DictConfig:
    """What Hydra merges the file onto: its schema's defaults, then the option files named in its defaults."""
    group = rel.split("/")[0] if "/" in rel else None
    base, parents = None, []
    for entry in _read(conf_dir, rel).get("defaults", []):
        if not isinstance(entry, str) or entry in ("_self_", "run_schema"):
            continue  # a group choice of config.yaml ({dataset: wine}) is another file, checked on its own
        if entry.startswith("/schema/"):
            kind, name = entry.removeprefix("/schema/").split("@")[0].split("/")
            base = OmegaConf.structured(GROUP_SCHEMAS[kind][name])
        else:
            parents.append(f"{group}/{entry}.yaml")
    for parent in parents:
        values = {k: v for k, v in _read(conf_dir, parent).items() if k != "defaults"}
        inherited = OmegaConf.merge(merged_onto(conf_dir, parent), values)
        base = inherited if base is None else OmegaConf.merge(base, inherited)
    if base is None:  # config.yaml, or a group without schemas of its own (trainer, tracking, diagnostics)
        run = OmegaConf.structured(RunConfig)
        base = run[group] if group else run
    return base


def _same(a, b) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # true is no restatement of 1


def restated(values: dict, base: DictConfig, prefix: str = "") -> list[str]:
    """The keys of ``values`` whose value equals the default in ``base`` (nested schemas key by key)."""
    found, defaults = [], OmegaConf.to_container(base, resolve=False)  # "???": no default (mandatory)
    for key, value in values.items():
        if key in ("defaults", "hydra") or defaults.get(key, "???") == "???":
            continue
        if isinstance(value, dict) and dataclasses.is_dataclass(OmegaConf.get_type(base, key)):
            found += restated(value, base[key], f"{prefix}{key}.")
        elif _same(value, defaults[key]):
            found.append(prefix + key)
    return found


def restated_defaults(conf_dir: Path, rel: str) -> list[str]:
    return restated(_read(conf_dir, rel), merged_onto(conf_dir, rel))


@pytest.mark.parametrize("rel", checked_files())
def test_no_conf_file_restates_a_schema_default(rel):
    found = [key for key in restated_defaults(CONF_DIR, rel) if (rel, key) not in ALLOWED]
    assert not found, (
        f"conf/{rel} restates the schema's default for {', '.join(found)}: remove it (the default lives in "
        "runner/config/schema.py), or add it to ALLOWED with the reason the file must show it"
    )


def test_allowed_restatements_are_still_restatements():
    stale = [(rel, key) for rel, key in ALLOWED if key not in restated_defaults(CONF_DIR, rel)]
    assert not stale, f"ALLOWED entries that no longer restate a default: {stale}"


def test_the_check_finds_a_restated_default(tmp_path):
    for rel, text in {
        "config.yaml": "defaults:\n  - run_schema\n  - _self_\nname: custom\nevaluation:\n  threshold: 0.4\n",
        "trainer/default.yaml": "epochs: 10\nbatch_size: 64\ncheckpoint:\n  monitor: val_loss\n",
        "model/mlp.yaml": "defaults:\n  - /schema/model/mlp@_here_\narchitecture: mlp\nhidden_units: [32]\n",
        "model/wide.yaml": "defaults:\n  - mlp\n  - _self_\nhidden_units: [32]\ndropout: 0.0\nl2: 0.1\n",
        "diagnostics/none.yaml": "thresholds: {}\nslices: label\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert restated_defaults(tmp_path, "config.yaml") == ["name"]
    assert restated_defaults(tmp_path, "trainer/default.yaml") == ["epochs", "checkpoint.monitor"]
    assert restated_defaults(tmp_path, "model/mlp.yaml") == ["architecture", "hidden_units"]
    assert restated_defaults(tmp_path, "model/wide.yaml") == ["hidden_units", "dropout"]  # mlp's, then the schema's
    assert restated_defaults(tmp_path, "diagnostics/none.yaml") == ["thresholds"]
