"""``information_schema`` and ``pg_catalog`` for PostgreSQL clients: the federation's tables
as a BI tool's table browser asks for them.

fedquery's sandbox refuses DuckDB's system views (a query reads catalog tables only). The
server answers a query that reads *only* ``information_schema.*`` or ``pg_catalog.*`` from a
separate in-memory DuckDB that holds, for each table of the catalog, an empty table of the
same columns and types (schema ``public``; a SQL source's own ``source.table`` names under
schema ``source``): DuckDB's own information_schema and pg_catalog views then describe the
federation. That database holds no rows and, once built, can reach nothing: external access
is off and its configuration locked, so a file function or ATTACH fails there too.

>>> meta = MetadataCatalog(con)                                          # doctest: +SKIP
>>> meta.handles("SELECT table_name FROM information_schema.tables")     # doctest: +SKIP
True
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlglot
from sqlglot import exp

from fedquery.errors import FedQueryError, ForbiddenError, PlanError

if TYPE_CHECKING:
    import duckdb

    from fedquery.connection import Connection

SYSTEM_SCHEMAS = ("information_schema", "pg_catalog")
DATABASE = "fedquery"
BATCH_ROWS = 8192


class MetadataCatalog:
    """The federation's table and column names, in a locked DuckDB, for system-view queries."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def handles(self, sql: str) -> bool:
        """True for one SELECT whose every table is a system view (``information_schema.x``,
        ``pg_catalog.x``, or a bare ``pg_...`` name)."""
        try:
            trees = sqlglot.parse(sql, read="postgres")
        except sqlglot.errors.SqlglotError:
            return False
        if len(trees) != 1 or not isinstance(trees[0], exp.Query):
            return False
        tables = list(trees[0].find_all(exp.Table))
        ctes = {cte.alias_or_name for cte in trees[0].find_all(exp.CTE)}
        tables = [t for t in tables if not (not t.db and t.name in ctes)]
        return bool(tables) and all(_system_table(t) for t in tables)

    def run(self, sql: str, params: list | None = None) -> pa.RecordBatchReader:
        """The query's rows, from the metadata database (built on first use)."""
        import duckdb

        cursor = self._database().cursor()
        try:
            return cursor.sql(sql, params=params or None).to_arrow_reader(BATCH_ROWS)
        except duckdb.PermissionException as exc:
            raise ForbiddenError(f"not allowed in a catalog listing: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            raise PlanError(f"catalog listing failed: {_first_line(exc)}") from None

    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                self._db = self._build()
            return self._db

    def _build(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        db = duckdb.connect(config={"threads": 1})
        db.execute(f"ATTACH ':memory:' AS {DATABASE}")
        db.execute(f"USE {DATABASE}")
        for schema, name, columns in self._tables():
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
            db.register("__fedquery_columns", columns.empty_table())
            db.execute(f"CREATE TABLE {_quoted(schema)}.{_quoted(name)} AS "
                       "SELECT * FROM __fedquery_columns")
            db.unregister("__fedquery_columns")
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
        return db

    def _tables(self) -> list[tuple[str, str, pa.Schema]]:
        """(schema, table, columns) of every catalog table, then of ``source.table`` names;
        a table that cannot be described now is left out (a listing must not fail for it)."""
        found = []
        for full in self.connection.tables():
            parts = full.split(".")
            if len(parts) > 2:
                continue  # source.schema.table: the same table as source.table
            schema, name = ("public", full) if len(parts) == 1 else parts
            try:
                found.append((schema, name, self.connection.schema(full)))
            except FedQueryError:
                continue
        return found


def _system_table(table: exp.Table) -> bool:
    if not isinstance(table.this, exp.Identifier):
        return False  # a table function: read_csv(...) and the like
    schema = table.db.lower()
    return schema in SYSTEM_SCHEMAS or (not schema and table.name.lower().startswith("pg_"))


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
