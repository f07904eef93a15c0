"""Whether the process that started a run still lives: a run left RUNNING by a process that died without closing
it (SIGKILL, the OOM killer, a lost machine) must be told apart from one that a live process is still writing,
such as a sweep's trial in a parallel worker.

A process is named by its host, its pid and a start token: the machine's boot id, the pid namespace and the
process's start time in clock ticks after boot (Linux's ``/proc``). The token guards against a pid that was freed
and given to another process since; the namespace against a container that shares the host name but not the pids.
"""

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    host: str
    pid: int
    start: str  # "<boot id>/<pid namespace>/<start ticks>"; "" where /proc is missing

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid}"


def current() -> Process:
    """This process."""
    return Process(socket.gethostname(), os.getpid(), _start_token(os.getpid()))


def is_alive(owner: Process) -> bool | None:
    """True while ``owner`` runs; False when it is known to have died: a process of this machine (same host, boot
    and pid namespace) whose pid is free, a zombie, or reused by a later process, or one of an earlier boot of this
    machine. None when this process cannot see it (another machine or container)."""
    here = current()
    if owner.host != here.host:
        return None
    boot, namespace, ticks = _parts(owner.start)
    our_boot, our_namespace, _ = _parts(here.start)
    if boot and our_boot and boot != our_boot:  # the machine restarted: every process of then has ended
        return False
    if namespace != our_namespace:
        return None
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists, though /proc may hide it (hidepid)
        return _same_process(owner.pid, ticks, unseen=True)
    # Without /proc, os.kill's answer is all there is; with it, a pid it does not show has just ended.
    return _same_process(owner.pid, ticks, unseen=not our_boot)


def _same_process(pid: int, ticks: str, unseen: bool) -> bool:
    """The live pid ``pid`` is still the process that started at ``ticks`` (and is not a zombie); ``unseen``
    when /proc does not show it."""
    stat = _stat(pid)
    if stat is None:
        return unseen
    state, started = stat[0], stat[19]
    return state != "Z" and (not ticks or started == ticks)


def _start_token(pid: int) -> str:
    stat = _stat(pid)
    try:
        boot = (PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(PROC / str(pid) / "ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}/{stat[19]}" if stat else ""


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, start time at index 19)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parts(token: str) -> tuple[str, str, str]:
    parts = token.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", "")
