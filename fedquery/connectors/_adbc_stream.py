"""The rows of one fragment, read through an ADBC driver on a pooled session with a read
timeout; shared by the PostgreSQL connector and ``kind: adbc``.

A statement runs on its session's thread (see ``_adbc_session``); every batch is waited
for at most the source's ``read_timeout``. A session found dead before the first batch reached
the executor (an idle session the server or the network dropped) is replaced and the statement
run once more; once rows were handed out a failure is final, never a silent second read.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import NoReturn

import pyarrow as pa

from fedquery.connectors._adbc_session import Cancelled, Pool, Session, SessionTimeout

Convert = Callable[[pa.RecordBatch, pa.Schema], pa.RecordBatch]
Lost = Callable[[BaseException], bool]


class Statement:
    """One query running on a session: its cursor and the driver's batch reader."""

    def __init__(self, session: Session, cursor, raw: pa.RecordBatchReader) -> None:
        self.session, self._cursor, self._raw = session, cursor, raw
        self.schema = raw.schema

    @classmethod
    def start(cls, session: Session, sql: str, timeout: float, options: Mapping[str, str],
              before: Callable[[object], None] | None = None) -> Statement:
        """Send ``sql`` with the driver's statement ``options``; return once the server has
        described its result. ``before(conn)`` runs first, in the same call (a check that may
        refuse to run the statement)."""

        def run(conn):
            if before is not None:
                before(conn)
            cursor = conn.cursor()
            session.handles.append(cursor)
            if options:
                cursor.adbc_statement.set_options(**options)
            cursor.execute(sql)
            raw = cursor.fetch_record_batch()
            session.handles.append(raw)
            return cursor, raw

        try:
            return cls(session, *session.call(run, timeout))
        except Exception:
            session.submit(lambda _: session.forget(*session.handles))
            raise

    def next_batch(self, timeout: float) -> pa.RecordBatch | None:
        """The next batch; None at the end."""

        def read(_):
            try:
                return self._raw.read_next_batch()
            except StopIteration:
                return None

        return self.session.call(read, timeout)

    def finish(self, pool: Pool, *, complete: bool, healthy: bool) -> None:
        """Release the statement on the session's thread, then the session to the pool; a
        statement stopped early is cancelled first (else the next one drains its rows).
        Nothing here waits: a session that is stuck is simply never returned."""
        raw, cursor, session = self._raw, self._cursor, self.session

        def release(_) -> None:
            ok = healthy and not session.lost
            if not complete and ok:
                try:
                    cursor.adbc_cancel()
                except Exception:
                    ok = False
            session.forget(raw, cursor)
            pool.release(session, ok)

        session.submit(release)


class FragmentStream:
    """Batches of one fragment for DuckDB; the session goes back to the pool at the end, or
    when the reader is dropped early. ``cancel()`` gives it up from any thread.

    ``open_statement(fresh)`` starts the statement on a pooled session (a new one when
    ``fresh``); ``translate(exc, what, note)`` raises the source's error for a driver failure;
    ``convert(batch, schema)`` turns a driver batch into the planned schema; ``lost(exc)`` says
    whether a failure lost the session (the driver's own words decide).
    """

    def __init__(self, open_statement: Callable[[bool], Statement], pool: Pool, *,
                 schema_of: Callable[[pa.Schema], pa.Schema], read_timeout: float,
                 batch_rows: int | None,
                 translate: Callable[[BaseException, str, str], NoReturn],
                 convert: Convert, lost: Lost) -> None:
        self._open, self._pool, self._translate = open_statement, pool, translate
        self._convert, self._lost = convert, lost
        self._read_timeout, self._batch_rows = read_timeout, batch_rows
        self._retried = self._delivered = False
        self._lock = threading.Lock()
        self._done = self._cancelled = False
        self._statement = self._start(fresh=False)
        self._raw_schema = self._statement.schema
        try:
            self.schema = schema_of(self._raw_schema)
        except BaseException:  # the result is not what was planned: stop the statement
            self._finish(complete=False, healthy=True)
            raise
        self._pending: deque[pa.RecordBatch] = deque()

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self)

    def __iter__(self) -> FragmentStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        while not self._pending:
            self._pending.extend(self._split(self._read()))
        self._delivered = True
        return self._pending.popleft()

    def close(self) -> None:
        self._finish(complete=False, healthy=True)

    def cancel(self) -> None:
        """Give the stream up from any thread (an interrupt, while DuckDB's threads wait in
        ``__next__``): a read waiting for the server raises at once, as does any later read;
        the statement is cancelled on the server and its session dropped."""
        with self._lock:
            if self._done:
                return
            self._cancelled = True
            statement = self._statement
        statement.session.cancel()

    def __del__(self) -> None:
        if getattr(self, "_statement", None) is not None:
            self._finish(complete=False, healthy=True)

    # ------------------------------------------------------------------ internals

    def _start(self, *, fresh: bool) -> Statement:
        """Start the statement; a session lost on the way is replaced once."""
        try:
            return self._open(fresh)
        except Exception as exc:
            if not self._may_retry(exc):
                self._translate(exc, "query failed", "")
        self._retried = True
        try:
            return self._open(True)
        except Exception as exc:
            self._may_retry(exc)
            self._translate(exc, "query failed", self._why_not_retried(exc))

    def _read(self) -> pa.RecordBatch:
        if self._cancelled:
            self._finish(complete=False, healthy=False)
            self._translate(Cancelled(), "reading rows failed", "")
        if self._done:
            raise StopIteration
        try:
            batch = self._statement.next_batch(self._read_timeout)
        except Exception as exc:
            self._finish(complete=False, healthy=not self._lost(exc))
            if self._may_retry(exc) and not self._delivered:
                return self._restart()
            self._translate(exc, "reading rows failed", self._why_not_retried(exc))
        if batch is None:
            self._finish(complete=True, healthy=True)
            raise StopIteration
        try:
            return self._convert(batch, self.schema)
        except Exception as exc:
            self._finish(complete=False, healthy=True)
            self._translate(exc, "reading rows failed", "")

    def _restart(self) -> pa.RecordBatch:
        """The same statement on a new session, read from its first batch again."""
        self._retried = True
        statement = self._start(fresh=True)
        with self._lock:
            self._statement, self._done = statement, False
        if statement.schema != self._raw_schema:
            self._finish(complete=False, healthy=True)
            self._translate(RuntimeError("the result's columns changed while it was read"),
                            "reading rows failed", "")
        return self._read()

    def _why_not_retried(self, exc: BaseException) -> str:
        if not self._lost(exc) or isinstance(exc, SessionTimeout):
            return ""
        if self._delivered:
            return "rows had been handed out already, so the query was not run again"
        return "it was lost again on a new session" if self._retried else ""

    def _may_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` lost a session (then every idle one is dropped too) in a way worth
        one more try: not a timeout, not after a retry."""
        if not self._lost(exc):
            return False
        self._pool.invalidate()
        return not isinstance(exc, SessionTimeout) and not self._retried

    def _split(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        size = self._batch_rows
        if not size or batch.num_rows <= size:
            return [batch]
        return [batch.slice(i, size) for i in range(0, batch.num_rows, size)]

    def _finish(self, *, complete: bool, healthy: bool) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._statement.finish(self._pool, complete=complete, healthy=healthy)
