"""A memory budget shared by the blob I/O pool: big reads and decodes wait for room.

Each job that reads a file whole or decodes one (a thumbnail's pixels, a point cloud) reserves
what it will hold before it starts and gives it back when done, so sixteen threads never hold
sixteen big files at once. A job bigger than the whole budget runs alone. One reservation per
job, taken before the job's first read, so jobs never wait on each other in a cycle.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


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
            with self._room:
                self.free += nbytes
                self._room.notify_all()
