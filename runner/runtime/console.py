"""What the console shows: how much the libraries may say (``verbosity``), one line per epoch and per finished
trial, and the summary at the end of a run.

No TensorFlow, MLflow or Optuna here: the CLI sets the verbosity before any of them is imported, and sweep
processes that never train use the progress lines.
"""

import contextlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from datasets import SPLITS

VERBOSITY = ("quiet", "normal", "debug")
# Library loggers whose INFO lines say nothing a user acts on (MLflow's "Creating initial MLflow database
# tables...", "Updating database tables" on a new store); their warnings and errors still show.
CHATTY_LOGGERS = ("mlflow", "alembic")
# Python warnings seen on healthy runs that have no fix on the user's side. Python's default filters already
# hide these DeprecationWarnings outside __main__; listed so that -W default or PYTHONWARNINGS do not bring them
# back either (verbosity=debug does).
HARMLESS_WARNINGS = (
    (DeprecationWarning, r"The ``noload`` loader strategy is deprecated"),  # SQLAlchemy, inside MLflow's store
    (DeprecationWarning, r"__array__ implementation doesn't accept a copy keyword"),  # Keras's TensorFlow backend
)
# TensorFlow's Python logger: each trial of a sweep run in one process builds a new model, so tf.function
# traces again; TensorFlow warns about that from the third trial on, with nothing to change on our side.
HARMLESS_TF_LOG = re.compile(r"triggered tf\.function retracing")
# Lines TensorFlow's C++ code writes to the stderr descriptor while it loads, before its log level applies
# (TF_CPP_MIN_LOG_LEVEL does not stop them): absl's notice, the oneDNN notice, the CPU-instructions notice.
HARMLESS_NATIVE_LINES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\]|rebuild TensorFlow with the appropriate compiler flags"
)
PROGRESS_FILE = "progress.jsonl"  # one line per finished job of a grid sweep, in its sweep folder


# ---------------------------------------------------------------- verbosity


def apply_verbosity(level: str) -> None:
    """Set how much TensorFlow, Python warnings and the libraries' loggers print; call before TensorFlow loads.

    quiet: warnings, errors and the end-of-run summary only. normal: also the runner's own log lines and the
    per-epoch / per-trial progress. debug: everything, TensorFlow's C++ log included.
    """
    if level not in VERBOSITY:
        raise ValueError(f"verbosity={level!r}: choose one of {', '.join(VERBOSITY)}")
    set_tensorflow_log_level(level)
    set_warning_filters(level)
    set_logger_levels(level)


def set_tensorflow_log_level(level: str) -> None:
    """TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when it loads: this only works before that.

    3 (C++ FATAL only) rather than 2: TensorFlow's graph optimizer logs harmless ERROR lines (Keras's tf.data
    adapters trigger ``E0000 ... use_unbounded_threadpool``) that 2 lets through. Real failures are not lost:
    TensorFlow raises them as Python exceptions carrying the same message. A value set by the user wins.
    The notices TensorFlow prints while it loads ignore this variable: ``native_log_filtered`` drops those.
    """
    if level == "debug":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # MLflow configures its logger from this when it is imported; set_logger_levels covers an earlier import.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def set_warning_filters(level: str) -> None:
    tensorflow_log = logging.getLogger("tensorflow")
    for old in [f for f in tensorflow_log.filters if isinstance(f, DropRetracingNotice)]:
        tensorflow_log.removeFilter(old)
    if level == "debug":
        warnings.simplefilter("default")  # every warning, once per place it fires
        return
    for category, message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    tensorflow_log.addFilter(DropRetracingNotice())


class DropRetracingNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not HARMLESS_TF_LOG.search(record.getMessage())


@contextlib.contextmanager
def native_log_filtered(level: str):
    """Around TensorFlow's import: keep its C++ start-up notices off the console (see HARMLESS_NATIVE_LINES).

    They are written to file descriptor 2 directly, so fd 2 points at a temporary file for the duration and
    everything else written there (a Python warning, an import error's own output) is passed on afterwards,
    in order. Only the import is covered: a crash later in the run still reaches the terminal unfiltered.
    """
    try:
        saved = os.dup(2) if level != "debug" else None
    except OSError:  # no descriptor 2 (a detached process): nothing would reach a console anyway
        saved = None
    if saved is None:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not HARMLESS_NATIVE_LINES.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def set_logger_levels(level: str) -> None:
    """Library loggers to WARNING (debug: INFO); in quiet mode the console handlers show warnings only, while
    the run's log file (runner.log) keeps every INFO line."""
    library_level = logging.INFO if level == "debug" else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    logging.getLogger("runner").setLevel(logging.DEBUG if level == "debug" else logging.NOTSET)
    console_level = logging.WARNING if level == "quiet" else logging.NOTSET
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(console_level)
    if level == "quiet":
        logging.getLogger("hydra").setLevel(logging.WARNING)


# ---------------------------------------------------------------- per-epoch progress


