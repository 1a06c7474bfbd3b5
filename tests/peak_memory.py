"""The peak resident memory of this process's own program (``VmHWM``), for child processes.

``getrusage(RUSAGE_SELF).ru_maxrss`` is no measure in a child: Linux carries the parent's
high-water mark across fork and exec, so a child started by a pytest of 1.1 GB reports 1.1 GB
whatever it did itself. ``VmHWM`` belongs to the memory map that exec made.
"""

from __future__ import annotations


def peak_rss_bytes() -> int:
    """The most memory this program has had resident, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")
