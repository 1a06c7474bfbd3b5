"""The blob functions as vectorised Arrow UDFs of the executor's DuckDB.

Each ``__fq_<name>(uri, ..., source, run)`` takes a batch of URIs, resolves them (``Blobs``),
reads in the I/O pool only the bytes it needs (a 64 KiB prefix for headers; the whole file,
within the source's cap for the function, to decode) and returns one Arrow array. ``run`` is
the query's run token (``getvariable('__fq_run')``): caches belong to it (``runs``). A missing,
truncated, corrupt or oversized file gives a value whose ``error`` says why (NULL for scalar
results): whatever reading one file raises (an ``OverflowError`` or ``struct.error`` from a
crafted header, a decoder's own error, ``MemoryError``) stays that file's row, and only
fedquery's errors fail the query. With ``strict`` a bad file raises ``SourceError`` instead.
A URI outside every root raises ``ForbiddenError``, and a read that keeps failing with
transient errors ``SourceError``: both fail the query, recorded under a tag that
``take_failure`` finds in DuckDB's message.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.errors import FedQueryError, PlanError, SourceError
from fedquery.functions import (
    embed_udfs,
    image_content,
    images,
    pointcloud_content,
    pointclouds,
    results,
)
from fedquery.functions.blobs import TooLarge
from fedquery.functions.limits import size_text
from fedquery.functions.pointcloud_formats import Unreadable
from fedquery.functions.runs import new_token

if TYPE_CHECKING:
    import duckdb

    from fedquery.functions.blobs import Blob, Blobs
    from fedquery.functions.embedding import Embedder

POINTCLOUD_DECODE_BYTES = 64 << 20  # what decoding one cloud holds beyond its file (a block)
_ENDED_FORMATS = (b"\x89PNG", b"GIF8")  # formats whose end marker image_info checks (a tail)


class RowError(ValueError):
    """A file's own problem found before decoding it (not an image, a format not read)."""


