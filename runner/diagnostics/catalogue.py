"""The diagnostics catalogue, generated from the check registry so that the docs cannot drift from the code.

``python -m runner.diagnostics.catalogue [--out FILE]`` prints (or writes) a Markdown page: per stage, each
check with the quantity it measures, its default threshold and the fix it suggests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.diagnostics.registry import checks

STAGE_TITLES = {
    "preflight": "Preflight: the data and the untrained model (suite `quick` and `full`)",
    "monitor": "Monitors: measured during training (suite `full`)",
    "analysis": "Analysis: the trained model (suite `full`)",
    "capacity": "Capacity: can the architecture learn a small synthetic task (called directly)",
}


def markdown() -> str:
    lines = [
        "# Diagnostics catalogue",
        "",
        "Generated from the check registry (`runner/diagnostics/registry.py`) by "
        "`python -m runner.diagnostics.catalogue`; do not edit by hand.",
        "",
        "A check's main threshold can be overridden per run: `'+diagnostics.thresholds={preflight.input_scale: 20}'` "
        "on the command line, or `DiagnosticOptions(thresholds={...})` in Python; `diagnostics.disable` "
        "switches checks or whole stages off.",
        "",
    ]
    for stage, title in STAGE_TITLES.items():
        entries = checks(stage)
        lines += [
            f"## {title}",
            "",
            f"{len(entries)} checks.",
            "",
            "| check | measures | default threshold | suggested fix |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{entry.name}` | {_cell(entry.what)} | {_cell(_threshold(entry.threshold))} | "
            f"{_cell(entry.fix) or '-'} |"
            for entry in entries
        ]
        lines.append("")
    return "\n".join(lines)


def _threshold(value) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the page here (default: print it)")
    args = parser.parse_args(argv)
    text = markdown()
    if args.out is None:
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
