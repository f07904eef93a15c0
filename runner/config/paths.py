"""Where the configuration lives: the conf/ folder and its primary groups (one owner for both)."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("dataset", "model", "optimizer", "trainer", "tracking", "diagnostics")  # what `runner --help` lists first
