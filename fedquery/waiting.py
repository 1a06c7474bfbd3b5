"""Run a query's work on a thread of its own, so that the caller can always stop waiting.

DuckDB runs a query on its own threads, and those may wait for a source inside a fragment's
stream (a silent PostgreSQL server, an S3 object arriving slowly). A caller waiting inside
DuckDB cannot take Ctrl-C until they return. So the work runs on a worker thread and the
caller only waits for it, in Python, where a KeyboardInterrupt arrives at once: the query is
then interrupted (``on_interrupt``) and the caller gets ``Interrupted`` (a ``QueryCancelled``
that is also a KeyboardInterrupt); the worker finishes in the background and cleans up after
itself. Between its short waits the caller also asks the query's ``QueryControl`` whether it
was stopped (cancelled, timed out, its connection closed) and raises its reason; and past a
second it shows a progress bar (``fedquery.progress``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from fedquery.errors import Interrupted, QueryCancelled

if TYPE_CHECKING:
    from fedquery.control import QueryControl

T = TypeVar("T")
POLL_SECONDS = 0.1
WORKER = "fedquery-query"


def off_thread(work: Callable[[], T], on_interrupt: Callable[[], None],
               cleanup: Callable[[], None] | None = None,
               control: QueryControl | None = None,
               progress: Callable[[], float] | None = None) -> T:
    """``work()``'s value (or exception), computed on a worker thread; ``cleanup`` runs on
    the worker when ``work`` has ended, also after the caller gave up waiting. A ``control``
    stopped (cancelled, timed out, the connection closing) ends the wait with its reason;
    ``progress`` (percent done, or negative when unknown) feeds a progress bar past a second.
    Called on a worker already (a plan run to fetch another's fragment), ``work`` runs right
    there."""
    if threading.current_thread().name == WORKER:  # a plan run for a fragment: already off
        try:
            return work()
        finally:
            if cleanup is not None:
                cleanup()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def job() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller as it is
            outcome["error"] = exc
        finally:
            try:
                if cleanup is not None:
                    cleanup()
            finally:
                done.set()

    _WORKERS.submit(job)
    bar = None
    try:
        while not done.wait(POLL_SECONDS):
            stopped = control.reason() if control is not None else None
            if stopped is not None:
                raise stopped
            if progress is not None:
                bar = bar or _progress_bar()
                bar.update(progress)
    except KeyboardInterrupt as exc:
        on_interrupt()
        raise _interrupted(exc, control) from None
    except QueryCancelled:
        on_interrupt()
        raise
    finally:
        if bar is not None:
            bar.close(done.is_set() and "error" not in outcome)
    if "error" in outcome:
        _raise_failure(outcome["error"], control)  # type: ignore[arg-type]
    return outcome["value"]  # type: ignore[return-value]


def _raise_failure(error: BaseException, control: QueryControl | None) -> None:
    """Raise what the worker failed with; a failure the stop caused (a cancelled read, an
    interrupted DuckDB) as the stop's reason, which says why."""
    stopped = control.reason() if control is not None else None
    if stopped is not None and not isinstance(error, QueryCancelled):
        raise stopped from error
    raise error


def _interrupted(exc: KeyboardInterrupt, control: QueryControl | None) -> BaseException:
    """Ctrl-C as the query's ``Interrupted`` (kept as the control's reason)."""
    if isinstance(exc, Interrupted):
        return exc
    error = Interrupted("the query was interrupted (Ctrl-C); the connection can run the next one")
    if control is not None:
        control.stop(error)
    return error


def _progress_bar():
    from fedquery.progress import ProgressBar

    return ProgressBar()


class _Workers:
    """Threads kept between queries: a job goes to an idle one, or to a new one when all are
    busy (a query stuck in its source never holds up another). Reusing a thread saves its
    start and keeps DuckDB's per-thread caches warm (a query run on a fresh thread each time
    took ~0.5 ms longer, TPC-H Q6 at SF 0.1). An idle thread ends after ``IDLE_SECONDS``."""

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        import queue

        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._serve, name=WORKER, daemon=True).start()
        self._jobs.put(job)

    def _serve(self) -> None:
        import queue

        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # no job was promised to this thread: it may end
                        self._idle -= 1
                        return
                continue  # a job was promised to an idle thread; it is on its way
            job()
            with self._lock:
                self._idle += 1


_WORKERS = _Workers()
os.register_at_fork(after_in_child=lambda: globals().update(_WORKERS=_Workers()))


class Producer:
    """Batches pulled from ``source`` by a worker thread into a small queue; the consumer
    waits for each in Python, so Ctrl-C stops it at once. A consumer that stops early (or is
    interrupted) interrupts the query. The worker owns the source: it alone closes it
    (``close``), when it stops."""

    def __init__(self, source, on_interrupt: Callable[[], None], close: Callable[[], None],
                 depth: int = 2, control: QueryControl | None = None,
                 progress: Callable[[], float] | None = None) -> None:
        import queue

        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._control, self._progress = control, progress
        self._on_interrupt, self._close = on_interrupt, close
        threading.Thread(target=self._pull, args=(source,), name=WORKER, daemon=True).start()

    def _pull(self, source) -> None:
        try:
            for item in source:
                if not self._put("batch", item):
                    return
            self._put("end", None)
        except BaseException as exc:  # handed to the consumer as it is
            self._put("error", exc)
        finally:
            self._close()

    def _put(self, kind: str, item) -> bool:
        """Hand one item over; False once the consumer has gone."""
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put((kind, item), timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        import queue

        finished, bar = False, None
        try:
            while True:
                try:
                    kind, item = self._queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    stopped = self._control.reason() if self._control is not None else None
                    if stopped is not None:
                        raise stopped from None
                    if self._progress is not None:  # waiting for the next batch
                        bar = bar or _progress_bar()
                        bar.update(self._progress)
                    continue
                if kind == "batch":
                    yield item
                    continue
                finished = True
                if kind == "error":
                    _raise_failure(item, self._control)
                return
        except KeyboardInterrupt as exc:
            raise _interrupted(exc, self._control) from None
        finally:
            if bar is not None:
                bar.close(finished)
            self._stop.set()
            if not finished:  # Ctrl-C, or the consumer stopped reading: stop the query too
                self._on_interrupt()

