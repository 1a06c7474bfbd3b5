"""``kind: parquet``: a lake of Parquet tables under one root (a folder, glob or file each).

Local lakes are bound into the executor's DuckDB as views over ``read_parquet`` so DuckDB's own
projection, filter, partition and row-group pruning apply. Remote lakes (``root: s3://...``) are
bound as views over pyarrow datasets (DuckDB here cannot read ``s3://`` itself): DuckDB pushes
projections and filters, ``IN`` lists included, into the dataset scan, which prunes partitions
and row groups and reads only the column chunks it needs. Each query lists the files anew
(``relations``), once per table, so it sees files written since the last query.
"""

from __future__ import annotations

import glob as globlib
import os
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from connectors._native import (
    DuckDBBound,
    attach_memory,
    literal,
    quote,
    relation,
    scan_reader,
    schema_of,
    table_ref,
)
from connectors.base import Capabilities, ScanRequest, TableRef
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    from connectors.remote_fs import ReadStats
    from fedquery.catalog import Catalog, SourceSpec, TableSpec

_HIVE_SEGMENT = re.compile(r"^([^=/]+)=([^/]*)$")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class ParquetConnector(DuckDBBound):
    """Parquet tables declared in the catalog; one-table scans only (no SQL engine of its own)."""

    kind = "parquet"
    capabilities = Capabilities(dialect=None, native=True, subtrees=False)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        self.name = spec.name
        self.root = spec.resolve(spec.settings["root"])
        self._specs = {t.name: t for t in catalog.tables.values() if t.source == spec.name}
        self._broken: dict[str, str] = {}
        self._row_counts: dict[str, int] = {}
        self._remote: _RemoteLake | None = None
        if "://" in self.root:
            self._remote = _RemoteLake(self.name, self.root, spec.settings.get("options") or {},
                                       catalog)
            # rows cross a network: worth filtering by join keys before they move
            self.capabilities = replace(self.capabilities, remote=True)
        elif not os.path.isdir(self.root):
            raise SourceError(f"lake root is not a folder: {self.root}", source=self.name)

    @property
    def bytes_read(self) -> int | None:
        """Bytes read from a remote lake so far (monotonic); None for a local lake, whose files
        DuckDB reads itself."""
        return self._remote.stats.bytes if self._remote else None

    @property
    def read_stats(self) -> ReadStats | None:
        """Bytes and reads per file of a remote lake (None for a local lake)."""
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
        return [] if self._remote else [self.root]

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
        """The table's dataset registered under a private name, and the view over it."""
        try:
            dataset = self._remote.dataset(spec)
        except SourceError as exc:
            self._broken[name] = _reason(exc)
            return
        con.register(self.relation_name(name), dataset)
        con.execute(f"CREATE VIEW {relation(self.name, TableRef('main', name))} AS "
                    f"SELECT * FROM {quote(self.relation_name(name))}")

    def relation_name(self, table: str) -> str:
        """The name a remote table's dataset is registered under in each executor cursor."""
        return f"__parquet_{self.name}_{table}"

    def relations(self, tables: list[str] | None = None) -> dict[str, Any]:
        """Fresh datasets of a remote lake, one listing per table: what one query sees.

        ``tables`` limits the listing to the tables a query reads (default: every table), so a
        table whose listing fails (``SourceError``, in words) fails only the queries reading it.
        """
        if not self._remote:
            return {}
        names = [n for n in (tables if tables is not None else self._specs)
                 if n in self._specs and n not in self._broken]
        if len(names) <= 1:
            datasets = [self._remote.dataset(self._specs[n]) for n in names]
        else:
            with ThreadPoolExecutor(min(8, len(names))) as pool:
                datasets = list(pool.map(self._remote.dataset, [self._specs[n] for n in names]))
        return {self.relation_name(n): d for n, d in zip(names, datasets, strict=True)}

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._specs]

    def schema(self, table: TableRef) -> pa.Schema:
        self.check(table)
        if not self._remote:
            return super().schema(table)
        stand_in = self._remote.schema(self._specs[table.name]).empty_table()
        return schema_of(self._bound(), self.name, table, {self.relation_name(table.name): stand_in})

    def check(self, table: TableRef) -> None:
        """Raise the reason a table could not be bound (no files, unreadable files)."""
        if table.name in self._broken:
            raise SourceError(f"table {table.name!r}: {self._broken[table.name]}", source=self.name)

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        table = table_ref(request.table)
        self.check(table)
        cursor = self._bound().cursor()
        for name, dataset in self.relations([table.name]).items():
            cursor.register(name, dataset)
        return scan_reader(cursor, self.name, request, table)

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of a lake table, from the Parquet footers (counted once per connection)."""
        if table.name not in self._row_counts:
            self.check(table)
            if self._remote:
                rows = self._remote.dataset(self._specs[table.name]).count_rows()
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

    def close(self) -> None:
        super().close()
        if self._remote:
            self._remote.close()


class _RemoteLake:
    """The tables of a lake on S3, as pyarrow datasets over a filesystem that counts bytes."""

    def __init__(self, source: str, root: str, options: dict[str, Any], catalog: Catalog) -> None:
        from connectors.remote_fs import describe_options, open_filesystem

        self.source, self.root = source, root
        self.filesystem, self.base = open_filesystem(root, options, source=source,
                                                     secrets=catalog.secrets)
        self.handler = self.filesystem.handler
        self.stats = self.handler.stats
        self._described = describe_options(root, options)
        self._schemas: dict[str, pa.Schema] = {}
        self._partitionings: dict[str, Any] = {}
        self._fragment_cache: dict[str, dict[tuple, ds.ParquetFileFragment]] = {}

    def path(self, spec: TableSpec) -> str:
        """The table's path inside the filesystem (``bucket/prefix/table/``), kept in the root."""
        raw = spec.path or spec.name
        joined = posixpath.normpath(posixpath.join(self.base, raw))
        if joined != self.base and not joined.startswith(self.base + "/"):
            raise SourceError(f"tables.{spec.name}.path: {raw!r} leaves the lake root "
                              f"{self.root}", source=self.source)
        return joined + ("/" if raw.endswith("/") else "")

    def url(self, spec: TableSpec) -> str:
        return self.handler.url(self.path(spec))

    def describe(self) -> dict[str, Any]:
        return dict(self._described)

    def dataset(self, spec: TableSpec) -> ds.Dataset:
        """List the table's files and make a dataset; raises ``SourceError`` in words."""
        from connectors.remote_fs import list_files

        path = self.path(spec)
        try:
            files = list_files(self.filesystem, path)
        except OSError as exc:
            raise SourceError(f"cannot list {self.handler.url(path)}: "
                              f"{self.handler.reason(exc, path)}", source=self.source) from None
        if not globlib.has_magic(path) and not (len(files) == 1 and files[0].path == path):
            files = [f for f in files if f.path.endswith(".parquet")]
        if not files:
            missing = self.handler.missing_bucket(path)
            raise SourceError(missing or f"no Parquet files match {self.handler.url(path)}",
                              source=self.source)
        return self._make(spec, files, _partition_dir(path))

    def _make(self, spec: TableSpec, files: list[pafs.FileInfo], base_dir: str) -> ds.Dataset:
        import pyarrow.dataset as ds

        if spec.name not in self._partitionings:
            self._partitionings[spec.name] = _partitioning(spec.partitioning,
                                                           [f.path for f in files], base_dir)
        partitioning = self._partitionings[spec.name]
        try:
            fragments = self._fragments(spec.name, files, partitioning, base_dir)
            schema = self._schemas.get(spec.name) or _table_schema(fragments[0], partitioning)
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise SourceError(f"table {spec.name!r} under {self.url(spec)}: "
                              f"{self.handler.reason(exc, files[0].path)}", source=self.source) from None
        self._schemas.setdefault(spec.name, schema)
        return ds.FileSystemDataset(fragments, schema, _format(), self.filesystem)

    def _fragments(self, table: str, files: list[pafs.FileInfo], partitioning: Any,
                   base_dir: str) -> list[ds.ParquetFileFragment]:
        """One fragment per file, reused while the file's size and time stay the same.

        A fragment keeps the footer it read, so a later query neither reads the footer again
        nor opens a file whose row-group statistics rule it out. A file is taken to be
        unchanged while its size and modification time are (lake files are written once).
        """
        known = self._fragment_cache.get(table, {})
        current = {}
        for info in files:
            key = (info.path, info.size, info.mtime_ns)
            fragment = known.get(key)
            if fragment is None:
                folder = posixpath.relpath(posixpath.dirname(info.path), base_dir)
                where = partitioning.parse(f"/{folder}/") if partitioning and folder != "." else None
                fragment = _format().make_fragment(info.path, self.filesystem, where)
            current[key] = fragment
        self._fragment_cache[table] = current
        return list(current.values())

    def schema(self, spec: TableSpec) -> pa.Schema:
        """The table's Arrow schema, as first listed (listing it now if never before)."""
        if spec.name not in self._schemas:
            self.dataset(spec)
        return self._schemas[spec.name]

    def close(self) -> None:
        self._schemas.clear()
        self._fragment_cache.clear()


