"""``kind: parquet``: a lake of Parquet tables under one root (a folder, glob or file each).

Local lakes are bound into the executor's DuckDB as views over ``read_parquet`` so DuckDB's own
projection, filter, partition and row-group pruning apply.
"""

from __future__ import annotations

import glob as globlib
import os
from typing import TYPE_CHECKING, Any

from connectors._native import DuckDBBound, attach_memory, literal, relation, scan_reader
from connectors.base import Capabilities, ScanRequest, TableRef
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec, TableSpec


class ParquetConnector(DuckDBBound):
    """Parquet tables declared in the catalog; one-table scans only (no SQL engine of its own)."""

    kind = "parquet"
    capabilities = Capabilities(dialect=None, native=True, subtrees=False)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        self.name = spec.name
        self.root = spec.resolve(spec.settings["root"])
        if "://" in self.root:
            raise SourceError("remote lakes (s3://) are not supported yet; use a local folder",
                              source=self.name)
        if not os.path.isdir(self.root):
            raise SourceError(f"lake root is not a folder: {self.root}", source=self.name)
        self._specs = {t.name: t for t in catalog.tables.values() if t.source == spec.name}
        self._broken: dict[str, str] = {}
        self._row_counts: dict[str, int] = {}

    def files_pattern(self, spec: TableSpec) -> str:
        """The glob DuckDB reads for one table: a file, a glob, or every file under a folder."""
        path = os.path.normpath(os.path.join(self.root, spec.path or spec.name))
        if globlib.has_magic(path) or os.path.isfile(path):
            return path
        return os.path.join(path, "**", "*.parquet")

    def bind(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """A view per declared table in an in-memory catalog named after the source."""
        import duckdb

        attach_memory(con, self.name)
        for name, spec in self._specs.items():
            hive = {"hive": ", hive_partitioning = true", "none": ", hive_partitioning = false"}
            options = hive.get(spec.partitioning or "", "")
            sql = (f"CREATE VIEW {relation(self.name, TableRef('main', name))} AS SELECT * "
                   f"FROM read_parquet({literal(self.files_pattern(spec))}{options})")
            try:
                con.execute(sql)
            except duckdb.Error as exc:
                self._broken[name] = str(exc).splitlines()[0]
        self._con = con
        return [self.root]

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._specs]

    def schema(self, table: TableRef) -> pa.Schema:
        self.check(table)
        return super().schema(table)

    def check(self, table: TableRef) -> None:
        """Raise the reason a table could not be bound (no files, unreadable files)."""
        if table.name in self._broken:
            raise SourceError(f"table {table.name!r}: {self._broken[table.name]}", source=self.name)

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        table = TableRef("main", request.table.rsplit(".", 1)[-1])
        self.check(table)
        return scan_reader(self._bound().cursor(), self.name, request, table)

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of a lake table, from the Parquet footers (counted once per connection)."""
        if table.name not in self._row_counts:
            self.check(table)
            sql = f"SELECT count(*) FROM {relation(self.name, table)}"
            self._row_counts[table.name] = self._bound().sql(sql).fetchall()[0][0]
        return self._row_counts[table.name]

    def describe(self, table: TableRef) -> dict[str, Any]:
        spec = self._specs.get(table.name)
        return {"kind": "parquet", "files": self.files_pattern(spec) if spec else None,
                "partitioning": spec.partitioning if spec else None}
