"""``kind: duckdb``: a DuckDB database file, attached read-only to the executor's DuckDB."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fedquery.connectors import settings
from fedquery.connectors._native import (
    BATCH_ROWS,
    DuckDBBound,
    literal,
    quote,
    relation,
    scan_reader,
    table_ref,
    used_params,
)
from fedquery.connectors.base import Capabilities, ScanRequest, SQLSource, TableRef
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec


class DuckDBConnector(SQLSource, DuckDBBound):
    """Tables of a DuckDB file; DuckDB runs whole fragments (joins, aggregates) natively."""

    kind = "duckdb"
    capabilities = Capabilities(dialect="duckdb", native=True, subtrees=True)
    SETTINGS = {"path": settings.Setting(settings.text, required=True)}

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        super().__init__(spec, catalog)
        self.path = spec.resolve(spec.settings["path"])
        if not os.path.isfile(self.path):
            raise SourceError(f"database file not found: {self.path}", source=self.name)

    def bind(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Attach the file read-only as ``<source>``; DuckDB reads nothing else of it."""
        import duckdb

        try:
            con.execute(f"ATTACH {literal(self.path)} AS {quote(self.name)} (READ_ONLY)")
        except duckdb.Error as exc:
            raise SourceError(f"cannot open {self.path}: {exc}", source=self.name) from exc
        self._con = con
        return []

    def tables(self) -> list[TableRef]:
        rows = self._bound().execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = $db "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE database_name = $db AND NOT internal", {"db": self.name}).fetchall()
        return [TableRef(schema, table) for schema, table in rows]

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        return scan_reader(self._bound().cursor(), self.name, request, table_ref(request.table))

    def run_sql(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.RecordBatchReader:
        """Run a whole fragment (DuckDB SQL over bound names) with its parameter values."""
        cursor = self._bound().cursor()
        return cursor.sql(sql, params=used_params(sql, params)).to_arrow_reader(BATCH_ROWS)

    def estimate_rows(self, table: TableRef) -> int | None:
        """DuckDB's own row estimate for a table (None for views)."""
        rows = self._bound().execute(
            "SELECT estimated_size FROM duckdb_tables() WHERE database_name = $db "
            "AND schema_name = $schema AND table_name = $name",
            {"db": self.name, "schema": table.schema, "name": table.name}).fetchall()
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def describe(self, table: TableRef) -> dict[str, Any]:
        return {"kind": "duckdb", "file": self.path, "relation": relation(self.name, table)}

    def location(self) -> str:
        return self.path
