"""Helpers shared by the connectors whose tables DuckDB scans itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from fedquery.connectors.base import Connector, KeySet, NativeSource, ScanRequest, TableRef
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

BATCH_ROWS = 64 * 1024
IN_LITERALS_MAX = 2_000  # keys written into a scan as literals; more are joined as a table
KEYS_TABLE = "__fq_keys"

class SharedConnection:
    """The executor's DuckDB connection as native connectors share it between threads.

    A DuckDB connection object takes one call at a time ("connection is busy" otherwise), so
    every call goes through one lock: ``cursor()`` hands out a connection of the caller's own,
    ``execute`` runs a statement and fetches its rows under the lock, ``sql`` returns a relation
    on a private cursor.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, lock) -> None:
        self._con, self._lock = con, lock

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._con.cursor()

    def execute(self, sql: str, params: Any = None) -> Fetched:
        """Run one statement on the shared connection; its rows are fetched before returning."""
        with self._lock:
            self._con.execute(sql, params)
            rows = self._con.fetchall() if self._con.description else []
        return Fetched(rows)

    def sql(self, sql: str) -> duckdb.DuckDBPyRelation:
        return self.cursor().sql(sql)

    def register(self, name: str, obj: Any) -> None:
        with self._lock:
            self._con.register(name, obj)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._con.unregister(name)

    def register_filesystem(self, filesystem: Any) -> None:
        with self._lock:
            self._con.register_filesystem(filesystem)


class Fetched:
    """The rows of a statement run on a ``SharedConnection``."""

    def __init__(self, rows: list[tuple]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple]:
        return self._rows


