"""One query's read of one lake table on S3: its objects pinned, checked and counted.

A ``TableRead`` is what one query's view of a table reads (``RemoteLake.view``): the table
listed and its objects pinned once (``RemoteLake.pinned``); DuckDB's Parquet reader then asks
it for byte ranges (``read_range``, through ``connectors._lake_files``): the first read of a
file reads its footer and checks its columns against the table's; every byte fetched is
counted; after the query, ``verify`` checks the objects read are the ones pinned. Failures
become ``SourceError``s that name the object.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

from fedquery.connectors._lake_deadline import TooSlow, call_within
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from fedquery.catalog import TableSpec
    from fedquery.connectors._s3_lake import Footer, Pin, RemoteLake
    from fedquery.connectors.remote_fs import Location

_NOT_FOUND = re.compile(r"NO_SUCH_KEY|NoSuchKey|HTTP status 404|RESOURCE_NOT_FOUND", re.I)


class TableRead:
    """One query's read of one table: the objects it pinned, and the checks and counts made
    around DuckDB's reads of them."""

    def __init__(self, lake: RemoteLake, spec: TableSpec) -> None:
        self.lake, self.spec = lake, spec
        self.schema = lake.schema(spec)
        self.footers: dict[str, Footer] | None = None
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()  # first opens of files, one at a time
        self.token: str | None = None  # under which ``RemoteLake.files`` serves this read
        self.opened: set[str] = set()  # objects DuckDB read from (``read_range``)

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

    def _first_open(self, footer: Footer) -> None:
        """When DuckDB first reads a file: its footer read (kept while the object is the same),
        its columns checked against the table's."""
        with self._open_lock:
            if footer.pin.path in self.opened:
                return
            self.lake.load(self.spec, [footer], self.failure)
            self._check_columns(footer)
            self.opened.add(footer.pin.path)

    def _check_columns(self, footer: Footer) -> None:
        """A file must have every column of the table, of the same type (as DuckDB's
        ``read_parquet`` refuses a file of a glob that lacks one)."""
        physical = footer.metadata.schema.to_arrow_schema()
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

    # ------------------------------------------------------------ DuckDB's reads (_lake_files)

    def has(self, path: str) -> bool:
        return self.footers is not None and path in self.footers

    def size(self, path: str) -> int:
        return self.listed()[path].pin.size

    def mtime_ns(self, path: str) -> int:
        return self.listed()[path].pin.mtime_ns

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``start:end`` of a pinned object, as DuckDB's Parquet reader asks for them:
        the footer's tail from the lake's cache, anything else one ranged GET within the read
        deadline (counted). A failure is remembered as a SourceError naming the object and
        raised as an OSError with its words, which DuckDB passes on."""
        footer = self.listed()[path]
        end = min(end, footer.pin.size)
        try:
            self._first_open(footer)
            if end <= start:
                return b""
            tail = self.lake.tail(footer.pin)
            if start >= footer.pin.size - len(tail):
                offset = start - (footer.pin.size - len(tail))
                return tail[offset:offset + end - start]
            data = self._get(path, start, end - start)
        except SourceError as exc:
            self.remember(exc)
            raise OSError(str(exc).removeprefix(f"source {exc.source!r}: ")) from None
        except Exception as exc:  # noqa: BLE001  any failure of the read names the object
            error = self.failure(exc, path)
            self.remember(error)
            raise OSError(str(error).removeprefix(f"source {error.source!r}: ")) from None
        self.lake.stats.add(path, len(data))
        return data

    def _get(self, path: str, start: int, nbytes: int) -> bytes:
        handle = self.lake.handle(self.listed()[path].pin)
        return call_within(lambda: handle.read_at(nbytes, start), self.lake.location.limits, nbytes)

    def finish(self) -> None:
        """After DuckDB's reads: the objects read are the ones pinned (``verify``)."""
        if self.opened:
            try:
                self.verify(sorted(self.opened))
            except SourceError as exc:
                self.remember(exc)
                raise

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
