"""Command-line entry point (``python -m runner`` and the ``runner`` script).

Importing this module imports Hydra and the schemas only: TensorFlow is imported when a job starts, so
``--help`` and ``--cfg job`` stay fast.
"""

import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from runner.config.paths import CONF_DIR, GROUPS
from runner.config.schema import register_configs
from runner.config.spec import prepare
from runner.errors import Refused, RunnerError
from runner.runtime import collection, compat, interrupts
from runner.runtime.backend_choice import choose_backend
from runner.runtime.console import apply_verbosity, native_log_filtered
from runner.runtime.resources import job_share
from runner.runtime.security import TargetNotAllowed, check_targets

register_configs()


def command() -> None:
    """The program (``python -m runner``, the ``runner`` script): ``main`` in a process that ends with it."""
    try:
        main()
    finally:
        collection.freeze_before_exit()  # not in main: a program that calls it goes on living with its objects


def main() -> None:
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(help_text())
        return
    if any(arg in ("-sc", "--shell-completion") or arg.startswith("--shell-completion=") for arg in sys.argv[1:]):
        prepare_completion()
    refuse_untrusted_targets()
    interrupts.install()  # SIGTERM unwinds like Ctrl-C: the run is marked KILLED, its checkpoint kept
    try:
        _hydra_entry()
    except Refused as refusal:
        print(f"Error: {refusal}", file=sys.stderr)
        sys.exit(1)
    except interrupts.Interrupted as stop:
        print(f"\nStopped: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    finally:
        # Hydra skips on_multirun_end when the sweeper raises (its basic sweeper does when any job failed):
        # end the sweep's parent run here, while MLflow can still start its upload/download threads.
        sweep_record = sys.modules.get("runner.sweep.record")
        if sweep_record is not None:
            sweep_record.end_open_sweeps()


def refuse_untrusted_targets() -> None:
    """Check every config Hydra composes for `_target_`s outside our packages (runner/runtime/security.py),
    for an output folder that cannot be written, and turn a YAML syntax error into one line.

    Hydra instantiates hydra.callbacks right after composing, before the task function runs, and offers no
    hook in between: wrapping its compose step (runner/runtime/compat.py) is the one place that sees the
    config before any target is imported (on every path: a run, a sweep, --cfg).
    """
    from hydra.errors import ConfigCompositionException

    def check(config: DictConfig) -> None:
        try:
            check_targets(config)
        except TargetNotAllowed as error:
            raise ConfigCompositionException(f"Error: {error}") from None  # Hydra prints just the message
        refuse_unwritable_output(config)

    compat.after_hydra_compose(check)
    compat.on_hydra_compose_error(refuse_unreadable_yaml)


def refuse_unreadable_yaml(error: Exception) -> None:
    """A config file PyYAML cannot parse: its place and text, instead of Hydra's 98-line traceback."""
    marked = _yaml_error_in(error)
    if marked is not None:
        raise Refused(yaml_error_line(marked)) from None


def _yaml_error_in(error: BaseException | None) -> yaml.MarkedYAMLError | None:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def yaml_error_line(error: yaml.MarkedYAMLError) -> str:
    """``conf/experiment/bad.yaml line 5, column 10: mapping values are not allowed here: "  lr: 0.1: x"``
    (line and column counted from 1, as PyYAML and editors do)."""
    mark = error.problem_mark
    where = _shown_path(mark.name)
    text = _line_of(mark)
    quoted = f': "{text}"' if text else ""
    return f"{where} line {mark.line + 1}, column {mark.column + 1}: {error.problem or error.context}{quoted}"


def _shown_path(name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return name


def _line_of(mark) -> str:
    """The offending line: Hydra hands PyYAML an open file, whose mark keeps no text, so it is read again."""
    if mark.buffer is not None:
        lines = mark.buffer.rstrip("\0").splitlines()
    else:
        try:
            lines = Path(mark.name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
    return lines[mark.line].rstrip() if mark.line < len(lines) else ""


def refuse_unwritable_output(config: DictConfig) -> None:
    """Refuse an output folder this process could not create or write, before Hydra tries (it would fail with
    a bare PermissionError, or "Unable to configure handler 'file'" for an existing read-only folder)."""
    from hydra.types import RunMode

    mode = OmegaConf.select(config, "hydra.mode")
    if mode not in (RunMode.RUN, RunMode.MULTIRUN):
        return  # --cfg, --info and Hydra's guess of the mode write nothing
    key = "hydra.run.dir" if mode == RunMode.RUN else "hydra.sweep.dir"
    # Resolved on this config: Hydra's ${now:} caches its value there, so Hydra later uses the same folder.
    folder = OmegaConf.select(config, key, throw_on_resolution_failure=False)
    if folder is None:
        return  # it needs what only a job knows (${hydra:job...}): Hydra reports it when it gets there
    path = Path(str(folder))
    problem = unwritable_reason(path)
    if not problem and not path.exists():
        _made_by_hydra.add(path.resolve())
    if problem:
        raise Refused(
            f"the output folder {folder} cannot be written: {problem}. Choose another with {key}=DIR "
            f"(by default it is under outputs/ in the current folder: run from a folder you can write to)."
        )


# Run folders Hydra is about to create: only those may be removed again (discard_unused_folder), never a
# folder that was there before (hydra.run.dir=. or a user's own).
_made_by_hydra: set[Path] = set()


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` could not be created and written to, or None; found without creating anything."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        with collection.paused_for_imports():
            spec = _checked_spec(cfg, hydra_cfg, in_sweep)
            data = _data_before_tensorflow(spec, shout=not in_sweep)
            with native_log_filtered(spec.verbosity):  # TensorFlow loads here
                from runner.run.job import run_job
        from runner.sweep.child import child_link

        # In a sweep the run becomes a child of the parent run that the sweep-record callback opened.
        link = child_link(hydra_cfg, spec) if in_sweep else {}
        # Jobs launched side by side split the cores between them (runner/runtime/resources.py).
        share = job_share(OmegaConf.to_container(hydra_cfg.launcher) if in_sweep else None)
        result = run_job(
            spec,
            output_dir=hydra_cfg.runtime.output_dir,
            overrides=list(hydra_cfg.overrides.task),
            share=share,
            data=data,
            **link,
        )
    except Exception as error:
        if in_sweep or not _is_user_error(error):
            raise  # a sweep records the failure and goes on; unexpected errors keep their traceback
        if not getattr(error, "runner_shown", False):
            print(f"\nError: {error}", file=sys.stderr)
        sys.exit(1)
    return result.objective


def _checked_spec(cfg: DictConfig, hydra_cfg: DictConfig, in_sweep: bool):
    """The typed spec, before TensorFlow is imported: a bad value fails in a fraction of a second."""
    try:
        spec = prepare(cfg)
        choose_backend(spec.trainer.backend)  # Keras reads its backend once, when it is imported
    except RunnerError:
        if not in_sweep:  # nothing was recorded: the folder Hydra made for the run would stay empty
            discard_unused_folder(Path(hydra_cfg.runtime.output_dir), f"{hydra_cfg.job.name}.log")
        raise
    apply_verbosity(spec.verbosity)  # also before TensorFlow: it reads its log level once, when it loads
    return spec


def _data_before_tensorflow(spec, shout: bool):
    """The data set, located, read and checked before TensorFlow loads (a data error shows in seconds, not
    after a minute of imports), or the DataError that loading raised: run_job records it as the run's failure
    at the data step, as it would have met it there.
    """
    from datasets.errors import DataError
    from runner.run.data import load_data

    try:
        return load_data(spec.dataset)
    except DataError as error:
        if shout:  # the failed run is recorded next, which takes TensorFlow's and MLflow's imports
            print(f"\nError: {error}", file=sys.stderr, flush=True)
            error.runner_shown = True
        return error


def discard_unused_folder(folder: Path, log_name: str) -> None:
    """Remove a run folder that holds nothing but what Hydra wrote into it (.hydra/ and the log)."""
    if folder.resolve() not in _made_by_hydra or not folder.is_dir():
        return
    if {entry.name for entry in folder.iterdir()} <= {".hydra", log_name}:
        shutil.rmtree(folder)


def prepare_completion() -> None:
    """Let Hydra's shell completion (``-sc install=bash``, ``-sc query=bash``) work from ``python -m runner`` too.

    Hydra's bash script completes a command it can run again with ``-sc query=bash``: the ``runner`` script,
    or ``python some_file.py``, never ``python -m runner``. So an install from ``python -m runner`` is made
    for the ``runner`` script (not for every ``python`` command), and a query's ``python -m runner`` is read
    as ``runner``, which Hydra's parser would otherwise take for an override.
    """
    if Path(sys.argv[0]).name == "__main__.py":
        sys.argv[0] = "runner"
    line = os.environ.get("COMP_LINE")
    if line is not None:
        os.environ["COMP_LINE"] = re.sub(r"^\s*\S*python[\d.]*\s+-m\s+runner\b", "runner", line)
    # schema/ holds the dataclasses the YAML files extend (runner/config/schema.py), not options to choose.
    compat.filter_completions(lambda word: not word.lstrip("+~").startswith("schema/"))


def _is_user_error(error: Exception) -> bool:
    if isinstance(error, RunnerError):
        return True
    data_error = sys.modules.get("datasets.errors")
    return data_error is not None and isinstance(error, data_error.DataError)


def help_text() -> str:
    """The option list, read straight from conf/ so it never drifts from the files."""
    lines = [
        "runner: declarative Keras experiments (Hydra configs, MLflow tracking)",
        "",
        "Usage:",
        "  python -m runner +experiment=NAME [group=option ...] [key=value ...]",
        "  python -m runner +experiment=NAME --cfg job        print the composed config, train nothing",
        "  python -m runner -m +experiment=NAME key=a,b,c      a sweep: one run per value",
        "  python -m runner +experiment=NAME +debug=fast       2 epochs on 256 rows: a smoke test",
        "",
        "Experiments (+experiment=NAME):",
    ]
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        lines.append(f"  {path.stem:<18} {description}")
    faults = sorted(p.stem for p in (CONF_DIR / "experiment" / "faults").glob("*.yaml"))
    lines.append(f"  {'faults/NAME':<18} seeded bugs for the diagnostics:")
    lines += textwrap.wrap(", ".join(faults), 110, initial_indent=" " * 21, subsequent_indent=" " * 21)
    lines += ["", "Config groups (group=option):"]
    for group in GROUPS + ("debug", "sweep", "launcher"):
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        prefix = "+" if group in ("debug", "sweep", "launcher") else ""
        lines.append(f"  {prefix + group:<12} {', '.join(options)}")
    lines += [
        "",
        "Examples:",
        "  python -m runner +experiment=wine_deep_mlp trainer.epochs=50 optimizer.learning_rate=3e-4",
        "  python -m runner +experiment=mnist_dropout model.dropout=0.3 optimizer=rmsprop",
        "  python -m runner +experiment=seizure_dnn dataset.data_dir=/path/to/data",
        "  python -m runner +experiment=seizure_dnn diagnostics=full       checks before, during, after training",
        "  python -m runner -m +experiment=mnist_dropout +sweep=mnist_search +launcher=joblib   an Optuna search",
        "",
        "Data: dataset.data_dir, else $RUNNER_DATA_DIR, else the user cache (downloaded there on first use).",
        "Results: mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///outputs/mlflow.db",
        "         (then http://127.0.0.1:5000)",
        "Console: verbosity=normal (default), quiet (warnings, errors, summaries) or debug (also TensorFlow's",
        "         C++ log, every Python warning, MLflow's INFO lines)",
        'Tab completion (bash): eval "$(runner -sc install=bash)"   (e.g. in ~/.bashrc)',
        "Hydra's own options: --hydra-help",
    ]
    return "\n".join(lines)
