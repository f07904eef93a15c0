"""Helpers shared by the bench scripts (standard library only: importing this must not import TensorFlow)."""

import os
import time
from pathlib import Path


def boot_time() -> float:
    """When the machine booted, as a time.time() value, to the centisecond that /proc/uptime gives."""
    return time.time() - float(Path("/proc/uptime").read_text().split()[0])


def process_start(pid: int | str = "self") -> float:
    """When a process started, as a time.time() value (Linux)."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return boot_time() + int(after_name[19]) / os.sysconf("SC_CLK_TCK")
