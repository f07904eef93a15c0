"""How fast the runner is: against a plain Keras script, at start-up, with diagnostics, in sweeps, and against
the CPU's own limit. Prints one table (Markdown).

    RUNNER_DATA_DIR=../shared/data python bench/speed.py                  # 3 repetitions; prints its estimate first
    python bench/speed.py --quick                                          # 1 repetition, few epochs: a smoke run
    python bench/speed.py --only wine_mlp,startup --repeats 5 --json speed.json

Sections (``--only`` takes a comma-separated list of them, or parts of their names):

- ``wine_mlp``, ``seizure_dnn``, ``mnist_dropout``: ``bench/plain_keras.py`` (the book's script: arrays in memory,
  ``model.fit``) against ``python -m runner +experiment=NAME`` at the same epochs, batch size and data, each a
  fresh process; with JAX installed, the runner again under ``KERAS_BACKEND=jax``, and with PyTorch installed
  under ``KERAS_BACKEND=torch``. Within each repetition the
  commands run one after another, their order rotating, so a slow spell of a shared machine hits all of them.
  Reported: medians over repetitions of the whole command's wall time, the median epoch (the first left out:
  it traces and compiles), training rows per second of that epoch, launch to first training step, and the
  test metric. Repetition r uses seed 42 + r on both sides, so the metric's spread is run-to-run noise. The
  runner's MLflow store exists before the first timed run, as it does after a user's first run (creating one
  costs seconds). The runner does more than the script: it evaluates all three splits, logs to MLflow, draws
  plots and saves the model (in the wall time, not in the epochs), and computes ROC AUC on the training and
  validation splits after every seizure epoch and RMSE beside the wine MAE (in the epochs).
- ``startup``: ``python -m runner --help`` and ``... --cfg job``, median of 5, and whether either imports
  TensorFlow, Keras, JAX or PyTorch (read from ``python -X importtime``).
- ``diagnostics``: ``diagnostics=quick`` and the training monitors, in this process through
  ``bench/diagnostics_overhead.py``'s functions: extra job seconds as a share of fit seconds without them.
- ``sweep``: a short wine grid sweep with 1 and 2 joblib jobs, through ``bench/sweep_speed.py``; one run each.
- ``limit``: floating-point work of one MNIST epoch over this CPU's matmul throughput (2048^3, and the
  batch-30 layer shape 30x784x512), per backend, against the runner's measured MNIST epoch.

Epochs: wine_mlp 200 (the book's), seizure_dnn 20 (the book's), mnist_dropout 3; diagnostics 5, 5 and 2; the
sweep 8 trials of 20. With --quick: 10, 3 and 2; diagnostics 1 each; the sweep 3 trials of 2.

A benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import diagnostics_overhead, sweep_speed  # noqa: E402
from runner.runtime.resources import available_cores  # noqa: E402

# name: (epochs by default, epochs with --quick, the test metric both sides report)
EXPERIMENTS = {
    "wine_mlp": (200, 10, "test_mae"),
    "seizure_dnn": (20, 3, "test_accuracy"),
    "mnist_dropout": (3, 2, "test_accuracy"),
}
SECTIONS = ("startup", *EXPERIMENTS, "diagnostics", "sweep", "limit")
DIAGNOSTIC_SUITES = ["none", "quick", "monitors"]
DIAGNOSTIC_EPOCHS = {"wine_mlp": 5, "seizure_dnn": 5, "mnist_dropout": 2}  # the suites' fixed cost; also the book's
DIAGNOSTIC_BACKENDS = ("tensorflow", "jax")  # issue 16's targets
SWEEP = {"default": (8, 20), "quick": (3, 2)}  # (trials, epochs) of wine_mlp, a grid over learning rates
SEARCH = {"default": (16, 27), "quick": (3, 2)}  # (trials, epochs) of the wine search with pruning
STARTUP_TIMES = 5
HEAVY_PACKAGES = {"tensorflow", "keras", "jax", "torch"}
OTHER_BACKENDS = ("jax", "torch")  # measured beside TensorFlow when installed, each in a column of its own
SEED = 42  # the presets' trainer.seed; repetition r uses SEED + r on both sides
MNIST_LAYERS = (784, 512, 256, 128, 10)
MNIST_ROWS = (55_000, 5_000)  # train, validation
MATMUL_SHAPES = ((2048, 2048, 2048), (30, 784, 512))
# Rough seconds seen on 2 cores while developing, for the estimate printed first: (start-up, per epoch).
COST = {
    "wine_mlp": {"plain": (10, 0.25), "runner": (14, 0.06), "runner-jax": (16, 0.03), "runner-torch": (16, 0.3)},
    "seizure_dnn": {"plain": (9, 0.55), "runner": (12, 0.5), "runner-jax": (14, 0.15), "runner-torch": (14, 0.6)},
    "mnist_dropout": {"plain": (12, 10.0), "runner": (12, 5.0), "runner-jax": (12, 2.7), "runner-torch": (14, 8.0)},
}
COST_OTHER = {
    "startup": 8,
    "limit": 40,
    "job": 3,
    "process": 10,
    "sweep": 10,
    "sweep_trial": 1.5,
    "sweep_trial_epoch": 0.3,
}


@dataclass
class Run:
    """One timed command."""

    variant: str  # plain | runner | runner-jax | runner-torch
    wall: float
    epoch_seconds: list[float]
    first_step: float | None
    metric: float
    train_rows: int | None = None


@dataclass
class Summary:
    """Medians over repetitions of one variant of one experiment."""

    wall: float
    epoch: float
    samples_per_second: float | None
    first_step: float | None
    metric: float
    metric_range: tuple[float, float] = field(default=(0.0, 0.0))


# ---------------------------------------------------------------- pure helpers


def median_epoch(epoch_seconds: list[float]) -> float:
    """The median epoch, leaving out the first (it traces and compiles) when there are others."""
    later = epoch_seconds[1:] or epoch_seconds
    return statistics.median(later)


def summarise(runs: list[Run], train_rows: int | None) -> Summary:
    epoch = statistics.median(median_epoch(run.epoch_seconds) for run in runs)
    firsts = [run.first_step for run in runs if run.first_step is not None]
    metrics = [run.metric for run in runs]
    return Summary(
        wall=statistics.median(run.wall for run in runs),
        epoch=epoch,
        samples_per_second=train_rows / epoch if train_rows and epoch > 0 else None,
        first_step=statistics.median(firsts) if firsts else None,
        metric=statistics.median(metrics),
        metric_range=(min(metrics), max(metrics)),
    )


def mlp_macs(layers: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one sample through dense layers of these widths."""
    return sum(a * b for a, b in itertools.pairwise(layers))


