"""Sessions with one PostgreSQL server: the source's settings and DSN, a small pool, and the
stream that holds a session while a fragment's rows are read."""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
from sqlglot import exp

from connectors._postgres_types import convert_batch
from fedquery.errors import CatalogError

if TYPE_CHECKING:
    from fedquery.catalog import SourceSpec

SETTINGS = {"dsn", "connect_timeout", "statement_timeout", "batch_rows", "pool_size"}
DEFAULT_CONNECT_TIMEOUT = 10


class Stream:
    """The batches of one running query; its connection returns to the pool when they end or
    the reader is dropped (a query stopped early is cancelled first)."""

    def __init__(self, pool: Pool, conn, cursor, raw: pa.RecordBatchReader, schema: pa.Schema,
                 *, batch_rows: int | None, translate: Callable[[Exception], NoReturn]) -> None:
        self._pool, self._conn, self._cursor, self._raw = pool, conn, cursor, raw
        self._schema, self._batch_rows, self._translate = schema, batch_rows, translate
        self._pending: deque[pa.RecordBatch] = deque()
        self._lock = threading.Lock()
        self._done = False

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> pa.RecordBatch:
        if not self._pending:
            self._pending.extend(self._split(self._read()))
        return self._pending.popleft()

    def _read(self) -> pa.RecordBatch:
        if self._done:
            raise StopIteration
        try:
            return convert_batch(self._raw.read_next_batch(), self._schema)
        except StopIteration:
            self._finish(complete=True)
            raise
        except Exception as exc:
            self._finish(complete=False, healthy=reusable(exc))
            self._translate(exc)  # raises the source's error
            raise

    def _split(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        size = self._batch_rows
        if not size or batch.num_rows <= size:
            return [batch]
        return [batch.slice(i, size) for i in range(0, batch.num_rows, size)]

    def close(self) -> None:
        self._finish(complete=False)

    def __del__(self) -> None:
        self._finish(complete=False)

    def _finish(self, *, complete: bool, healthy: bool = True) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        if not complete:
            with contextlib.suppress(Exception):
                self._cursor.adbc_cancel()  # else the next query drains the rest of the rows
        close_quietly(self._raw)
        close_quietly(self._cursor)
        self._pool.release(self._conn, healthy)


class Pool:
    """Idle sessions, at most ``size`` of them; more open when needed (a query may hold several
    fragments' streams at once, so waiting for a free one could deadlock)."""

    def __init__(self, open_one: Callable[[], Any], size: int) -> None:
        self._open, self._size = open_one, size
        self._idle: list = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> tuple[Any, bool]:
        """A session and whether it was used before."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the source is closed")
            if self._idle:
                return self._idle.pop(), True
        return self._open(), False

    def release(self, conn, healthy: bool = True) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            close_quietly(conn)


class Settings:
    """The source's settings, checked; errors name the catalog key.

    ``connect_timeout`` is libpq's (whole seconds, at least 2: libpq reads 1 as 2) and goes
    into the DSN; ``statement_timeout`` (seconds, or a PostgreSQL interval text) is set on
    each session, as are ``default_transaction_read_only`` and ``TimeZone = UTC``.
    """

    def __init__(self, spec: SourceSpec, origin: str) -> None:
        self.where = f"{origin}: sources.{spec.name}"
        raw = spec.settings
        unknown = sorted(set(raw) - SETTINGS)
        if unknown:
            raise CatalogError(f"{self.where}.{unknown[0]}: unknown setting for a postgres source; "
                               f"expected: {', '.join(sorted(SETTINGS))}")
        self.dsn = raw["dsn"]
        if not isinstance(self.dsn, str):
            raise CatalogError(f"{self.where}.dsn: expected a connection string")
        self.explicit_timeout = "connect_timeout" in raw
        self.connect_timeout = max(2, math.ceil(self._seconds(raw, "connect_timeout",
                                                              DEFAULT_CONNECT_TIMEOUT)))
        self.statement_timeout = self._statement_timeout(raw.get("statement_timeout"))
        self.batch_rows = self._count(raw, "batch_rows", None)
        self.pool_size = self._count(raw, "pool_size", 4)

    def effective_dsn(self) -> str:
        """The DSN with libpq's connect_timeout (the catalog's wins, else the DSN's, else 10 s)
        and an application name; libpq keeps the last value of a repeated key."""
        extra = {}
        if self.explicit_timeout or not re.search(r"connect_timeout\s*=", self.dsn):
            extra["connect_timeout"] = str(self.connect_timeout)
        if not re.search(r"application_name\s*=", self.dsn):
            extra["application_name"] = "fedquery"
        if "://" in self.dsn:
            joiner = "&" if "?" in self.dsn else "?"
            return self.dsn + joiner + "&".join(f"{k}={v}" for k, v in extra.items())
        return " ".join([self.dsn, *(f"{k}={v}" for k, v in extra.items())])

    def session_sql(self) -> str:
        """``set_config`` calls for a new session: read-only, UTC, the statement timeout."""
        values = {"default_transaction_read_only": "on", "TimeZone": "UTC"}
        if self.statement_timeout:
            values["statement_timeout"] = self.statement_timeout
        calls = [exp.func("set_config", exp.Literal.string(k), exp.Literal.string(v), exp.false())
                 for k, v in values.items()]
        return exp.select(*calls).sql("postgres")

    def _seconds(self, raw: Mapping, key: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CatalogError(f"{self.where}.{key}: expected a number of seconds, got {value!r}")
        return value

    def _statement_timeout(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip():
            return value.strip()  # a PostgreSQL interval ("30s", "2min"); checked at connect
        return f"{round(self._seconds({'statement_timeout': value}, 'statement_timeout', 0) * 1000)}ms"

    def _count(self, raw: Mapping, key: str, default: int | None) -> int | None:
        value = raw.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CatalogError(f"{self.where}.{key}: expected a positive integer, got {value!r}")
        return value


# ---------------------------------------------------------------------- helpers


def location(dsn: str) -> dict[str, str | None]:
    """Host, port and database named by a DSN (never the user or password)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        host = parts.hostname or (query.get("host") or [None])[0]
        port = str(parts.port) if _safe_port(parts) else (query.get("port") or [None])[0]
        database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [None])[0]
    else:
        found = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", dsn))
        host, port, database = (found.get(k, "").strip("'") or None
                                for k in ("host", "port", "dbname"))
    return {"host": host or "localhost", "port": port, "database": database}


def _safe_port(parts) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return False


def driver_message(exc: BaseException) -> str:
    """The server's or libpq's words, without the driver's status prefix or the query echo."""
    text = str(exc).strip()
    text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", text)
    if "ERROR:" in text:
        text = text.split("ERROR:", 1)[1]
    text = re.sub(r"\s*\.?\s*SQLSTATE: (\w+)", r" (SQLSTATE \1)", text)
    return " ".join(text.split()) or type(exc).__name__


def reusable(exc: BaseException | None) -> bool:
    """Whether a session that raised ``exc`` can serve another query."""
    return exc is None or not connection_lost(exc)


def connection_lost(exc: BaseException) -> bool:
    """A failure of the connection itself: no SQLSTATE from the server, or class 08."""
    if not hasattr(exc, "status_code"):  # not a driver error (e.g. a conversion failed)
        return False
    state = getattr(exc, "sqlstate", None)
    return not state or state.startswith("08") or state.startswith("57P")


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
