"""A Parquet lake on S3: listings, objects pinned for one query, footers kept while safe.

Each query lists a table's files (``RemoteLake.dataset``) and pins each object it may read:
its size and modification time from the listing and, for an object written less than
``SETTLED_AFTER`` seconds before the listing, its ETag (one HEAD). S3 times have a resolution
of one second, so two versions of a young object written in the same second can share size
and time; a settled one cannot, because AWS (and MinIO) refuse clients whose clock is more
than 15 minutes off: a later rewrite is stamped at least the listing's time minus that skew,
which is past the settled time. A file's footer (a pyarrow fragment's metadata) is kept for
the next query while its pin is the same, and after a scan the pins are checked again (one
listing for settled objects, a HEAD for each young one): an object replaced while a query read
it fails the query instead of mixing two versions.
"""

from __future__ import annotations

import glob as globlib
import posixpath
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors._lake_layout import parquet_format, partition_dir, partitioning_for, table_schema
from connectors._lake_scan import LakeDataset
from connectors._parquet_bytes import chunk_bytes, footer_bytes
from connectors.remote_fs import ReadStats, describe_options, list_files, open_native
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    from fedquery.catalog import Catalog, TableSpec

CLOCK_SKEW_MAX = 15 * 60  # AWS and MinIO answer RequestTimeTooSkewed past this
SETTLED_AFTER = CLOCK_SKEW_MAX + 2  # seconds: one for the time's resolution, one to spare
REQUESTS_AT_ONCE = 8  # HEADs and footer reads of one table, in parallel
_NOT_FOUND = re.compile(r"NO_SUCH_KEY|NoSuchKey|HTTP status 404|RESOURCE_NOT_FOUND", re.I)


@dataclass(frozen=True)
class Pin:
    """What a query saw of one object: size and time from the listing, and the ETag of a young
    object (None for a settled one, which its size and time identify)."""

    path: str
    size: int
    mtime_ns: int
    etag: str | None = None

    def same_object(self, other: Pin) -> bool:
        if self.size != other.size:
            return False
        if self.etag is not None or other.etag is not None:
            return self.etag == other.etag
        return self.mtime_ns == other.mtime_ns


@dataclass
class Footer:
    """A file's fragment, the pin it was made for, and whether its footer was read yet."""

    fragment: ds.ParquetFileFragment
    pin: Pin
    loaded: bool = False