def epoch_flops(layers: tuple[int, ...], train_rows: int, val_rows: int) -> float:
    """One epoch: forward and backward (about 3 forward passes' work, 2 flops per MAC) on every training row,
    and a forward pass on every validation row. Biases, activations and the optimizer are left out."""
    macs = mlp_macs(layers)
    return 6.0 * macs * train_rows + 2.0 * macs * val_rows


def rotated(items: list, shift: int) -> list:
    shift %= max(len(items), 1)
    return items[shift:] + items[:shift]


def selected(only: str | None) -> list[str]:
    """The sections --only names; a part of a name is enough (``wine`` selects wine_mlp)."""
    if not only:
        return list(SECTIONS)
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [part for part in wanted if not any(part in section for section in SECTIONS)]
    if unknown:
        raise ValueError(f"--only: {', '.join(unknown)} match no section; sections: {', '.join(SECTIONS)}")
    return [section for section in SECTIONS if any(part in section for part in wanted)]


def ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return ""
    return f"{numerator / denominator:.2f}x"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def diagnostic_epochs(quick: bool) -> dict[str, int]:
    return {name: 1 if quick else epochs for name, epochs in DIAGNOSTIC_EPOCHS.items()}


def diagnostic_settings(epochs: dict[str, int], repeats: int, quick: bool) -> list[tuple[str, dict[str, int], int]]:
    """(setting, epochs per experiment, repetitions): 5-epoch fits for the fixed cost, then the book's epochs
    (one repetition: wine's 200 epochs are long; suites interleaved as always). A quick run's epochs are
    few already: it measures only those."""
    book = ("book", epochs, 1)
    return [book] if quick else [("fixed", diagnostic_epochs(quick), repeats), book]


