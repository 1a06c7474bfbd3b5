"""What the processes of this machine have done, as the kernel counts it (``/proc``; Linux).

``usage(pid)`` is a process's bytes read (``rchar``: every ``read``/``pread`` of files and
sockets) and CPU seconds; ``node_processes(raylet_socket)`` the processes of one Ray node on
this machine: its raylet (found by the socket Ray names in ``ray.nodes()``) and every process
it started (the node's workers, whatever they renamed themselves to). ``Counters`` snapshots a
set of processes so a test can say how much each group read and computed meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    read: int  # bytes
    cpu: float  # seconds, user + system, all threads

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.read + other.read, self.cpu + other.cpu)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.read - other.read, self.cpu - other.cpu)


ZERO = Usage(0, 0.0)


def usage(pid: int) -> Usage | None:
    """The process's reads and CPU time so far (None: it is gone or not ours to read)."""
    try:
        fields = dict(line.split(":", 1) for line in (PROC / str(pid) / "io").read_text().splitlines())
        stat = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return Usage(int(fields["rchar"]), (int(stat[11]) + int(stat[12])) / ticks)


def _table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process /proc shows."""
    table = {}
    for entry in PROC.glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            table[int(entry.name)] = (parent, (entry / "cmdline").read_bytes())
    return table


def node_processes(raylet_socket: str) -> set[int]:
    """The raylet whose command line names ``raylet_socket`` and all its descendants."""
    table = _table()
    found = {pid for pid, (_, cmdline) in table.items()
             if raylet_socket.encode() in cmdline and b"raylet" in cmdline}
    frontier = list(found)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return found


class Counters:
    """Usage of groups of processes between ``start()`` and ``stop()``: a group is a function
    giving its pids at that moment; a process started meanwhile counts from zero, one that
    ended meanwhile is not counted."""

    def __init__(self, groups: dict[str, Callable[[], set[int]]]) -> None:
        self.groups = groups
        self._before: dict[int, Usage] = {}

    def start(self) -> None:
        self._before = {pid: now for group in self.groups.values() for pid in group()
                        if (now := usage(pid)) is not None}

    def stop(self) -> dict[str, Usage]:
        spent = {}
        for name, group in self.groups.items():
            total = ZERO
            for pid in group():
                now = usage(pid)
                if now is not None:
                    total = total + (now - self._before.get(pid, ZERO))
            spent[name] = total
        return spent
