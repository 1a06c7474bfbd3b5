"""What the table-format connectors (Iceberg, Delta Lake) share: one snapshot per query, the
columns a scan must read, Arrow types as the other sources give them, and the request applied
exactly by DuckDB over the library's stream.

A table format's library plans the files of a scan (pruning them by its metadata) and reads
them, honouring deleted rows; what it cannot be told exactly (most of a filter, the order, a
top-N with its ties, a key set) is applied afterwards by a private DuckDB over its Arrow
stream, with the very SQL a native source's scan would run (``_native.scan_reader``).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from fedquery.connectors.base import ScanRequest, TableRef
from fedquery.errors import FedQueryError, SourceError

if TYPE_CHECKING:
    from fedquery.control import QueryControl
    from fedquery.secrets import Secrets

STREAM = "__fq_table"


class QueryPins:
    """The snapshot (or version) each running query reads of each table: the first scan of a
    table in a query pins it, later scans of that query read the same one, so a query reading a
    table twice sees one snapshot even if a commit lands between its scans. Pins are kept per
    query (``fedquery.control.current()``) and go with it; a scan outside any query (a
    connector called directly) pins its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pins: weakref.WeakKeyDictionary[QueryControl, dict[str, Any]] = \
            weakref.WeakKeyDictionary()

    def pinned(self, table: str, pin: Callable[[], Any]) -> Any:
        """The query's pin of ``table``, made by ``pin()`` on its first scan in the query."""
        from fedquery.control import current

        query = current()
        if query is None:
            return pin()
        with self._lock:
            known = self._pins.setdefault(query, {})
            if table in known:
                return known[table]
        value = pin()  # outside the lock: it may read a catalog over the network
        with self._lock:
            return self._pins[query].setdefault(table, value)


def public_type(arrow_type: pa.DataType) -> pa.DataType:
    """A type as the other sources give it: large and view types as the plain ones, lists
    with the default item name, no field metadata (Parquet field ids)."""
    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return pa.string()
    if pa.types.is_large_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return pa.binary()
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) \
            or pa.types.is_list_view(arrow_type) or pa.types.is_large_list_view(arrow_type):
        return pa.list_(public_type(arrow_type.value_type))
    if pa.types.is_fixed_size_list(arrow_type):
        return pa.list_(public_type(arrow_type.value_type), arrow_type.list_size)
    if pa.types.is_struct(arrow_type):
        return pa.struct([pa.field(f.name, public_type(f.type), f.nullable) for f in arrow_type])
    if pa.types.is_map(arrow_type):
        return pa.map_(public_type(arrow_type.key_type), public_type(arrow_type.item_type))
    return arrow_type


def public_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, public_type(f.type), f.nullable) for f in schema])


def read_columns(request: ScanRequest, schema: pa.Schema) -> list[str]:
    """The columns a scan must read: those asked, and those its filter, order and keys name
    (in the table's order); at least one, so a row count still gets its rows."""
    if request.columns is None:
        return list(schema.names)
    wanted = {c.lower() for c in request.columns}
    for text in [f"SELECT 1 WHERE {request.filter}"] * bool(request.filter) + [
            f"SELECT 1 ORDER BY {key}" for key in request.order_by]:
        named = _named_columns(text)
        if named is None:  # not parsed here: every column, DuckDB reports what is wrong
            return list(schema.names)
        wanted |= named
    if request.keys is not None:
        wanted.add(request.keys.column.lower())
    named = [n for n in schema.names if n.lower() in wanted]
    return named or schema.names[:1]


def _named_columns(sql: str) -> set[str] | None:
    try:
        tree = sqlglot.parse_one(sql, dialect="duckdb")
    except sqlglot.errors.ParseError:
        return None
    return {c.name.lower() for c in tree.find_all(exp.Column)}


def exact(reader: pa.RecordBatchReader, request: ScanRequest,
          close: Callable[[], None] | None = None) -> pa.RecordBatchReader:
    """``reader`` narrowed by the whole request (columns, filter, keys, order, limit, ties) in
    a private DuckDB, streamed; ``close`` runs once the stream ends or fails."""
    import duckdb

    from fedquery.connectors._native import scan_reader

    con = duckdb.connect(config={"enable_external_access": False})
    try:
        con.register(STREAM, reader)
        con.execute(f'CREATE VIEW main."t" AS SELECT * FROM "{STREAM}"')
        out = scan_reader(con, "memory", request, TableRef("main", "t"))
    except BaseException:
        con.close()
        if close is not None:
            close()
        raise

    def batches():
        try:
            yield from out
        finally:
            con.close()
            if close is not None:
                close()

    return pa.RecordBatchReader.from_batches(out.schema, batches())


def conform(reader: Any, schema: pa.Schema) -> pa.RecordBatchReader:
    """A library's stream (any Arrow C stream) with the public types of ``schema``."""
    stream = pa.RecordBatchReader.from_stream(reader)
    target = pa.schema([schema.field(n) for n in stream.schema.names])
    if stream.schema.equals(target):
        return stream

    def batches():
        for batch in stream:
            yield batch.cast(target) if batch.schema != target else batch

    return pa.RecordBatchReader.from_batches(target, batches())


@contextlib.contextmanager
def failures_as_source_errors(source: str, secrets: Secrets, what: str) -> Iterator[None]:
    """Turn a table library's exception (pyiceberg, deltalake) into a ``SourceError`` saying
    ``what`` failed, its first line, no secret and no password of a URL."""
    from fedquery.connectors._iceberg_catalog import redact_url

    try:
        yield
    except FedQueryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the libraries raise plain exceptions
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = secrets.redact(redact_url(f"{type(exc).__name__}: {text}"))
        raise SourceError(f"{what}: {text}", source=source) from exc


def with_trace(request: ScanRequest, line: str) -> None:
    """Tell ``explain(analyze=True)`` what the scan read (when the request asks)."""
    if request.trace is not None:
        request.trace.append(line)
