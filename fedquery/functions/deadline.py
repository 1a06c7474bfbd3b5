"""A deadline for one file's read, kept in Python whatever the read is stuck in.

A read blocked inside pyarrow (an S3 response trickling a few bytes a second never trips the
client's idle timeout) cannot be interrupted from Python. So each read runs on a thread of its
own and its caller waits at most ``timeout`` seconds for it: past that the caller gets
``ReadTimedOut`` and goes on, and the read is abandoned: told to stop at its next request
(``cancel``), its thread left to end by itself. Abandoned reads are counted; while
``MOST_ABANDONED`` of them are still stuck, new reads are refused at once (``TooManyStuck``)
instead of piling up threads, so a source that hangs fails its queries quickly and never
exhausts a pool that later queries need. Threads are started per read (a daemon each: a stuck
one never holds up the interpreter's exit); the caller's own pool is never blocked for longer
than the deadline.

>>> deadlines = Deadlines()
>>> deadlines.run(lambda cancel: 42, timeout=1.0)
42
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

MOST_ABANDONED = 32  # reads past their deadline whose threads may still be running


class ReadTimedOut(TimeoutError):
    """A read took longer than its deadline and was abandoned."""


class TooManyStuck(TimeoutError):
    """Too many earlier reads are still stuck past their deadline to start another."""


class Deadlines:
    """Runs reads on threads of their own, each waited for at most its deadline."""

    def __init__(self, most_abandoned: int | None = None) -> None:
        self.most_abandoned = MOST_ABANDONED if most_abandoned is None else most_abandoned
        self.abandoned = 0
        self._lock = threading.Lock()

    def run(self, read: Callable[[threading.Event], Any], timeout: float) -> Any:
        """``read(cancel)``'s result or exception, if it ends within ``timeout`` seconds;
        else ``ReadTimedOut`` (``cancel`` is set: the read should stop at its next request)."""
        with self._lock:
            if self.abandoned >= self.most_abandoned:
                raise TooManyStuck(f"{self.abandoned} earlier reads are still stuck past their "
                                   "deadline")
        job = _Job(read, self)
        threading.Thread(target=job.run, name="fedquery-blob-read", daemon=True).start()
        if not job.done.wait(timeout):
            with self._lock:
                if not job.done.is_set():
                    job.abandon()
                    raise ReadTimedOut(f"no answer within {timeout:g} s")
        return job.result()

    def _ended(self) -> None:
        with self._lock:
            self.abandoned -= 1


class _Job:
    """One read, its outcome, and whether its caller gave up on it."""

    def __init__(self, read: Callable[[threading.Event], Any], owner: Deadlines) -> None:
        self.read, self.owner = read, owner
        self.cancel, self.done = threading.Event(), threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False

    def run(self) -> None:
        try:
            self.value = self.read(self.cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            self.error = exc
        finally:
            with self.owner._lock:
                self.done.set()
                abandoned = self.abandoned
            if abandoned:
                self.value = self.error = None  # nobody takes them: let the bytes go
                self.owner._ended()

    def abandon(self) -> None:
        """Called under the owner's lock, while the read still runs."""
        self.abandoned = True
        self.owner.abandoned += 1
        self.cancel.set()

    def result(self) -> Any:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.value
