"""``kind: parquet``: a lake of Parquet tables under one root (a folder, glob or file each).

Local lakes are bound into the executor's DuckDB as views over ``read_parquet`` so DuckDB's own
projection, filter, partition and row-group pruning apply. Remote lakes (``root: s3://...``)
are read by the same ``read_parquet`` (DuckDB here cannot read ``s3://`` itself): each query
gets, per table it reads (``relations``), a temporary view over the objects listed and pinned
for it, which DuckDB reads through a filesystem of ours (``connectors._lake_files``), so a
query sees files written since the last one, and the objects it reads are checked unchanged
afterwards (``connectors._s3_lake``). ``connect`` sends S3 nothing: a remote table is bound to a stand-in
and listed for its columns by the first query that reads it (each table on its own, so a
query waits only for the tables it reads); a listing that fails is tried again by the next.
"""

from __future__ import annotations

import glob as globlib
import os
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fedquery.connectors import settings
from fedquery.connectors._native import (
    DuckDBBound,
    View,
    attach_memory,
    literal,
    open_relations,
    quote,
    relation,
    scan_reader,
    schema_of,
    table_ref,
)
from fedquery.connectors.base import Capabilities, ScanRequest, TableRef
from fedquery.errors import FedQueryError, SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec, TableSpec
    from fedquery.connectors._s3_lake import RemoteLake
    from fedquery.connectors.remote_fs import ReadStats


