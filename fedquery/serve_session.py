"""One client's session: its statements answered, its queries run through fedquery.

Every client shares the server's one ``fedquery.Connection`` (its plans, described tables
and source connections; it is safe from many threads) and has a ``ClientSession`` of its
own: its ``SET`` values, whether it is in a (no-op) transaction, and the results it is
streaming, which a cancel request or a disconnect stops with ``Result.cancel()``.

A query reaches the client as ``Answer``: the rows of a ``Result.batches()`` stream encoded
one record batch at a time, so a large result is never held whole.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
from buenavista.core import BVType, QueryResult, Session

from fedquery.errors import QueryCancelled
from fedquery.serve_statements import Local, SessionState, answer
from fedquery.serve_types import PgColumn, columns

if TYPE_CHECKING:
    from fedquery.connection import Connection
    from fedquery.result import Result
    from fedquery.serve_catalog import MetadataCatalog

CANCELLED = "canceling statement due to user request (a cancel request from the client)"
NULL = struct.pack("!i", -1)


class Answer(QueryResult):
    """A statement's answer: a command tag, nothing (an empty query), or a stream of rows."""

    def __init__(self, reader: pa.RecordBatchReader | None = None, status: str = "",
                 result: Result | None = None, empty: bool = False) -> None:
        super().__init__()
        self.reader, self.result, self.empty, self._status = reader, result, empty, status
        self.columns: list[PgColumn] = columns(reader.schema) if reader is not None else []
        self.sent = 0
        self._pending: list[bytes] = []  # DataRow messages of a batch not yet sent
        self._done = reader is None

    @classmethod
    def local(cls, local: Local) -> Answer:
        reader = local.table.to_reader() if local.table is not None else None
        return cls(reader, status=local.status, empty=local.empty)

    def has_results(self) -> bool:
        return self.reader is not None

    def column_count(self) -> int:
        return len(self.columns)

    def column(self, index: int) -> tuple[str, BVType]:
        return self.columns[index].name, BVType.UNKNOWN  # buenavista's types are not used

    def status(self) -> str:
        return self._status if self.reader is None else f"SELECT {self.sent}"

    def formats(self) -> list[int]:
        """Each column's format code (0 text, 1 binary) from the client's Bind."""
        asked = self.result_format or [0]
        return [asked[0]] * len(self.columns) if len(asked) == 1 else list(asked)

    def row_messages(self, limit: int = 0) -> Iterator[bytes]:
        """DataRow messages, a batch's worth at a time, at most ``limit`` rows (0: all);
        ``finished`` says whether the stream ended."""
        left = limit or -1
        while left and not (self._done and not self._pending):
            if not self._pending:
                self._next_batch()
                continue
            chunk = self._pending if left < 0 else self._pending[:left]
            self._pending = self._pending[len(chunk):]
            self.sent += len(chunk)
            left -= len(chunk) if left > 0 else 0
            yield b"".join(chunk)

    @property
    def finished(self) -> bool:
        return self._done and not self._pending

    def _next_batch(self) -> None:
        try:
            batch = self.reader.read_next_batch()
        except StopIteration:
            self._done = True
            return
        self._pending = self._encode(batch)

    def _encode(self, batch: pa.RecordBatch) -> list[bytes]:
        formats = self.formats()
        values = [column.encode(batch.column(i), binary=formats[i] == 1)
                  for i, column in enumerate(self.columns)]
        head = struct.pack("!h", len(self.columns))
        if not values:
            return [b"D" + struct.pack("!i", 6) + head] * batch.num_rows
        rows = []
        for row in zip(*values, strict=True):
            body = head + b"".join(NULL if v is None else struct.pack("!i", len(v)) + v
                                   for v in row)
            rows.append(b"D" + struct.pack("!i", len(body) + 4) + body)
        return rows

    def cancel(self) -> None:
        if self.result is not None:
            self.result.cancel()


class ClientSession(Session):
    """A client's statements: session ones answered here, queries run by fedquery."""

    def __init__(self, connection: Connection, metadata: MetadataCatalog,
                 state: SessionState) -> None:
        super().__init__()
        self.connection, self.metadata, self.state = connection, metadata, state
        self._running: set[Result] = set()
        self._lock = threading.Lock()
        self.cancelled = False

    def execute(self, sql: str, params: list | None = None) -> Answer:
        """The answer to one statement (a query starts running here; rows stream later)."""
        self.cancelled = False
        local = answer(sql, self.state)
        if local is not None:
            return Answer.local(local)
        if self.metadata.handles(sql):
            return Answer(self.metadata.run(sql, params))
        result = self.connection.sql(sql, params=params or None)
        with self._lock:
            self._running.add(result)  # before it runs: batches() may run it to its end
        try:
            reader = result.batches()
        except BaseException:
            self._forget(result)
            raise
        if self.cancelled:  # a cancel that came before the query had a control to stop
            result.cancel()
        return Answer(reader, result=result)

    def execute_sql(self, sql: str, params=None) -> QueryResult:  # buenavista's name
        return self.execute(sql, params)

    def done(self, reply: Answer) -> None:
        """A streamed answer ended (or was dropped): no longer cancelled by a request."""
        if reply.result is not None:
            self._forget(reply.result)

    def _forget(self, result: Result) -> None:
        with self._lock:
            self._running.discard(result)

    def translated(self, exc: BaseException) -> BaseException:
        """A query stopped by the client's cancel request says so (not ``Result.cancel()``)."""
        if self.cancelled and isinstance(exc, QueryCancelled):
            return QueryCancelled(CANCELLED)
        return exc

    def cancel(self) -> None:
        """Stop every query of this session now (a cancel request, a disconnect, shutdown)."""
        with self._lock:
            running = list(self._running)
            self.cancelled = True
        for result in running:
            result.cancel()

    def in_transaction(self) -> bool:
        return self.state.in_transaction

    def close(self) -> None:
        self.cancel()