def progress_mode(verbose, level: str, on_terminal: bool) -> tuple[int, bool]:
    """Keras's ``verbose`` for fit, and whether the runner prints its own line per epoch.

    ``trainer.verbose`` set by the user is passed to Keras unchanged. Unset: Keras's progress bar on a terminal;
    elsewhere (a log file, a sweep worker) the bar would write a line per redraw and verbose=2 two lines per
    epoch with every metric, so Keras stays silent and the runner prints one compact line instead.
    """
    if verbose is not None:
        return int(verbose), False
    if level == "quiet":
        return 0, False
    return (1, False) if on_terminal else (0, True)


def number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def epoch_line(epoch: int, epochs: int, logs: dict, monitor: str, improved: bool, label: str = "") -> str:
    """``epoch  3/20  loss 0.2314  val_loss 0.2211  val_mae 0.2209 *  0.41 s`` (* : the monitor's best so far)."""
    width = len(str(epochs))
    parts = [f"{label}epoch {epoch:>{width}}/{epochs}"]
    names = ["loss", "val_loss"] + ([monitor] if monitor not in ("loss", "val_loss") else [])
    for name in names:
        if name in logs:
            mark = " *" if improved and name == monitor else ""
            parts.append(f"{name} {number(logs[name])}{mark}")
    if "epoch_seconds" in logs:
        parts.append(f"{logs['epoch_seconds']:.2f} s")
    return "  ".join(parts)


def better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


# ---------------------------------------------------------------- per-trial progress


def trial_line(
    kind: str,
    done: int,
    total: int | None,
    number_: int,
    state: str,
    metric: str,
    value: float | None,
    params: dict,
    best: tuple | None,
    reason: str = "",
) -> str:
    """``trial 3/10 done: val_loss = 0.2211 (model.dropout=0.2); best so far: trial 1, val_loss = 0.21``."""
    count = f"{done}/{total}" if total else str(done)
    outcome = {"COMPLETE": "done", "FINISHED": "done", "FAIL": "failed"}.get(state, state.lower())
    text = f"{kind} {number_} ({count}) {outcome}"
    if outcome == "done":
        text += f": {metric} = {number(value)}"
    elif reason:
        text += f": {reason.splitlines()[0][:200]}"
    if params:
        shown = ", ".join(f"{key}={value_text(value_)}" for key, value_ in params.items())
        text += f" ({shown[:160]})"
    if best is not None:
        text += f"; best so far: {kind} {best[0]}, {metric} = {number(best[1])}"
    return text


def value_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def record_job(sweep_dir: Path, entry: dict) -> list[dict]:
    """Append one finished job of a grid sweep to <sweep dir>/progress.jsonl; return every entry so far.

    Jobs of a parallel launcher finish in other processes: each appends a single short line (one write on a
    file opened for appending, so lines never interleave) and reads the whole file back.
    """
    path = Path(sweep_dir) / PROGRESS_FILE
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(entry) + "\n")
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line another job is writing right now
    return entries


def best_entry(entries: list[dict], best: Callable[[list[float]], int | None]) -> tuple | None:
    """(job, value) of the best finished job, or None; ``best`` picks an index from the values (the objective's)."""
    finished = [(e["job"], e["value"]) for e in entries if e.get("value") is not None and math.isfinite(e["value"])]
    index = best([value for _, value in finished]) if finished else None
    return None if index is None else finished[index]


# ---------------------------------------------------------------- end of a run


def metrics_table(metrics: dict[str, float]) -> list[str]:
    """Rows of metric x split from keys like "val_mae" (those present for every split)."""
    names = []
    for key in metrics:
        split, _, name = key.partition("_")
        if split in SPLITS and name not in names and all(f"{s}_{name}" in metrics for s in SPLITS):
            names.append(name)
    width = max([len(name) for name in names] + [6])
    lines = [f"  {'metric':<{width}}  " + "  ".join(f"{split:>9}" for split in SPLITS)]
    for name in names:
        cells = (metrics.get(f"{split}_{name}") for split in SPLITS)
        lines.append(
            f"  {name:<{width}}  " + "  ".join(f"{value:>9.4f}" if value is not None else f"{'':>9}" for value in cells)
        )
    return lines


def ui_command(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        # --host 127.0.0.1: the UI has no login, so it must not listen on other interfaces
        return f"mlflow ui --host 127.0.0.1 --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"
    from runner.runtime.security import (
        redact_text,  # a password in the URI stays off the screen and the logs
    )

    return f"open {redact_text(uri)} in a browser"


def print_summary(spec, result, tracking_uri: str) -> None:
    """The end-of-run summary: epochs, the kept epoch, the metrics table, where the run is recorded."""
    metrics = result.metrics
    monitor, metric = spec.trainer.checkpoint.monitor, spec.objective.metric
    kept = f"best {monitor} = {result.objective:.4f}" if metric == monitor else f"best {monitor}"
    lines = [
        "",
        f"== {spec.name}: finished {int(metrics['epochs_run'])} epochs in {metrics['train_seconds']:.1f} s; "
        f"kept epoch {int(metrics['best_epoch'])} ({kept}) ==",
        *metrics_table(metrics),
        f"  run id:    {result.run_id} (experiment {spec.tracking.experiment!r})",
        f"  artifacts: {result.artifact_uri}",
        f"  run folder: {result.output_dir}",
        f"  browse:    {ui_command(tracking_uri)}",
        *getattr(result, "diagnostics", []),  # the non-PASS diagnostic verdicts and their fixes
    ]
    print("\n".join(lines), flush=True)
