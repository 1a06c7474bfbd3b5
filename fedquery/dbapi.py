"""PEP 249 (DB-API 2.0) over fedquery, for tools that speak DB-API.

``paramstyle`` is ``qmark``: ``cursor.execute("... WHERE city = ?", ["Austin"])``; a mapping
binds ``$name`` parameters instead (``execute("... = $city", {"city": "Austin"})``), as
``Connection.sql`` does. fedquery only reads: ``commit`` and ``rollback`` do nothing, and
``executemany`` (meant for statements that change data) raises ``NotSupportedError``.

Errors are PEP 249's classes and fedquery's at once: a refused statement is both a
``dbapi.NotSupportedError`` and a ``fedquery.ForbiddenError``, so ``except`` works either way.

>>> from fedquery import dbapi
>>> con = dbapi.connect("catalog.yaml")                           # doctest: +SKIP
>>> cur = con.cursor()                                            # doctest: +SKIP
>>> cur.execute("SELECT city, count(*) FROM drives WHERE weather = ? GROUP BY city",
...             ["rain"]).fetchall()                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import fedquery
from fedquery.errors import (
    CatalogError,
    FedQueryError,
    ForbiddenError,
    ParseError,
    PlanError,
    QueryCancelled,
    SourceError,
)

apilevel = "2.0"
threadsafety = 2  # threads may share the module and connections (not cursors)
paramstyle = "qmark"


# ------------------------------------------------------------------ errors (PEP 249's tree)


class Warning(FedQueryError):  # noqa: A001 - the name PEP 249 gives it
    """Never raised: fedquery reports problems as errors."""


class Error(FedQueryError):
    """Base of PEP 249's errors; also a ``fedquery.FedQueryError``."""


class InterfaceError(Error):
    """The interface misused: a closed cursor or connection."""


class DatabaseError(Error):
    """An error of the database (every error below)."""


class DataError(DatabaseError):
    """Not raised by fedquery (kept for PEP 249)."""


class OperationalError(DatabaseError):
    """A source failed, the catalog is wrong, or the query was cancelled."""


class IntegrityError(DatabaseError):
    """Not raised by fedquery (it never writes)."""


class InternalError(DatabaseError):
    """Not raised by fedquery (internal errors are ``ProgrammingError``s naming the bug)."""


class ProgrammingError(DatabaseError):
    """A query that does not parse or plan, wrong parameters, a fetch with no result."""


class NotSupportedError(DatabaseError):
    """A statement or function fedquery refuses (it only reads), or ``executemany``."""


# fedquery's error -> PEP 249's class; the first match along the error's MRO wins
_KINDS: tuple[tuple[type[FedQueryError], type[Error]], ...] = (
    (ParseError, ProgrammingError),
    (PlanError, ProgrammingError),
    (ForbiddenError, NotSupportedError),
    (CatalogError, OperationalError),
    (SourceError, OperationalError),
    (QueryCancelled, OperationalError),
    (FedQueryError, DatabaseError),
)
_BOTH: dict[type, type] = {}


def _as_pep249(exc: FedQueryError) -> Error:
    """``exc`` as an instance of a class that is both its own and PEP 249's, attributes kept
    (``ParseError.line``, ``SourceError.source``)."""
    if isinstance(exc, Error):
        return exc
    kind = type(exc)
    if kind not in _BOTH:
        pep = next(p for f, p in _KINDS if isinstance(exc, f))
        _BOTH[kind] = type(kind.__name__, (pep, kind), {"__module__": __name__,
                                                        "__doc__": kind.__doc__})
    both = _BOTH[kind]
    error = both.__new__(both, *exc.args)
    error.__dict__.update(exc.__dict__)
    error.args = exc.args
    return error


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except Error:
        raise
    except FedQueryError as exc:
        raise _as_pep249(exc).with_traceback(exc.__traceback__) from exc.__cause__


# ------------------------------------------------------------------ types and constructors


class DBAPITypeObject:
    """Compares equal to each DuckDB type name of a family: ``description[i][1] == NUMBER``."""

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        return other.upper().split("(")[0].strip() in self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __repr__(self) -> str:
        return f"DBAPITypeObject{tuple(sorted(self.names))}"


STRING = DBAPITypeObject("VARCHAR", "CHAR", "BPCHAR", "TEXT", "STRING", "JSON", "UUID", "ENUM")
BINARY = DBAPITypeObject("BLOB", "BYTEA", "BINARY", "VARBINARY", "BIT", "BITSTRING")
NUMBER = DBAPITypeObject("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                         "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE",
                         "DECIMAL", "BIGNUM", "VARINT", "BOOLEAN")