class RemoteLake:
    """The tables of a lake on S3, as pyarrow datasets over pyarrow's native S3 filesystem."""

    def __init__(self, source: str, root: str, options: dict[str, Any], catalog: Catalog) -> None:
        self.source, self.root = source, root
        self.location, self.base = open_native(root, options, source=source, secrets=catalog.secrets)
        self.filesystem = self.location.filesystem
        self.stats = ReadStats()
        self._described = describe_options(root, options)
        self._schemas: dict[str, pa.Schema] = {}
        self._keys: dict[str, set[str]] = {}
        self._partitionings: dict[str, Any] = {}
        self._footers: dict[str, dict[str, Footer]] = {}
        self._lock = threading.Lock()
        self._failures: deque[SourceError] = deque(maxlen=64)

    # ------------------------------------------------------------------ names

    def path(self, spec: TableSpec) -> str:
        """The table's path inside the filesystem (``bucket/prefix/table/``), kept in the root."""
        raw = spec.path or spec.name
        joined = posixpath.normpath(posixpath.join(self.base, raw))
        if joined != self.base and not joined.startswith(self.base + "/"):
            raise SourceError(f"tables.{spec.name}.path: {raw!r} leaves the lake root "
                              f"{self.root}", source=self.source)
        return joined + ("/" if raw.endswith("/") else "")

    def url(self, spec: TableSpec) -> str:
        return self.location.url(self.path(spec))

    def describe(self) -> dict[str, Any]:
        return dict(self._described)

    # ------------------------------------------------------------------ datasets

    def dataset(self, spec: TableSpec) -> LakeDataset:
        """List the table's files, pin them and make the dataset one query scans; raises
        ``SourceError`` in words."""
        listed_at = time.time()
        files = self.listing(spec)
        pins = self._pins(spec, files, listed_at)
        base_dir = partition_dir(self.path(spec))
        if spec.name not in self._partitionings:
            self._partitionings[spec.name] = partitioning_for(spec.partitioning,
                                                              [f.path for f in files], base_dir)
        partitioning = self._partitionings[spec.name]
        footers = self._fragments(spec.name, pins, partitioning, base_dir)
        if spec.name not in self._schemas:
            first = footers[0]
            self.load(spec, [first])
            schema = table_schema(first.fragment.physical_schema, partitioning)
            self._keys[spec.name] = set(schema.names) - set(first.fragment.physical_schema.names)
            self._schemas[spec.name] = schema
        dataset = LakeDataset([f.fragment for f in footers], self._schemas[spec.name],
                              parquet_format(), self.filesystem)
        dataset.read = TableRead(self, spec, {f.pin.path: f for f in footers})
        return dataset

    def listing(self, spec: TableSpec) -> list[pafs.FileInfo]:
        """The table's Parquet files (a folder's ``*.parquet``, a glob's matches, a file)."""
        path = self.path(spec)
        try:
            files = list_files(self.filesystem, path)
        except OSError as exc:
            raise SourceError(f"cannot list {self.location.url(path)}: "
                              f"{self.location.reason(exc, path)}", source=self.source) from None
        if not globlib.has_magic(path) and not (len(files) == 1 and files[0].path == path):
            files = [f for f in files if f.path.endswith(".parquet")]
        if not files:
            missing = self.location.missing_bucket(path)
            raise SourceError(missing or f"no Parquet files match {self.location.url(path)}",
                              source=self.source)
        return files

    def _pins(self, spec: TableSpec, files: list[pafs.FileInfo], listed_at: float) -> list[Pin]:
        """A pin per file; young files' ETags asked with one HEAD each, in parallel."""
        pins = [Pin(f.path, f.size, f.mtime_ns) for f in files]
        young = [p for p in pins if p.mtime_ns / 1e9 > listed_at - SETTLED_AFTER]
        heads = dict(zip([p.path for p in young], self._each(self.head, [p.path for p in young], spec),
                         strict=True))
        for i, pin in enumerate(pins):
            if pin.path in heads:
                etag, size = heads[pin.path]
                if size != pin.size:
                    raise changed(spec, self, [pin.path], "rewritten as it was listed")
                pins[i] = Pin(pin.path, pin.size, pin.mtime_ns, etag)
        return pins

    def head(self, path: str) -> tuple[str | None, int]:
        """An object's ETag and size (one HEAD); ``FileNotFoundError`` when it is gone."""
        with self.filesystem.open_input_file(path) as handle:
            etag = handle.metadata().get("ETag")
            return (etag.decode() if etag else None), handle.size()

    def _fragments(self, table: str, pins: list[Pin], partitioning: Any,
                   base_dir: str) -> list[Footer]:
        """One fragment per file: the kept one while its pin is the same object, else a new one
        made with the listed size (so opening it takes no HEAD)."""
        known = self._footers.get(table, {})
        current = {}
        for pin in pins:
            footer = known.get(pin.path)
            if footer is None or not footer.pin.same_object(pin):
                folder = posixpath.relpath(posixpath.dirname(pin.path), base_dir)
                where = partitioning.parse(f"/{folder}/") if partitioning and folder != "." else None
                fragment = parquet_format().make_fragment(pin.path, self.filesystem, where,
                                                          file_size=pin.size)
                footer = Footer(fragment, pin)
            current[pin.path] = footer
        self._footers[table] = current
        return list(current.values())

    def forget(self, table: str, paths: Iterable[str]) -> None:
        """Drop kept footers (of objects seen to change)."""
        known = self._footers.get(table, {})
        for path in paths:
            known.pop(path, None)

    # ------------------------------------------------------------------ reads

    def load(self, spec: TableSpec, footers: list[Footer],
             failure: Callable[[BaseException, str], SourceError] | None = None) -> None:
        """Read the footers not read yet (in parallel), counting their bytes."""
        todo = [f for f in footers if not f.loaded]
        for footer, _ in zip(todo, self._each(self._load_one, todo, spec, failure), strict=True):
            with self._lock:
                if footer.loaded:
                    continue
                footer.loaded = True
            self.stats.add(footer.pin.path, footer_bytes(footer.pin.size, footer.fragment.metadata))

    @staticmethod
    def _load_one(footer: Footer) -> None:
        footer.fragment.ensure_complete_metadata()

    def _each(self, call: Callable[[Any], Any], items: list, spec: TableSpec,
              failure: Callable[[BaseException, str], SourceError] | None = None) -> list:
        """``call`` on each item (a path or a Footer), several at once; the first failure
        raised as a SourceError naming the object (made by ``failure``)."""
        failure = failure or (lambda exc, path: self.failure(spec, exc, path))

        def guarded(item: Any) -> Any:
            try:
                return call(item)
            except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
                path = item if isinstance(item, str) else item.pin.path
                return TableFailure(exc, path)

        if len(items) <= 1:
            results = [guarded(i) for i in items]
        else:
            with ThreadPoolExecutor(min(REQUESTS_AT_ONCE, len(items))) as pool:
                results = list(pool.map(guarded, items))
        for result in results:
            if isinstance(result, TableFailure):
                raise failure(result.exc, result.path)
        return results

    def failure(self, spec: TableSpec, exc: BaseException, path: str) -> SourceError:
        """A failed read of one object as a SourceError in words."""
        if isinstance(exc, FileNotFoundError):
            return changed(spec, self, [path], "deleted")
        return SourceError(f"table {spec.name!r}: cannot read {self.location.url(path)}: "
                           f"{self.location.reason(exc, path)}", source=self.source)

    def estimate_rows(self, spec: TableSpec) -> int:
        """Rows of a table, from its files' footers."""
        read = self.dataset(spec).read
        footers = list(read.footers.values())
        self.load(spec, footers)
        return sum(f.fragment.metadata.num_rows for f in footers)

    def schema(self, spec: TableSpec) -> pa.Schema:
        """The table's Arrow schema, as first listed (listing it now if never before)."""
        if spec.name not in self._schemas:
            self.dataset(spec)
        return self._schemas[spec.name]

    def remember(self, error: SourceError) -> None:
        self._failures.append(error)

    def take_failure(self, text: str) -> SourceError | None:
        """The error a scan raised inside DuckDB whose words ``text`` (DuckDB's message) holds."""
        with self._lock:
            for error in list(self._failures):
                if str(error).removeprefix(f"source {self.source!r}: ") in text:
                    self._failures.remove(error)
                    return error
        return None

    def close(self) -> None:
        self._schemas.clear()
        self._footers.clear()


