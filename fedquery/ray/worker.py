"""What runs in a Ray worker process: the catalog opened once per process, and its work.

A task carries the catalog (``Catalog`` pickles; secrets travel inside the cluster, never into
its logs) and a key naming it; the worker keeps one local-engine ``Connection`` per key and
runs fragments, blob functions and residual queries on it, exactly as the local engine would.
"""

from __future__ import annotations

import base64
import pickle
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from fedquery.catalog import Catalog
    from fedquery.connection import Connection
    from fedquery.execute import Session
    from fedquery.functions.embedding import Embedder
    from fedquery.plan import Fragment

BATCH_ROWS = 65_536
_OPEN: dict[str, Connection] = {}
_LOCK = threading.Lock()


def connection(key: str, catalog: Catalog, embedders: tuple[Embedder, ...] = (),
               strict: bool = False) -> Connection:
    """This process's connection to the catalog ``key`` names, opened on first use."""
    from fedquery.connection import Connection

    with _LOCK:
        con = _OPEN.get(key)
        if con is None:
            con = _OPEN[key] = Connection(catalog, strict=strict)
    for embedder in embedders:
        con._session.add_embedder(embedder)
    return con


def open_fragment(session: Session, fragment: Fragment, params: Any,
                  predicate_sql: str | None) -> pa.RecordBatchReader:
    """The fragment's rows from its source, as the local engine reads them: through the
    connector (``scan`` or ``run_sql``), or by this process's DuckDB for a native subtree."""
    import duckdb
    import sqlglot

    from fedquery.fetch import _open, probed, subset
    from fedquery.parse import DIALECT

    predicate = sqlglot.parse_one(predicate_sql, dialect=DIALECT) if predicate_sql else None
    if not (fragment.native and fragment.kind == "sql"):
        return _translated(session, fragment, _open(session, fragment, params, predicate))
    sql = probed(fragment.sql, predicate)
    cursor = session.cursor(fragment.tables)
    try:
        reader = cursor.sql(sql, params=subset(params, fragment.parameters)).to_arrow_reader(BATCH_ROWS)
    except BaseException as exc:
        session.finished(cursor)
        cursor.close()
        if isinstance(exc, duckdb.Error):
            raise session.translate(exc, _OneFragment((fragment,))) from None
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
            session.finish_views(cursor)
        finally:
            session.finished(cursor)
            cursor.close()

    return _translated(session, fragment, pa.RecordBatchReader.from_batches(reader.schema, batches()))


@dataclass(frozen=True)
class _OneFragment:
    """What ``Session.translate`` reads of a plan: its fragments."""

    fragments: tuple


def _translated(session: Session, fragment: Fragment, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The stream with DuckDB's errors as the local engine's (``Session.translate``): a
    worker's error reaches the driver as the fedquery error it is."""
    import duckdb

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except duckdb.Error as exc:
            raise session.translate(exc, _OneFragment((fragment,))) from None

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def fragment_schema(session: Session, fragment: Fragment, params: Any) -> pa.Schema:
    """The Arrow schema of the fragment's rows, from a read of none of them."""
    import sqlglot

    from fedquery.parse import DIALECT

    if fragment.request is not None and fragment.kind == "scan":
        request = replace(fragment.request, limit=0, order_by=(), with_ties=False, vector=None,
                          keys=None, part=None)
        empty = replace(fragment, request=request)
    else:
        inner = sqlglot.parse_one(fragment.sql, dialect=DIALECT).subquery("__empty")
        empty = replace(fragment, sql=sqlglot.exp.select("*").from_(inner).limit(0).sql(DIALECT))
    reader = open_fragment(session, empty, params, None)
    try:
        return reader.schema
    finally:
        reader.close()


@dataclass(frozen=True)
class TypedValue:
    """A DuckDB typed parameter value (a query vector typed as its column) as it travels."""

    value: Any
    sql_type: str


def to_wire(params: Any) -> Any:
    """Parameter values a task can carry: DuckDB's typed values as ``TypedValue``."""
    from duckdb.value.constant import Value

    def one(v: Any) -> Any:
        return TypedValue(v.object, str(v.type)) if isinstance(v, Value) else v

    if isinstance(params, dict):
        return {k: one(v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return [one(v) for v in params]
    return params


def from_wire(params: Any) -> Any:
    """``to_wire``'s values as DuckDB takes them."""
    from duckdb import sqltype
    from duckdb.value.constant import Value

    def one(v: Any) -> Any:
        return Value(v.value, sqltype(v.sql_type)) if isinstance(v, TypedValue) else v

    if isinstance(params, dict):
        return {k: one(v) for k, v in params.items()}
    if isinstance(params, list):
        return [one(v) for v in params]
    return params


_CARRIED = re.compile(r"<fedquery-error:([A-Za-z0-9+/=]+)>")


class CarriedError(RuntimeError):
    """A fedquery error raised in a Daft task, carried to the driver in its message (Daft
    passes on the text of an error raised in a task, not the error)."""

    def __init__(self, error: BaseException) -> None:
        payload = base64.b64encode(pickle.dumps(error)).decode()
        super().__init__(f"{type(error).__name__}: {error} <fedquery-error:{payload}>")


def carried(text: str) -> BaseException | None:
    """The fedquery error a ``CarriedError``'s text holds, if any."""
    found = _CARRIED.search(text)
    if found is None:
        return None
    try:
        return pickle.loads(base64.b64decode(found[1]))  # noqa: S301 - from this cluster's own tasks
    except Exception:  # noqa: BLE001 - a text cut short: no error to restore
        return None
