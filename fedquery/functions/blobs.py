"""Files behind blob columns: resolve a URI inside a declared root, read what is needed.

Every ``files`` source is a root on a filesystem (a local folder or ``s3://``, with the same
options as a lake). A URI resolves relative to its blob column's source, or as a full URI or
absolute path inside one of the roots; ``..`` that climbs out, a symlink that leads out, an
absolute path elsewhere or another scheme is refused with ``ForbiddenError`` and nothing of the
file is read. Reads go through the source's counting filesystem, a bounded thread pool and a
small cache shared by the calls of a query (the longest prefix read of each file, and its
size), so a file is not fetched twice.
"""

from __future__ import annotations

import functools
import os
import posixpath
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedquery.errors import ForbiddenError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from fedquery.catalog import Catalog

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
IO_THREADS = 16
CACHE_ENTRIES = 512
CACHE_BYTES = 64 << 20


def kind_of(uri: str) -> str | None:
    """``image`` or ``pointcloud`` by a URI's extension (query string ignored), else None."""
    from fedquery.functions.pointclouds import FORMATS

    extension = posixpath.splitext(uri.split("?", 1)[0])[1].lower()
    if extension in IMAGE_EXTENSIONS:
        return "image"
    return "pointcloud" if extension in FORMATS else None


@dataclass(frozen=True)
class Root:
    """One files source: its name, filesystem, root path and scheme (``file`` or ``s3``)."""

    source: str
    filesystem: pafs.FileSystem
    path: str
    scheme: str

    def contains(self, path: str) -> bool:
        """Whether ``path`` (normalised) lies inside this root, symlinks followed for local."""
        if self.scheme == "file":
            real = os.path.realpath(path)
            return real == self._real_path or real.startswith(self._real_path.rstrip("/") + "/")
        return path.startswith(self.path.rstrip("/") + "/")

    @functools.cached_property
    def _real_path(self) -> str:
        """The local root with its symlinks resolved, once."""
        return os.path.realpath(self.path)


@dataclass(frozen=True)
class Blob:
    """A resolved file: the root it lies in and its path on that root's filesystem."""

    root: Root
    path: str


class Blobs:
    """The declared roots, URI resolution and cached, pooled reads."""

    def __init__(self, roots: dict[str, Root]) -> None:
        self.roots = roots
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="fedquery-blobs")
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Blobs:
        from connectors.remote_fs import open_filesystem

        roots = {}
        for name, spec in catalog.sources.items():
            if spec.kind == "files":
                root = spec.resolve(spec.settings["root"])
                fs, path = open_filesystem(root, spec.settings.get("options"), source=name,
                                           secrets=catalog.secrets)
                roots[name] = Root(name, fs, path, "s3" if "://" in root else "file")
        return cls(roots)

    def resolve(self, uri: str, source: str | None = None) -> Blob:
        """The file a URI names, confined to the declared roots."""
        if "://" in uri:
            scheme, rest = uri.split("://", 1)
            return self._inside(posixpath.normpath(rest), uri, scheme=scheme)
        if uri.startswith("/"):
            return self._inside(os.path.normpath(uri), uri, scheme="file")
        root = self._root_for(uri, source)
        joined = posixpath.normpath(posixpath.join(root.path, uri))
        if root.contains(joined):
            return Blob(root, joined)
        raise ForbiddenError(f"URI {uri!r} leaves the root of files source {root.source!r}")

    def _root_for(self, uri: str, source: str | None) -> Root:
        if source is not None and source in self.roots:
            return self.roots[source]
        if len(self.roots) == 1:
            return next(iter(self.roots.values()))
        if not self.roots:
            raise ForbiddenError(f"URI {uri!r}: the catalog declares no files source "
                                 "(kind: files), so no file can be read")
        raise ForbiddenError(f"relative URI {uri!r} is not in a blob column, and there are "
                             f"{len(self.roots)} files sources: give a full URI inside one")

    def _inside(self, path: str, uri: str, *, scheme: str) -> Blob:
        scheme = "s3" if scheme in ("s3", "s3a") else scheme
        for root in self.roots.values():
            if root.scheme == scheme and root.contains(path):
                return Blob(root, path)
        raise ForbiddenError(f"URI {uri!r} is outside every declared files root")

    def read(self, blob: Blob, length: int | None = None, *,
             max_bytes: int | None = None) -> tuple[bytes, int]:
        """The first ``length`` bytes (all when None) and the file's size, through the cache:
        the longest prefix read of each file in this query, from which shorter reads (and the
        size) are served. A whole read of a file over ``max_bytes`` raises ``ValueError``
        before reading."""
        key = (blob.root.source, blob.path)
        with self._lock:
            if key in self._cache:
                data, size = self._cache[key]
                if len(data) == size or (length is not None and length <= len(data)):
                    self._cache.move_to_end(key)
                    return (data if length is None else data[:length]), size
                if length is None and max_bytes is not None and size > max_bytes:
                    raise ValueError(f"file of {size:,} bytes is over the {max_bytes:,} read whole here")
        with blob.root.filesystem.open_input_file(blob.path) as handle:
            size = handle.size()
            if length is None and max_bytes is not None and size > max_bytes:
                raise ValueError(f"file of {size:,} bytes is over the {max_bytes:,} read whole here")
            data = handle.read(length if length is not None else size)
        self._remember(key, (data, size))
        return data, size

    def map(self, function, items: list) -> list:
        """``function`` over ``items`` in the I/O pool, in order."""
        return list(self._pool.map(function, items))

    def new_query(self) -> None:
        """Forget cached bytes: what one query read is not kept for the next."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0

    def _remember(self, key: tuple, value: tuple[bytes, int]) -> None:
        with self._lock:
            old = self._cache.get(key)
            if old is not None:
                if len(old[0]) >= len(value[0]):
                    return  # another thread read as much meanwhile
                self._cached_bytes -= len(old[0])
            self._cache[key] = value
            self._cache.move_to_end(key)
            self._cached_bytes += len(value[0])
            while self._cache and (len(self._cache) > CACHE_ENTRIES
                                   or self._cached_bytes > CACHE_BYTES):
                _, (old, _) = self._cache.popitem(last=False)
                self._cached_bytes -= len(old)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