@dataclass
class TableFailure:
    exc: BaseException
    path: str


class TableRead:
    """One query's read of one table: the objects it pinned, and the checks and counts made
    around each scan of them (``LakeDataset.scanner``)."""

    def __init__(self, lake: RemoteLake, spec: TableSpec, footers: dict[str, Footer]) -> None:
        self.lake, self.spec, self.footers = lake, spec, footers
        self.schema = lake._schemas.get(spec.name)

    def prepare(self, fragments: list[ds.ParquetFileFragment], columns: set[str],
                filter: pc.Expression | None) -> None:
        """Before a scan: the footers of the files it may read, each file's columns checked
        against the table's, and the bytes it will fetch counted."""
        footers = [self.footers[f.path] for f in fragments]
        try:
            self.lake.load(self.spec, footers, self.failure)
            for footer in footers:
                self._check_columns(footer)
                self._count(footer, columns, filter)
        except SourceError as exc:
            self.lake.remember(exc)
            raise

    def _check_columns(self, footer: Footer) -> None:
        """A file must have every column of the table, of the same type (as DuckDB's
        ``read_parquet`` refuses a file of a glob that lacks one)."""
        physical = footer.fragment.physical_schema
        keys = self.lake._keys.get(self.spec.name, set())
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

    def _count(self, footer: Footer, columns: set[str], filter: pc.Expression | None) -> None:
        fragment = footer.fragment
        if filter is None:
            groups = list(range(fragment.metadata.num_row_groups))
        else:
            groups = [g.id for g in fragment.subset(filter=filter, schema=self.schema).row_groups]
        self.lake.stats.add(footer.pin.path, chunk_bytes(fragment, columns, groups))

    def verify(self, paths: list[str]) -> None:
        """After a scan: every object read is the one pinned (else a SourceError, and its
        footer is dropped)."""
        pins = [self.footers[p].pin for p in paths]
        moved = self._changed(pins)
        if moved:
            self.lake.forget(self.spec.name, [p for p, _ in moved])
            raise changed(self.spec, self.lake, [moved[0][0]], moved[0][1])

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
                listed = {f.path: f for f in list_files(self.lake.filesystem, self.lake.path(self.spec))}
            except OSError as exc:
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
        if not _from_s3(exc):
            try:
                moved = self._changed([self.footers[path].pin])
            except SourceError:
                moved = []
            if moved:
                self.lake.forget(self.spec.name, [path])
                return changed(self.spec, self.lake, [path], moved[0][1])
        return self.lake.failure(self.spec, exc, path)

    def remember(self, error: SourceError) -> None:
        self.lake.remember(error)


def changed(spec: TableSpec, lake: RemoteLake, paths: list[str], what: str) -> SourceError:
    """An object replaced, rewritten or deleted while a query read the table."""
    return SourceError(f"table {spec.name!r}: {lake.location.url(paths[0])} was {what} while "
                       "the query read it; run the query again", source=lake.source)


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
