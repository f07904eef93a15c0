"""A search killed with SIGKILL again and again, each time rerun with the same command, ends as if never killed.

Seeded: the phase of each kill (start-up, training, a checkpoint write, the end-of-sweep report) and the delay
after it comes from one random generator. The whole process group dies (the sweep and its joblib workers), as
when a machine or a container is lost.
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from runner.sweep import search, stale, workers

pytestmark = pytest.mark.slow

SEED, KILLS, N_TRIALS = 20261203, 10, 8
DELAYS_S = {"start-up": (0.0, 0.0), "training": (0.5, 4.0), "checkpoint": (0.0, 0.05), "report": (0.0, 0.5)}
PHASES = tuple(DELAYS_S)
BASE = [
    "+experiment=wine_mlp",
    "+sweep=smoke",
    "trainer.verbose=0",
    "trainer.epochs=4",
    f"hydra.sweeper.n_trials={N_TRIALS}",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.max_failure_rate=1.0",
]


class Sweep:
    """The same command, started as often as needed, each time in its own process group."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.command = [
            sys.executable,
            "-m",
            "runner",
            "-m",
            *BASE,
            "+launcher=joblib",
            "hydra.sweeper.n_jobs=2",
            f"tracking.uri=sqlite:///{folder}/store/mlflow.db",
            f"hydra.sweep.dir={folder}/sweep",
        ]
        self.logs: list[Path] = []

    def start(self) -> subprocess.Popen:
        self.logs.append(self.folder / f"attempt-{len(self.logs)}.log")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        with open(self.logs[-1], "w") as log:
            return subprocess.Popen(
                self.command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.logs[-1].read_text(errors="replace")

    def checkpoints(self) -> dict[Path, float]:
        return {path: path.stat().st_mtime for path in (self.folder / "sweep").glob("*/checkpoints/*.h5")}


def wait_for(process: subprocess.Popen, reached, timeout_s: float = 240) -> bool:
    """Until ``reached()`` or the process ends; True when the phase was reached with the process still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if reached():
            return True
        time.sleep(0.02)
    return False


def phase_reached(sweep: Sweep, phase: str, process: subprocess.Popen, rng: random.Random):
    """A predicate for the moment of ``phase`` in this attempt."""
    if phase == "start-up":
        at = time.monotonic() + rng.uniform(1.0, 8.0)
        return lambda: time.monotonic() >= at
    if phase == "training":  # a job opened its run: it trains next
        return lambda: "MLflow run " in sweep.log()
    if phase == "checkpoint":
        before = sweep.checkpoints()
        return lambda: any(before.get(path) != mtime for path, mtime in sweep.checkpoints().items())
    return lambda: f"({N_TRIALS}/{N_TRIALS}) done" in sweep.log() or "== sweep" in sweep.log()


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_with_kills(sweep: Sweep, rng: random.Random) -> Counter:
    """KILLS kills, each at a seeded phase and delay; then reruns until the command succeeds."""
    kills: Counter = Counter()
    while sum(kills.values()) < KILLS:
        phase = rng.choice(PHASES)
        process = sweep.start()
        if wait_for(process, phase_reached(sweep, phase, process, rng)):
            time.sleep(rng.uniform(*DELAYS_S[phase]))
            kill_group(process)
            kills[phase] += 1
        else:  # it ended first (the study was already complete, or the phase never came)
            assert process.wait() == 0, sweep.log()[-3000:]
    for _ in range(3):
        process = sweep.start()
        if process.wait(timeout=600) == 0:
            return kills
    pytest.fail(f"the sweep does not complete after the kills:\n{sweep.log()[-3000:]}")


def test_a_search_killed_ten_times_ends_with_exactly_its_trials_recorded_once(tmp_path):
    started = time.monotonic()
    sweep = Sweep(tmp_path)
    kills = run_with_kills(sweep, random.Random(SEED))
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/store/optuna.db")
    counted = search.counted_trials(study)
    assert len(counted) == N_TRIALS and {t.state for t in counted} == {TrialState.COMPLETE}
    assert [t.number for t in study.trials] == list(range(len(study.trials))), "no missing or repeated number"
    counted_numbers = {t.number for t in counted}
    for trial in study.trials:
        if (
            trial.number not in counted_numbers
        ):  # a dead worker's trial (re-run as another), or one asked beyond n_trials
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs.get(stale.INTERRUPTED) or trial.user_attrs.get(workers.SURPLUS)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    children = [r for r in runs if "runner.trial" in r.data.tags]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent_id}
    finished = Counter(int(r.data.tags["runner.trial"]) for r in children if r.info.status == "FINISHED")
    assert finished == Counter({t.number: 1 for t in counted}), "one FINISHED child per counted trial, no other"
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    for run in runs:
        if run.info.status in ("KILLED", "FAILED"):
            assert run.data.tags.get("runner.error"), f"{run.info.run_name} ended {run.info.status} with no reason"

    parent = client.get_run(parent_id)
    best = study.best_trial
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["runner.best_trial"] == str(best.number)
    assert parent.data.metrics["best_val_loss"] == pytest.approx(best.value)
    best_config = yaml.safe_load(Path(parent.data.tags["runner.best_config"]).read_text())
    assert best_config["optimizer"]["learning_rate"] == pytest.approx(best.params["optimizer.learning_rate"])

    (best_run,) = [r for r in children if r.data.tags["runner.trial"] == str(best.number)]
    alone = uninterrupted_test_metrics(tmp_path, best_run)
    recorded = held_out_metrics(best_run.data.metrics)
    assert recorded and alone == pytest.approx(recorded, rel=1e-6), "the best trial, rerun alone, gives its metrics"
    print(f"kills by phase: {dict(kills)}; {len(study.trials)} study trials; {time.monotonic() - started:.0f} s")


def uninterrupted_test_metrics(tmp_path: Path, run) -> dict[str, float]:
    """The trial run alone as a single run with its overrides (the same one thread a sweep job had)."""
    folder = Path(run.data.tags["runner.output_dir"])
    overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    kept = [o for o in overrides if not o.startswith(("trial.", "hydra.", "+launcher", "tracking.uri"))]
    store = tmp_path / "alone"
    command = [sys.executable, "-m", "runner", *kept, f"tracking.uri=sqlite:///{store}/mlflow.db", "trainer.threads=1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    (alone,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return held_out_metrics(alone.data.metrics)


def held_out_metrics(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("test_") and not k.endswith("_seconds")}