class ParquetConnector(DuckDBBound):
    """Parquet tables declared in the catalog; one-table scans only (no SQL engine of its own)."""

    kind = "parquet"
    capabilities = Capabilities(dialect=None, native=True, subtrees=False)
    SETTINGS = {"root": settings.Setting(settings.text, required=True),
                "options": settings.Setting(settings.mapping, doc="S3 options of an s3:// root")}
    TABLE_SETTINGS = {
        "path": settings.Setting(settings.text, required=True, doc="a folder, glob or file"),
        "partitioning": settings.Setting(settings.one_of("hive", "none")),
        "table": settings.Setting(settings.text),
    }

    @classmethod
    def check_settings(cls, given, where: str) -> None:
        super().check_settings(given, where)
        settings.check_remote_options(given, where)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        super().__init__(spec, catalog)
        self.root = spec.resolve(spec.settings["root"])
        self._specs = {t.name: t for t in catalog.tables.values() if t.source == spec.name}
        self._broken: dict[str, str] = {}
        self._unlisted: set[str] = set()  # remote tables not listed yet (or whose listing failed)
        self._bind_lock = threading.Lock()  # views created on the shared connection
        self._list_locks = {name: threading.Lock() for name in self._specs}
        self._row_counts: dict[str, int] = {}
        self._remote: RemoteLake | None = None
        if "://" in self.root:
            from fedquery.connectors._s3_lake import RemoteLake

            self._remote = RemoteLake(self.name, self.root, spec.settings.get("options") or {},
                                      catalog)
            # rows cross a network: worth filtering by join keys before they move
            self.capabilities = replace(self.capabilities, remote=True)
        elif not os.path.isdir(self.root):
            raise SourceError(f"lake root is not a folder: {self.root}", source=self.name)

    def bytes_read(self) -> int | None:
        """Bytes a remote lake's reads fetched so far (monotonic, see docs/catalog.md); None for
        a local lake, whose files DuckDB reads itself."""
        return self._remote.stats.bytes if self._remote else None

    @property
    def read_stats(self) -> ReadStats | None:
        """Bytes fetched per file of a remote lake (None for a local lake)."""
        return self._remote.stats if self._remote else None

    def files_pattern(self, spec: TableSpec) -> str:
        """The glob DuckDB reads for one table: a file, a glob, or every file under a folder."""
        if self._remote:
            return self._remote.url(spec)
        path = os.path.normpath(os.path.join(self.root, spec.path or spec.name))
        if globlib.has_magic(path) or os.path.isfile(path):
            return path
        return os.path.join(path, "**", "*.parquet")

    def bind(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """A view per declared table in an in-memory catalog named after the source."""
        attach_memory(con, self.name)
        bind_one = self._bind_remote if self._remote else self._bind_local
        for name, spec in self._specs.items():
            bind_one(con, name, spec)
        self._con = con
        if self._remote:  # DuckDB's Parquet reader reads the lake through it
            con.register_filesystem(self._remote.files)
            return [self._remote.files.root()]
        return [self.root]

    def _bind_local(self, con: duckdb.DuckDBPyConnection, name: str, spec: TableSpec) -> None:
        import duckdb

        hive = {"hive": ", hive_partitioning = true", "none": ", hive_partitioning = false"}
        options = hive.get(spec.partitioning or "", "")
        sql = (f"CREATE VIEW {relation(self.name, TableRef('main', name))} AS SELECT * "
               f"FROM read_parquet({literal(self.files_pattern(spec))}{options})")
        try:
            con.execute(sql)
        except duckdb.Error as exc:
            self._broken[name] = str(exc).splitlines()[0]

    def _bind_remote(self, con: duckdb.DuckDBPyConnection, name: str, spec: TableSpec) -> None:
        """A view over a stand-in with no columns of the table's, under the private name its
        datasets are registered by; the first query reading the table lists it (``_list``)."""
        import pyarrow as pa

        self._create_view(con, name, pa.table({"__unlisted": pa.array([], pa.int32())}))
        self._unlisted.add(name)

    def _create_view(self, con: duckdb.DuckDBPyConnection, name: str, stand_in: Any) -> None:
        con.register(self.relation_name(name), stand_in)
        con.execute(f"CREATE OR REPLACE VIEW {relation(self.name, TableRef('main', name))} AS "
                    f"SELECT * FROM {quote(self.relation_name(name))}")

    def _list(self, name: str) -> None:
        """List a table not listed yet for its columns (``SourceError`` in words when that
        fails); its view then takes them. One table's listing never waits for another's."""
        with self._list_locks[name]:
            if name not in self._unlisted:
                return
            schema = self._remote.schema(self._specs[name])
            with self._bind_lock:
                cursor = self._bound().cursor()
                try:
                    self._create_view(cursor, name, schema.empty_table())
                finally:
                    cursor.close()
            self._unlisted.discard(name)

    def relation_name(self, table: str) -> str:
        """The name a remote table's dataset is registered under in each executor cursor."""
        return f"__parquet_{self.name}_{table}"

    def relations(self, tables: list[str] | None = None, *, reading: bool = True,
                  part: tuple[str, ...] | None = None) -> dict[str, Any]:
        """What each query of a remote lake reads, one per table: a ``View`` over DuckDB's
        ``read_parquet`` of the objects listed and pinned now (or, not ``reading``, a stand-in
        with the table's columns and no rows, for describing queries).

        ``tables`` limits them to the tables a query reads (default: every table), so a table
        whose listing fails (``SourceError``, in words) fails only the queries reading it.
        """
        if not self._remote:
            return {}
        names = [n for n in (tables if tables is not None else self._specs) if n in self._specs]
        out: dict[str, Any] = {}
        for name in names:
            self.check(TableRef("main", name))
            spec = self._specs[name]
            if not reading:
                out[self.relation_name(name)] = self._remote.schema(spec).empty_table()
                continue
            sql, read = self._remote.view(spec, self._hive_types(name), part)
            out[self.relation_name(name)] = View(sql, read.finish,
                                                 lambda read=read: self._remote.release(read))
        return out

    def _hive_types(self, name: str) -> str:
        """``, hive_types = {...}``: the partition keys typed as the table has them."""
        keys = self._remote.keys(self._specs[name])
        if not keys:
            return ""
        types = self._duckdb_types(name)
        pairs = ", ".join(f"{literal(k)}: {literal(types[k])}" for k in sorted(keys))
        return f", hive_types = {{{pairs}}}"

    def _duckdb_types(self, name: str) -> dict[str, str]:
        schema = self._remote.schema(self._specs[name])
        cursor = self._bound().cursor()
        try:
            relation = cursor.from_arrow(schema.empty_table())
            return {c: str(t) for c, t in zip(relation.columns, relation.types, strict=True)}
        finally:
            cursor.close()

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._specs]

    def schema(self, table: TableRef) -> pa.Schema:
        self.check(table)
        if not self._remote:
            return super().schema(table)
        stand_in = self._remote.schema(self._specs[table.name]).empty_table()
        return schema_of(self._bound(), self.name, table, {self.relation_name(table.name): stand_in})

    def check(self, table: TableRef) -> None:
        """Raise the reason a table could not be bound (no files, unreadable files); a remote
        table not listed yet is listed first."""
        if table.name not in self._specs or table.schema != "main":
            raise SourceError(f"no table {table} in the lake (its tables are those the catalog "
                              "declares)", source=self.name)
        if table.name in self._unlisted:
            self._list(table.name)
        if table.name in self._broken:
            raise SourceError(f"table {table.name!r}: {self._broken[table.name]}", source=self.name)

    def split(self, request: ScanRequest, parts: int) -> list[ScanRequest]:
        """One request per group of the table's files (listed now), files dealt in turn."""
        table = table_ref(request.table)
        self.check(table)
        spec = self._specs[table.name]
        files = self._remote.part_paths(spec) if self._remote else self._local_files(spec)
        count = min(parts, len(files))
        if count <= 1:
            return [request]
        return [replace(request, part=tuple(files[i::count])) for i in range(count)]

    def _local_files(self, spec: TableSpec) -> list[str]:
        pattern = self.files_pattern(spec)
        return sorted(p for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))

    def _part_relation(self, cursor: duckdb.DuckDBPyConnection, table: TableRef,
                       files: tuple[str, ...]) -> str:
        """A local table's files ``files`` as DuckDB reads them, partition keys typed as the
        whole table has them."""
        spec = self._specs[table.name]
        hive = spec.partitioning != "none" and any(
            "=" in part for f in files for part in os.path.relpath(f, self.root).split(os.sep)[:-1])
        options = ", hive_partitioning = false"
        if hive:
            whole = cursor.sql(f"SELECT * FROM {relation(self.name, table)} LIMIT 0")
            in_files = set(cursor.sql(f"SELECT * FROM read_parquet({literal(files[0])}, "
                                      "hive_partitioning = false) LIMIT 0").columns)
            keys = {c: str(t) for c, t in zip(whole.columns, whole.types, strict=True)
                    if c not in in_files}
            pairs = ", ".join(f"{literal(k)}: {literal(t)}" for k, t in sorted(keys.items()))
            options = f", hive_partitioning = true, hive_types = {{{pairs}}}" if keys else options
        paths = ", ".join(literal(f) for f in files)
        return f"(SELECT * FROM read_parquet([{paths}]{options}))"

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        table = table_ref(request.table)
        self.check(table)
        if not self._remote:
            cursor = self._bound().cursor()
            if request.part:
                return scan_reader(cursor, self.name, request, table,
                                   self._part_relation(cursor, table, request.part))
            return scan_reader(cursor, self.name, request, table)
        cursor = self._bound().cursor()
        views: list[View] = []
        try:
            views = open_relations(cursor, self.relations([table.name], part=request.part))
            return self._translated(scan_reader(cursor, self.name, request, table), cursor, views)
        except BaseException as exc:
            for view in views:
                view.release()
            cursor.close()
            if isinstance(exc, FedQueryError) or not isinstance(exc, Exception):
                raise
            raise self._failure(exc) from exc  # DuckDB runs the scan's first batches here

    def _translated(self, reader: pa.RecordBatchReader, cursor: duckdb.DuckDBPyConnection,
                    views: list[View]) -> pa.RecordBatchReader:
        """A remote scan's stream whose failures are the SourceErrors the lake raised (they
        come out of DuckDB's Arrow stream as errors holding their text); at its end the
        objects read are checked unchanged, and the cursor is closed."""
        import pyarrow as pa

        def batches():
            try:
                yield from reader
                for view in views:
                    view.finish()
            except FedQueryError:
                raise
            except Exception as exc:
                raise self._failure(exc) from exc
            finally:
                for view in views:
                    view.release()
                cursor.close()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def _failure(self, exc: Exception) -> SourceError:
        return self.take_failure(str(exc)) or SourceError(_first_line(str(exc)), source=self.name)

    def take_failure(self, text: str) -> SourceError | None:
        """The SourceError a remote scan raised inside DuckDB, found by the words of DuckDB's
        message (``text``), which keeps only its text; None if there is none."""
        return self._remote.take_failure(text) if self._remote else None

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of a lake table, from the Parquet footers (counted once per connection)."""
        if table.name not in self._row_counts:
            self.check(table)
            if self._remote:
                rows = self._remote.estimate_rows(self._specs[table.name])
            else:
                sql = f"SELECT count(*) FROM {relation(self.name, table)}"
                rows = self._bound().sql(sql).fetchall()[0][0]
            self._row_counts[table.name] = rows
        return self._row_counts[table.name]

    def describe(self, table: TableRef) -> dict[str, Any]:
        spec = self._specs.get(table.name)
        detail = {"kind": "parquet", "files": self.files_pattern(spec) if spec else None,
                  "partitioning": spec.partitioning if spec else None}
        if self._remote:
            detail.update(self._remote.describe())
        return detail

    def location(self) -> str:
        return self.root

    def close(self) -> None:
        super().close()
        if self._remote:
            self._remote.close()


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