def _format() -> ds.ParquetFileFormat:
    """Parquet reads that coalesce nearby column chunks into few ranged GETs (pre-buffering)."""
    import pyarrow.dataset as ds

    return ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))


def _table_schema(fragment: ds.ParquetFileFragment, partitioning: Any) -> pa.Schema:
    """The first file's columns, then the partition keys (as DuckDB's ``read_parquet`` does)."""
    import pyarrow as pa

    schema = fragment.physical_schema
    keys = [f for f in (partitioning.schema if partitioning else []) if f.name not in schema.names]
    return pa.schema(list(schema) + keys)


def _partition_dir(path: str) -> str:
    """The folder hive partitions are parsed below: the table's folder, or a glob's fixed part."""
    head = re.split(r"[*?\[]", path, maxsplit=1)[0]
    if head == path and not path.endswith("/"):
        return posixpath.dirname(path) if path.endswith(".parquet") else path
    return head.rstrip("/") if head.endswith("/") else posixpath.dirname(head)


def _partitioning(mode: str | None, paths: list[str], base_dir: str) -> Any:
    """Hive partitioning as DuckDB's ``read_parquet`` infers it: BIGINT, DATE or VARCHAR keys.

    ``hive`` always, ``none`` never, unset when every file sits under ``key=value`` folders.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    if mode == "none":
        return None
    values: dict[str, set[str]] = {}
    for path in paths:
        folders = posixpath.relpath(posixpath.dirname(path), base_dir).split("/")
        pairs = [_HIVE_SEGMENT.match(f) for f in folders if f != "."]
        if mode is None and (not pairs or not all(pairs)):
            return None
        for match in filter(None, pairs):
            values.setdefault(match.group(1), set()).add(match.group(2))
    if not values:
        return None
    fields = [pa.field(key, _partition_type(seen - {_HIVE_NULL})) for key, seen in values.items()]
    return ds.HivePartitioning(pa.schema(fields), null_fallback=_HIVE_NULL)


def _partition_type(values: set[str]) -> pa.DataType:
    import pyarrow as pa

    if values and all(re.fullmatch(r"-?\d{1,18}", v) for v in values):
        return pa.int64()
    if values and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in values):
        return pa.date32()
    return pa.string()


def _reason(exc: SourceError) -> str:
    """A SourceError's message without its ``source '...':`` prefix."""
    return str(exc).removeprefix(f"source {exc.source!r}: ")
