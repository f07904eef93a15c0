"""A job's MLflow run, opened on a worker thread once training has started.

Importing MLflow and opening its store take seconds (more than the rest of the runner's start-up together);
done first, they delay the first training step by as much. ``LateRecord`` stands for the ``RunRecord`` from
the start: until the run is open, calls that return nothing are queued and made in order on the worker
thread, which first opens the run (after, they are made directly); anything else (an id, the model's upload,
the run's end) waits until the run is open and every queued call is made. An error of the opening or of a queued call is raised by the next call, so a store
that cannot be used stops the training at its first epoch's end. Nothing is recorded later than the job's
end, and nothing less than with a ``RunRecord`` opened first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait

import keras

from runner.tracking import RunRecord

log = logging.getLogger("runner")
# log_artifact too: the diagnostics' preflight report is written before training, and waiting for the run to
# upload it held the first step back by MLflow's whole start (about 2 s). Uploads are made in order, so a file
# written again later (report.json after training) is uploaded again after its last write.
QUEUED = frozenset(
    {
        "log_params",
        "set_tags",
        "log_metrics",
        "log_datasets",
        "log_text",
        "log_json",
        "log_artifact",
        "prepare_model_logging",
    }
)


class LateRecord:
    def __init__(self, create: Callable[[], RunRecord], begin: Callable[[RunRecord], None]):
        """``create`` opens the store and the run; ``begin`` logs what a run records first (params, config)."""
        self._create, self._begin = create, begin
        self._record: RunRecord | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._calls: list[Future] = []

    def start(self) -> None:
        """Open the run on the worker thread (once)."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="mlflow-run")
            self._calls.append(self._worker.submit(self._open))

    def _open(self) -> None:
        self._record = self._create()
        self._begin(self._record)

    def ready(self) -> RunRecord:
        """The open run, after every queued call; raises the first error any of them raised."""
        self.start()
        errors = self._settle()
        if errors:
            raise errors[0]
        return self._record

    def _settle(self) -> list[BaseException]:
        """Wait for every queued call (none runs beside the caller after this); their errors, in order."""
        calls, self._calls = self._calls, []
        wait(calls)
        return [call.exception() for call in calls if call.exception() is not None]

    def __getattr__(self, name: str):
        if name.startswith("__"):  # copy, pickle and the like ask for these: not the run's
            raise AttributeError(name)
        if name in QUEUED:
            return lambda *args, **kwargs: self._queue(name, args, kwargs)
        return getattr(self.ready(), name)

    def _queue(self, name: str, args: tuple, kwargs: dict) -> None:
        self._raise_earlier_error()
        if self._record is not None and not self._calls:
            # Open and caught up: from here calls are made in order in the caller's thread, as a RunRecord's
            # are, so an error (or an interrupt) stops the job where it happened, never epochs later.
            getattr(self._record, name)(*args, **kwargs)
            return
        self.start()
        self._calls.append(self._worker.submit(lambda: getattr(self._record, name)(*args, **kwargs)))

    def _raise_earlier_error(self) -> None:
        for call in [call for call in self._calls if call.done()]:
            self._calls.remove(call)
            call.result()

    def fail(self, error: BaseException) -> None:
        """End the run as RunRecord.fail does, opening it first if it was not yet (the error came first)."""
        self.start()
        failures = self._settle()
        if self._record is None:  # the store could not be used: there is no run to mark
            log.error("the run could not be recorded in MLflow: %s", failures[0] if failures else "unknown error")
            return
        self._record.fail(error)

    def close(self) -> None:
        """Let the worker thread go (after the run has ended)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)


class OpenOnFirstStep(keras.callbacks.Callback):
    """Starts opening the run when the first training step begins: until then the main thread has the
    interpreter to itself (imports, building and tracing the model); during training the backend's kernels
    leave it free for MLflow most of the time."""

    def __init__(self, record: LateRecord):
        super().__init__()
        self.record = record

    def on_train_batch_begin(self, batch, logs=None):
        self.record.start()


class Deferred(Mapping):
    """A mapping whose values are computed on first read (a checkpoint's run id, known once the run is open)."""

    def __init__(self, compute: Callable[[], dict]):
        self._compute = compute
        self._values: dict | None = None

    def _all(self) -> dict:
        if self._values is None:
            self._values = self._compute()
        return self._values

    def __getitem__(self, key):
        return self._all()[key]

    def __iter__(self) -> Iterator:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
