"""One query's scan of a lake table on S3: a pyarrow dataset DuckDB scans, with checks around it.

DuckDB hands a registered dataset the columns and the filter of its scan through
``scanner(columns=, filter=)``. ``LakeDataset`` answers with a ``Scan`` that, before any row
moves, lists the table (once per query), opens the footers of the files the filter can reach
(partition pruning), checks each file's columns against the table's and counts the bytes the
scan fetches (computed from the metadata: ``connectors._parquet_bytes``). Its rows come from
one pyarrow reader per file, a few files at a time, each pulled by a Python thread: pyarrow's
own C++ threads do the I/O over its native S3 filesystem and never call back into Python. A
file that fails is named in the error; so is a file whose read outlasts its deadline (the
bytes the scan fetches from it, ``connectors._lake_deadline``): its reader is abandoned, and
its thread ends when pyarrow's read does. When every file has been read, the files are checked
unchanged (``TableRead.verify``), so an object replaced mid-query fails the query instead of
mixing two versions.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds

from connectors._lake_deadline import SPARE_IO, Stopwatch, TooSlow, late, next_check
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow.compute as pc

    from connectors._lake_deadline import ReadLimits
    from connectors._lake_read import TableRead

FILES_AT_ONCE = 4  # files read at the same time by one scan (pyarrow's fragment readahead)
BATCHES_AHEAD = 4  # batches of one file read ahead of DuckDB
_END = object()


class StreamError(OSError):
    """A scan's failure raised inside DuckDB's read of the stream; ``error`` is the
    ``SourceError`` (DuckDB keeps only the text: ``ParquetConnector.take_failure``)."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error).removeprefix(f"source {error.source!r}: "))
        self.error = error


class LakeDataset(ds.FileSystemDataset):
    """A table as one query reads it: the table's schema and no fragments of its own; the
    files are those its ``read`` (a ``TableRead``, set by the lake right after construction)
    lists at the first scan."""

    read: TableRead

    def scanner(self, columns: list[str] | None = None, filter: pc.Expression | None = None,
                **options: Any) -> Scan:
        fragments = self.read.kept(filter)
        ranges = self.read.prepare(fragments, self._read_columns(columns, filter), filter)
        return Scan(self, fragments, columns, filter, options, ranges)

    def _read_columns(self, columns: list[str] | None, filter: pc.Expression | None) -> set[str]:
        """The columns the scan reads from the files: those it returns and those its filter
        needs."""
        names = set(self.schema.names if columns is None else columns)
        return names | filter_columns(filter, self.schema)


class Scan:
    """What ``LakeDataset.scanner`` returns: the rows of the kept files, as a stream."""

    def __init__(self, dataset: LakeDataset, fragments: list[ds.ParquetFileFragment],
                 columns: list[str] | None, filter: pc.Expression | None,
                 options: dict[str, Any], ranges: dict[str, list[tuple[int, int]]]) -> None:
        self.dataset, self.fragments, self.columns, self.filter = dataset, fragments, columns, filter
        self.options, self.ranges = options, ranges  # the byte ranges fetched, per file
        names = dataset.schema.names if columns is None else columns
        self.projected_schema = pa.schema([dataset.schema.field(n) for n in names])

    def to_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.projected_schema, self._batches())

    def to_table(self) -> pa.Table:
        return self.to_reader().read_all()

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self.to_reader())

    def count_rows(self) -> int:
        return self.to_table().num_rows

    def _open(self, fragment: ds.ParquetFileFragment) -> pa.RecordBatchReader:
        options = {k: v for k, v in self.options.items() if k in ("batch_size", "use_threads")}
        return fragment.scanner(schema=self.dataset.schema, columns=self.columns,
                                filter=self.filter, **options).to_reader()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        read = self.dataset.read
        try:
            for fragment, item in _each_file(self.fragments, self._open, read.lake.location.limits,
                                             lambda f: self.ranges.get(f.path, [])):
                if isinstance(item, BaseException):
                    raise read.failure(item, fragment.path)
                yield item
            read.verify([f.path for f in self.fragments])
        except SourceError as exc:
            read.remember(exc)
            raise StreamError(exc) from None


