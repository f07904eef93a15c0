"""The sweep report's page and plots (runner/sweep/report.py reads the data): the trial table as HTML, the
objective per trial, the objective against each swept parameter and the parameter importances.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from runner.sweep.report import Objective

STATE_COLOURS = {
    "FINISHED": "tab:blue",
    "PRUNED": "tab:orange",
    "FAILED": "tab:red",
    "KILLED": "tab:gray",
    "RUNNING": "tab:gray",
}


# ---------------------------------------------------------------- table page


def write_html(table: pd.DataFrame, best: pd.Series | None, objective: Objective, title: str, path: Path) -> None:
    """A plain, readable HTML table: the best trial highlighted, failed and pruned trials greyed."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.columns)
    body = []
    for index, row in table.iterrows():
        css = "best" if best is not None and index == best.name else row["state"].lower()
        cells = "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row)
        body.append(f'<tr class="{css}">{cells}</tr>')
    summary = f"objective: {objective.metric} ({objective.direction}); {len(table)} trials; " + ", ".join(
        f"{state.lower()} {n}" for state, n in table["state"].value_counts().items()
    )
    if best is not None:
        summary += f"; best: trial {best['trial']} with {objective.metric} = {best['objective']:.6g}"
    path.write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }}
tr.best td {{ background: #d8f5d0; font-weight: bold; }}
tr.failed td, tr.killed td {{ color: #a33; }}
tr.pruned td {{ color: #888; }}
</style></head><body>
<h2>{html.escape(title)}</h2>
<p>{html.escape(summary)}</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
""")


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value)


# ---------------------------------------------------------------- plots


def numeric_values(column: pd.Series) -> pd.Series | None:
    """The column as floats when every present value is a number, else None (a categorical parameter)."""
    try:
        return column.map(lambda value: math.nan if value in (None, "None") else float(value))
    except (TypeError, ValueError):
        return None


def plot_history(table: pd.DataFrame, objective: Objective, path: Path) -> None:
    """Objective per trial in order, with the running best of the finished trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for state, group in table.groupby("state"):
        shown = group[group["objective"].map(math.isfinite)]
        ax.scatter(shown["trial"], shown["objective"], label=state.lower(), color=STATE_COLOURS.get(state, "k"))
    best, xs, ys = math.nan, [], []
    for _, row in table.iterrows():
        improves = math.isnan(best) or objective.better(row["objective"], best)
        if row["state"] == "FINISHED" and math.isfinite(row["objective"]) and improves:
            best = row["objective"]
        if not math.isnan(best):
            xs.append(row["trial"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:green", label="running best")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(objective.metric)
    ax.set_title(f"{objective.metric} per trial ({objective.direction})")
    ax.legend()
    _save(fig, path)


def plot_param(table: pd.DataFrame, column: str, objective: Objective, path: Path) -> None:
    """Objective against one swept parameter: a scatter for numbers, a strip plot for categories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = table[table["objective"].map(math.isfinite)]
    fig, ax = plt.subplots(figsize=(6, 4))
    numbers = numeric_values(shown[column])
    if numbers is not None and numbers.notna().any():
        colours = [STATE_COLOURS.get(state, "k") for state in shown["state"]]
        ax.scatter(numbers, shown["objective"], c=colours)
        positive = numbers[numbers > 0]
        if len(positive) == len(numbers.dropna()) and positive.max() / positive.min() >= 100:
            ax.set_xscale("log")  # learning rates and the like are swept on a log scale
    else:
        labels = sorted(shown[column].astype(str).unique())
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(shown))
        positions = [labels.index(str(value)) for value in shown[column]] + jitter
        ax.scatter(positions, shown["objective"], c=[STATE_COLOURS.get(s, "k") for s in shown["state"]])
        ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_xlabel(column)
    ax.set_ylabel(objective.metric)
    ax.set_title(f"{objective.metric} vs {column}")
    _save(fig, path)


def plot_importance(importances: dict[str, float], n_trials: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(6, 1 + 0.5 * len(names)))
    ax.barh(names, [importances[name] for name in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title(f"parameter importance over {n_trials} finished trials")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def safe_name(column: str) -> str:
    return "".join(char if char.isalnum() or char in "._-" else "_" for char in column)
