"""The report of a finished sweep, built from its child runs in MLflow: trial table, plots, best config.

Works the same for grid sweeps and Optuna searches: everything is read back from the child runs (tag
``mlflow.parentRunId``), and parameter importance comes from an in-memory Optuna study rebuilt from the table.
This module is the data side (the children, the trial table, fANOVA, the best config); the HTML page and the
plots are drawn by runner/sweep/report_page.py.  TensorFlow-free; pandas, matplotlib and Optuna are imported
only when a report is written (Hydra loads the sweep callback, and so this module, for every command).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from runner.config.objective import Objective  # noqa: F401 - the sweep's objective, importable from here
from runner.sweep.report_page import (  # write_html is still imported from here
    numeric_values,
    plot_history,
    plot_importance,
    plot_param,
    safe_name,
    write_html,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("runner")

MIN_TRIALS_FOR_IMPORTANCE = 4  # fANOVA on fewer finished trials says nothing useful
# A run that did not record its group choices: the option is read from its values (its schema follows from it).
RECONSTRUCTED_CHOICES = {"dataset": "name", "model": "architecture", "optimizer": "name"}
FIXED_COLUMNS = ("trial", "run_name", "state", "objective", "duration_s")


@dataclass
class SweepReport:
    table: pd.DataFrame
    objective: Objective
    param_columns: list[str]
    best: pd.Series | None
    files: dict[str, Path] = field(default_factory=dict)  # artifact name -> local file
    diagnoses: list[str] = field(default_factory=list)  # the trials' diagnoses and their parameter ranges

    def count(self, state: str) -> int:
        return int((self.table["state"] == state).sum()) if len(self.table) else 0


# ---------------------------------------------------------------- reading the children


def child_runs(client, experiment_id: str, parent_run_id: str) -> list:
    """Every run whose mlflow.parentRunId is the parent, oldest first."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def run_objective(client, run, objective: Objective) -> float:
    """The objective as the sweep's task function computes it: final value if logged, else at the kept epoch.

    NaN for a failed or killed trial: its last values are no result (and a diverged one would swamp the plots).
    """
    if run_state(run) not in ("FINISHED", "PRUNED"):
        return math.nan
    points = sorted(client.get_metric_history(run.info.run_id, objective.metric), key=lambda point: point.step)
    latest = run.data.metrics
    epochs_run = latest.get("epochs_run")
    if epochs_run is None:  # the run stopped before its final evaluation: only per-epoch values exist
        final, history = {}, [point.value for point in points]
    else:
        final_points = [point.value for point in points if point.step > epochs_run]
        final = {objective.metric: final_points[-1]} if final_points else {}
        history = [point.value for point in points if point.step <= epochs_run]
    if "best_epoch" in latest:
        final["best_epoch"] = latest["best_epoch"]
    if objective.metric not in final and not history:
        if run.info.status == "FINISHED":
            log.warning("run %s finished without logging the objective %r", run.info.run_id, objective.metric)
        return math.nan
    return objective.value(final, {objective.metric: history})


def run_state(run) -> str:
    """MLflow's status, except that a trial stopped by the pruner is PRUNED."""
    if run.data.tags.get("runner.trial_state") == "PRUNED":
        return "PRUNED"
    return run.info.status


def hydra_choices(run) -> dict[str, str]:
    text = run.data.tags.get("runner.hydra_choices")
    return json.loads(text) if text else {}


def trial_number(run, position: int) -> int:
    """Optuna's trial number, else Hydra's job number, else the run's position in the sweep."""
    for tag in ("runner.trial", "runner.job_num"):
        if run.data.tags.get(tag, "").isdigit():
            return int(run.data.tags[tag])
    return position


def swept_value(run, key: str) -> str | None:
    """A swept key's value in one run: a config value (a logged param) or a config-group choice."""
    key = key.lstrip("+~")
    if key in run.data.params:
        return run.data.params[key]
    return hydra_choices(run).get(key)


def trial_table(client, runs: list, swept_keys: list[str], objective: Objective) -> tuple[pd.DataFrame, list[str]]:
    """One row per child run, ordered by trial number; returns the table and its parameter columns."""
    import pandas as pd

    rows = []
    for position, run in enumerate(runs):
        end = run.info.end_time
        rows.append(
            {
                "trial": trial_number(run, position),
                "run_name": run.info.run_name,
                "state": run_state(run),
                "objective": run_objective(client, run, objective),
                "duration_s": (end - run.info.start_time) / 1000 if end else math.nan,
                **{key.lstrip("+~"): swept_value(run, key) for key in swept_keys},
                "run_id": run.info.run_id,
            }
        )
    table = pd.DataFrame(rows, columns=[*FIXED_COLUMNS, *dict.fromkeys(k.lstrip("+~") for k in swept_keys), "run_id"])
    params = [
        column for column in table.columns if column not in (*FIXED_COLUMNS, "run_id") and table[column].notna().any()
    ]
    if not params:
        params = varying_params(runs)
        for name in params:
            table[name] = [run.data.params.get(name) for run in runs]
    table = table[[*FIXED_COLUMNS, *params, "run_id"]]
    return table.sort_values("trial", kind="stable").reset_index(drop=True), params


def trial_diagnoses(runs: list, table: pd.DataFrame, params: list[str]) -> list[str]:
    """The trials' ``diag.cause`` tags counted, with the parameter ranges that go with each cause."""
    from runner.diagnostics.diagnosis import cause_ranges

    causes = {run.info.run_id: run.data.tags.get("diag.cause") for run in runs}
    trials = [
        {"cause": causes.get(row["run_id"]), "params": {name: row[name] for name in params}}
        for _, row in table.iterrows()
    ]
    return cause_ranges(trials)