def _each_file(fragments: list, open_reader: Callable, limits: ReadLimits,
               ranges: Callable[[Any], list]) -> Iterator[tuple[Any, Any]]:
    """(fragment, batch) for each batch of each file in turn, then (fragment, exception) if a
    file fails or its read outlasts its deadline (``TooSlow``: ``limits`` for the bytes of its
    ``ranges``); up to ``FILES_AT_ONCE`` files are read at once, each by a ``_Pump``."""
    stop = threading.Event()
    pending: deque[_Pump] = deque()
    waiting = iter(fragments)

    def start_next() -> None:
        fragment = next(waiting, None)
        if fragment is not None:
            pending.append(_Pump(fragment, ranges(fragment), limits, stop))
            pending[-1].start(open_reader)

    try:
        for _ in range(FILES_AT_ONCE):
            start_next()
        while pending:
            clocks = [(p.watch, p.seconds) for p in pending]
            try:
                item = pending[0].out.get(timeout=next_check(clocks))
            except queue.Empty:
                if (index := late(clocks)) is not None:
                    for pump in pending:  # their requests go on: spare I/O threads stand in
                        pump.give_up()
                    slow = pending[index]
                    yield slow.fragment, TooSlow(slow.fragment, limits, slow.nbytes)
                    return
                continue
            if item is _END:
                pending.popleft()
                start_next()
                continue
            yield pending[0].fragment, item
            if isinstance(item, BaseException):
                return
    finally:
        stop.set()


class _Pump:
    """One file's batches read by a daemon thread into ``out`` (then ``_END``, or the exception
    that stopped it); ``watch`` counts the time spent reading, not the time ``out`` stays full.

    A scan stopped early (a LIMIT, an error elsewhere) stops its pumps after their current
    batch. A pump given up on (a file too slow) reads its file to the end instead, discarding
    the batches: pre-buffering asked for all of the file's ranges at once, and the spare I/O
    threads held for them (``SPARE_IO``) are released only once they have all arrived.
    """

    def __init__(self, fragment: Any, ranges: list, limits: ReadLimits,
                 stop: threading.Event) -> None:
        self.fragment, self.stop, self.watch = fragment, stop, Stopwatch()
        self.nbytes = sum(length for _, length in ranges)
        self.seconds = limits.seconds(self.nbytes)
        self.requests = max(1, len(ranges))
        self.out: queue.Queue = queue.Queue(BATCHES_AHEAD)
        self._lock = threading.Lock()
        self._given_up = self._finished = False

    def start(self, open_reader: Callable) -> None:
        threading.Thread(target=self._run, args=(open_reader,), name="fedquery-lake-scan",
                         daemon=True).start()

    def give_up(self) -> None:
        """Abandon the read: its requests hold spare I/O threads until it ends."""
        with self._lock:
            if not self._finished and not self._given_up:
                self._given_up = True
                SPARE_IO.hold(self.requests)

    def _run(self, open_reader: Callable) -> None:
        try:
            with self.watch:
                batches = iter(open_reader(self.fragment))
            while (batch := self._next(batches)) is not _END:
                if not _put(self.out, batch, self.stop) and not self._given_up:
                    return
            _put(self.out, _END, self.stop)
        except Exception as exc:  # handed to the consumer, which names the file
            _put(self.out, exc, self.stop)
        finally:
            with self._lock:
                self._finished = True
                if self._given_up:
                    SPARE_IO.release(self.requests)

    def _next(self, batches: Iterator[pa.RecordBatch]) -> Any:
        with self.watch:
            return next(batches, _END)


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless the scan stopped (a LIMIT reached, an error elsewhere)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def filter_columns(filter: pc.Expression | None, schema: pa.Schema) -> set[str]:
    """The top-level columns a filter expression refers to.

    pyarrow does not list an expression's fields, so each column that the expression's text
    mentions is left out of the schema in turn: binding then fails exactly for those used.
    """
    if filter is None:
        return set()
    text = str(filter)
    used = set()
    for field in schema:
        if field.name not in text:
            continue
        rest = pa.schema([f for f in schema if f.name != field.name])
        try:
            ds.dataset(rest.empty_table()).scanner(filter=filter, columns=[])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            used.add(field.name)
    return used
