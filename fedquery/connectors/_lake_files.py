"""DuckDB's own Parquet reader over a lake on S3: the objects one query pinned, as a filesystem.

DuckDB here cannot reach ``s3://`` itself (no httpfs), but it reads any fsspec filesystem
registered on its connection, with its own Parquet reader: projection, filters, row-group
statistics and decoding all native, several row groups at once. ``LakeFiles`` is that
filesystem for one lake. A query's read of a table (``TableRead``) is given a token, and
DuckDB reads ``<protocol>://<token>/<bucket>/<key>``: only objects that read pinned exist, at
their pinned size and time, so a query never sees a file listed by another. Every byte comes
through ``TableRead.read_range``: the footer's tail from the lake's cache, the rest as ranged
GETs on pyarrow's native S3 filesystem, each within its read deadline, and counted.
"""

from __future__ import annotations

import datetime
import itertools
import threading
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

if TYPE_CHECKING:
    from fedquery.connectors._lake_read import TableRead

_COUNTER = itertools.count()
TOKEN_PREFIX = "q"  # a token is never a hive segment (no '=')


class LakeFiles(AbstractFileSystem):
    """The pinned objects of the reads registered now, under their tokens."""

    cachable = False  # one instance per lake, never shared by fsspec's instance cache
    protocol = "fqlake"

    def __init__(self, protocol: str) -> None:
        super().__init__()
        self.protocol = protocol
        self._reads: dict[str, TableRead] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_lake(cls) -> LakeFiles:
        """A filesystem with a protocol of its own (DuckDB keys filesystems by protocol)."""
        return cls(f"fqlake{next(_COUNTER)}")

    def root(self) -> str:
        """The prefix of every path this filesystem serves (DuckDB's allowed directory)."""
        return f"{self.protocol}://"

    def add(self, read: TableRead) -> str:
        token = f"{TOKEN_PREFIX}{next(_COUNTER)}"
        with self._lock:
            self._reads[token] = read
        return token

    def remove(self, token: str) -> None:
        with self._lock:
            self._reads.pop(token, None)

    def url(self, token: str, path: str) -> str:
        return f"{self.protocol}://{token}/{path}"

    def _split(self, path: str) -> tuple[TableRead, str]:
        bare = path.split("://", 1)[-1]
        token, _, key = bare.partition("/")
        with self._lock:
            read = self._reads.get(token)
        if read is None or not read.has(key):
            raise FileNotFoundError(path)
        return read, key

    def _strip_protocol(self, path: str) -> str:  # instance method: the protocol is per lake
        return path.split("://", 1)[-1] if isinstance(path, str) else path

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        read, key = self._split(path)
        return {"name": path.split("://", 1)[-1], "size": read.size(key), "type": "file"}

    def modified(self, path: str) -> datetime.datetime:
        read, key = self._split(path)
        return datetime.datetime.fromtimestamp(read.mtime_ns(key) / 1e9, tz=datetime.UTC)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        entry = self.info(path)
        return [entry] if detail else [entry["name"]]

    def glob(self, path: str, **kwargs: Any) -> list[str]:
        return [self.info(path)["name"]]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> LakeFile:
        if mode != "rb":
            raise PermissionError(f"{path}: the lake is read-only")
        read, key = self._split(path)
        return LakeFile(self, path, read, key)


class LakeFile(AbstractBufferedFile):
    """One pinned object as DuckDB reads it: each range fetched as asked (no cache here)."""

    def __init__(self, fs: LakeFiles, path: str, read: TableRead, key: str) -> None:
        self._read, self._key = read, key
        super().__init__(fs, path, mode="rb", block_size=1, cache_type="none",
                         size=read.size(key))

    def __repr__(self) -> str:  # fsspec logs files by repr: an object's path may be secret
        return "<fedquery lake file>"

    __str__ = __repr__

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self._read.read_range(self._key, start, end)
