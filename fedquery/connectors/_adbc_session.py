"""Sessions with one database through an ADBC driver: a connection that only its own thread
touches, driver calls waited on with a deadline, and a small pool that drops every idle session
once one is found dead. Shared by the PostgreSQL connector and ``kind: adbc``.

A driver's read may block without a timeout (libpq's does; so may a warehouse's HTTP client):
a server or network path that goes silent mid-result would block the caller forever. So each
session has a worker thread that alone calls the driver; callers hand it work and wait at most a
deadline. A call that misses it abandons the session: a cancel is sent (``adbc_cancel``, made to
be called from another thread), the caller gets ``SessionTimeout``, and the connection is closed
by its thread once the stuck call returns. An abandoned session is never reused.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any


class SessionTimeout(TimeoutError):
    """A driver call got no answer within its deadline; the session was abandoned."""

    def __init__(self, seconds: float, setting: str) -> None:
        super().__init__(f"no answer from the server for {seconds:g} s (the source's {setting})")
        self.seconds, self.setting = seconds, setting


class Cancelled(Exception):
    """The session was given up on request (an interrupt) while its caller waited."""

    def __init__(self) -> None:
        super().__init__("the read was cancelled (the query was interrupted); the statement "
                         "was cancelled on the server")


class _Call:
    """One unit of work for a session's thread, and where its outcome lands (first one wins:
    the thread's, or a cancellation's)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn, self.done = fn, threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            if self.done.is_set():
                return
            self.result, self.error = result, error
            self.done.set()


class Session:
    """One PostgreSQL connection, driven by its own thread.

    ``call(fn, timeout)`` runs ``fn(connection)`` there and waits at most ``timeout`` seconds;
    ``submit(fn)`` queues work without waiting (it runs after every earlier call). The
    connection is made by ``open`` on the same thread, under the same deadline. ``cancel()``,
    from any thread, ends the wait of the caller at once.
    """

    def __init__(self, name: str, prefix: str = "pg") -> None:
        self.conn: Any = None
        self.lost = False  # the connection failed, or a call was abandoned: never reuse
        self.handles: list = []  # cursors and readers that outlive one call (thread-only)
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closing = self._abandoned = self._cancelled = False
        self._waiting: _Call | None = None  # the call a caller is waiting for
        self._prefix = prefix
        self._thread = threading.Thread(target=self._serve, name=f"fedquery-{prefix}-{name}", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, name: str, connect: Callable[[], Any], timeout: float,
             prefix: str = "pg") -> Session:
        """A new session whose connection ``connect()`` makes, within ``timeout`` seconds
        (``prefix`` names its thread: ``fedquery-<prefix>-<source>``)."""
        session = cls(name, prefix)

        def make(_: Any) -> None:
            session.conn = connect()

        try:
            session.call(make, timeout, "connect_timeout + read_timeout")
        except BaseException:
            session.close()
            raise
        return session

    def call(self, fn: Callable[[Any], Any], timeout: float, setting: str = "read_timeout") -> Any:
        """``fn(connection)`` on the session's thread; its result, or its exception re-raised.

        Past ``timeout`` seconds the session is abandoned and ``SessionTimeout`` raised; so it
        is when the wait itself is interrupted (Ctrl-C): the statement is cancelled. A session
        given up by ``cancel`` raises ``Cancelled``.
        """
        work = _Call(fn)
        with self._lock:
            if self._cancelled:
                raise Cancelled()
            self._waiting = work
        self._calls.put(work)
        try:
            done = work.done.wait(timeout)
        except BaseException:
            self.abandon()
            raise
        finally:
            with self._lock:
                self._waiting = None
        if not done:
            self.abandon()
            raise SessionTimeout(timeout, setting)
        if work.error is not None:
            raise work.error
        return work.result

    def submit(self, fn: Callable[[Any], Any]) -> None:
        """Run ``fn(connection)`` on the session's thread after the work queued before it."""
        self._calls.put(_Call(fn))

    def cancel(self) -> None:
        """Give the session up from any thread (an interrupt): the caller waiting on it raises
        ``Cancelled`` at once, as does any later call; the statement is cancelled on the server
        and the connection closed once the driver returns."""
        with self._lock:
            self._cancelled = True
            waiting = self._waiting
        if waiting is not None:
            waiting.finish(error=Cancelled())
        self.abandon()

    def abandon(self) -> None:
        """Give the session up while a call may still be blocked in the driver: cancel the
        statement from another thread, then close the connection once the call returns."""
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = self.lost = True
        threading.Thread(target=self._cancel_then_close, name=f"fedquery-{self._prefix}-cancel",
                         daemon=True).start()

    def close(self) -> None:
        """Close the connection on its thread (after queued work) and end the thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._calls.put(None)

    def _cancel_then_close(self) -> None:
        # The close waits for the cancel: closing frees what PQcancel reads.
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.adbc_cancel()
        self.close()

    def _serve(self) -> None:
        while True:
            work = self._calls.get()
            if work is None:
                break
            try:
                result = work.fn(self.conn)
            except BaseException as exc:  # handed to the caller, who may be gone
                work.finish(error=exc)
            else:
                work.finish(result)
        for handle in reversed(self.handles):  # the driver closes no connection with open cursors
            close_quietly(handle)
        self.handles.clear()
        if self.conn is not None:
            close_quietly(self.conn)
            self.conn = None

    def forget(self, *handles) -> None:
        """Close handles that outlived their call (on the session's thread only)."""
        for handle in handles:
            close_quietly(handle)
        self.handles = [h for h in self.handles if not any(h is x for x in handles)]


class Pool:
    """Idle sessions, at most ``size`` of them; more open when needed (a query may hold several
    fragments' streams at once, so waiting for a free one could deadlock).

    Once a session is found dead every idle one is closed: they were opened before the
    failure and most likely share its cause (a server restart, a network cut).
    """

    def __init__(self, open_one: Callable[[], Session], size: int) -> None:
        self._open, self._size = open_one, size
        self._idle: list[Session] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, fresh: bool = False) -> tuple[Session, bool]:
        """A session and whether it was used before; ``fresh``: a new one."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the source is closed")
            if self._idle and not fresh:
                return self._idle.pop(), True
        return self._open(), False

    def release(self, session: Session, healthy: bool = True) -> None:
        if not healthy:
            session.lost = True
        with self._lock:
            if (not session.lost and not self._closed and len(self._idle) < self._size):
                self._idle.append(session)
                return
        session.close()

    def invalidate(self) -> None:
        """Close every idle session (one was found dead)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.invalidate()


def close_quietly(handle) -> None:
    with contextlib.suppress(Exception):
        handle.close()


@contextlib.contextmanager
def cursor_of(conn):
    cursor = conn.cursor()
    try:
        yield cursor
    finally:
        close_quietly(cursor)
