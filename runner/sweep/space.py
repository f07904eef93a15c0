"""The search space of a sweep: Hydra sweep overrides (``choice``, ``interval``, ``range``, ``tag(log, ...)``)
parsed into dimensions, the grid they span, and their corner points (validated before any trial runs)."""

import difflib
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError


@dataclass
class Dimension:
    """One searched key: its Optuna distribution and how a sampled value is written as an override."""

    name: str  # the config key, as Optuna records it
    override_key: str  # the key as written on the command line (with a + or ++ prefix if any)
    distribution: Any
    raw_text: bool = False  # categories are override texts (lists, dicts), written as they are

    def override(self, value) -> str:
        return f"{self.override_key}={value if self.raw_text else override_text(value)}"


@dataclass
class SearchSpace:
    dimensions: dict[str, Dimension]
    fixed: list[str]  # the command's other overrides, passed to every trial

    def distributions(self) -> dict[str, Any]:
        return {name: dim.distribution for name, dim in self.dimensions.items()}

    def overrides(self, params: dict) -> list[str]:
        return self.fixed + [self.dimensions[name].override(params[name]) for name in self.dimensions]


def override_text(value) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text and all(ch.isalnum() or ch in "_-./:" for ch in text) and text[0] not in "-.":
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_space(params: dict, arguments: list[str]) -> SearchSpace:
    """Dimensions from ``hydra.sweeper.params`` and the command's sweep overrides (the command wins)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    dimensions, fixed = {}, {}
    for override in parser.parse_overrides(lines):
        name = override.key_or_group
        if override.is_sweep_override():
            fixed.pop(name, None)
            dimensions[name] = _dimension(override)
        else:
            dimensions.pop(name, None)
            fixed[name] = override.input_line
    return SearchSpace(dimensions=dimensions, fixed=list(fixed.values()))


def _dimension(override) -> Dimension:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    name, key = override.key_or_group, override.get_key_element()
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        values = list(override.sweep_iterator())
        if all(value is None or isinstance(value, (bool, int, float, str)) for value in values):
            return Dimension(name, key, CategoricalDistribution(values))
        texts = list(override.sweep_string_iterator())
        return Dimension(name, key, CategoricalDistribution(texts), raw_text=True)
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{key}={override.get_value_element_as_str()} is an empty range")
        step = values[1] - values[0] if len(values) > 1 else 1
        if all(isinstance(value, int) for value in values):
            return Dimension(name, key, IntDistribution(values[0], values[-1], step=step))
        return Dimension(name, key, FloatDistribution(values[0], values[-1], step=step))
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if "int" in sweep.tags:
            return Dimension(name, key, IntDistribution(int(sweep.start), int(sweep.end), log=log_scale))
        return Dimension(name, key, FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale))
    raise ConfigError(
        f"{override.input_line}: the runner_optuna sweeper takes choice(...), a,b,c, range(...), "
        f"interval(...) and tag(log, interval(...)); glob() works with the basic sweeper only"
    )


def grid_of(space: SearchSpace) -> dict[str, list]:
    """Every value of every dimension, for the grid sampler (intervals have none)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid = {}
    for name, dim in space.dimensions.items():
        dist = dim.distribution
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ConfigError(
                f"sampler grid cannot enumerate {dim.override_key} (a continuous interval); use "
                f"choice(...) or range(...), or sampler tpe/random"
            )
    return grid


def check_keys(config: DictConfig, space: SearchSpace) -> None:
    """A searched key must exist in the composed config (unless it is added with +): a typo fails here."""
    known = _all_keys(OmegaConf.to_container(config, resolve=False))
    for dim in space.dimensions.values():
        if dim.override_key.startswith(("+", "~")) or dim.name.startswith("hydra."):
            continue
        if dim.name not in known:
            close = difflib.get_close_matches(dim.name, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"searched key {dim.name!r} is not in the composed config{hint} (no trial was run)")


def _all_keys(node, prefix="") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "hydra" and not prefix:
                continue
            name = f"{prefix}{key}"
            keys.add(name)
            keys |= _all_keys(value, f"{name}.")
    return keys


def corner_points(space: SearchSpace) -> list[dict]:
    """Points that exercise every category and both ends of every range, to validate before any trial."""
    from optuna.distributions import CategoricalDistribution

    def ends(dist):
        return list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]

    base = {name: ends(dim.distribution)[0] for name, dim in space.dimensions.items()}
    points = [base]
    for name, dim in space.dimensions.items():
        points += [{**base, name: value} for value in ends(dim.distribution)[1:]]
    return points
