"""One query's read of one lake table on S3: its objects pinned, checked and counted.

A ``TableRead`` belongs to the dataset one query registers (``RemoteLake.dataset``). The first
scan lists the table and pins its objects (``RemoteLake.pinned``); before each scan reads rows,
``prepare`` opens the footers of the files it may read, checks each file's columns against the
table's and counts the bytes the scan fetches; after it, ``verify`` checks the objects are the
ones pinned. Failures become ``SourceError``s that name the object.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

from connectors._lake_deadline import TooSlow
from connectors._parquet_bytes import chunk_ranges
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from connectors._s3_lake import Footer, Pin, RemoteLake
    from connectors.remote_fs import Location
    from fedquery.catalog import TableSpec

_NOT_FOUND = re.compile(r"NO_SUCH_KEY|NoSuchKey|HTTP status 404|RESOURCE_NOT_FOUND", re.I)


class TableRead:
    """One query's read of one table: the objects it pinned when first scanned, and the checks
    and counts made around each scan of them (``LakeDataset.scanner``)."""

    def __init__(self, lake: RemoteLake, spec: TableSpec) -> None:
        self.lake, self.spec = lake, spec
        self.schema = lake.schema(spec)
        self.footers: dict[str, Footer] | None = None
        self._lock = threading.Lock()

    def listed(self) -> dict[str, Footer]:
        """The table's files, listed and pinned once for this query (every scan of the table
        in one query sees the same files)."""
        with self._lock:
            if self.footers is None:
                try:
                    self.footers = {f.pin.path: f for f in self.lake.pinned(self.spec)}
                except SourceError as exc:
                    self.lake.remember(exc)
                    raise
            return self.footers

    def kept(self, filter: pc.Expression | None) -> list[ds.ParquetFileFragment]:
        """The fragments a filter's partition keys leave."""
        import pyarrow.dataset as ds

        from connectors._lake_layout import parquet_format

        fragments = [f.fragment for f in self.listed().values()]
        whole = ds.FileSystemDataset(fragments, self.schema, parquet_format(), self.lake.filesystem)
        return list(whole.get_fragments(filter=filter))

    def prepare(self, fragments: list[ds.ParquetFileFragment], columns: set[str],
                filter: pc.Expression | None) -> dict[str, list[tuple[int, int]]]:
        """Before a scan: the footers of the files it may read, each file's columns checked
        against the table's, and the bytes it will fetch counted; the byte ranges it fetches
        from each file."""
        footers = [self.listed()[f.path] for f in fragments]
        try:
            self.lake.load(self.spec, footers, self.failure)
            for footer in footers:
                self._check_columns(footer)
            return {f.pin.path: self._count(f, columns, filter) for f in footers}
        except SourceError as exc:
            self.lake.remember(exc)
            raise

    def _check_columns(self, footer: Footer) -> None:
        """A file must have every column of the table, of the same type (as DuckDB's
        ``read_parquet`` refuses a file of a glob that lacks one)."""
        physical = footer.fragment.physical_schema
        keys = self.lake.keys(self.spec)
        for field in self.schema:
            if field.name in keys:
                continue
            where = f"table {self.spec.name!r}: {self.lake.location.url(footer.pin.path)}"
            if field.name not in physical.names:
                raise SourceError(f"{where} has no column {field.name!r}, which the table has "
                                  f"(from its first file when the connection listed it): "
                                  f"rewrite the file with it, or reconnect to take the files' "
                                  f"new columns", source=self.lake.source)
            found = physical.field(field.name).type
            if not _same_type(found, field.type):
                raise SourceError(f"{where}: column {field.name!r} is {found} there but "
                                  f"{field.type} in the table (from its first file when the "
                                  f"connection listed it)", source=self.lake.source)

    def _count(self, footer: Footer, columns: set[str],
               filter: pc.Expression | None) -> list[tuple[int, int]]:
        """Count the bytes a scan of one file fetches; return their ranges."""
        fragment = footer.fragment
        if filter is None:
            groups = list(range(fragment.metadata.num_row_groups))
        else:
            groups = [g.id for g in fragment.subset(filter=filter, schema=self.schema).row_groups]
        ranges = chunk_ranges(fragment, columns, groups)
        self.lake.stats.add(footer.pin.path, sum(length for _, length in ranges))
        return ranges

    def verify(self, paths: list[str]) -> None:
        """After a scan: every object read is the one pinned (else a SourceError, and its
        footer is dropped)."""
        pins = [self.listed()[p].pin for p in paths]
        moved = self._changed(pins)
        if moved:
            self.lake.forget(self.spec.name, [p for p, _ in moved])
            raise changed(self.spec, self.lake.location, [moved[0][0]], moved[0][1])

    def _changed(self, pins: list[Pin]) -> list[tuple[str, str]]:
        """(path, what happened) for each pinned object that is not the same any more."""
        out = []
        young = [p for p in pins if p.etag is not None]
        heads = self.lake._each(self._head_or_none, [p.path for p in young], self.spec)
        for pin, head in zip(young, heads, strict=True):
            if head is None:
                out.append((pin.path, "deleted"))
            elif head[0] != pin.etag or head[1] != pin.size:
                out.append((pin.path, "rewritten"))
        settled = [p for p in pins if p.etag is None]
        if settled:
            try:
                listed = {f.path: f for f in self.lake.list_objects(self.lake.path(self.spec))}
            except OSError as exc:  # TooSlow too
                raise SourceError(f"table {self.spec.name!r}: cannot check that the objects read "
                                  f"are unchanged: {self.lake.location.reason(exc, settled[0].path)}",
                                  source=self.lake.source) from None
            for pin in settled:
                info = listed.get(pin.path)
                if info is None:
                    out.append((pin.path, "deleted"))
                elif info.size != pin.size or info.mtime_ns != pin.mtime_ns:
                    out.append((pin.path, "rewritten"))
        return out

    def _head_or_none(self, path: str) -> tuple[str | None, int] | None:
        try:
            return self.lake.head(path)
        except FileNotFoundError:
            return None

    def failure(self, exc: BaseException, path: str) -> SourceError:
        """A failed read as a SourceError: a file that changed under the scan says so (a new
        object read with an old footer looks corrupt), other failures say why in words."""
        if not _from_s3(exc) and not isinstance(exc, TooSlow):
            try:
                moved = self._changed([self.listed()[path].pin])
            except SourceError:
                moved = []
            if moved:
                self.lake.forget(self.spec.name, [path])
                return changed(self.spec, self.lake.location, [path], moved[0][1])
        return self.lake.failure(self.spec, exc, path)

    def remember(self, error: SourceError) -> None:
        self.lake.remember(error)


def changed(spec: TableSpec, location: Location, paths: list[str], what: str) -> SourceError:
    """An object replaced, rewritten or deleted while a query read the table."""
    return SourceError(f"table {spec.name!r}: {location.url(paths[0])} was {what} while the "
                       "query read it; run the query again", source=location.source)



def _from_s3(exc: BaseException) -> bool:
    """Whether S3 refused or failed a request (not an object gone, not bytes that made no
    sense, both of which a change of the object explains)."""
    text = str(exc)
    return "AWS Error" in text and not _NOT_FOUND.search(text) and not isinstance(exc, FileNotFoundError)


def _same_type(found: pa.DataType, expected: pa.DataType) -> bool:
    """Equal types, taking dictionary-encoded values and large/small strings as the same."""
    import pyarrow as pa

    def plain(kind: pa.DataType) -> pa.DataType:
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        return {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}.get(kind, kind)

    return plain(found) == plain(expected)