def estimate_seconds(
    sections: list[str],
    epochs: dict[str, int],
    repeats: int,
    jax: bool,
    sweep: tuple[int, int],
    quick: bool = False,
    torch: bool = False,
) -> float:
    measured = {"runner-jax": jax, "runner-torch": torch}
    total = 0.0
    for name in EXPERIMENTS:
        if name in sections:
            variants = [v for v in COST[name] if measured.get(v, True)]
            total += repeats * sum(
                start + epochs[name] * per_epoch for start, per_epoch in (COST[name][v] for v in variants)
            )
    if "startup" in sections:
        total += COST_OTHER["startup"]
    if "diagnostics" in sections:  # a process per backend, setting and experiment; a job costs its epochs + 30%
        for variant in ["runner", "runner-jax"][: 1 + jax]:
            for _, setting, times in diagnostic_settings(epochs, repeats, quick):
                jobs = 1 + times * len(DIAGNOSTIC_SUITES)
                total += sum(
                    COST_OTHER["process"] + jobs * (COST_OTHER["job"] + 1.3 * e * COST[name][variant][1])
                    for name, e in setting.items()
                )
    if "sweep" in sections:  # 2 jobs take about 0.8 of 1 job's time; a search prunes most trials after 3 epochs
        trials, sweep_epochs = sweep
        search_trials, search_epochs = SEARCH["quick" if quick else "default"]
        for count, trial_epochs in ((trials, sweep_epochs), (search_trials, min(3, search_epochs) + search_epochs / 4)):
            per_trial = COST_OTHER["sweep_trial"] + trial_epochs * COST_OTHER["sweep_trial_epoch"]
            total += 1.8 * (COST_OTHER["sweep"] + count * per_trial)
    if "limit" in sections:
        total += COST_OTHER["limit"] * (1 + jax + torch) / 2
    return total


# ---------------------------------------------------------------- commands


def prepare_environment() -> None:
    """What every command (and this process) inherits: the data, quiet TensorFlow, its backend by default."""
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"})
    shared = REPO.parent / "shared" / "data"
    if "RUNNER_DATA_DIR" not in os.environ and shared.is_dir():
        os.environ["RUNNER_DATA_DIR"] = str(shared)


def environment(backend: str = "tensorflow") -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, done


def run_plain(name: str, epochs: int, seed: int, folder: Path, backend: str = "tensorflow") -> Run:
    command = [
        sys.executable,
        str(REPO / "bench" / "plain_keras.py"),
        name,
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--output",
        str(folder),
    ]
    wall, done = timed(command, environment(backend))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(
        "plain",
        wall,
        result["epoch_seconds"],
        result["first_step_seconds"],
        result[EXPERIMENTS[name][2]],
        result["train_rows"],
    )


def run_runner(
    name: str, epochs: int, seed: int, folder: Path, store: Path, backend: str, extra: list[str] | tuple = ()
) -> Run:
    command = [
        sys.executable,
        "-m",
        "runner",
        f"+experiment={name}",
        f"trainer.epochs={epochs}",
        f"trainer.seed={seed}",
        f"hydra.run.dir={folder}",
        f"tracking.uri=sqlite:///{store}",
        "trainer.verbose=0",
        *extra,
    ]
    wall, _ = timed(command, environment(backend))
    metrics = json.loads((folder / "reports" / "metrics.json").read_text())
    with open(folder / "reports" / "history.csv", newline="") as handle:
        epoch_seconds = [float(row["epoch_seconds"]) for row in csv.DictReader(handle)]
    variant = "runner" if backend == "tensorflow" else f"runner-{backend}"
    return Run(variant, wall, epoch_seconds, metrics.get("first_step_seconds"), metrics[EXPERIMENTS[name][2]])


def code_state() -> str:
    """The commit measured, and whether files differ from it (numbers of a dirty tree are not the commit's)."""

    def git(*arguments):
        try:
            done = subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True, check=False)
        except OSError:  # no git (a copy of the tree on another machine)
            return ""
        return done.stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown (not a git checkout)"
    return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def create_store(store: Path) -> None:
    """An empty MLflow store, made in a child process so that this one stays free of MLflow's imports."""
    code = f"import mlflow; mlflow.MlflowClient('sqlite:///{store}').search_experiments()"
    timed([sys.executable, "-c", code], environment())


def heavy_imports(arguments: list[str]) -> list[str]:
    """Which of TensorFlow, Keras, JAX and PyTorch ``python -m runner ARGUMENTS`` imports."""
    _, done = timed([sys.executable, "-X", "importtime", "-m", "runner", *arguments], environment())
    return sorted(imported_packages(done.stderr) & HEAVY_PACKAGES)


