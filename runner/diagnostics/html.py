"""report.html: one self-contained page (inline CSS, plots as base64 PNG) that the MLflow artifact viewer shows.

A verdict table first (worst first, coloured), then each check's plots, then the plots not tied to one check.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

from runner.diagnostics.result import SEVERITY, CheckResult

if TYPE_CHECKING:  # the page reads a report; report.py imports this module to write it
    from runner.diagnostics.report import Report

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}
COLOURS = {"PASS": "#d9f2d9", "WARN": "#fff1c2", "FAIL": "#f8d0d0", "SKIP": "#e8e8e8"}
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.verdict { font-weight: bold; text-align: center; }
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 640px; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
div.diagnosis { border: 2px solid #999; padding: 0 1em; margin-bottom: 1em; }
"""


def render(report: Report, plots_dir: Path | None = None, title: str = "Diagnostics") -> str:
    """The page as a string; plot files are read from ``plots_dir`` (missing ones are listed, not fatal)."""
    ordered = sorted(report.results, key=lambda result: (-SEVERITY[result.verdict], result.check))
    counts = {verdict: sum(result.verdict == verdict for result in report.results) for verdict in COLOURS}
    summary = ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_esc(title)}: worst verdict {_badge(report.worst)}</h1>",
        f"<p>{len(report.results)} checks: {_esc(summary) or 'none run'}.</p>",
        *_diagnosis_section(report),
        _verdict_table(ordered),
    ]
    parts += _plot_sections(ordered, report.plots, plots_dir)
    parts.append("</body></html>")
    return "\n".join(parts)


def write(report: Report, path: Path, plots_dir: Path | None = None, title: str = "Diagnostics") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report, plots_dir if plots_dir is not None else path.parent, title), encoding="utf-8")
    return path


def _diagnosis_section(report: Report) -> list[str]:
    """The ranked cause on top: summary, its one fix, the checks behind it, the flagged checks it explains
    (without their own fixes), then the second cause."""
    if not report.results:
        return []
    diagnosis = report.diagnosis
    parts = ["<div class='diagnosis'>"] + _cause_block("Diagnosis", diagnosis)
    if diagnosis.second is not None:
        parts += _cause_block("Second cause", diagnosis.second)
    return [*parts, "</div>"]


def _cause_block(title: str, diagnosis) -> list[str]:
    parts = [
        f"<h2>{_esc(title)}: {_esc(diagnosis.cause)} {_badge(diagnosis.verdict)}</h2>",
        f"<p>{_esc(diagnosis.summary)}</p>",
        f"<p><b>Fix:</b> {_esc(diagnosis.fix)}</p>",
    ]
    if diagnosis.evidence:
        parts.append("<p>Evidence:</p><ul>")
        parts += [
            f"<li>{_badge(row['verdict'])} <a href='#{_anchor(row['check'])}-row'>{_esc(row['check'])}</a>: "
            f"{_esc(row['message'])}</li>"
            for row in diagnosis.evidence
        ]
        parts.append("</ul>")
    if diagnosis.consequences:
        parts.append("<p>Explained by this cause (their own fixes do not apply):</p><ul>")
        parts += [f"<li><a href='#{_anchor(name)}-row'>{_esc(name)}</a></li>" for name in diagnosis.consequences]
        parts.append("</ul>")
    return parts


def _verdict_table(results: list[CheckResult]) -> str:
    rows = [
        (
            "<table><tr><th>check</th><th>verdict</th><th>value</th><th>threshold</th><th>message</th>"
            "<th>suggested fix</th><th>seconds</th></tr>"
        )
    ]
    for result in results:
        rows.append(
            f"<tr id='{_anchor(result.check)}-row'><td><a href='#{_anchor(result.check)}'>{_esc(result.check)}</a></td>"
            f"<td class='verdict' style='background:{COLOURS[result.verdict]}'>{result.verdict}</td>"
            f"<td>{_number(result.value)}</td><td>{_esc(_number(result.threshold))}</td>"
            f"<td>{_esc(result.message)}</td><td>{_esc(result.fix)}</td><td>{result.seconds:.2f}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _plot_sections(results: list[CheckResult], loose_plots: list[str], plots_dir: Path | None) -> list[str]:
    parts = []
    for result in results:
        if result.plots:
            parts.append(f"<h2 id='{_anchor(result.check)}'>{_esc(result.check)} {_badge(result.verdict)}</h2>")
            parts += [_figure(name, plots_dir) for name in result.plots]
    if loose_plots:
        parts.append("<h2>Other plots</h2>")
        parts += [_figure(name, plots_dir) for name in loose_plots]
    return parts


def _figure(name: str, plots_dir: Path | None) -> str:
    """An image inline (base64); any other file (a table such as confident_errors.csv) as a relative link,
    since a browser cannot show it as an <img>."""
    path = Path(plots_dir) / name if plots_dir is not None else Path(name)
    if not path.is_file():
        return f"<p>plot {_esc(name)} was not found.</p>"
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        return f"<p>file: <a href='{_esc(name)}'>{_esc(name)}</a></p>"
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{_esc(name)}' src='data:{mime};base64,{encoded}'>"
        f"<figcaption>{_esc(name)}</figcaption></figure>"
    )


def _badge(verdict: str) -> str:
    return f"<span style='background:{COLOURS.get(verdict, '#fff')};padding:0 6px'>{_esc(verdict)}</span>"


def _number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _anchor(check: str) -> str:
    return "check-" + check.replace(".", "-")


def _esc(text) -> str:
    return html.escape(str(text), quote=True)
