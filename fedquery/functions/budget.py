"""A memory budget shared by the blob I/O pool: big reads and decodes wait for room.

Each job that reads a file whole or decodes one (a thumbnail's pixels, a point cloud) reserves
what it will hold before it starts and gives it back when done, so sixteen threads never hold
sixteen big files at once. A job bigger than the whole budget runs alone. One reservation per
job, taken before the job's first read, so jobs never wait on each other in a cycle.

When a big reservation ends, the C heap is trimmed (glibc's ``malloc_trim``): decoders free
their buffers into the arena of whichever pool thread ran them, and glibc keeps freed space of
that size in the arena, so without a trim the process keeps the peak of every thread's decodes
(measured: 16 thumbnails of a 9400 x 9400 PNG, two at a time, held 2.1 GiB; 1.2 GiB trimmed).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Iterator

TRIM_AFTER = 32 << 20  # reservations from this size on give their memory back to the system


class MemoryBudget:
    """``total`` bytes, handed out by ``reserve`` and given back when its block ends."""

    def __init__(self, total: int) -> None:
        self.total, self.free = total, total
        self._room = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` (at most the whole budget) for the block, waiting until free."""
        nbytes = max(0, min(int(nbytes), self.total))
        with self._room:
            self._room.wait_for(lambda: self.free >= nbytes)
            self.free -= nbytes
        try:
            yield
        finally:
            if nbytes >= TRIM_AFTER:
                release_memory()
            with self._room:
                self.free += nbytes
                self._room.notify_all()


def release_memory() -> None:
    """Give the C heap's free memory back to the system (glibc only; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None
