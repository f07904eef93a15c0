"""Each job of a sweep: its link to the sweep's parent run, and the progress line it reports when it ends.

``child_link`` reads ``<sweep dir>/parent_run.json`` (written by ``runner.sweep.parent_run.open_sweep``) and
gives ``run_job`` what makes the job's run a child of the parent. ``job_progress`` is the line a grid sweep
prints as each job ends (a search prints its trials' progress from its own loop, runner/sweep/search.py).
"""

import json
import logging
import math
from pathlib import Path

from hydra.core.utils import JobStatus
from omegaconf import DictConfig

from runner.config.schema import RunConfig
from runner.runtime import compat
from runner.runtime.console import best_entry, record_job, trial_line
from runner.sweep.parent_run import PARENT_FILE, ParentRun

log = logging.getLogger("runner")


def child_link(hydra_cfg, spec: RunConfig) -> dict:
    """``run_job`` arguments that make a sweep's job a child of the parent run; {} when there is none."""
    path = Path(hydra_cfg.runtime.cwd) / str(hydra_cfg.sweep.dir) / PARENT_FILE
    if not path.is_file():
        log.warning("%s not found (the sweep-record callback did not run): this job is a standalone run", path)
        return {}
    parent = json.loads(path.read_text())
    if parent["tracking_uri"] != spec.tracking.uri:
        log.warning(
            "this job's tracking.uri %s is not the sweep's %s: it is recorded without its parent run",
            spec.tracking.uri,
            parent["tracking_uri"],
        )
        return {}
    trial = spec.trial.number
    job_num = hydra_cfg.job.num
    choices = {
        group: str(choice)
        for group, choice in hydra_cfg.runtime.choices.items()
        if choice is not None and not group.startswith("hydra/")
    }
    tags = {
        "runner.job_num": str(job_num),
        "runner.hydra_choices": json.dumps(choices),
        "runner.sweep_name": parent["sweep_name"],
    }
    if trial is not None:
        tags["runner.trial"] = str(trial)
    run_name = f"{spec.name}-trial-{trial}" if trial is not None else f"{spec.name}-{job_num}"
    return {"parent_run_id": parent["run_id"], "run_name": run_name, "tags": tags}


def job_progress(parent: ParentRun, config: DictConfig, job_return) -> str:
    """``job 2 (3/4) done: val_loss = 0.31 (optimizer.learning_rate=0.01); best so far: job 0, val_loss = 0.29``.

    The count and the best come from the sweep folder's progress file, which every job appends to: with a
    parallel launcher the jobs end in other processes.
    """
    number = int(config.hydra.job.num)
    value = compat.job_outcome(job_return)  # the objective, or the exception of a failed job
    finished = job_return.status == JobStatus.COMPLETED and isinstance(value, (int, float)) and math.isfinite(value)
    entries = record_job(Path(parent.sweep_dir), {"job": number, "value": float(value) if finished else None})
    swept = {key.lstrip("+~") for key in parent.swept_keys}
    params = dict(
        line.lstrip("+~").split("=", 1)
        for line in job_return.overrides or []
        if "=" in line and line.split("=", 1)[0].lstrip("+~") in swept
    )
    reason = (
        ""
        if finished
        else (f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else f"the objective is {value!r}")
    )
    return trial_line(
        "job",
        len(entries),
        parent.grid_jobs,
        number,
        "COMPLETE" if finished else "FAIL",
        parent.objective.metric,
        value if finished else None,
        params,
        best_entry(entries, parent.objective.best),
        reason=reason,
    )
