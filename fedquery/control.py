"""What stops a running query, from any thread: a cancel, a connection's interrupt or close,
its timeout.

Each query gets a ``QueryControl``. Whoever stops it calls ``stop(reason)``: the reason is
kept (the error the query's caller gets) and every registered ``on_stop`` callback runs (they
wake reads that wait for their source and interrupt DuckDB). The caller waiting for the query
asks ``reason()`` between its short waits, so it raises within a fraction of a second whatever
the worker is doing. A timeout is a timer that stops the query with ``QueryTimeout``.

>>> control = QueryControl(timeout=5.0)   # doctest: +SKIP
>>> control.on_stop(cursor.interrupt)     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator

from fedquery.errors import FedQueryError, QueryCancelled, QueryTimeout

CLOSED = "the connection was closed while the query ran"
_CURRENT: contextvars.ContextVar[QueryControl | None] = contextvars.ContextVar(
    "fedquery_query_control", default=None)


class QueryControl:
    """The stop switch of one query."""

    def __init__(self, timeout: float | None = None,
                 closing: threading.Event | None = None) -> None:
        self.timeout = timeout
        self._closing = closing
        self._reason: FedQueryError | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._unlink: Callable[[], None] | None = None  # a child's link to its parent
        if timeout is not None:
            self._timer = threading.Timer(timeout, self._timed_out)
            self._timer.daemon = True
            self._timer.start()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the query is stopped (at once if it already is)."""
        with self._lock:
            if self._reason is None:
                self._callbacks.append(callback)
                return
        _quietly(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        """No longer run ``callback`` on a stop."""
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """This control is the running query's in the block (``stopping`` finds it)."""
        token = _CURRENT.set(self)
        try:
            yield
        finally:
            _CURRENT.reset(token)

    def stop(self, reason: FedQueryError) -> None:
        """Stop the query for ``reason`` (the first reason wins); runs the callbacks."""
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _quietly(callback)

    def reason(self) -> FedQueryError | None:
        """Why the query was stopped, or None while it may go on."""
        if self._reason is None and self._closing is not None and self._closing.is_set():
            self.stop(QueryCancelled(CLOSED))
        return self._reason

    def child(self) -> QueryControl:
        """The control of a plan run as part of this query (a key set or query vector computed
        to fetch a fragment, on the query's worker): stopped when this one is, for the same
        reason; its end leaves this one running."""
        child = QueryControl(closing=self._closing)

        def link() -> None:
            child.stop(self._reason or QueryCancelled("the query was stopped"))

        self.on_stop(link)
        child._unlink = functools.partial(self.forget, link)
        return child

    def done(self) -> None:
        """The query ended: its timer is no longer needed."""
        if self._unlink is not None:
            self._unlink()
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._callbacks = []

    def _timed_out(self) -> None:
        self.stop(QueryTimeout(f"the query ran longer than its timeout of {self.timeout:g} s "
                               "and was stopped; raise timeout= (or settings.timeout in the "
                               "catalog), or ask for less"))


def current() -> QueryControl | None:
    """The control of the query running in this thread (on its worker), if any."""
    return _CURRENT.get()


@contextlib.contextmanager
def stopping(callback: Callable[[], None]) -> Iterator[None]:
    """While the block waits (a connector starting a statement, before it has a stream to
    cancel), a stop of the query running in this thread calls ``callback``."""
    control = _CURRENT.get()
    if control is None:
        yield
        return
    control.on_stop(callback)
    try:
        yield
    finally:
        control.forget(callback)


def _quietly(callback: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # a query that already ended has nothing to stop
        callback()