def imported_packages(importtime_output: str) -> set[str]:
    """Top-level packages named in ``python -X importtime`` output."""
    return {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in importtime_output.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def startup() -> dict:
    commands = {"--help": ["--help"], "+experiment=wine_mlp --cfg job": ["+experiment=wine_mlp", "--cfg", "job"]}
    result = {}
    for label, arguments in commands.items():
        seconds = [timed([sys.executable, "-m", "runner", *arguments], environment())[0] for _ in range(STARTUP_TIMES)]
        result[label] = {
            "seconds": statistics.median(seconds),
            "all": seconds,
            "heavy_imports": heavy_imports(arguments),
        }
    return result


def experiments(
    names: list[str], epochs: dict[str, int], repeats: int, backends: list[str], work: Path, errors: dict[str, str]
) -> dict[str, list[Run]]:
    """Runs per experiment; an experiment whose command fails is reported in ``errors`` and not run again."""
    store = work / "mlflow.db"
    create_store(store)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for repeat in range(repeats):
        seed = SEED + repeat  # a seed per repetition: the metric's spread is the run-to-run noise
        for name in (name for name in names if name not in errors):
            for variant in rotated(["plain", *backends], repeat):
                print(f"[{repeat + 1}/{repeats}] {name} {variant}, {epochs[name]} epochs", flush=True)
                folder = work / f"{name}-{variant}-{repeat}"
                try:
                    runs[name].append(
                        run_plain(name, epochs[name], seed, folder)
                        if variant == "plain"
                        else run_runner(name, epochs[name], seed, folder, store, variant)
                    )
                except (RuntimeError, OSError, ValueError, KeyError) as error:
                    errors[name] = f"{variant}: {str(error).strip()[-600:]}"
                    print(f"{name} failed: {errors[name]}", file=sys.stderr, flush=True)
                    runs[name] = []
                    break
    return runs


def diagnostics(epochs: dict[str, int], repeats: int, quick: bool, backends: list[str], work: Path) -> dict:
    """bench/diagnostics_overhead.py in a process per backend (TensorFlow and JAX) and setting: 5-epoch fits
    (the suites' fixed cost) and the book's epochs (their share of a real run)."""
    result = {}
    for backend in (b for b in backends if b in DIAGNOSTIC_BACKENDS):
        for setting, setting_epochs, times in diagnostic_settings(epochs, repeats, quick):
            for name, count in setting_epochs.items():
                print(f"diagnostics: {name}, {count} epoch(s), {backend}, suites {', '.join(DIAGNOSTIC_SUITES)}")
                output = work / f"{backend}-{setting}-{name}.json"
                command = [
                    *(sys.executable, str(REPO / "bench" / "diagnostics_overhead.py"), "--only", name),
                    *("--epochs", str(count), "--repeats", str(times), "--suites", ",".join(DIAGNOSTIC_SUITES)),
                    *("--json", str(output)),
                ]
                work.mkdir(parents=True, exist_ok=True)
                timed(command, environment(backend))
                medians = json.loads(output.read_text())[name]
                result.setdefault(setting, {}).setdefault(name, {"epochs": count, "repeats": times})[backend] = medians
    return result


def sweeps(trials: int, epochs: int, work: Path, search: tuple[int, int]) -> list[dict]:
    """A grid over wine learning rates (Hydra's basic sweeper, batches of n_jobs) and the wine search with
    pruning (the runner's workers, issue 16's target), each with 1 job and with 2 joblib jobs."""
    search_trials, search_epochs = search
    groups = [
        ("grid", trials, epochs, sweep_speed.sweep_overrides("wine_mlp", trials, epochs, synthetic=False),
         sweep_speed.configurations(2, available_cores(), skip_unlimited=True)),
        ("search", search_trials, search_epochs,
         sweep_speed.search_overrides("wine_mlp", search_trials, search_epochs, min(3, search_epochs)),
         sweep_speed.search_configurations(2)),
    ]  # fmt: skip
    result = []
    for group, count, group_epochs, base, chosen in groups:
        for i, (label, extra) in enumerate(chosen):
            outcome = sweep_speed.run_sweep(label, extra, base, work / f"{group}{i}", count)
            result.append(
                {**asdict(outcome), "trials_per_hour": outcome.trials_per_hour, "epochs": group_epochs, "group": group}
            )
    return result


def matmul_throughput(shapes=MATMUL_SHAPES, blocks: int = 5, block_seconds: float = 0.5) -> dict[str, float]:
    """FLOP/s of keras.ops.matmul per (m, k, n), best of ``blocks`` timed blocks of eager calls; each result is
    fetched to NumPy, so asynchronous backends finish inside the timing."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    result = {}
    for m, k, n in shapes:
        a = keras.ops.convert_to_tensor(rng.standard_normal((m, k), dtype="float32"))
        b = keras.ops.convert_to_tensor(rng.standard_normal((k, n), dtype="float32"))
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b))
        best = 0.0
        for _ in range(blocks):
            calls, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < block_seconds:
                keras.ops.convert_to_numpy(keras.ops.matmul(a, b))
                calls += 1
            best = max(best, 2.0 * m * k * n * calls / elapsed)
        result[f"{m}x{k}x{n}"] = best
    return result


def limits(backends: list[str]) -> dict:
    """Matmul throughput per backend, each measured in a fresh process of that backend."""
    code = "import json, sys; sys.path.insert(0, 'bench'); import speed; print(json.dumps(speed.matmul_throughput()))"
    flops = epoch_flops(MNIST_LAYERS, *MNIST_ROWS)
    result = {"epoch_flops": flops, "backends": {}}
    for backend in backends:
        print(f"limit: matmul throughput, {backend}", flush=True)
        _, done = timed([sys.executable, "-c", code], environment(backend))
        throughput = json.loads(done.stdout.strip().splitlines()[-1])
        result["backends"][backend] = {
            shape: {"flops_per_second": value, "epoch_seconds": flops / value} for shape, value in throughput.items()
        }
    return result


# ---------------------------------------------------------------- the table


HEADER = [
    "section",
    "measure",
    "plain Keras",
    "runner",
    "runner (JAX)",
    "runner (torch)",
    "runner vs plain (> 1x: runner faster)",
]
VARIANTS = ("plain", "runner", *(f"runner-{backend}" for backend in OTHER_BACKENDS))  # the columns after measure


def experiment_rows(name: str, epochs: int, summaries: dict[str, Summary], repeats: int) -> list[list[str]]:
    plain, *runners = (summaries.get(v) for v in VARIANTS)
    section = f"{name} ({epochs} ep., {repeats} rep.)"
    metric = EXPERIMENTS[name][2]
    labels = ["", *(f"{backend}: " for backend in OTHER_BACKENDS)]  # before each runner's ratio

    def row(measure, value, fmt, faster_if_lower=True):
        cells = [fmt.format(value(s)) if s and value(s) is not None else "" for s in (plain, *runners)]
        ratios = [
            label + (ratio(value(plain), value(s)) if faster_if_lower else ratio(value(s), value(plain)))
            for label, s in zip(labels, runners)
            if s and plain and value(s) and value(plain)
        ]
        return [section, measure, *cells, " / ".join(ratios)]

    def metric_cell(s):
        low, high = s.metric_range
        return f"{s.metric:.4f}" + (f" ({low:.4f}-{high:.4f})" if high > low else "")

    rows = [
        row("wall s (whole command)", lambda s: s.wall, "{:.1f}"),
        row("epoch s (median, first left out)", lambda s: s.epoch, "{:.3f}"),
        row("samples/s", lambda s: s.samples_per_second, "{:,.0f}", faster_if_lower=False),
        row("launch to first step s", lambda s: s.first_step, "{:.1f}"),
    ]
    rows.append(
        [
            section,
            metric,
            *(metric_cell(s) if s else "" for s in (plain, *runners)),
            "diff "
            + " / ".join(f"{label}{s.metric - plain.metric:+.4f}" for label, s in zip(labels, runners) if s and plain),
        ]
    )
    return rows


def startup_rows(result: dict) -> list[list[str]]:
    rows = []
    for label, values in result.items():
        imported = ", ".join(values["heavy_imports"]) or "none"
        verdict = "pass" if values["seconds"] < 1 and not values["heavy_imports"] else "FAIL"
        rows.append(
            [
                "startup",
                f"python -m runner {label}, median of {STARTUP_TIMES}",
                "",
                f"{values['seconds']:.2f} s",
                "",
                "",
                f"imports {imported}; < 1 s, no TensorFlow: {verdict}",
            ]
        )
    return rows


def backend_row(section: str, measure: str, cells: dict[str, str], note: str) -> list[str]:
    """A table row with a cell per backend (runner columns) and nothing under plain Keras."""
    return [section, measure, "", cells.get("tensorflow", ""), cells.get("jax", ""), cells.get("torch", ""), note]


def diagnostics_rows(result: dict) -> list[list[str]]:
    """A row per setting, experiment and suite; TensorFlow in the runner column, JAX in its own."""
    rows = []
    for setting, experiments in result.items():
        book = setting == "book"
        for name, values in experiments.items():
            for suite in DIAGNOSTIC_SUITES[1:]:
                cells, verdicts = {}, []
                for backend in DIAGNOSTIC_BACKENDS:
                    medians = values.get(backend)
                    if medians is None:
                        continue
                    extra = diagnostics_overhead.extra_seconds(medians, suite)
                    share = diagnostics_overhead.overhead(medians, suite)
                    cells[backend] = f"{extra:+.1f} s on a {medians['none'][0]:.1f} s run ({share:+.0%})"
                    met = diagnostics_overhead.meets_target(medians, suite, book)
                    if met is not None:
                        verdicts.append(f"{backend}: {'pass' if met else 'OVER'}")
                target = (
                    f"target <= {diagnostics_overhead.TARGETS[suite]:.0%} of the run"
                    if book
                    else f"target < {diagnostics_overhead.FIXED_COST_TARGET_S:g} s"
                )
                measure = f"{name} {suite}, {values['epochs']} ep. ({'book, ' if book else ''}{values['repeats']} rep.)"
                note = f"{target}: {', '.join(verdicts)}" if verdicts else ""
                rows.append(backend_row("diagnostics", measure, cells, note))
    return rows


def sweep_rows(result: list[dict]) -> list[list[str]]:
    """Each sweep against the 1-job run of its group; ``idle``: seconds of the trials' span with fewer trial
    runs open than jobs; ``CPU``: the command's CPU seconds with its workers', and the speed-up they would allow
    with every core busy throughout (``ceiling``)."""
    first = {}
    rows = []
    for o in result:
        base = first.setdefault(o.get("group", "grid"), o["seconds"])
        kind = "search with pruning" if o.get("group") == "search" else "grid"
        rows.append(
            [
                "sweep",
                f"{o['trials']} wine trials x {o['epochs']} ep. ({kind}), {o['label']}",
                "",
                f"{o['seconds']:.1f} s, {o['trials_per_hour']:.0f} trials/h ({o['finished']}/{o['trials']} done), "
                f"idle {o['short_s']:.0f} s, CPU {o.get('cpu_s', 0):.0f} s",
                "",
                "",
                f"{base / o['seconds']:.2f}x vs 1 job "
                f"(ceiling {sweep_speed.ceiling(base, o.get('cpu_s', 0), available_cores()):.2f}x)",
            ]
        )
    return rows


def limit_rows(result: dict, measured: dict[str, float | None]) -> list[list[str]]:
    rows = [
        [
            "limit",
            "MNIST MLP FLOPs per epoch (6 x MACs x 55,000 + 2 x MACs x 5,000)",
            "",
            f"{result['epoch_flops']:.3g}",
            "",
            "",
            f"MACs per sample {mlp_macs(MNIST_LAYERS):,}",
        ]
    ]
    for shape in (f"{m}x{k}x{n}" for m, k, n in MATMUL_SHAPES):
        cells, notes = {}, []
        for backend, values in result["backends"].items():
            limit = values[shape]["epoch_seconds"]
            cells[backend] = f"{values[shape]['flops_per_second'] / 1e9:.1f} GFLOP/s -> {limit:.2f} s/epoch"
            epoch = measured.get(backend)
            if epoch:
                notes.append(f"{backend}: measured epoch {epoch:.2f} s = {epoch / limit:.1f}x the limit")
        rows.append(backend_row("limit", f"matmul {shape}: throughput -> epoch at that rate", cells, "; ".join(notes)))
    return rows


def table(report: dict, epochs: dict[str, int], repeats: int) -> str:
    rows = []
    if "startup" in report:
        rows += startup_rows(report["startup"])
    for name, summaries in report.get("summaries", {}).items():
        rows += experiment_rows(name, epochs[name], summaries, repeats)
    if "diagnostics" in report:
        rows += diagnostics_rows(report["diagnostics"])
    if "sweep" in report:
        rows += sweep_rows(report["sweep"])
    if "limit" in report:
        mnist = report.get("summaries", {}).get("mnist_dropout", {})
        measured = {"tensorflow": getattr(mnist.get("runner"), "epoch", None)}
        measured.update({b: getattr(mnist.get(f"runner-{b}"), "epoch", None) for b in OTHER_BACKENDS})
        rows += limit_rows(report["limit"], measured)
    for section, error in report.get("errors", {}).items():
        rows.append([section, "FAILED", "", "", "", "", " ".join(error.replace("|", "/").split())[:200]])
    return markdown(HEADER, rows)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=f"sections: {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="1 repetition and few epochs: a smoke run")
    parser.add_argument("--only", default=None, help="comma-separated sections (or parts of their names)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    parser.add_argument("--no-jax", action="store_true", help="leave out the runner under KERAS_BACKEND=jax")
    parser.add_argument("--no-torch", action="store_true", help="leave out the runner under KERAS_BACKEND=torch")
    parser.add_argument("--output", type=Path, default=None, help="run folders (default: a temp folder)")
    args = parser.parse_args(argv)
    try:
        sections = selected(args.only)
    except ValueError as error:
        parser.error(str(error))
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    epochs = {name: quick if args.quick else default for name, (default, quick, _) in EXPERIMENTS.items()}
    left_out = {"jax": args.no_jax, "torch": args.no_torch}
    backends = ["tensorflow"] + [b for b in OTHER_BACKENDS if not left_out[b] and importlib.util.find_spec(b)]
    sweep = SWEEP["quick" if args.quick else "default"]
    estimate = estimate_seconds(sections, epochs, repeats, "jax" in backends, sweep, args.quick, "torch" in backends)
    print(
        f"sections: {', '.join(sections)}; {repeats} repetition(s); estimated {estimate / 60:.0f} min on 2 idle cores",
        flush=True,
    )
    work = args.output or Path(tempfile.mkdtemp(prefix="speed-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare_environment()
    started = time.perf_counter()
    report = collect(sections, epochs, repeats, backends, sweep, args.quick, work)
    text = table(report, epochs, repeats)
    print(
        f"\n{text}\n\nmeasured in {time.perf_counter() - started:.0f} s on {os.cpu_count()} cores, code "
        f"{report['settings']['code']}; run folders in {work}"
    )
    if args.json:
        args.json.write_text(json.dumps(_jsonable(report), indent=2))
    return 1 if report["errors"] else 0


def collect(
    sections: list[str],
    epochs: dict[str, int],
    repeats: int,
    backends: list[str],
    sweep: tuple[int, int],
    quick: bool,
    work: Path,
) -> dict:
    report: dict = {
        "settings": {"epochs": epochs, "repeats": repeats, "cores": os.cpu_count(), "code": code_state()},
        "errors": {},
    }

    def attempt(section: str, measure) -> None:
        try:
            report[section] = measure()
        except Exception as error:  # a broken section must not cost the others their numbers
            report["errors"][section] = f"{type(error).__name__}: {str(error).strip()[-600:]}"
            print(f"{section} failed: {report['errors'][section]}", file=sys.stderr, flush=True)

    if "startup" in sections:
        attempt("startup", startup)
    names = [name for name in EXPERIMENTS if name in sections]
    if names:
        report["runs"] = experiments(names, epochs, repeats, backends, work, report["errors"])
        report["summaries"] = {name: _by_variant(runs) for name, runs in report["runs"].items() if runs}
    if "sweep" in sections:
        attempt("sweep", lambda: sweeps(*sweep, work, SEARCH["quick" if quick else "default"]))
    if "diagnostics" in sections:
        attempt("diagnostics", lambda: diagnostics(epochs, repeats, quick, backends, work / "diagnostics"))
    if "limit" in sections:
        attempt("limit", lambda: limits(backends))
    return report


def _by_variant(runs: list[Run]) -> dict[str, Summary]:
    rows = next((run.train_rows for run in runs if run.train_rows), None)
    variants = dict.fromkeys(run.variant for run in runs)
    return {v: summarise([run for run in runs if run.variant == v], rows) for v in variants}


def _jsonable(value):
    if isinstance(value, (Run, Summary)):
        return asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
