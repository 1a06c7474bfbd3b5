"""A Parquet lake on S3: listings, objects pinned for one query, footers kept while safe.

Each query lists a table's files (``RemoteLake.view``) and pins each object it may read:
its size and modification time from the listing and, for an object written less than
``SETTLED_AFTER`` seconds before the listing, its ETag (one HEAD). S3 times have a resolution
of one second, so two versions of a young object written in the same second can share size
and time; a settled one cannot, because AWS (and MinIO) refuse clients whose clock is more
than 15 minutes off: a later rewrite is stamped at least the listing's time minus that skew,
which is past the settled time. A file's tail (where its footer is), its parsed metadata and
its reader are kept for the next query while its pin is the same, and after a query the pins
are checked again (one
listing for settled objects, a HEAD for each young one): an object replaced while a query read
it fails the query instead of mixing two versions.

A table's columns are its first file's and its partition keys, as the connection first lists
it (at the first query that reads the table, never at connect); a later listing whose
partition folders would change them (a key's type, a key gained or lost) fails in words, as
a file whose columns differ does. Every request runs under the read deadline of
``connectors._lake_deadline``.
"""

from __future__ import annotations

import glob as globlib
import posixpath
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedquery.connectors._lake_deadline import TooSlow, call_within, each_within
from fedquery.connectors._lake_files import LakeFiles
from fedquery.connectors._lake_layout import (
    PartitionMismatch,
    parquet_format,
    partition_change,
    partition_dir,
    partitioning_for,
    table_schema,
)
from fedquery.connectors._lake_read import TableRead, changed
from fedquery.connectors.remote_fs import ReadStats, describe_options, list_files, open_native
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from fedquery.catalog import Catalog, TableSpec

CLOCK_SKEW_MAX = 15 * 60  # AWS and MinIO answer RequestTimeTooSkewed past this
SETTLED_AFTER = CLOCK_SKEW_MAX + 2  # seconds: one for the time's resolution, one to spare
REQUESTS_AT_ONCE = 8  # HEADs and footer reads of one table, in parallel
FOOTER_READ = 64 * 1024  # the tail of a file read (and kept) to find its footer


def footer_bytes(size: int, metadata: pq.FileMetaData) -> int:
    """Bytes read to open a file of ``size`` bytes: one read from its end, a second one when
    the footer is longer than the first read."""
    return max(min(size, FOOTER_READ), metadata.serialized_size + 8)


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
    metadata: pq.FileMetaData | None = None


