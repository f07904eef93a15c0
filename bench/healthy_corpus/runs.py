"""Running corpus setups under ``diagnose`` (or a plain fit), one process per job.

Workers limit TensorFlow to one intra-op and one inter-op thread: the environment variables are set in the
pool's initializer, before the worker first imports TensorFlow (the scripts' parents never import it).
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from bench.healthy_corpus.spec import Spec


def limit_threads() -> None:
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def map_jobs(function, items: list, jobs: int, on_result=None) -> list:
    """``[function(item) for item in items]``, in ``jobs`` spawned processes when jobs > 1; results keep the
    order of ``items``; ``on_result(result)`` is called as each one arrives (progress lines)."""
    if jobs <= 1:
        results = []
        for item in items:
            results.append(function(item))
            if on_result:
                on_result(results[-1])
        return results
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=limit_threads) as pool:
        futures = [pool.submit(function, item) for item in items]
        results = []
        for future in futures:
            results.append(future.result())
            if on_result:
                on_result(results[-1])
        return results


def diagnose_run(item: tuple[Spec, int]) -> dict:
    """``diagnose(suite="full")`` on one setup at one seed, as a JSON-able dict: worst verdict, the flagged
    checks with their messages, the top diagnosis cause (None until the Report has one), the trained copy's
    test score and the seconds taken.  An exception becomes ``error`` instead of sinking the whole run."""
    spec, seed = item
    started = time.perf_counter()
    outcome = {
        "setup": spec.name,
        "seed": seed,
        "worst": None,
        "flagged": [],
        "cause": None,
        "score": None,
        "seconds": 0.0,
        "error": "",
    }
    try:
        outcome.update(_diagnose(spec, seed))
    except Exception as error:  # noqa: BLE001 - one broken run must not cost the others their results
        outcome["error"] = f"{type(error).__name__}: {error}"[:500]
        outcome["traceback"] = traceback.format_exc()[-2000:]
    outcome["seconds"] = round(time.perf_counter() - started, 2)
    return outcome


def _diagnose(spec: Spec, seed: int) -> dict:
    from bench.healthy_corpus.build import materialise, score_model
    from runner.diagnostics import DiagnosticOptions, diagnose

    model, data, fit_kwargs = materialise(spec, seed)
    keeper = _model_keeper()
    fit_kwargs = {**fit_kwargs, "callbacks": [keeper]}
    report = diagnose(model, data, suite="full", options=DiagnosticOptions(seed=seed), fit_kwargs=fit_kwargs)
    diagnosis = getattr(report, "diagnosis", None)
    return {
        "worst": report.worst,
        "flagged": [{"check": r.check, "verdict": r.verdict, "message": r.message} for r in report.problems()],
        "cause": getattr(diagnosis, "cause", None) if diagnosis is not None else None,
        "score": score_model(keeper.kept, data, spec) if keeper.kept is not None else None,
    }


def _model_keeper():
    """A callback that remembers the model diagnose trained (diagnose trains a copy and returns only the
    report); its test score is what tells a hurt mutant from a harmless one."""
    import keras

    class ModelKeeper(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.kept = self.model

    keeper = ModelKeeper()
    keeper.kept = None
    return keeper


def plain_run(item: tuple[Spec, int]) -> dict:
    """A plain ``fit`` without diagnostics: the healthy score a mutant is compared with."""
    spec, seed = item
    started = time.perf_counter()
    try:
        from bench.healthy_corpus.build import materialise, score_model

        model, data, fit_kwargs = materialise(spec, seed)
        model.fit(data.x_train, data.y_train, verbose=0, **fit_kwargs)
        score, error = score_model(model, data, spec), ""
    except Exception as exc:  # noqa: BLE001
        score, error = None, f"{type(exc).__name__}: {exc}"[:500]
    return {
        "setup": spec.name,
        "seed": seed,
        "score": score,
        "error": error,
        "seconds": round(time.perf_counter() - started, 2),
    }
