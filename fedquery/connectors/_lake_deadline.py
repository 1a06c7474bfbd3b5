"""Deadlines for the reads of a lake on S3, kept by the Python threads that wait for pyarrow.

pyarrow's S3 client gives up on a response that stays silent (``request_timeout``), never on
one that trickles in: a body sent a few bytes a second is read for as long as it lasts. So
each read (a listing, a HEAD, a footer, the column chunks one scan fetches from one object)
runs in a worker thread of ours, and the thread waiting for it gives it the time its
``ReadLimits`` allow (``read_timeout`` plus its bytes at ``min_read_speed``). Past that the
wait ends with ``TooSlow`` (the query fails) and the read is abandoned: its worker, a daemon
thread, keeps running until pyarrow's read ends, then exits without handing anything on.
Time a worker spends waiting for its consumer is not counted. None of this runs on pyarrow's
own C++ threads, which never call into Python.

An abandoned read still holds threads of pyarrow's I/O pool (one per request in flight; the
pool is the process's, 8 threads by default), which would leave the next queries waiting for
a slow S3 they no longer read from. ``SPARE_IO`` grows the pool by what the abandoned reads
hold, and shrinks it as each ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

__all__ = ["SPARE_IO", "ReadLimits", "TooSlow", "call_within", "each_within"]

CHECK_EVERY = 1.0  # seconds: how often a waiting thread looks at its workers' clocks at most


@dataclass(frozen=True)
class ReadLimits:
    """How long one read (a listing, a HEAD, a footer, the bytes one scan fetches from one
    object) may take in all, retries included: ``read_timeout`` seconds plus the time its
    bytes take at ``min_read_speed`` (bytes per second). A body that trickles in never stays
    silent for ``request_timeout``, so the S3 client alone would wait for it for ever.

    The default ``read_timeout`` is every attempt taking its whole connect and request
    timeouts: ``max_attempts * (connect_timeout + request_timeout)``.
    """

    read_timeout: float
    min_read_speed: float
    explicit: bool = False  # read_timeout was set in the catalog

    def seconds(self, nbytes: int = 0) -> float:
        return self.read_timeout + nbytes / self.min_read_speed

    def describe(self, nbytes: int = 0) -> str:
        """The deadline of a read of ``nbytes`` bytes, with the options that make it."""
        base = f"options.read_timeout ({self.read_timeout:g} s{'' if self.explicit else ' by default'})"
        if not nbytes:
            return base
        return (f"{self.seconds(nbytes):.1f} s ({base} plus {nbytes:,} bytes at "
                f"options.min_read_speed, {self.min_read_speed:,.0f} bytes/s)")


class TooSlow(TimeoutError):
    """A read that outlasted its deadline; ``item`` is what was being read (a path, a
    Footer, a fragment), ``limits`` and ``nbytes`` what made the deadline."""

    def __init__(self, item: Any, limits: ReadLimits, nbytes: int) -> None:
        super().__init__(f"no answer in time: the read took longer than {limits.describe(nbytes)}, "
                         f"S3 sending it too slowly; raise options.read_timeout, or lower "
                         f"options.min_read_speed, for a network this slow")
        self.item, self.limits, self.nbytes = item, limits, nbytes


class SpareIO:
    """pyarrow's I/O thread pool grown by the threads abandoned reads hold while they run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._extra = 0
        self._base: int | None = None

    def hold(self, threads: int) -> None:
        """Abandoned reads hold ``threads`` more I/O threads: add as many to the pool."""
        self._change(threads)

    def release(self, threads: int) -> None:
        """Abandoned reads ended: their threads leave the pool again."""
        self._change(-threads)

    @property
    def extra(self) -> int:
        return self._extra

    def _change(self, threads: int) -> None:
        with self._lock:
            current = pa.io_thread_count()
            if self._base is None or current != self._base + self._extra:
                self._base = current - self._extra  # set by someone else meanwhile: keep theirs
            self._extra = max(0, self._extra + threads)
            pa.set_io_thread_count(max(1, self._base + self._extra))


SPARE_IO = SpareIO()


class Stopwatch:
    """The time a worker spent inside reads, not counting its waits for its consumer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent = 0.0
        self._since: float | None = None

    def start(self) -> None:
        with self._lock:
            self._since = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._spent += time.monotonic() - (self._since or time.monotonic())
            self._since = None

    def __enter__(self) -> Stopwatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def elapsed(self) -> float:
        with self._lock:
            running = time.monotonic() - self._since if self._since is not None else 0.0
            return self._spent + running

    @property
    def running(self) -> bool:
        """Whether the worker is inside a read now."""
        return self._since is not None


def late(watches: list[tuple[Stopwatch, float]]) -> int | None:
    """The index of the first clock past its deadline (``(stopwatch, seconds)`` pairs)."""
    return next((i for i, (watch, seconds) in enumerate(watches) if watch.elapsed() > seconds), None)


def next_check(watches: list[tuple[Stopwatch, float]]) -> float:
    """Seconds until a clock could pass its deadline (at most ``CHECK_EVERY``)."""
    left = [seconds - watch.elapsed() for watch, seconds in watches]
    return max(0.01, min([CHECK_EVERY, *left]))


def each_within(call: Callable[[Any], Any], items: list, limits: ReadLimits, *,
                nbytes: Callable[[Any], int] = lambda item: 0, at_once: int = 1) -> list:
    """``call(item)`` for each item, ``at_once`` at a time on daemon threads; the results (or
    the exceptions raised) in order. An item whose read outlasts ``limits.seconds(nbytes(item))``
    raises ``TooSlow`` here at once; the reads still running are abandoned (each holding one
    spare I/O thread until it ends)."""
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    clocks = [(Stopwatch(), limits.seconds(nbytes(item))) for item in items]
    done = [False] * len(items)
    todo = iter(range(len(items)))
    changed = threading.Condition()
    abandoned = threading.Event()
    given_up: set[int] = set()

    def work() -> None:
        while True:
            with changed:  # taken and started under the lock: abandoning sees it running
                index = None if abandoned.is_set() else next(todo, None)
                if index is None:
                    return
                clocks[index][0].start()
            try:
                value: Any = call(items[index])
            except BaseException as exc:  # handed to the waiting thread
                value = exc
            with changed:
                clocks[index][0].stop()
                results[index], done[index] = value, True
                if index in given_up:
                    SPARE_IO.release(1)
                changed.notify_all()

    for _ in range(min(at_once, len(items))):
        threading.Thread(target=work, name="fedquery-lake-read", daemon=True).start()
    with changed:
        while not all(done):
            running = [i for i, finished in enumerate(done) if not finished]
            if (index := late([clocks[i] for i in running])) is not None:
                abandoned.set()
                given_up.update(i for i in running if clocks[i][0].running)
                SPARE_IO.hold(len(given_up))
                item = items[running[index]]
                raise TooSlow(item, limits, nbytes(item))
            changed.wait(next_check([clocks[i] for i in running]))
    return results


def call_within(call: Callable[[], Any], limits: ReadLimits, nbytes: int = 0) -> Any:
    """``call()`` on a daemon thread, waited for at most ``limits.seconds(nbytes)``; what it
    returns or raises, or ``TooSlow``."""
    (result,) = each_within(lambda _: call(), [None], limits, nbytes=lambda _: nbytes)
    if isinstance(result, BaseException):
        raise result
    return result