class RemoteLake:
    """The tables of a lake on S3, read by DuckDB's Parquet reader through ``files`` (bytes
    from pyarrow's native S3 filesystem)."""

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
        self.files = LakeFiles.for_lake()  # what DuckDB's own Parquet reader reads through
        self._tails: dict[str, tuple[Pin, bytes]] = {}
        self._handles: dict[str, tuple[Pin, Any]] = {}

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

    def view(self, spec: TableSpec, hive_types: str,
             part: tuple[str, ...] | None = None) -> tuple[str, TableRead]:
        """The SQL one query reads a table with (DuckDB's ``read_parquet`` over the objects
        listed and pinned now, through ``self.files``) and the read that serves it. A file's
        footer is read and its columns checked when DuckDB first opens it (files pruned by
        their partition keys are never opened). ``part``: only these of its objects (a part of
        a split scan); one gone since is a ``SourceError``."""
        read = TableRead(self, spec)
        listed = read.listed()
        footers = list(listed.values())
        if part is not None:
            gone = [path for path in part if path not in listed]
            if gone:
                raise SourceError(f"table {spec.name!r}: {self.location.url(gone[0])} is gone since "
                                  "the query listed the table; run the query again",
                                  source=self.source)
            footers = [listed[path] for path in part]
        token = self.files.add(read)
        read.token = token
        paths = ", ".join("'" + self.files.url(token, f.pin.path).replace("'", "''") + "'"
                          for f in footers)
        hive = f"hive_partitioning = true{hive_types}" if self.keys(spec) else "hive_partitioning = false"
        return f"SELECT * FROM read_parquet([{paths}], {hive})", read

    def part_paths(self, spec: TableSpec) -> list[str]:
        """The table's objects as a split scan names its parts (listed now)."""
        return sorted(f.path for f in self.listing(spec))

    def release(self, read: TableRead) -> None:
        """A read done with: its token served no more, its readers closed."""
        if read.token:
            self.files.remove(read.token)

    def handle(self, pin: Pin) -> Any:
        """pyarrow's reader of an object (its ranged GETs), opened once while the object is
        the same (opening costs a HEAD)."""
        with self._lock:
            kept = self._handles.get(pin.path)
        if kept is not None and kept[0].same_object(pin):
            return kept[1]
        handle = call_within(lambda: self.filesystem.open_input_file(pin.path), self.location.limits)
        with self._lock:
            self._handles[pin.path] = (pin, handle)
        return handle

    def tail(self, pin: Pin) -> bytes:
        """The last ``FOOTER_READ`` bytes of an object (where DuckDB finds the footer), kept
        while the object is the same."""
        with self._lock:
            kept = self._tails.get(pin.path)
        if kept is not None and kept[0].same_object(pin):
            return kept[1]
        nbytes = min(pin.size, FOOTER_READ)

        handle = self.handle(pin)
        data = call_within(lambda: handle.read_at(nbytes, pin.size - nbytes),
                           self.location.limits, nbytes)
        self.stats.add(pin.path, len(data))
        with self._lock:
            self._tails[pin.path] = (pin, data)
        return data

    def pinned(self, spec: TableSpec) -> list[Footer]:
        """List the table's files, pin them, and give each its fragment (kept or new)."""
        listed_at = time.time()
        files = self.listing(spec)
        base_dir = partition_dir(self.path(spec))
        partitioning = self._partitioning(spec, [f.path for f in files], base_dir)
        pins = self._pins(spec, files, listed_at)
        return self._fragments(spec, pins, partitioning, base_dir)

    def _first_schema(self, spec: TableSpec) -> None:
        """The table's columns: its first file's (its footer read and kept for the first
        query), then the partition keys of its folders."""
        listed_at = time.time()
        files = self.listing(spec)
        base_dir = partition_dir(self.path(spec))
        partitioning = self._partitioning(spec, [f.path for f in files], base_dir)
        first = self._fragments(spec, self._pins(spec, files[:1], listed_at), partitioning,
                                base_dir, keep_others=True)[0]
        self.load(spec, [first])
        physical = first.metadata.schema.to_arrow_schema()
        schema = table_schema(physical, partitioning)
        self._keys[spec.name] = set(schema.names) - set(physical.names)
        self._schemas[spec.name] = schema

    def _partitioning(self, spec: TableSpec, paths: list[str], base_dir: str) -> Any:
        """The table's partitioning: inferred at its first listing; a later listing whose
        folders would make other partition columns fails in words (reconnect to take them)."""
        try:
            if spec.name not in self._partitionings:
                self._partitionings[spec.name] = partitioning_for(spec.partitioning, paths, base_dir)
            else:
                change = partition_change(self._partitionings[spec.name], spec.partitioning,
                                          paths, base_dir, self.location.url)
                if change:
                    raise SourceError(f"table {spec.name!r}: {change} (DuckDB's read_parquet "
                                      f"types partition keys from every folder): reconnect to "
                                      f"read the table's new schema", source=self.source)
        except PartitionMismatch as exc:
            raise SourceError(f"table {spec.name!r}: hive partitions do not match: "
                              f"{self.location.url(exc.path)} has no folder for the partition "
                              f"key {exc.key!r}, which {self.location.url(exc.other)} has (DuckDB's "
                              f"read_parquet refuses such files too): put every file under the "
                              f"same keys, or declare the table's partitioning: none",
                              source=self.source) from None
        return self._partitionings[spec.name]

    def partitioning(self, spec: TableSpec) -> Any:
        return self._partitionings.get(spec.name)

    def keys(self, spec: TableSpec) -> set[str]:
        """The table's partition keys that are not columns of its files."""
        return self._keys.get(spec.name, set())

    def listing(self, spec: TableSpec) -> list[pafs.FileInfo]:
        """The table's Parquet files (a folder's ``*.parquet``, a glob's matches, a file)."""
        path = self.path(spec)
        try:
            files = self.list_objects(path)
        except OSError as exc:  # TooSlow too
            raise SourceError(f"table {spec.name!r}: cannot list {self.location.url(path)}: "
                              f"{self.location.reason(exc, path)}", source=self.source) from None
        if not globlib.has_magic(path) and not (len(files) == 1 and files[0].path == path):
            files = [f for f in files if f.path.endswith(".parquet")]
        if not files:
            missing = self.location.missing_bucket(path)
            raise SourceError(f"table {spec.name!r}: "
                              + (missing or f"no Parquet files match {self.location.url(path)}"),
                              source=self.source)
        return files

    def list_objects(self, path: str) -> list[pafs.FileInfo]:
        """``list_files`` within the read deadline (``TooSlow`` past it, ``OSError``)."""
        return call_within(lambda: list_files(self.filesystem, path), self.location.limits)

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
                    raise changed(spec, self.location, [pin.path], "rewritten as it was listed")
                pins[i] = Pin(pin.path, pin.size, pin.mtime_ns, etag)
        return pins

    def head(self, path: str) -> tuple[str | None, int]:
        """An object's ETag and size (one HEAD); ``FileNotFoundError`` when it is gone."""
        with self.filesystem.open_input_file(path) as handle:
            etag = handle.metadata().get("ETag")
            return (etag.decode() if etag else None), handle.size()

    def _fragments(self, spec: TableSpec, pins: list[Pin], partitioning: Any, base_dir: str, *,
                   keep_others: bool = False) -> list[Footer]:
        """One fragment per file: the kept one while its pin is the same object, else a new one
        made with the listed size (so opening it takes no HEAD). The table's kept footers
        become these (``keep_others``: these are added to them)."""
        known = self._footers.get(spec.name, {})
        current = dict(known) if keep_others else {}
        for pin in pins:
            footer = known.get(pin.path)
            if footer is None or not footer.pin.same_object(pin):
                footer = Footer(self._fragment(spec, pin, partitioning, base_dir), pin)
            current[pin.path] = footer
        self._footers[spec.name] = current
        return [current[p.path] for p in pins]

    def _fragment(self, spec: TableSpec, pin: Pin, partitioning: Any,
                  base_dir: str) -> ds.ParquetFileFragment:
        folder = posixpath.relpath(posixpath.dirname(pin.path), base_dir)
        try:
            where = partitioning.parse(f"/{folder}/") if partitioning and folder != "." else None
        except (ValueError, TypeError) as exc:  # pyarrow.ArrowInvalid: a value of another type
            raise SourceError(f"table {spec.name!r}: cannot read the partition keys of "
                              f"{self.location.url(pin.path)}: {exc}: reconnect to read the "
                              f"table's new schema", source=self.source) from None
        return parquet_format().make_fragment(pin.path, self.filesystem, where, file_size=pin.size)

    def forget(self, table: str, paths: Iterable[str]) -> None:
        """Drop kept footers (of objects seen to change)."""
        known = self._footers.get(table, {})
        for path in paths:
            known.pop(path, None)
            with self._lock:
                self._tails.pop(path, None)
                self._handles.pop(path, None)

    # ------------------------------------------------------------------ reads

    def load(self, spec: TableSpec, footers: list[Footer],
             failure: Callable[[BaseException, str], SourceError] | None = None) -> None:
        """Read the footers not read yet (in parallel), counting their bytes."""
        todo = [f for f in footers if not f.loaded]
        done = self._each(self._load_one, todo, spec, failure,
                          nbytes=lambda footer: min(footer.pin.size, FOOTER_READ))
        for footer, metadata in zip(todo, done, strict=True):
            with self._lock:
                if footer.loaded:
                    continue
                footer.metadata, footer.loaded = metadata, True

    def _load_one(self, footer: Footer) -> pq.FileMetaData:
        """A file's metadata, parsed from its kept tail (``tail``); a footer longer than the
        tail is read by pyarrow (a second read, counted)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tail = self.tail(footer.pin)
        if len(tail) < 8 or tail[-4:] != b"PAR1":
            raise ValueError("not a Parquet file (no PAR1 magic at its end)")
        if int.from_bytes(tail[-8:-4], "little") + 8 <= len(tail):
            return pq.read_metadata(pa.BufferReader(tail))
        footer.fragment.ensure_complete_metadata()
        metadata = footer.fragment.metadata
        self.stats.add(footer.pin.path, footer_bytes(footer.pin.size, metadata) - len(tail))
        return metadata

    def _each(self, call: Callable[[Any], Any], items: list, spec: TableSpec,
              failure: Callable[[BaseException, str], SourceError] | None = None, *,
              nbytes: Callable[[Any], int] = lambda item: 0) -> list:
        """``call`` on each item (a path or a Footer), several at once, each within the read
        deadline for ``nbytes(item)`` bytes; the first failure raised as a SourceError naming
        the object (made by ``failure``)."""
        failure = failure or (lambda exc, path: self.failure(spec, exc, path))

        def guarded(item: Any) -> Any:
            try:
                return call(item)
            except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
                return TableFailure(exc, _path(item))

        try:
            results = each_within(guarded, items, self.location.limits, nbytes=nbytes,
                                  at_once=REQUESTS_AT_ONCE)
        except TooSlow as exc:
            raise failure(exc, _path(exc.item)) from None
        for result in results:
            if isinstance(result, TableFailure):
                raise failure(result.exc, result.path)
            if isinstance(result, BaseException):
                raise result
        return results

    def failure(self, spec: TableSpec, exc: BaseException, path: str) -> SourceError:
        """A failed read of one object as a SourceError in words."""
        if isinstance(exc, FileNotFoundError):
            return changed(spec, self.location, [path], "deleted")
        return SourceError(f"table {spec.name!r}: cannot read {self.location.url(path)}: "
                           f"{self.location.reason(exc, path)}", source=self.source)

    def estimate_rows(self, spec: TableSpec) -> int:
        """Rows of a table, from its files' footers."""
        footers = self.pinned(spec)
        self.load(spec, footers)
        return sum(f.metadata.num_rows for f in footers)

    def schema(self, spec: TableSpec) -> pa.Schema:
        """The table's Arrow schema, as first listed (listing it now if never before)."""
        if spec.name not in self._schemas:
            self._first_schema(spec)
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
        self._tails.clear()
        self._handles.clear()


@dataclass
class TableFailure:
    exc: BaseException
    path: str


def _path(item: Any) -> str:
    """The object a read is of: a path, or a Footer's."""
    return item if isinstance(item, str) else item.pin.path
