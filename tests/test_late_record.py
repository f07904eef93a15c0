"""The MLflow run that opens on a worker thread once training has started (runner/run/late_record.py)."""

from __future__ import annotations

import threading

from runner.run.late_record import LateRecord


class MadeRecord:
    """Stands for a RunRecord: says which calls reached it, in order."""

    def __init__(self):
        self.calls = []

    def set_tags(self, tags):
        self.calls.append(("set_tags", tags))

    def log_artifact(self, path, folder):
        self.calls.append(("log_artifact", path, folder))


def test_an_artifact_logged_before_the_run_opens_is_queued_in_order_not_waited_for():
    opening = threading.Event()
    made = MadeRecord()

    def create():
        assert opening.wait(10), "the caller waited for the run to open"  # it never lets the gate open then
        return made

    record = LateRecord(create, lambda run: run.calls.append(("begin",)))
    record.set_tags({"stage": "preflight"})
    record.log_artifact("report.json", "diagnostics")  # returns at once: the run is still opening
    assert made.calls == []
    opening.set()
    assert record.ready() is made
    assert made.calls == [
        ("begin",),
        ("set_tags", {"stage": "preflight"}),
        ("log_artifact", "report.json", "diagnostics"),
    ]
    record.log_artifact("report.html", "diagnostics")  # open and caught up: made directly
    assert made.calls[-1] == ("log_artifact", "report.html", "diagnostics")
    record.close()