def quote(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def literal(value: str) -> str:
    """A DuckDB string literal produced by sqlglot (never spliced text)."""
    return exp.Literal.string(value).sql("duckdb")


def table_ref(key: str) -> TableRef:
    """The table a scan request names: ``source.schema.table`` (``schema.table``, ``table``);
    the table name itself may hold dots (``lake.main.a.b`` is the table ``a.b``)."""
    parts = key.split(".", 2)
    if len(parts) == 3:
        return TableRef(parts[1], parts[2])
    return TableRef(parts[0], parts[1]) if len(parts) == 2 else TableRef("main", key)


def relation(source: str, table: TableRef) -> str:
    """The three-part name under which a native table is bound: source.schema.table."""
    return ".".join(quote(part) for part in (source, table.schema, table.name))


def scan_sql(source: str, request: ScanRequest, table: TableRef, rows: str | None = None) -> str:
    """The DuckDB SELECT that answers a scan request over a bound native table. Keys
    (``request.keys``) are an IN list of literals up to ``IN_LITERALS_MAX`` (DuckDB pushes it
    into the table's scan), else a semi-join with the table ``KEYS_TABLE`` the reader registers.
    ``rows``: a subquery that reads the rows instead of the bound table (a part of a split scan)."""
    columns = [exp.column(c, quoted=True) for c in request.columns or ()] or [exp.Star()]
    from_ = relation(source, table) if rows is None else f"{rows} AS {quote(table.name)}"
    select = exp.select(*columns).from_(from_)
    if request.filter:
        select = select.where(request.filter, dialect="duckdb")
    if request.keys is not None:
        column = exp.column(request.keys.column, quoted=True)
        if len(request.keys) <= IN_LITERALS_MAX:
            condition = keys_condition(request.keys)
        else:
            condition = column.isin(query=exp.select("key").from_(KEYS_TABLE))
        select = select.where(condition)
    if request.with_ties and request.order_by and request.limit is not None:
        return with_ties(select, columns, request).sql("duckdb")
    if request.order_by:
        select = select.order_by(*request.order_by, dialect="duckdb")
    if request.limit is not None:
        select = select.limit(request.limit)
    return select.sql("duckdb")


def keys_condition(keys: KeySet) -> exp.Expr:
    """``column IN (key, ...)`` as a DuckDB condition of literals (FALSE for no keys)."""
    values = keys.values.to_pylist()
    if not values:
        return exp.false()
    column = exp.column(keys.column, quoted=True)
    return column.isin(*(exp.convert(str(v) if isinstance(v, uuid.UUID) else v) for v in values))


def keys_in_filter(request: ScanRequest) -> ScanRequest:
    """The request with its keys moved into its filter as an IN list: how a source that
    translates filters (and not key sets) honours them, before its limit applies."""
    if request.keys is None:
        return request
    condition = keys_condition(request.keys)
    if request.filter:
        condition = exp.and_(exp.paren(sqlglot.parse_one(request.filter, dialect="duckdb")), condition)
    return replace(request, filter=condition.sql("duckdb"), keys=None)


def with_ties(select: exp.Select, columns: list[exp.Expr], request: ScanRequest) -> exp.Select:
    """The first ``limit`` rows in order and every row tied with the last: the sort keys
    computed as columns of an inner SELECT, ranked outside it (DuckDB refuses a volatile
    function, such as an embedding call, inside a window's ORDER BY)."""
    keys = []
    for i, text in enumerate(request.order_by):
        ordered = sqlglot.parse_one(f"SELECT 1 ORDER BY {text}", dialect="duckdb").args["order"]
        ordered = ordered.expressions[0]
        select = select.select(exp.alias_(ordered.this.copy(), f"__fq_order_{i}"))
        ordered.set("this", exp.column(f"__fq_order_{i}"))
        keys.append(ordered)
    rank = exp.Window(this=exp.Anonymous(this="rank"), order=exp.Order(expressions=keys))
    hidden = [exp.column(f"__fq_order_{i}") for i in range(len(keys))]
    outer = [exp.column(c.name, quoted=True) if isinstance(c, exp.Column)
             else exp.Star(except_=hidden) for c in columns]
    return (exp.select(*outer).from_(select.subquery("__fq_ranked"))
            .qualify(exp.LTE(this=rank, expression=exp.Literal.number(int(request.limit)))))


def scan_reader(cursor: duckdb.DuckDBPyConnection, source: str, request: ScanRequest,
                table: TableRef, rows: str | None = None) -> pa.RecordBatchReader:
    """Run a scan request on a cursor of the executor's DuckDB, binding its parameters
    (``rows``: see ``scan_sql``)."""
    import duckdb

    sql = scan_sql(source, request, table, rows)
    if request.keys is not None and len(request.keys) > IN_LITERALS_MAX:
        import pyarrow as pa

        cursor.register(KEYS_TABLE, pa.table({"key": request.keys.values}))
    try:
        return cursor.sql(sql, params=used_params(sql, request.params)).to_arrow_reader(BATCH_ROWS)
    except (duckdb.CatalogException, duckdb.BinderException) as exc:  # no such table or column
        raise SourceError(f"table {table}: {str(exc).splitlines()[0]}", source=source) from exc


def used_params(sql: str, params: Mapping[str, Any] | list | None) -> Any:
    """The parameter values a statement names, as DuckDB refuses unused ones (positional
    values pass as they are)."""
    if not params:
        return None
    if not isinstance(params, Mapping):
        return params
    names = {p.name for p in sqlglot.parse_one(sql, dialect="duckdb").find_all(exp.Placeholder)}
    return {k: v for k, v in params.items() if k in names} or None


def schema_of(con: duckdb.DuckDBPyConnection, source: str, table: TableRef,
              relations: Mapping[str, Any] | None = None) -> pa.Schema:
    """The Arrow schema of a bound native table, read without scanning rows; ``relations``
    are the Python objects its view reads, registered on the cursor that asks."""
    import duckdb

    cursor = con.cursor()  # its own connection: planning threads may ask at the same time
    for name, obj in (relations or {}).items():
        cursor.register(name, obj)
    try:
        return cursor.sql(f"SELECT * FROM {relation(source, table)} LIMIT 0").to_arrow_table().schema
    except duckdb.Error as exc:
        raise SourceError(f"table {table}: {str(exc).splitlines()[0]}", source=source) from exc
    finally:
        cursor.close()


def attach_memory(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """An empty in-memory catalog named after the source, to hold its views."""
    con.execute(f"ATTACH ':memory:' AS {quote(source)}")


@dataclass
class View:
    """A relation a query's cursor creates as a temporary view (``sql``), and what is done
    with it after the query: ``finish`` checks what it read (raising ``SourceError``),
    ``release`` frees it whatever happened."""

    sql: str
    finish: Callable[[], None]
    release: Callable[[], None]


def open_relations(cursor: duckdb.DuckDBPyConnection, relations: Mapping[str, Any]) -> list[View]:
    """Register each relation on a cursor (a ``View`` as a temporary view); the views made."""
    views = []
    for name, obj in relations.items():
        if isinstance(obj, View):
            cursor.execute(f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS {obj.sql}")
            views.append(obj)
        else:
            cursor.register(name, obj)
    return views


class DuckDBBound(NativeSource, Connector):
    """What native connectors share: the executor connection they were bound to."""

    _con: SharedConnection | None = None

    def schema(self, table: TableRef) -> pa.Schema:
        return schema_of(self._bound(), self.name, table, self.relations([table.name]))

    def close(self) -> None:
        self._con = None

    def _bound(self) -> SharedConnection:
        if self._con is None:
            raise SourceError("not bound to an executor yet", source=self.name)
        return self._con
