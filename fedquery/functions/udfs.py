"""The blob functions as vectorised Arrow UDFs of the executor's DuckDB.

Each ``__fq_<name>(uri, ..., source)`` takes a batch of URIs, resolves them (``Blobs``), reads
in the I/O pool only the bytes it needs (a 64 KiB prefix for headers; the whole file to decode)
and returns one Arrow array. A missing, truncated or corrupt file gives a value whose ``error``
says why (NULL for scalar results); with ``strict`` it raises ``SourceError`` instead. A URI
outside every root raises ``ForbiddenError`` (kept in ``failure`` for the executor, since
DuckDB only passes the text on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.errors import FedQueryError, SourceError
from fedquery.functions import embed_udfs, images, pointclouds

if TYPE_CHECKING:
    import duckdb

    from fedquery.functions.blobs import Blob, Blobs
    from fedquery.functions.embedding import Embedder



class BlobFunctions:
    """The UDFs over one catalog's files sources."""

    def __init__(self, blobs: Blobs, *, strict: bool = False) -> None:
        self.blobs, self.strict = blobs, strict
        self.failures: list[FedQueryError] = []
        self.vectors = embed_udfs.VectorCache()
        self._embedders: set[str] = set()
        self._lock = threading.Lock()

    def new_query(self) -> None:
        """Forget what the last query read, embedded or failed with."""
        self.blobs.new_query()
        self.vectors.clear()
        self.failures.clear()

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the functions on ``con`` (they are seen by all its cursors): ``__fq_<name>``
        with the files source last, as plans call them, and ``<name>`` as users write them
        (what DuckDB describes; URIs then resolve as full URIs or against the only root)."""
        text = "VARCHAR"
        for name, function, parameters, result in (
            ("image_info", self.image_info, [text], images.IMAGE_INFO_TYPE),
            ("thumbnail", self.thumbnail, [text, "INTEGER"], "BLOB"),
            ("read_blob", self.read_blob, [text], "BLOB"),
            ("pointcloud_info", self.pointcloud_info, [text], pointclouds.POINTCLOUD_INFO_TYPE),
            ("read_pointcloud", self.read_pointcloud, [text], pointclouds.POINTS_TYPE),
        ):
            con.create_function(f"__fq_{name}", function, [*parameters, text], result,
                                type="arrow", null_handling="special", side_effects=True)
            con.create_function(name, _without_source(function, len(parameters)), parameters, result,
                                type="arrow", null_handling="special", side_effects=True)

    def add_embedder(self, con: duckdb.DuckDBPyConnection, embedder: Embedder) -> None:
        """Create ``embedder.function_name`` on ``con`` once: ``(uri, source)`` for images,
        ``(text)`` for texts, returning ``FLOAT[dim]``."""
        with self._lock:
            if embedder.function_name in self._embedders:
                return
            if embedder.kind == "image":
                function, parameters = embed_udfs.image_udf(self, embedder), ["VARCHAR", "VARCHAR"]
            else:
                function, parameters = embed_udfs.text_udf(self, embedder), ["VARCHAR"]
            # side effects: DuckDB must not call a model while it binds (or folds) a query
            con.create_function(embedder.function_name, function, parameters, embedder.sql_type,
                                type="arrow", null_handling="special", side_effects=True)
            self._embedders.add(embedder.function_name)

    # ---------------------------------------------------------------- the functions

    def image_info(self, uris: pa.Array, sources: pa.Array) -> pa.Array:
        rows = self._each(uris, sources, self._image_info_one)
        return images.image_info_array(rows)

    def thumbnail(self, uris: pa.Array, sizes: pa.Array, sources: pa.Array) -> pa.Array:
        sized = list(zip(uris.to_pylist(), sizes.to_pylist(), strict=True))
        values = self.blobs.map(lambda item: self._thumbnail_one(*item),
                                [(u, s, src) for (u, s), src in zip(sized, sources.to_pylist(),
                                                                     strict=True)])
        return pa.array(values, pa.binary())

    def read_blob(self, uris: pa.Array, sources: pa.Array) -> pa.Array:
        return pa.array(self.read_whole(uris, sources), pa.binary())

    def read_whole(self, uris: pa.Array, sources: pa.Array, *, with_source: bool = False,
                   max_bytes: int | None = None) -> list:
        """Every file's bytes (with its files source: ``(source, bytes)``), None where the file
        cannot be read or is larger than ``max_bytes`` (``SourceError`` when strict)."""
        def whole(blob: Blob) -> Any:
            data = self.blobs.read(blob, max_bytes=max_bytes)[0]
            return (blob.root.source, data) if with_source else data

        return self._each(uris, sources, whole, scalar=True)

    def file_size(self, uris: pa.Array, sources: pa.Array) -> pa.Array:
        """``STRUCT(bytes, error)``: each file's size, nothing of it read."""
        rows = self._each(uris, sources, lambda blob: {"bytes": self._read(blob, 0)[1]})
        return pa.array(rows, pa.struct([("bytes", pa.int64()), ("error", pa.string())]))

    def pointcloud_info(self, uris: pa.Array, sources: pa.Array) -> pa.Array:
        rows = self._each(uris, sources, self._pointcloud_info_one)
        return pointclouds.pointcloud_info_array(rows)

    def read_pointcloud(self, uris: pa.Array, sources: pa.Array) -> pa.Array:
        tables = self._each(uris, sources, self._points_one, scalar=True)
        return pointclouds.points_array(tables)

    # ---------------------------------------------------------------- one file

    def _image_info_one(self, blob: Blob) -> dict[str, Any]:
        """From the first 64 KiB; more only when the header goes on (large EXIF, say)."""
        head, size = self._read(blob, images.IMAGE_PREFIX_BYTES)
        while True:  # the prefix grows until the header fits; it never passes the file's size
            try:
                return images.image_info_from(head, size)
            except images.NeedMoreBytes as more:
                head = self._read(blob, more.n)[0]

    def _thumbnail_one(self, uri: str | None, max_px: int | None, source: str | None) -> Any:
        if uri is None or max_px is None:
            return None
        images.check_max_px(max_px)  # before anything is read
        blob = self._resolve(uri, source)
        data = self._guarded(lambda: self._read(blob)[0], blob, uri, scalar=True)
        return images.thumbnail_png(data, max_px) if data is not None else None

    def _pointcloud_info_one(self, blob: Blob) -> dict[str, Any]:
        """LAS/LAZ from their header alone; other formats need every point for the bounds."""
        data, size = self._read(blob, pointclouds.pointcloud_prefix_bytes(blob.path))
        while True:
            try:
                return pointclouds.pointcloud_info_from(data, blob.path, size)
            except images.NeedMoreBytes as more:
                data = self._read(blob, more.n)[0]

    def _points_one(self, blob: Blob) -> Any:
        return pointclouds.read_pointcloud_from(self._read(blob)[0], blob.path)

    # ---------------------------------------------------------------- plumbing

    def _each(self, uris: pa.Array, sources: pa.Array, one: Callable[[Blob], Any], *,
              scalar: bool = False) -> list:
        """``one`` for every non-NULL URI, in the I/O pool; unreadable files become errors."""
        def run(item: tuple[str | None, str | None]) -> Any:
            uri, source = item
            if uri is None:
                return None
            blob = self._resolve(uri, source)
            return self._guarded(lambda: one(blob), blob, uri, scalar=scalar)

        pairs = list(zip(uris.to_pylist(), sources.to_pylist(), strict=True))
        return self.blobs.map(run, pairs)

    def _resolve(self, uri: str, source: str | None) -> Blob:
        try:
            return self.blobs.resolve(uri, source)
        except FedQueryError as exc:
            self.failures.append(exc)  # DuckDB passes only the text of what a UDF raises
            raise

    def _guarded(self, read: Callable[[], Any], blob: Blob, uri: str, *,
                 scalar: bool = False) -> Any:
        """What ``read`` gives; for a file that cannot be read, a value whose ``error`` says
        why (NULL for scalar results), or ``SourceError`` when strict."""
        try:
            value = read()
        except (OSError, ValueError) as exc:
            reason = _reason(exc)
            if self.strict:
                raise self._strict(blob, uri, reason) from exc
            return None if scalar else {"error": f"{reason}: {uri}"}
        if self.strict and isinstance(value, dict) and value.get("error"):
            raise self._strict(blob, uri, value["error"])
        return value

    def _strict(self, blob: Blob, uri: str, reason: str) -> SourceError:
        error = SourceError(f"{uri}: {reason}", source=blob.root.source)
        self.failures.append(error)
        return error

    def _read(self, blob: Blob, length: int | None = None) -> tuple[bytes, int]:
        return self.blobs.read(blob, length)

    def take_failure(self, message: str) -> FedQueryError | None:
        """The fedquery error a function raised whose text DuckDB's ``message`` passes on."""
        failure = next((f for f in self.failures if str(f) in message), None)
        self.failures.clear()
        return failure


def _without_source(function: Callable[..., pa.Array], arity: int) -> Callable[..., pa.Array]:
    """The same function with every source NULL, for calls as users write them (DuckDB reads
    the arity from the signature, so it is spelt out)."""
    def none(uris: pa.Array) -> pa.Array:
        return pa.nulls(len(uris), pa.string())

    if arity == 1:
        return lambda uris: function(uris, none(uris))
    return lambda uris, other: function(uris, other, none(uris))


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower():
        return "file not found"
    return str(exc).splitlines()[0] or type(exc).__name__