class BlobFunctions:
    """The UDFs over one catalog's files sources."""

    def __init__(self, blobs: Blobs, *, strict: bool = False) -> None:
        self.blobs, self.strict = blobs, strict
        self.runs = blobs.runs
        self._embedders: set[str] = set()
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def run_on(self, cursor: duckdb.DuckDBPyConnection) -> Iterator[str]:
        """A run for the query about to execute on ``cursor`` (see ``runs``), current in this
        thread for the block: a plan run inside it (a query vector or key set computed to fetch
        a fragment: part of the same query) joins it instead of starting its own."""
        stack = self._local.__dict__.setdefault("runs", [])
        token = self.runs.start(cursor, stack[-1] if stack else None)
        stack.append(token)
        try:
            yield token
        finally:
            stack.pop()

    def take_failure(self, message: str) -> FedQueryError | None:
        """The fedquery error a function raised whose tag DuckDB's ``message`` passes on."""
        failure = self.runs.take(message)
        return failure if isinstance(failure, FedQueryError) else None

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the functions on ``con`` (they are seen by all its cursors): ``__fq_<name>``
        with the files source and the run last, as plans call them, and ``<name>`` as users
        write them (what DuckDB describes; URIs then resolve as full URIs or against the only
        root)."""
        text = "VARCHAR"
        for name, function, parameters, result in (
            ("image_info", self.image_info, [text], images.IMAGE_INFO_TYPE),
            ("thumbnail", self.thumbnail, [text, "INTEGER"], "BLOB"),
            ("read_blob", self.read_blob, [text], "BLOB"),
            ("pointcloud_info", self.pointcloud_info, [text], pointclouds.POINTCLOUD_INFO_TYPE),
            ("read_pointcloud", self.read_pointcloud, [text], pointclouds.POINTS_TYPE),
            ("image_stats", self.image_stats, [text], image_content.IMAGE_STATS_TYPE),
            ("pointcloud_stats", self.pointcloud_stats, [text],
             pointcloud_content.POINTCLOUD_STATS_TYPE),
        ):
            tagged = self._tagging(function, len(parameters) + 2)
            con.create_function(f"__fq_{name}", tagged, [*parameters, text, text], result,
                                type="arrow", null_handling="special", side_effects=True)
            con.create_function(name, _without_source(tagged, len(parameters)), parameters, result,
                                type="arrow", null_handling="special", side_effects=True)

    def add_embedder(self, con: duckdb.DuckDBPyConnection, embedder: Embedder) -> None:
        """Create ``embedder.function_name`` on ``con`` once: ``(uri, source, run)`` for images,
        ``(text, run)`` for texts, returning ``FLOAT[dim]``."""
        with self._lock:
            if embedder.function_name in self._embedders:
                return
            if embedder.kind == "image":
                function, parameters = embed_udfs.image_udf(self, embedder), ["VARCHAR"] * 3
            else:
                function, parameters = embed_udfs.text_udf(self, embedder), ["VARCHAR"] * 2
            # side effects: DuckDB must not call a model while it binds (or folds) a query
            con.create_function(embedder.function_name, self._tagging(function, len(parameters)),
                                parameters,
                                embedder.sql_type, type="arrow", null_handling="special",
                                side_effects=True)
            self._embedders.add(embedder.function_name)

    def _tagging(self, function: Callable[..., pa.Array], arity: int) -> Callable[..., pa.Array]:
        """``function`` as DuckDB calls it (with ``arity`` arguments, the run last): a fedquery
        error it raises is recorded and raised with its tag (DuckDB passes on only the text)."""
        def call(*arrays: pa.Array) -> pa.Array:
            try:
                return function(*arrays)
            except FedQueryError as exc:
                raise self.runs.tagged(_token(arrays[-1]) or new_token(), exc) from exc

        # DuckDB reads the arity from the signature, so it is spelt out
        return {2: lambda a, b: call(a, b), 3: lambda a, b, c: call(a, b, c),
                4: lambda a, b, c, d: call(a, b, c, d)}[arity]

    @contextlib.contextmanager
    def run_of(self, runs: pa.Array | None) -> Iterator[str]:
        """The run a call belongs to: the query's, or one of its own for this call only."""
        token = _token(runs)
        if token is not None:
            yield token
            return
        token = new_token()
        try:
            yield token
        finally:
            self.runs.bytes.drop(token)
            self.runs.vectors.drop(token)

    # ---------------------------------------------------------------- the functions

    def image_info(self, uris: pa.Array, sources: pa.Array, runs: pa.Array | None = None) -> pa.Array:
        with self.run_of(runs) as run:
            rows = self._each(uris, sources, run, self._image_info_one)
        return images.image_info_array(rows)

    def image_stats(self, uris: pa.Array, sources: pa.Array, runs: pa.Array | None = None) -> pa.Array:
        """``image_content.IMAGE_STATS_TYPE`` of each image: pixel measures, EXIF, hashes, flags."""
        with self.run_of(runs) as run:
            rows = self._each(uris, sources, run, self.image_stats_one)
        return image_content.image_stats_array(rows)

    def pointcloud_stats(self, uris: pa.Array, sources: pa.Array,
                         runs: pa.Array | None = None) -> pa.Array:
        """``pointcloud_content.POINTCLOUD_STATS_TYPE`` of each point cloud: extent, density,
        intensity and returns."""
        with self.run_of(runs) as run:
            rows = self._each(uris, sources, run, self.pointcloud_stats_one)
        return pointcloud_content.pointcloud_stats_array(rows)

    def thumbnail(self, uris: pa.Array, sizes: pa.Array, sources: pa.Array,
                  runs: pa.Array | None = None) -> pa.Array:
        with self.run_of(runs) as run:
            items = list(zip(uris.to_pylist(), sizes.to_pylist(), sources.to_pylist(), strict=True))
            values = self._map(lambda item: self._thumbnail_one(*item, run), items, run)
        return pa.array(values, pa.binary())

    def read_blob(self, uris: pa.Array, sources: pa.Array, runs: pa.Array | None = None) -> pa.Array:
        """Two passes over the batch: every file's size (capped by ``limits.read_blob``; the
        sum held from ``limits.batch_memory``: ``results``), then every file's bytes."""
        with self.run_of(runs) as run:
            def sized(blob: Blob, run: str) -> Blob:
                self.blobs.check(blob, self.blobs.size(blob, run), "read_blob")
                return blob

            found = self._each(uris, sources, run, sized, scalar=True)
            needs = results.Needs()
            for blob in filter(None, found):
                needs.add(blob.root, self.blobs.size(blob, run))
            with needs.held("read_blob"):
                values = self._map(lambda blob: blob and self._guarded(
                    lambda: self.blobs.read(blob, limit="read_blob", run=run)[0], blob,
                    blob.uri, scalar=True), found, run)
                return pa.array(values, pa.large_binary())  # a batch may hold over 2 GiB

    def read_whole(self, uris: pa.Array, sources: pa.Array, run: str, *, limit: str,
                   with_source: bool = False) -> list:
        """Every file's bytes (with its files source: ``(source, bytes)``), None where the file
        cannot be read or is over ``limits.<limit>`` (``SourceError`` when strict)."""
        def whole(blob: Blob, run: str) -> Any:
            data = self.blobs.read(blob, limit=limit, run=run)[0]
            if limit == "embed_image":  # what an embedder decodes: a supported, capped image
                self._decodable(blob, images.image_info_from(data))
            return (blob.root.source, data) if with_source else data

        return self._each(uris, sources, run, whole, scalar=True)

    def file_size(self, uris: pa.Array, sources: pa.Array, runs: pa.Array | None = None) -> pa.Array:
        """``STRUCT(bytes, error)``: each file's size, nothing of it read."""
        with self.run_of(runs) as run:
            rows = self._each(uris, sources, run, lambda blob, r: {"bytes": self.blobs.size(blob, r)})
        return pa.array(rows, pa.struct([("bytes", pa.int64()), ("error", pa.string())]))

    def pointcloud_info(self, uris: pa.Array, sources: pa.Array,
                        runs: pa.Array | None = None) -> pa.Array:
        with self.run_of(runs) as run:
            rows = self._each(uris, sources, run, self._pointcloud_info_one)
        return pointclouds.pointcloud_info_array(rows)

    def read_pointcloud(self, uris: pa.Array, sources: pa.Array,
                        runs: pa.Array | None = None) -> pa.Array:
        """Two passes over the batch: every header (counts checked against sizes and caps),
        then one set of columns for all points, each file decoded into its rows in place."""
        with self.run_of(runs) as run:
            found = self._each(uris, sources, run, self._layout, scalar=True)
            with self._points_held(found):
                columns = pointclouds.PointColumns([f[1].count if f else None for f in found])

                def fill(row: int) -> None:
                    blob, where, size = found[row]
                    with blob.root.budget.reserve(size + pointclouds.decode_bytes(where, size)):
                        data = self.blobs.read(blob, limit="read_pointcloud", run=run)[0]
                        columns.fill(row, data, where)

                rows = [i for i, f in enumerate(found) if f is not None]
                self._map(lambda i: self._guarded(lambda: fill(i), found[i][0],
                                                  found[i][0].uri, scalar=True), rows, run)
                return columns.array()

    @staticmethod
    def _points_held(found: list) -> contextlib.AbstractContextManager:
        """The batch's points held from ``limits.batch_memory`` (``results``)."""
        needs = results.Needs()
        for blob, where, _ in filter(None, found):
            needs.add(blob.root, where.count * results.POINT_BYTES)
        return needs.held("read_pointcloud")

    # ---------------------------------------------------------------- one file

    def image_stats_one(self, blob: Blob, run: str) -> dict[str, Any]:
        """The header first (its pixels size the decode budget's reservation), then the whole
        file within ``limits.image_stats``, decoded at reduced size within
        ``limits.thumbnail_pixels``. A file over the cap keeps its header fields."""
        info = self._image_info_one(blob, run, tail=False)
        size = info["bytes"]
        try:
            self.blobs.check(blob, size, "image_stats")
        except TooLarge as exc:
            header = {k: info[k] for k in ("format", "width", "height", "mode")}
            return image_content.image_stats_error(str(exc), size) | header
        pixels = (image_content.stats_pixels(info["width"], info["height"], info["format"])
                  if info["width"] and info["error"] is None else 0)
        with blob.root.budget.reserve(size + images.decode_bytes(pixels, info["mode"])):
            data = self.blobs.read(blob, limit="image_stats", run=run)[0]
            return image_content.image_stats_from(data, size, blob.root.limit("thumbnail_pixels"))

    def pointcloud_stats_one(self, blob: Blob, run: str) -> dict[str, Any]:
        """The whole file within ``limits.pointcloud_stats`` and the decode budget (the points
        are folded a block at a time)."""
        size = self.blobs.size(blob, run)
        self.blobs.check(blob, size, "pointcloud_stats")
        with blob.root.budget.reserve(size + POINTCLOUD_DECODE_BYTES):
            data = self.blobs.read(blob, limit="pointcloud_stats", run=run)[0]
            return pointcloud_content.pointcloud_stats_from(data, blob.path, size)

    def guarded(self, read: Callable[[], Any], blob: Blob, uri: str) -> Any:
        """``read()``, or for a file that cannot be read ``{"error": why}`` (see ``_guarded``)."""
        return self._guarded(read, blob, uri)

    def _image_info_one(self, blob: Blob, run: str, *, tail: bool = True) -> dict[str, Any]:
        """From the first 64 KiB; more only when the header goes on (large EXIF, say), up to
        ``limits.image_info``. A PNG or GIF longer than what was read also gives its last bytes
        (``tail``), so a file cut short is found (``images.image_info_from``)."""
        head, size = self.blobs.read(blob, images.IMAGE_PREFIX_BYTES, run=run)
        end = (self.blobs.read_tail(blob, images.IMAGE_TAIL_BYTES, run)
               if tail and len(head) < size and head.startswith(_ENDED_FORMATS) else None)
        while True:  # the prefix grows until the header fits; it never passes the file's size
            try:
                return images.image_info_from(head, size, end)
            except images.NeedMoreBytes as more:
                if more.n > blob.root.limit("image_info"):
                    cap = size_text(blob.root.limit("image_info"))
                    return images.image_error(f"too large: the header goes on past "
                                              f"limits.image_info ({cap})", size)
                head = self.blobs.read(blob, more.n, run=run)[0]

    def _thumbnail_one(self, uri: str | None, max_px: int | None, source: str | None,
                       run: str) -> Any:
        if uri is None or max_px is None:
            return None
        try:
            images.check_max_px(max_px)  # before anything is read
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        blob = self.blobs.resolve(uri, source)
        return self._guarded(lambda: self._thumbnail_of(blob, max_px, run), blob, uri, scalar=True)

    def _thumbnail_of(self, blob: Blob, max_px: int, run: str) -> bytes:
        """Its header first: the pixels the decode needs are checked against
        ``limits.thumbnail_pixels`` and reserved from the decode budget before the file is read."""
        info = self._image_info_one(blob, run)
        pixels = self._decodable(blob, info, max_px)
        self.blobs.check(blob, info["bytes"], "thumbnail")
        with blob.root.budget.reserve(info["bytes"] + images.decode_bytes(pixels, info["mode"])):
            data = self.blobs.read(blob, limit="thumbnail", run=run)[0]
            png = images.thumbnail_png(data, max_px, blob.root.limit("thumbnail_pixels"))
        if png is None:
            raise RowError(f"corrupt: the {info['format']} image does not decode")
        return png

    def _decodable(self, blob: Blob, info: dict[str, Any], max_px: int | None = None) -> int:
        """The pixels decoding an image with this ``image_info`` takes (for a thumbnail of
        ``max_px``, else at full size), checked before it is decoded: an image in a format the
        functions read (``images.DECODED_FORMATS``), within ``limits.thumbnail_pixels``."""
        if info["width"] is None:
            raise RowError(info["error"] or "not an image")
        pixels = (images.decoded_pixels(info, max_px) if max_px is not None
                  else info["width"] * info["height"])
        cap = blob.root.limit("thumbnail_pixels")
        if pixels > cap:
            raise TooLarge(f"too large: {pixels:,} pixels to decode is over "
                           f"limits.thumbnail_pixels ({cap:,})")
        return pixels

    def _pointcloud_info_one(self, blob: Blob, run: str) -> dict[str, Any]:
        """LAS/LAZ from their header alone; other formats need every point for the bounds,
        read whole within ``limits.pointcloud_info`` and the decode budget."""
        prefix = pointclouds.pointcloud_prefix_bytes(blob.path)
        if prefix is None:
            size = self.blobs.size(blob, run)
            self.blobs.check(blob, size, "pointcloud_info")
            with blob.root.budget.reserve(size + POINTCLOUD_DECODE_BYTES):
                data = self.blobs.read(blob, limit="pointcloud_info", run=run)[0]
                return pointclouds.pointcloud_info_from(data, blob.path, size)
        data, size = self.blobs.read(blob, prefix, run=run)
        while True:
            try:
                return pointclouds.pointcloud_info_from(data, blob.path, size)
            except images.NeedMoreBytes as more:
                data = self.blobs.read(blob, more.n, run=run)[0]

    def _layout(self, blob: Blob, run: str) -> tuple[Blob, Any, int]:
        """The file, where its points are and its size, from its header; its size and point
        count checked against ``limits.read_pointcloud`` and ``limits.pointcloud_points``."""
        head, size = self.blobs.read(blob, pointclouds.count_prefix_bytes(blob.path),
                                     limit="read_pointcloud", run=run)
        while True:
            try:
                where = pointclouds.count_from(head, blob.path, size)
                break
            except images.NeedMoreBytes as more:
                head = self.blobs.read(blob, more.n, run=run)[0]
        cap = blob.root.limit("pointcloud_points")
        if where.count > cap:
            raise TooLarge(f"too large: {where.count:,} points is over limits.pointcloud_points "
                           f"({cap:,})")
        return blob, where, size

    # ---------------------------------------------------------------- plumbing

    def _each(self, uris: pa.Array, sources: pa.Array, run: str,
              one: Callable[[Blob, str], Any], *, scalar: bool = False) -> list:
        """``one`` for every non-NULL URI, in the I/O pool; unreadable files become errors."""
        def each(item: tuple[str | None, str | None]) -> Any:
            uri, source = item
            if uri is None:
                return None
            blob = self.blobs.resolve(uri, source)
            return self._guarded(lambda: one(blob, run), blob, uri, scalar=scalar)

        pairs = list(zip(uris.to_pylist(), sources.to_pylist(), strict=True))
        return self._map(each, pairs, run)

    def _map(self, function: Callable[[Any], Any], items: list, run: str) -> list:
        """``function`` over ``items`` in the I/O pool; once the run is stopped, every item not
        yet begun raises ``QueryCancelled`` at once (a stopped query ends within a file)."""
        def checked(item: Any) -> Any:
            self.runs.check(run)
            return function(item)

        return self.blobs.map(checked, items)

    def _guarded(self, read: Callable[[], Any], blob: Blob, uri: str, *,
                 scalar: bool = False) -> Any:
        """What ``read`` gives; for a file that cannot be read, a value whose ``error`` says
        why (NULL for scalar results), or ``SourceError`` when strict."""
        try:
            value = read()
        except (FedQueryError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a crafted file makes decoders raise
            # anything, a Rust one a panic (pyo3's PanicException is a BaseException)
            reason = _reason(exc)
            if self.strict:
                raise SourceError(f"{uri}: {reason}", source=blob.root.source) from exc
            return None if scalar else {"error": f"{reason}: {uri}"}
        if self.strict and isinstance(value, dict) and value.get("error"):
            raise SourceError(f"{uri}: {value['error']}", source=blob.root.source)
        return value


def _token(runs: pa.Array | None) -> str | None:
    """The run token a call was given (the same on every row), if any."""
    if runs is None or len(runs) == 0:
        return None
    token = runs[0].as_py()
    return token if isinstance(token, str) else None


def _without_source(function: Callable[..., pa.Array], arity: int) -> Callable[..., pa.Array]:
    """The same function with every source and run NULL, for calls as users write them
    (DuckDB reads the arity from the signature, so it is spelt out)."""
    def none(uris: pa.Array) -> pa.Array:
        return pa.nulls(len(uris), pa.string())

    if arity == 1:
        return lambda uris: function(uris, none(uris), none(uris))
    return lambda uris, other: function(uris, other, none(uris), none(uris))


def _reason(exc: BaseException) -> str:
    """What is wrong with a file, in a line: the reader's own words, or what kind of error a
    decoder tripped on (an overflow, a struct too short, memory)."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError) or "not found" in str(exc).lower():
        return "file not found"
    if isinstance(exc, OSError | ValueError | Unreadable | TooLarge):
        return (str(exc).splitlines() or [""])[0][:300] or type(exc).__name__
    return f"corrupt: {type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
