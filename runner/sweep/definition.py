"""What defines a study: its search space, the settings its trials train with and its objective.

Trials of one study must be comparable, so a sweep continues a study only when these match what the study was
created with (stored in its user attribute ``runner.definition``). ``hydra.sweeper.study`` says what to do when
they do not: ``check`` (the default) refuses with the differences, ``new`` takes the first of ``NAME-2``,
``NAME-3``, ... that is free or holds these settings, ``continue`` goes on with the study all the same.

What a run may change without changing a trial's result is left out: how much is printed and tracked, the
number of trials (raising ``n_trials`` continues a study), the sampler, the pruner, the launcher and ``n_jobs``.
"""

import json
import logging

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config.objective import Objective
from runner.errors import ConfigError
from runner.sweep.space import SearchSpace

log = logging.getLogger("runner.sweep.study")

DEFINITION_ATTR = "runner.definition"
OBJECTIVE_ATTR = "runner.config.objective"  # the metric, as open_study records it
MODES = ("check", "new", "continue")
# Config keys (and their sub-keys) that change no trial's result; the objective is compared on its own.
FREE_KEYS = (
    "name",
    "description",
    "verbosity",
    "trainer.verbose",
    "trainer.threads",
    "trainer.gpu_memory_growth",
    "trainer.tensorboard",
    "trainer.resume",
    "tracking",
    "evaluation.plots",
    "trial",
    "objective",
)


def build(config: DictConfig, space: SearchSpace) -> dict:
    """The definition of the study this sweep needs, as the JSON value the study stores."""
    searched = list(space.dimensions)
    objective = Objective.of(config)
    definition = {
        "space": {name: _describe(dim.distribution) for name, dim in space.dimensions.items()},
        "fixed": {
            key: value for key, value in _flat(_job_config(config)).items() if not _under(key, [*FREE_KEYS, *searched])
        },
        "objective": {"metric": objective.metric, "direction": objective.direction},
    }
    return json.loads(json.dumps(definition))  # as it reads back from the storage (tuples become lists)


def differences(stored: dict, current: dict) -> list[str]:
    """One line per difference, ``key: <stored> in the study, <current> now``; empty when they match."""
    lines = []
    if stored["objective"] != current["objective"]:
        lines.append(f"objective: {_goal(stored)} in the study, {_goal(current)} now")
    for key in sorted(set(stored["space"]) | set(current["space"])):
        before, now = stored["space"].get(key), current["space"].get(key)
        if before != now:
            lines.append(f"searched {key}: {before or 'not searched'} in the study, {now or 'not searched'} now")
    searched = [*stored["space"], *current["space"]]
    for key in sorted(set(stored["fixed"]) | set(current["fixed"])):
        if _under(key, searched):  # listed with the search space
            continue
        before, now = stored["fixed"].get(key, _ABSENT), current["fixed"].get(key, _ABSENT)
        if before is _ABSENT and now is None:  # a setting added to the schema since, left unset: nothing differs
            continue
        if before != now:
            lines.append(f"{key}: {_text(before)} in the study, {_text(now)} now")
    return lines


def settle(config: DictConfig, space: SearchSpace, storage, name: str) -> str:
    """The name of the study this sweep runs in: ``name`` when its definition matches (or it is new), another one
    with ``hydra.sweeper.study=new``; raises ConfigError, before any trial, when it differs. ``storage``: the
    study's storage, a URL or an Optuna storage."""
    mode = OmegaConf.select(config, "hydra.sweeper.study", default="check")
    if mode not in MODES:
        raise ConfigError(f"hydra.sweeper.study={mode!r} is not an option; choose one of: {', '.join(MODES)}")
    current = build(config, space)
    changed = _adopt(storage, name, current)
    if not changed:
        return name
    if mode == "continue":
        log.warning("study %r continues with settings other than its own:\n  %s", name, "\n  ".join(changed))
        return name
    if mode == "new":
        return _new_study(storage, name, current)
    raise ConfigError(refusal(name, storage, changed))


def refusal(name: str, storage, changed: list[str]) -> str:
    options = {
        "hydra.sweeper.study=new": f"run them in a study of their own, with its own MLflow parent run: {name}-2 "
        f"(or the first of {name}-3, ... that is free or has these settings)",
        "hydra.sweeper.study_name=NAME": "run them in the study NAME",
    }
    if not any(line.startswith("objective:") for line in changed):  # a study's direction cannot change
        options["hydra.sweeper.study=continue"] = f"add their trials to {name!r} all the same"
    return (
        f"study {name!r} in {getattr(storage, 'url', storage)} was created with other settings; its trials would "
        f"not be comparable with this sweep's:\n  "
        + "\n  ".join(changed)
        + "\nTo go on, add one of:\n"
        + "\n".join(f"  {option:<30} {meaning}" for option, meaning in options.items())
    )


def _adopt(storage, name: str, current: dict) -> list[str]:
    """The differences between study ``name`` and ``current``; a study that is absent, holds no definition (made
    before studies stored one) or never ran a trial takes ``current`` and matches."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:  # no such study yet
        _create(storage, name, current)
        return []
    stored = study.user_attrs.get(DEFINITION_ATTR)
    if stored is None:
        study.set_user_attr(DEFINITION_ATTR, current)
        return []
    changed = differences(stored, current)
    if changed and not study.get_trials(deepcopy=False):
        # Opened by a command refused before its first trial: nothing to compare with, start it afresh.
        optuna.delete_study(study_name=name, storage=storage)
        _create(storage, name, current)
        return []
    return changed


def _new_study(storage, name: str, current: dict) -> str:
    number = 2
    while _adopt(storage, f"{name}-{number}", current):
        number += 1
    chosen = f"{name}-{number}"
    log.warning("study %r was created with other settings: this sweep runs in study %r", name, chosen)
    return chosen


def _create(storage, name: str, definition: dict) -> None:
    import optuna

    direction = definition["objective"]["direction"]
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    study.set_user_attr(DEFINITION_ATTR, definition)
    # open_study starts afresh a study without trials that lacks its objective: give it the one defined here.
    study.set_user_attr(OBJECTIVE_ATTR, definition["objective"]["metric"])


def _describe(distribution) -> str:
    """A search dimension as Hydra's sweep syntax writes it: ``tag(log, interval(0.001, 0.1))``, ``choice(a, b)``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return f"choice({', '.join(map(str, distribution.choices))})"
    text = f"interval({distribution.low}, {distribution.high})"
    if getattr(distribution, "step", None) not in (None, 1):
        text = f"range({distribution.low}, {distribution.high}, {distribution.step})"
    tags = [
        tag for tag, on in (("log", distribution.log), ("int", type(distribution).__name__ == "IntDistribution")) if on
    ]
    return f"tag({', '.join(tags)}, {text})" if tags else text


def _job_config(config: DictConfig) -> dict:
    """The config every trial starts from (without ``hydra``), resolved where the launching process can."""
    job = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    try:
        return OmegaConf.to_container(job, resolve=True)
    except OmegaConfBaseException:  # an interpolation only a job can resolve: compare it as written
        return OmegaConf.to_container(job, resolve=False)


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict) and node:
        flat = {}
        for key, value in node.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _under(key: str, prefixes: list[str]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


_ABSENT = object()


def _goal(definition: dict) -> str:
    return f"{definition['objective']['metric']} ({definition['objective']['direction']})"


def _text(value) -> str:
    if value is _ABSENT:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)
