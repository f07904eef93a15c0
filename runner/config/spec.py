"""The conversion boundary: a composed config in, the typed experiment out.

``prepare`` validates once and converts once. Everything after it reads the ``RunConfig`` dataclasses
(``spec.trainer.epochs``), never the config's dictionaries; ``plain`` turns the spec back into plain data
only to record it (MLflow params, ``config.yaml``, a checkpoint's copy).
"""

import dataclasses
import difflib

from omegaconf import DictConfig, OmegaConf

from runner.config.schema import RunConfig
from runner.config.validation import validate
from runner.errors import ConfigError


def prepare(cfg: DictConfig) -> RunConfig:
    """Check a composed config (unknown keys, ranges, choices, cross-group rules) and return the typed spec."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(unknown))
    validate(cfg)
    spec = OmegaConf.to_object(cfg)
    if not isinstance(spec, RunConfig):
        raise ConfigError("the config has no run schema: compose it from conf/config.yaml")
    return spec


def unknown_keys(node: DictConfig, path: str = "") -> list[str]:
    """Keys that no schema declares (``+trainer.epochz=3``): OmegaConf would keep or drop them silently."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return []  # a free-form mapping (kernel_initializer_args, thresholds): any key goes
    names = [field.name for field in dataclasses.fields(schema)]
    problems = []
    for key in node.keys():
        where = f"{path}{key}"
        if key not in names:
            nearest = difflib.get_close_matches(str(key), names, n=1)
            if nearest:
                hint = f"did you mean {path}{nearest[0]}?"
            else:
                hint = f"{path.rstrip('.') or 'the top level'} has: {', '.join(names)}"
            problems.append(f"{where} is not a setting of this run; {hint}")
            continue
        if OmegaConf.is_missing(node, key):
            continue  # a required value left unset: validate names it with an example
        child = node[key]
        if isinstance(child, DictConfig):
            problems += unknown_keys(child, f"{where}.")
    return problems


def plain(spec: RunConfig) -> dict:
    """The spec as plain nested data, in the schema's field order: what a run records of its config."""
    return dataclasses.asdict(spec)
