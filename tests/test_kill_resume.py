"""A run killed with SIGKILL (issue 17): it cannot close its MLflow run, so the run stays RUNNING until the next
run in its experiment finds its process dead and ends it KILLED with the reason, or ``trainer.resume`` continues
it to the metrics of the uninterrupted run. Runs of live processes (a sweep's parallel workers) are left alone.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_reliability import checkpointed_epoch, final_metrics, history, runner_process, store_uri

from runner.errors import ConfigError
from runner.run import resume
from runner.run.folder import RunFolder
from runner.runtime import liveness
from runner.tracking import PROCESS_TAGS, RunRecord, connect, end_orphaned_runs, run_process


def dead_process() -> liveness.Process:
    """A process of this machine that ran and has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = liveness.Process(liveness.current().host, child.pid, liveness._start_token(child.pid))
    assert owner.start, "the token of a live process of this machine"
    child.kill()
    child.wait()
    return owner


def owned_by(record: RunRecord, owner: liveness.Process) -> None:
    record.set_tags(dict(zip(PROCESS_TAGS, (owner.host, str(owner.pid), owner.start), strict=True)))


# ---------------------------------------------------------------- which processes are alive


def test_liveness_tells_this_process_a_dead_one_a_zombie_and_a_reused_pid_apart():
    here = liveness.current()
    assert here.pid == os.getpid() and here.start.count("/") == 2
    assert liveness.is_alive(here) is True
    assert liveness.is_alive(dead_process()) is False

    zombie = subprocess.Popen(["sleep", "60"])
    try:
        token = liveness._start_token(zombie.pid)
        os.kill(zombie.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while liveness._stat(zombie.pid)[0] != "Z":  # not reaped: os.kill(pid, 0) still succeeds
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        assert liveness.is_alive(liveness.Process(here.host, zombie.pid, token)) is False
    finally:
        zombie.wait()

    boot, namespace, ticks = here.start.split("/")
    reused = liveness.Process(here.host, here.pid, f"{boot}/{namespace}/{int(ticks) + 1}")
    assert liveness.is_alive(reused) is False, "the pid now belongs to a process that started later"
    assert liveness.is_alive(liveness.Process(here.host, here.pid, f"another-boot/{namespace}/{ticks}")) is False
    assert liveness.is_alive(liveness.Process(here.host, 1, f"{boot}/pid:[1]/{ticks}")) is None, "another container"
    assert liveness.is_alive(liveness.Process("elsewhere", here.pid, here.start)) is None, "another machine"


# ---------------------------------------------------------------- ending orphaned runs


def test_end_orphaned_runs_ends_only_the_runs_of_dead_processes_of_this_machine(tmp_path):
    tracker = connect(store_uri(tmp_path), "orphans")
    records = {name: RunRecord(tracker, name, {}) for name in ("dead", "live", "elsewhere", "untagged", "kept")}
    finished = RunRecord(tracker, "finished", {})
    dead = dead_process()
    for name in ("dead", "kept"):
        owned_by(records[name], dead)
    owned_by(finished, dead)
    finished.finish()
    owned_by(records["elsewhere"], liveness.Process("another-host", dead.pid, dead.start))
    for key in PROCESS_TAGS:
        records["untagged"].delete_tag(key)
    client = tracker.client
    assert run_process(client.get_run(records["live"].run_id)) == liveness.current(), "tagged when it started"

    ended = end_orphaned_runs(client, [tracker.experiment_id], keep={records["kept"].run_id})

    assert ended == [records["dead"].run_id]
    status = {name: client.get_run(record.run_id).info.status for name, record in records.items()}
    assert status == {
        "dead": "KILLED",
        "live": "RUNNING",
        "elsewhere": "RUNNING",
        "untagged": "RUNNING",
        "kept": "RUNNING",
    }
    assert client.get_run(finished.run_id).info.status == "FINISHED"
    tags = client.get_run(records["dead"].run_id).data.tags
    assert tags["runner.error"] == (
        f"the process died without closing the run: found RUNNING with no live process on {dead.host} pid {dead.pid}"
    )
    assert tags["runner.error_type"] == "ProcessDied"
    assert end_orphaned_runs(client, [tracker.experiment_id], reason="sweep worker lost") == [records["kept"].run_id]
    assert client.get_run(records["kept"].run_id).data.tags["runner.error"].startswith("sweep worker lost: found")


def test_running_again_makes_this_process_the_owner_and_clears_why_it_stopped(tmp_path):
    tracker = connect(store_uri(tmp_path), "orphans")
    record = RunRecord(tracker, "parent", {})
    owned_by(record, dead_process())
    (run_id,) = end_orphaned_runs(tracker.client, [tracker.experiment_id])
    record.set_status("RUNNING")  # a resumed search's parent, a resumed run
    run = tracker.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run_process(run) == liveness.current()
    assert "runner.error" not in run.data.tags and "runner.error_type" not in run.data.tags


def test_resume_refuses_a_run_whose_process_is_alive(tmp_path):
    tracker = connect(store_uri(tmp_path), "orphans")
    folder = RunFolder(tmp_path / "run")
    record = RunRecord(tracker, "busy", {"runner.output_dir": str(folder.root)})
    folder.resume_state.mkdir(parents=True)
    (folder.resume_state / resume.STATE_FILE).write_text(json.dumps({"epoch": 1, "run_id": record.run_id}))
    for target in (record.run_id, str(folder.root)):
        with pytest.raises(ConfigError, match=rf"still RUNNING in .* pid {os.getpid()}; stop it"):
            resume.load(target, tracker.uri)
    owned_by(record, liveness.Process("another-host", os.getpid(), ""))
    assert resume.load(record.run_id, tracker.uri).epoch == 1, "another machine's process: a warning, no refusal"
    owned_by(record, dead_process())
    assert resume.load(record.run_id, tracker.uri).epoch == 1, "a run left by a dead process is what resume is for"


# ---------------------------------------------------------------- SIGKILL mid-epoch, then resume


def kill_mid_epoch(process: subprocess.Popen, run_dir: Path, after: int, seed: int, timeout: float = 300) -> dict:
    """SIGKILL the process group a seeded fraction of an epoch after the checkpoint of epoch ``after``: the epoch's
    length is measured between the checkpoints of ``after - 1`` and ``after``. Returns what was done."""
    fraction = random.Random(seed).uniform(0.2, 0.8)
    seen = {}
    deadline = time.monotonic() + timeout
    while (epoch := checkpointed_epoch(run_dir)) < after:
        assert process.poll() is None, "the run ended before it could be killed:\n" + process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint in time"
        seen.setdefault(epoch, time.monotonic())
        time.sleep(0.01)
    seen.setdefault(after, time.monotonic())
    epoch_seconds = seen[after] - seen.get(after - 1, seen[after])
    time.sleep(fraction * epoch_seconds)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)  # reaped: its pid is free
    return {"fraction": fraction, "epoch_seconds": epoch_seconds, "checkpointed": checkpointed_epoch(run_dir)}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_ends_as_the_uninterrupted_run(tmp_path):
    longer = ["dataset.n_samples=2000", "trainer.epochs=20"]
    killed = runner_process(tmp_path, "killed", *longer, start_new_session=True)
    kill = kill_mid_epoch(killed, tmp_path / "killed", after=3, seed=17)
    assert killed.returncode == -signal.SIGKILL
    assert 3 <= kill["checkpointed"] < 20, kill
    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    (orphan,) = client.search_runs([client.get_experiment_by_name("synthetic").experiment_id])
    assert orphan.info.status == "RUNNING", "SIGKILL leaves no chance to close the run"
    assert run_process(orphan).pid == killed.pid

    # A fresh run in the same experiment (here the uninterrupted reference) ends the orphan.
    reference = runner_process(tmp_path, "reference", *longer)
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    assert f"run {orphan.info.run_id} (" in out + err and "which died: marked KILLED" in out + err
    run = client.get_run(orphan.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["runner.error"] == (
        f"the process died without closing the run: found RUNNING with no live process on "
        f"{run_process(orphan).host} pid {killed.pid}"
    )

    started = time.monotonic()
    resumed = runner_process(tmp_path, "resumed", *longer, f"trainer.resume={orphan.info.run_id}")
    out, err = resumed.communicate(timeout=600)
    resume_seconds = time.monotonic() - started
    assert resumed.returncode == 0, err[-3000:]
    assert f"resumed after epoch {kill['checkpointed']}" in out + err

    run = client.get_run(orphan.info.run_id)
    assert run.info.status == "FINISHED" and "runner.error" not in run.data.tags
    assert run_process(run).pid == resumed.pid, "the resuming process owns the run"
    (expected,) = [r for r in client.search_runs([run.info.experiment_id]) if r.info.run_id != run.info.run_id]
    assert final_metrics(client, run.info.run_id) == final_metrics(client, expected.info.run_id)
    assert history(client, run.info.run_id) == history(client, expected.info.run_id)
    everything = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.status for r in everything} == {"FINISHED"}, "no run is left RUNNING"
    print(
        f"killed in epoch {kill['checkpointed'] + 1} ({kill['fraction']:.2f} of a {kill['epoch_seconds']:.2f} s "
        f"epoch), resumed in {resume_seconds:.1f} s; test_mae {run.data.metrics['test_mae']!r} resumed, "
        f"{expected.data.metrics['test_mae']!r} uninterrupted"
    )
