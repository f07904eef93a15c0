"""The start of a sweep, in the launching process: open (or resume) its MLflow parent run.

``open_sweep`` runs before any job starts. It creates the tracking store and the experiment there once
(parallel jobs on a fresh SQLite store otherwise race on creating its schema), opens the parent run, records
the sweep's definition on it and writes ``<sweep dir>/parent_run.json``, which each job reads to become a child
(``runner.sweep.child``). A resumed Optuna search keeps its one parent run: the study remembers its id.

One sweep is one MLflow experiment: where its jobs would go to different experiments (``+experiment=glob(*)``
across data sets), the parent and all children go to ``mixed_experiment`` (``sweeps``) instead.

MLflow (and ``runner.tracking``, which imports it) is imported only when a sweep opens: Hydra loads the sweep
callback, and so this module, for every command, and the verbosity must be set before MLflow loads.
"""

import itertools
import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config.objective import Objective
from runner.runtime.sqlite_files import sqlite_path

log = logging.getLogger("runner")

PARENT_FILE = "parent_run.json"
STUDY_PARENT_ATTR = "mlflow_parent_run_id"
EXPERIMENT_KEYS = ("experiment", "dataset", "tracking", "debug")  # overrides that can move a job's experiment
MAX_COMPOSED = 64  # combinations composed to find the jobs' experiments; more is not a sane sweep


@dataclass
class ParentRun:
    """An opened parent run and what the end of the sweep needs; plain values, as Hydra pickles callbacks."""

    sweep_name: str
    sweep_dir: str
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    objective: Objective
    swept_keys: list[str]
    best_config_dir: str
    grid_jobs: int | None  # how many jobs a grid sweep launches; None for a search
    closed: bool = False