def varying_params(runs: list) -> list[str]:
    """Params that differ between runs (what was swept, when the sweep definition does not say)."""
    names = sorted({name for run in runs for name in run.data.params})
    derived = ("trial.", "model.parameters", "model.resolved_loss")
    return [
        name for name in names if not name.startswith(derived) and len({run.data.params.get(name) for run in runs}) > 1
    ]


def best_row(table: pd.DataFrame, objective: Objective) -> pd.Series | None:
    finished = table[(table["state"] == "FINISHED") & table["objective"].map(math.isfinite)]
    if finished.empty:
        return None
    return table.loc[finished.index[objective.best(finished["objective"])]]


def param_importances(table: pd.DataFrame, params: list[str], objective: Objective) -> dict[str, float]:
    """fANOVA importances from an in-memory Optuna study of the finished trials; {} when too few."""
    import optuna

    finished = table[(table["state"] == "FINISHED") & table["objective"].map(math.isfinite)]
    distributions = {name: _distribution(finished[name]) for name in params}
    distributions = {name: dist for name, dist in distributions.items() if dist is not None}
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE or not distributions:
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction=objective.direction)
        for _, row in finished.iterrows():
            values = {name: _param_value(row[name], dist) for name, dist in distributions.items()}
            study.add_trial(
                optuna.trial.create_trial(params=values, distributions=distributions, value=float(row["objective"]))
            )
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _distribution(column: pd.Series):
    """The Optuna distribution a swept column spans, or None when it does not vary."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if column.astype(str).nunique() < 2:
        return None
    numbers = numeric_values(column)
    if numbers is None or numbers.isna().any():
        return CategoricalDistribution(sorted(column.astype(str).unique()))
    if all(float(value).is_integer() for value in numbers):
        return IntDistribution(int(numbers.min()), int(numbers.max()))
    return FloatDistribution(float(numbers.min()), float(numbers.max()))


def _param_value(value, distribution):
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return str(value)
    return int(float(value)) if isinstance(distribution, IntDistribution) else float(value)


# ---------------------------------------------------------------- best config


def best_config_yaml(resolved: dict, choices: dict[str, str], name: str, description: str, header: list[str]) -> str:
    """An experiment file (`# @package _global_`) that reruns a trial: its group choices and every value."""
    body = dict(resolved)
    body["name"] = name
    body["description"] = description
    if isinstance(body.get("trial"), dict):  # a rerun is not a trial of the search
        body["trial"] = {key: None for key in body["trial"]}
    defaults = []
    for group in primary_groups():  # re-selected so the values validate against the same schemas
        choice = choices.get(group)
        if choice is None and group in RECONSTRUCTED_CHOICES and isinstance(resolved.get(group), dict):
            choice = resolved[group].get(RECONSTRUCTED_CHOICES[group])
        if choice is not None:
            defaults.append({f"override /{group}": choice})
    comments = "".join(f"# {line}\n" for line in header)
    return "# @package _global_\n" + comments + yaml.safe_dump({"defaults": defaults, **body}, sort_keys=False)


def primary_groups() -> list[str]:
    """The config groups of conf/config.yaml's defaults list (what an experiment file may override)."""
    from runner.config.paths import CONF_DIR

    defaults = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
    return [group for entry in defaults if isinstance(entry, dict) for group in entry]


def download_config(client, run_id: str) -> dict:
    """The run's resolved config (its config/config.yaml artifact)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    with tempfile.TemporaryDirectory() as folder:
        previous = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
        os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"  # a bar for one small file is noise
        try:
            local = client.download_artifacts(run_id, "config/config.yaml", folder)
        finally:
            if previous is None:
                del os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name]
            else:
                os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = previous
        return yaml.safe_load(Path(local).read_text())


# ---------------------------------------------------------------- the whole report


def build_report(
    client, runs: list, swept_keys: list[str], objective: Objective, title: str, folder: Path
) -> SweepReport:
    """Write trials.csv, trials.html and the plots into ``folder``; return the table and the best trial."""
    folder.mkdir(parents=True, exist_ok=True)
    table, params = trial_table(client, runs, swept_keys, objective)
    report = SweepReport(table=table, objective=objective, param_columns=params, best=best_row(table, objective))
    table.to_csv(folder / "trials.csv", index=False)
    write_html(table, report.best, objective, title, folder / "trials.html")
    report.files = {"trials.csv": folder / "trials.csv", "trials.html": folder / "trials.html"}
    report.diagnoses = trial_diagnoses(runs, table, params)
    if report.diagnoses:
        (folder / "diagnoses.txt").write_text("\n".join(report.diagnoses) + "\n")
        report.files["diagnoses.txt"] = folder / "diagnoses.txt"
    if table.empty:
        return report
    plot_history(table, objective, folder / "objective_history.png")
    report.files["objective_history.png"] = folder / "objective_history.png"
    for column in params:
        name = f"objective_vs_{safe_name(column)}.png"
        plot_param(table, column, objective, folder / name)
        report.files[name] = folder / name
    importances = param_importances(table, params, objective)
    if importances:
        plot_importance(importances, report.count("FINISHED"), folder / "param_importance.png")
        report.files["param_importance.png"] = folder / "param_importance.png"
    return report
