"""``kind: files``: a root of blobs (images, point clouds) and its listing table.

A catalog table over a files source (``camera_files: {source: camera}``) lists the files under
the root: ``uri`` (relative to the root, as blob columns hold it), ``size``, ``modified`` and
``extension``. The listing is made once per scan and filtered by DuckDB over Arrow. A local
root lists what the blob functions would read: regular files beneath the root, symlinks that
lead to one without leaving the root; folders reached through a symlink are not entered, and
hard links are left out unless the source sets ``allow_hard_links`` (``functions.confine``).
An S3 root lists the keys that read back under the URI listed (see ``_plain_key``); a missing
bucket is a ``SourceError``.
The source's settings (``limits``, ``allow_hard_links``, ``read_attempts``) are checked here.
"""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from fedquery.connectors import settings
from fedquery.connectors.base import Capabilities, Connector, ScanRequest, TableRef
from fedquery.errors import SourceError

if TYPE_CHECKING:
    from fedquery.catalog import Catalog, SourceSpec

LISTING_SCHEMA = pa.schema([("uri", pa.string()), ("size", pa.int64()),
                            ("modified", pa.timestamp("us", tz="UTC")),
                            ("extension", pa.string())])


class FilesConnector(Connector):
    """The listing of one files root, as a table."""

    kind = "files"
    capabilities = Capabilities(dialect=None, native=False, subtrees=False)
    TABLE_SETTINGS = {}  # a table over a files source is its listing

    @classmethod
    def check_settings(cls, given, where: str) -> None:
        from fedquery.functions.limits import FilesSettings

        FilesSettings.from_settings(given, where)  # unknown keys, limits, attempts, timeouts
        settings.check({"root": settings.Setting(settings.text, required=True),
                        "options": settings.Setting(settings.mapping)},
                       {k: given.get(k) for k in ("root", "options")}, where, cls.kind)
        settings.check_remote_options(given, where)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        from fedquery.connectors.remote_fs import open_filesystem
        from fedquery.functions.limits import FilesSettings

        super().__init__(spec, catalog)
        self.settings = FilesSettings.from_settings(spec.settings,
                                                    f"{catalog.origin}: sources.{spec.name}")
        self.root = spec.resolve(spec.settings["root"])
        self._filesystem, self._path = open_filesystem(
            self.root, spec.settings.get("options"), source=spec.name, secrets=catalog.secrets)
        if "://" not in self.root and not os.path.isdir(self._path):
            raise SourceError(f"files root is not a folder: {self.root}", source=self.name)
        self._tables = [t.name for t in catalog.tables.values() if t.source == spec.name]
        if "://" in self.root:
            self.capabilities = Capabilities(dialect=None, native=False, remote=True)

    def bytes_read(self) -> int | None:
        stats = getattr(self._filesystem.handler, "stats", None)
        return getattr(stats, "bytes", None)

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._tables]

    def schema(self, table: TableRef) -> pa.Schema:
        self._check(table)
        return LISTING_SCHEMA

    def _check(self, table: TableRef) -> None:
        if table not in self.tables():
            raise SourceError(f"no table {table} over this root (its tables are those the "
                              "catalog declares)", source=self.name)

    def listing(self) -> pa.Table:
        """Every file under the root, with its URI relative to the root."""
        files = self._local_files() if "://" not in self.root else self._remote_files()
        return pa.table({
            "uri": [uri for uri, _, _ in files],
            "size": pa.array([size for _, size, _ in files], pa.int64()),
            "modified": pa.array([mtime for _, _, mtime in files], pa.timestamp("ns", tz="UTC"))
            .cast(pa.timestamp("us", tz="UTC"), safe=False),
            "extension": [posixpath.splitext(uri)[1].lstrip(".").lower() for uri, _, _ in files],
        }, schema=LISTING_SCHEMA)

    def _local_files(self) -> list[tuple[str, int, int]]:
        """(uri, size, mtime in ns) of each file a blob function may read beneath the root."""
        from fedquery.functions.confine import list_beneath

        try:
            found = sorted(list_beneath(self._path, allow_hard_links=self.settings.allow_hard_links))
        except OSError as exc:
            raise SourceError(f"cannot list {self.root}: {exc}", source=self.name) from exc
        return [(uri, info.st_size, info.st_mtime_ns) for uri, info in found]

    def _remote_files(self) -> list[tuple[str, int, int]]:
        """(uri, size, mtime in ns) of each object a blob function reads as that URI: keys
        strictly under the prefix whose rest is a plain path (``a/../b``, ``./a`` or ``a//b``
        would read another key, or none inside the root). A missing bucket is an error."""
        selector = pafs.FileSelector(self._path, recursive=True, allow_not_found=True)
        try:
            infos = self._filesystem.get_file_info(selector)
        except OSError as exc:
            raise SourceError(f"cannot list {self.root}: {exc}", source=self.name) from exc
        if not infos and (missing := self._filesystem.handler.missing_bucket(self._path)):
            raise SourceError(f"cannot list {self.root}: {missing}", source=self.name)
        prefix = self._path.rstrip("/") + "/"
        return [(i.path[len(prefix):], i.size, i.mtime_ns) for i in infos
                if i.type == pafs.FileType.File and _plain_key(i.path, prefix)]

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        """The listing, narrowed by the request in a private DuckDB over Arrow."""
        import duckdb

        from fedquery.connectors._native import keys_in_filter, scan_sql, table_ref, used_params

        self._check(table_ref(request.table))

        request = keys_in_filter(request)

        con = duckdb.connect()
        con.register("files", self.listing())
        con.execute("CREATE TABLE main.listing AS SELECT * FROM files")
        sql = scan_sql("memory", request, TableRef("main", "listing"))
        table = con.sql(sql, params=used_params(sql, request.params)).to_arrow_table()
        con.close()
        return table.to_reader()

    def describe(self, table: TableRef) -> dict[str, Any]:
        return {"kind": "files", "root": self.root}

    def location(self) -> str:
        return self.root

    def close(self) -> None:
        """Nothing to release: the filesystem holds no session."""


def _plain_key(key: str, prefix: str) -> bool:
    """Whether ``key`` lies strictly under ``prefix`` and is the path its own URI resolves to."""
    rest = key[len(prefix):]
    return key.startswith(prefix) and bool(rest) and posixpath.normpath(rest) == rest \
        and not rest.startswith(("/", "../")) and rest != ".."