def open_sweep(
    config: DictConfig, config_name: str | None, best_config_dir: str | None, mixed_experiment: str
) -> ParentRun:
    from runner.tracking import RunRecord, connect

    overrides = list(config.hydra.overrides.task)
    sweep_dir = Path(config.hydra.runtime.cwd) / str(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    presets, experiments = job_identities(config, config_name, overrides)
    experiment = experiments[0] if len(experiments) == 1 else mixed_experiment
    preset = presets[0] if len(presets) == 1 else "mixed"
    uri = str(config.tracking.uri)
    tracker = connect(uri, experiment, config.tracking.artifact_location)
    client = tracker.client  # reads only: every write goes through a RunRecord

    study = optuna_study(config)
    parent_id = reusable_parent(client, study)
    if parent_id is None:
        name = f"{preset}-sweep-{datetime.now():%Y%m%d-%H%M%S}"
        record = RunRecord(tracker, name, parent_tags(config, overrides, preset, sweep_dir))
        parent_id, experiment_id = record.run_id, record.experiment_id
        record.log_params(definition_params(config, overrides))
        if study is not None:
            study.set_user_attr(STUDY_PARENT_ATTR, parent_id)
    else:  # a resumed search keeps its one parent run
        run = client.get_run(parent_id)
        name, experiment_id = run.info.run_name, run.info.experiment_id
        experiment = client.get_experiment(experiment_id).name
        record = RunRecord.existing(tracker, parent_id, run.info.artifact_uri)
        record.set_status("RUNNING")
        record.set_tags({"runner.resumed_at": f"{datetime.now():%Y-%m-%d %H:%M:%S}"})
        log.info("resuming the search's parent run %s (%s)", parent_id, name)
    definition = sweep_definition(config, overrides, presets, experiments, sweep_dir)
    record.log_text(yaml.safe_dump(definition, sort_keys=False), "sweep/definition.yaml")  # redacted there

    (sweep_dir / PARENT_FILE).write_text(
        json.dumps(
            {
                "run_id": parent_id,
                "experiment_id": experiment_id,
                "tracking_uri": uri,
                "experiment": experiment,
                "sweep_name": name,
            },
            indent=2,
        )
    )
    log.info("sweep %s: parent run %s in experiment %r", name, parent_id, experiment)
    return ParentRun(
        sweep_name=name,
        sweep_dir=str(sweep_dir),
        tracking_uri=uri,
        experiment=experiment,
        experiment_id=experiment_id,
        parent_run_id=parent_id,
        objective=sweep_objective(config),
        swept_keys=swept_keys(config, overrides),
        grid_jobs=grid_jobs(config, overrides),
        best_config_dir=str(
            default_best_config_dir(uri) if best_config_dir is None else Path(best_config_dir).resolve()
        ),
    )


def job_identities(config: DictConfig, config_name: str | None, overrides: list[str]) -> tuple[list, list]:
    """The presets and MLflow experiments the sweep's jobs will have (sorted, without repeats).

    Only sweep overrides that can change the experiment (preset, data set, tracking, debug) are expanded; each
    combination is composed the way Hydra composes a job.
    """
    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    varying = [
        [f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()]
        for o in parsed
        if o.is_sweep_override() and o.key_or_group.split(".")[0] in EXPERIMENT_KEYS
    ]
    combinations = list(itertools.islice(itertools.product(*varying), MAX_COMPOSED))
    identities = set()
    for combination in combinations:
        try:
            job = loader.load_configuration(config_name, fixed + list(combination), run_mode=RunMode.RUN)
        except (HydraException, OmegaConfBaseException) as error:  # that job fails on its own, with the error
            log.warning("cannot compose the job %s: %s", " ".join(combination), error)
            continue
        identities.add((str(job.name), str(job.tracking.experiment)))
    if not identities:
        identities.add((str(config.name), str(config.tracking.experiment)))
    return sorted({name for name, _ in identities}), sorted({experiment for _, experiment in identities})


def grid_jobs(config: DictConfig, overrides: list[str]) -> int | None:
    """The number of jobs Hydra's basic sweeper launches (the product of the value lists); None otherwise."""
    if config.hydra.runtime.choices.get("hydra/sweeper") != "basic":
        return None
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    sizes = [len(list(o.sweep_string_iterator())) for o in parser.parse_overrides(overrides) if o.is_sweep_override()]
    return math.prod(sizes)


def optuna_study(config: DictConfig):
    """The runner_optuna sweeper's study (created or loaded), or None for any other sweeper."""
    if config.hydra.runtime.choices.get("hydra/sweeper") != "runner_optuna":
        return None
    try:
        from runner.sweep.study import open_study  # Optuna: only for a search
    except ImportError as error:
        log.warning("runner.sweep.study is not importable (%s): a resumed search will get a new parent run", error)
        return None

    return open_study(config)


def reusable_parent(client, study) -> str | None:
    """The parent run an earlier part of this search opened, if the study remembers one that still exists."""
    from mlflow.exceptions import MlflowException

    run_id = study.user_attrs.get(STUDY_PARENT_ATTR) if study is not None else None
    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as error:  # deleted from the store since: open a new parent
        log.warning("the search's earlier parent run %s is gone (%s); opening a new one", run_id, error)
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


def parent_tags(config: DictConfig, overrides: list[str], preset: str, sweep_dir: Path) -> dict[str, str]:
    from runner.tracking import environment_tags

    choices = config.hydra.runtime.choices
    command = typed_command()
    return {
        "runner.sweep": "true",
        "runner.sweeper": str(choices.get("hydra/sweeper")),
        "runner.launcher": str(choices.get("hydra/launcher")),
        "runner.preset": preset,
        "runner.overrides": " ".join(overrides)[:5000],
        "runner.sweep_dir": str(sweep_dir),
        "mlflow.note.content": f"Sweep: `{command}`",
        **environment_tags(),
    }


def definition_params(config: DictConfig, overrides: list[str]) -> dict[str, str]:
    from runner.tracking import flatten

    objective = sweep_objective(config)
    definition = {
        "sweep": {
            "overrides": " ".join(overrides),
            "sweeper": str(config.hydra.runtime.choices.get("hydra/sweeper")),
            "launcher": str(config.hydra.runtime.choices.get("hydra/launcher")),
        },
        "objective": {"metric": objective.metric, "direction": objective.direction},
        "sweeper": hydra_section(config, "sweeper"),
        "launcher": hydra_section(config, "launcher"),
    }
    return flatten(definition)


def sweep_definition(
    config: DictConfig, overrides: list[str], presets: list, experiments: list, sweep_dir: Path
) -> dict:
    objective = sweep_objective(config)
    return {
        "command": typed_command(),
        "overrides": overrides,
        "swept": swept_keys(config, overrides),
        "presets": presets,
        "experiments": experiments,
        "objective": {"metric": objective.metric, "direction": objective.direction},
        "sweeper": {
            "choice": str(config.hydra.runtime.choices.get("hydra/sweeper")),
            **hydra_section(config, "sweeper"),
        },
        "launcher": {
            "choice": str(config.hydra.runtime.choices.get("hydra/launcher")),
            **hydra_section(config, "launcher"),
        },
        "sweep_dir": str(sweep_dir),
    }


def typed_command(argv: list[str] | None = None) -> str:
    """The command as typed, shell-quoted: Hydra's task overrides leave out ``hydra.*`` ones and ``-m``."""
    argv = list(sys.argv if argv is None else argv) or ["runner"]
    program = ["python", "-m", "runner"] if Path(argv[0]).name == "__main__.py" else [Path(argv[0]).name]
    return shlex.join(program + [_hidden(arg) for arg in argv[1:]])


def _hidden(arg: str) -> str:
    """An argument with its secret hidden; a whole ``key=value`` one, as quoting defeats finding its value's end."""
    from runner.runtime.security import REDACTED, is_secret_name, redact_text

    key, sep, _ = arg.partition("=")
    return f"{key}={REDACTED}" if sep and is_secret_name(key.lstrip("+~")) else redact_text(arg)


def hydra_section(config: DictConfig, key: str) -> dict:
    node = config.hydra[key]
    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as error:  # an interpolation only a job can resolve: record it as written
        log.warning("hydra.%s has values that resolve only in a job (%s); recorded unresolved", key, error)
        return OmegaConf.to_container(node, resolve=False)


def sweep_objective(config: DictConfig) -> Objective:
    return Objective.of(config)


def swept_keys(config: DictConfig, overrides: list[str]) -> list[str]:
    """The keys a grid sweep varies (``key=a,b``, ``glob(...)``) and those an Optuna search samples."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params")
    if isinstance(params, DictConfig):
        keys += [str(key) for key in params]
    return list(dict.fromkeys(keys))


def default_best_config_dir(uri: str) -> Path:
    """conf/experiment/best/ beside a local SQLite store (outputs/ by default), else under outputs/."""
    database = sqlite_path(uri)
    root = database.parent if database is not None else Path("outputs")
    return (root / "conf" / "experiment" / "best").resolve()
