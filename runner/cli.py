"""Command-line entry point (``python -m runner`` and the ``runner`` script).

Importing this module imports Hydra and the schemas only: TensorFlow is imported when a job starts, so
``--help`` and ``--cfg job`` stay fast.
"""

import os
import re
import sys
import textwrap
from pathlib import Path

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from runner.config.paths import CONF_DIR, GROUPS
from runner.config.schema import register_configs
from runner.config.spec import prepare
from runner.errors import RunnerError
from runner.runtime import compat, interrupts
from runner.runtime.console import apply_verbosity, native_log_filtered
from runner.runtime.resources import job_share
from runner.runtime.security import TargetNotAllowed, check_targets

register_configs()


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
    """Check every config Hydra composes for `_target_`s outside our packages (runner/runtime/security.py).

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

    compat.after_hydra_compose(check)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_entry(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        spec = prepare(cfg)  # before TensorFlow is imported: a bad value fails in a fraction of a second
        apply_verbosity(spec.verbosity)  # also before TensorFlow: it reads its log level once, when it loads
        with native_log_filtered(spec.verbosity):  # TensorFlow loads here
            from runner.run.job import run_job
        from runner.sweep.child import child_link

        # In a sweep the run becomes a child of the parent run that the sweep-record callback opened.
        link = child_link(hydra_cfg, spec) if in_sweep else {}
        # Jobs launched side by side split the cores between them (runner/runtime/resources.py).
        share = job_share(OmegaConf.to_container(hydra_cfg.launcher) if in_sweep else None)
        result = run_job(
            spec, output_dir=hydra_cfg.runtime.output_dir, overrides=list(hydra_cfg.overrides.task), share=share, **link
        )
    except Exception as error:
        if in_sweep or not _is_user_error(error):
            raise  # a sweep records the failure and goes on; unexpected errors keep their traceback
        print(f"\nError: {error}", file=sys.stderr)
        sys.exit(1)
    return result.objective


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