DATETIME = DBAPITypeObject("DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S",
                           "TIMESTAMP_MS", "TIMESTAMP_NS", "TIME WITH TIME ZONE", "TIME_NS",
                           "INTERVAL")
ROWID = DBAPITypeObject()  # fedquery has no row ids

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:  # noqa: N802 - PEP 249's names
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:  # noqa: N802
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:  # noqa: N802
    return Timestamp(*time.localtime(ticks)[:6])


# ------------------------------------------------------------------ connection and cursor


def connect(catalog: str | os.PathLike | Mapping[str, Any], **options: Any) -> Connection:
    """Open a catalog (``fedquery.connect``'s arguments) as a PEP 249 connection."""
    with _translated():
        return Connection(fedquery.connect(catalog, **options))


class Connection:
    """A PEP 249 connection over a ``fedquery.Connection`` (``.fedquery``), which it closes."""

    Warning, Error, InterfaceError, DatabaseError = Warning, Error, InterfaceError, DatabaseError
    DataError, OperationalError, IntegrityError = DataError, OperationalError, IntegrityError
    InternalError, ProgrammingError, NotSupportedError = (InternalError, ProgrammingError,
                                                          NotSupportedError)

    def __init__(self, connection: fedquery.Connection) -> None:
        self.fedquery = connection
        self.closed = False

    def cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    def close(self) -> None:
        """Close the catalog's sources; the connection and its cursors are unusable after."""
        if not self.closed:
            self.closed = True
            with _translated():
                self.fedquery.close()

    def commit(self) -> None:
        """Nothing to commit: fedquery only reads."""
        self._check_open()

    def rollback(self) -> None:
        """Nothing to roll back: fedquery only reads."""
        self._check_open()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("the connection is closed")


class Cursor:
    """Runs queries and walks their rows. ``execute`` runs the query at once and keeps its
    rows, so ``rowcount`` is known; ``fetch*`` read on from where the last fetch ended."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self.closed = False
        self._result: fedquery.Result | None = None
        self._rows_left = 0

    @property
    def description(self) -> list[tuple] | None:
        """(name, type_code, display_size, internal_size, precision, scale, null_ok) per
        column of the last query; ``type_code`` is DuckDB's type name (``'BIGINT'``)."""
        if self._result is None:
            return None
        return [_column(name, kind) for name, kind in
                zip(self._result.columns, self._result.types, strict=True)]

    @property
    def rowcount(self) -> int:
        """Rows of the last query's result; -1 before any."""
        return len(self._result) if self._result is not None else -1

    @property
    def rownumber(self) -> int | None:
        """Index of the next row to fetch (None before any query)."""
        return None if self._result is None else len(self._result) - self._rows_left

    lastrowid = None

    def execute(self, operation: str, parameters: Sequence | Mapping | None = None) -> Cursor:
        """Run one query: ``?`` bound from a sequence, ``$name`` from a mapping."""
        self._check_open()
        with _translated():
            if parameters is not None and not isinstance(parameters, Mapping | list | tuple):
                if isinstance(parameters, str | bytes) or not isinstance(parameters, Sequence):
                    raise ProgrammingError(f"parameters must be a sequence (for ?) or a mapping "
                                           f"(for $name), got {type(parameters).__name__}")
                parameters = list(parameters)
            self._result = None
            result = self.connection.fedquery.sql(operation, parameters)
            self._rows_left = len(result)  # runs it now: errors surface here
            self._result = result
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        raise NotSupportedError("executemany: fedquery only reads, and executemany is for "
                                "statements that change data; call execute() once per set of "
                                "parameters")

    def fetchone(self) -> tuple | None:
        rows = self._fetch(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple]:
        return self._fetch(self.arraysize if size is None else size)

    def fetchall(self) -> list[tuple]:
        return self._fetch(self._rows_left if self._result is not None else 0)

    def _fetch(self, size: int) -> list[tuple]:
        self._check_open()
        if self._result is None:
            raise ProgrammingError("no result to fetch: call execute() first")
        with _translated():
            rows = self._result.fetchmany(min(size, self._rows_left))
        self._rows_left -= len(rows)
        return rows

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def close(self) -> None:
        self.closed = True
        self._result = None

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> tuple:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check_open()


def _column(name: str, kind: str) -> tuple:
    precision = scale = None
    if kind.upper().startswith("DECIMAL(") and kind.endswith(")"):
        precision, scale = (int(p) for p in kind[len("DECIMAL("):-1].split(","))
    return (name, kind, None, None, precision, scale, None)
