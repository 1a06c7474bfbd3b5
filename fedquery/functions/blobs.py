"""Files behind blob columns: resolve a URI inside a declared root, read what is needed.

Every ``files`` source is a root on a filesystem (a local folder or ``s3://``, with the same
options as a lake). A URI resolves relative to its blob column's source, or as a full URI or
absolute path inside one of the roots; ``..`` that climbs out, a symlink that leads out, an
absolute path elsewhere or another scheme is refused with ``ForbiddenError`` and nothing of the
file is read.

Local files are opened beneath the root without following a symlink out of it and checked
once opened (``confine``): regular files only, hard links only when the source allows them.
A file's size (``fstat``, or the HEAD of an S3 object) is checked against the source's cap for
the function (``limits``) before anything is read, and reads never go past it. S3 reads that
fail with a transient error (5xx, throttling, timeouts, resets) are tried again with backoff
and jitter, up to the source's ``read_attempts``; one that keeps failing is a ``SourceError``
for the whole query, never a per-row error; so is any other failure but a missing object
(access denied, a missing bucket, a 400 such as S3's ``VALIDATION``). Reads go through a
bounded thread pool and a cache per run (``runs``: the longest prefix read of each file, and
its size), so a file is not fetched twice by one query and never served to another.
"""

from __future__ import annotations

import functools
import os
import posixpath
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedquery.errors import ForbiddenError, SourceError
from fedquery.functions.budget import MemoryBudget
from fedquery.functions.confine import Escape, open_beneath
from fedquery.functions.deadline import Deadlines, ReadTimedOut, TooManyStuck
from fedquery.functions.limits import FilesSettings, size_text
from fedquery.functions.reads import Changed, Read, Stale, read_local, read_remote
from fedquery.functions.runs import Runs
from fedquery.functions.s3_status import MISSING, REFUSED, classify

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from fedquery.catalog import Catalog

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
IO_THREADS = 16
BACKOFF_FIRST, BACKOFF_MOST = 0.05, 2.0  # seconds before the second attempt; the longest wait


def kind_of(uri: str) -> str | None:
    """``image`` or ``pointcloud`` by a URI's extension (query string ignored), else None."""
    from fedquery.functions.pointclouds import FORMATS

    extension = posixpath.splitext(uri.split("?", 1)[0])[1].lower()
    if extension in IMAGE_EXTENSIONS:
        return "image"
    return "pointcloud" if extension in FORMATS else None


class TooLarge(ValueError):
    """A file over its function's cap (a per-row error; ``SourceError`` when strict)."""


@dataclass(frozen=True)
class Root:
    """One files source: its name, filesystem, root path, scheme (``file`` or ``s3``), its
    settings, its decode budget and the budget of its calls' results (``results``)."""

    source: str
    filesystem: pafs.FileSystem
    path: str
    scheme: str
    settings: FilesSettings = field(default_factory=FilesSettings)
    budget: MemoryBudget = field(init=False, compare=False, repr=False)
    results: MemoryBudget = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", MemoryBudget(self.settings.limits["decode_memory"]))
        object.__setattr__(self, "results", MemoryBudget(self.settings.limits["batch_memory"]))

    def contains(self, path: str) -> bool:
        """Whether ``path`` (normalised) lies strictly inside this root, symlinks followed for
        local: the root itself is no file (on S3, the object named like the prefix lies
        outside it)."""
        if self.scheme == "file":
            return _strictly_under(os.path.realpath(path), self.real_path)
        return _strictly_under(path, self.path)

    def is_root(self, path: str) -> bool:
        """Whether ``path`` (normalised) names the root itself."""
        if self.scheme == "file":
            return os.path.realpath(path) == self.real_path
        return path.rstrip("/") == self.path.rstrip("/")

    def relative(self, path: str) -> str:
        """``path`` (inside this root) relative to the root."""
        for base, candidate in ((self.path, path), (self.real_path, path),
                                (self.real_path, os.path.realpath(path))):
            if _under(candidate, base):
                return candidate[len(base):].lstrip("/")
        raise ForbiddenError(f"{path!r} is not inside the root of files source {self.source!r}")

    def limit(self, name: str) -> int:
        return self.settings.limits[name]

    @property
    def stats(self) -> Any:
        """The counting filesystem's ``ReadStats`` (bytes read per file)."""
        return self.filesystem.handler.stats

    @functools.cached_property
    def real_path(self) -> str:
        """The local root with its symlinks resolved, once."""
        return os.path.realpath(self.path)


def _names_root(uri: str, root: Root) -> ForbiddenError:
    return ForbiddenError(f"URI {uri!r} names the root of files source {root.source!r} itself, "
                          "not a file inside it")


def _open_local(blob: Blob) -> int:
    """A descriptor of the file, opened beneath its root (no symlink followed, a regular file;
    see ``confine``); ``ForbiddenError`` for a path that leads out."""
    root = blob.root
    try:
        return open_beneath(root.path, root.relative(blob.path), real_root=root.real_path,
                            allow_hard_links=root.settings.allow_hard_links)
    except Escape as exc:
        raise ForbiddenError(f"URI {blob.uri!r} leads out of the root of files source "
                             f"{root.source!r}: {exc}") from None


def _read_at(handle: Any, offset: int, nbytes: int) -> bytes:
    handle.seek(offset)
    return handle.read(nbytes)


def _under(path: str, base: str) -> bool:
    return path == base or _strictly_under(path, base)


def _strictly_under(path: str, base: str) -> bool:
    """``path`` lies strictly under ``base`` (not ``base`` itself)."""
    prefix = base.rstrip("/") + "/"
    return path.startswith(prefix) and len(path) > len(prefix)


@dataclass(frozen=True)
class Blob:
    """A resolved file: the root it lies in, its path on that root's filesystem, its URI."""

    root: Root
    path: str
    uri: str = ""


class Blobs:
    """The declared roots, URI resolution and capped, pooled, per-run cached reads."""

    def __init__(self, roots: dict[str, Root]) -> None:
        self.roots = roots
        self.runs = Runs()
        self.deadlines = Deadlines()
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="fedquery-blobs")

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Blobs:
        from fedquery.connectors.remote_fs import open_filesystem

        roots = {}
        for name, spec in catalog.sources.items():
            if spec.kind == "files":
                settings = FilesSettings.from_settings(spec.settings, f"{catalog.origin}: sources.{name}")
                root = spec.resolve(spec.settings["root"])
                fs, path = open_filesystem(root, spec.settings.get("options"), source=name,
                                           secrets=catalog.secrets)
                roots[name] = Root(name, fs, path, "s3" if "://" in root else "file", settings)
        return cls(roots)

    def resolve(self, uri: str, source: str | None = None) -> Blob:
        """The file a URI names, confined to the declared roots: strictly beneath one (a URI
        that names a root itself, such as ``''``, ``'.'`` or ``'a/..'``, is refused)."""
        if "\0" in uri:
            raise ForbiddenError(f"URI {uri!r} holds a NUL byte: no file is named so")
        if "://" in uri:
            scheme, rest = uri.split("://", 1)
            return self._inside(posixpath.normpath(rest), uri, scheme=scheme)
        if uri.startswith("/"):
            return self._inside(os.path.normpath(uri), uri, scheme="file")
        root = self._root_for(uri, source)
        joined = posixpath.normpath(posixpath.join(root.path, uri))
        if root.contains(joined):
            return Blob(root, joined, uri)
        if root.is_root(joined):
            raise _names_root(uri, root)
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
        roots = [root for root in self.roots.values() if root.scheme == scheme]
        for root in roots:
            if root.contains(path):
                return Blob(root, path, uri)
        named = next((root for root in roots if root.is_root(path)), None)
        if named is not None:
            raise _names_root(uri, named)
        raise ForbiddenError(f"URI {uri!r} is outside every declared files root")

    # ------------------------------------------------------------------ reads

    def read(self, blob: Blob, length: int | None = None, *, limit: str | None = None,
             run: str | None = None) -> tuple[bytes, int]:
        """The first ``length`` bytes (all when None) and the file's size, exactly as the file
        is (see ``reads``). With a ``limit``, a file over ``limits.<limit>`` is ``TooLarge``
        before anything of it is read (also for a prefix: the header of a file the caller reads
        whole next). With a ``run``, served from and kept in that run's cache (the longest
        prefix read of each file, its size and pin); a file whose pin differs from the one the
        run saw before is ``Changed``: what the query learnt of it earlier no longer holds."""
        key = (run, blob.root.source, blob.path)
        earlier = None
        if run is not None:
            hit, cached = self.runs.bytes.get(key)
            if hit:
                data, size, earlier = cached
                if len(data) == size or (length is not None and length <= len(data)):
                    self.check(blob, size, limit)
                    return (data if length is None or length >= len(data) else data[:length]), size
        done = self._timed(blob, lambda cancel: self._read_pinned(blob, length, limit, earlier,
                                                                 cancel))
        if run is not None:
            hit, old = self.runs.bytes.get(key)
            if not hit or len(old[0]) < len(done.data):
                self.runs.bytes.put(key, (done.data, done.size, done.pin), len(done.data))
        return done.data, done.size

    def read_tail(self, blob: Blob, n: int, run: str | None = None) -> bytes:
        """The last ``n`` bytes of the file (fewer if it is shorter): from the run's cache when
        it holds the whole file or this tail, else one positioned read (one ranged GET on S3),
        kept in the run's cache."""
        key = (run, blob.root.source, blob.path)
        if run is not None:
            hit, whole = self.runs.bytes.get(key)
            hit_tail, tail = self.runs.bytes.get((*key, "tail"))
            if hit and len(whole[0]) == whole[1]:
                return bytes(whole[0][-n:]) if n else b""
            if hit_tail and len(tail[0]) >= n:
                return bytes(tail[0][-n:]) if n else b""
        tail = self._tail_local(blob, n) if blob.root.scheme == "file" else self._tail_remote(blob, n)
        if run is not None:
            self.runs.bytes.put((*key, "tail"), (tail, -1), len(tail))
        return tail

    def _tail_remote(self, blob: Blob, n: int) -> bytes:
        """The last ``n`` bytes by one ranged GET (after the open's HEAD), each request retried
        on transient errors, the whole under the source's ``read_timeout``."""
        def read(cancel: threading.Event) -> bytes:
            handle = self._retried(blob, lambda: blob.root.filesystem.open_input_file(blob.path),
                                   cancel)
            with handle:
                size = handle.size()
                start = max(0, size - n)
                if start == size:
                    return b""
                return self._retried(blob, lambda: _read_at(handle, start, size - start), cancel)

        return self._timed(blob, read)

    def _tail_local(self, blob: Blob, n: int) -> bytes:
        root, fd = blob.root, _open_local(blob)
        try:
            size = os.fstat(fd).st_size
            start = max(0, size - n)
            data = os.pread(fd, size - start, start) if n else b""
        finally:
            os.close(fd)
        if data:
            root.stats.add(blob.path, len(data))
        return data

    def size(self, blob: Blob, run: str | None = None) -> int:
        """The file's size, from the run's cache or by opening it (nothing read)."""
        return self.read(blob, 0, run=run)[1]

    def check(self, blob: Blob, size: int, limit: str | None) -> None:
        """``TooLarge`` when a file of ``size`` bytes is over ``limits.<limit>``."""
        if limit is not None and size > blob.root.limit(limit):
            raise TooLarge(f"too large: {size_text(size)} is over limits.{limit} "
                           f"({size_text(blob.root.limit(limit))})")

    def _timed(self, blob: Blob, read: Callable[[threading.Event], Any]) -> Any:
        """``read`` within the source's ``read_timeout`` (``deadline``); past it, or while too
        many earlier reads are stuck, a ``SourceError``: the source, not the file, is at fault."""
        timeout = blob.root.settings.read_timeout
        try:
            return self.deadlines.run(read, timeout)
        except ReadTimedOut:
            raise SourceError(f"{blob.uri}: reading the file took longer than the source's "
                              f"read_timeout ({timeout:g} s): the source is too slow or stuck "
                              "(raise read_timeout to wait longer)", source=blob.root.source) from None
        except TooManyStuck as exc:
            raise SourceError(f"{blob.uri}: not read: {exc} (read_timeout {timeout:g} s); "
                              "the source is stuck: try again later", source=blob.root.source) from None

    def _read_pinned(self, blob: Blob, length: int | None, limit: str | None,
                     earlier: tuple | None, cancel: threading.Event) -> Read:
        """One read, tried again once if the file changed while it was read; the file must
        still be the version pinned earlier in the run, if any."""
        def admit(size: int, pin: tuple) -> None:
            if earlier is not None and pin != earlier:
                raise Stale("changed while the query read it (it is not the version read "
                              "before in the same query): run the query again")
            self.check(blob, size, limit)

        reader = self._read_local if blob.root.scheme == "file" else self._read_remote
        try:
            return reader(blob, length, admit, cancel)
        except Stale:
            raise
        except Changed:
            pass  # read it again, once
        try:
            return reader(blob, length, admit, cancel)
        except Stale:
            raise
        except Changed:
            raise Changed("changed while it was read, twice in a row: read it again once it is "
                          "no longer being written") from None

    def _read_local(self, blob: Blob, length: int | None, admit: Any,
                    cancel: threading.Event) -> Read:
        root, fd = blob.root, _open_local(blob)
        try:
            done = read_local(fd, length, admit)
        finally:
            os.close(fd)
        if done.data:
            root.stats.add(blob.path, len(done.data))
        return done

    def _read_remote(self, blob: Blob, length: int | None, admit: Any,
                     cancel: threading.Event) -> Read:
        """An object's size and pin (its HEAD), bytes (ranged GETs) and pin again (a HEAD),
        each request tried again on transient errors (see module doc)."""
        handler = blob.root.filesystem.handler
        return read_remote(lambda: handler.open_reader(blob.path), length, admit,
                           lambda request: self._retried(blob, request, cancel))

    def _retried(self, blob: Blob, request: Callable[[], Any], cancel: threading.Event) -> Any:
        """``request()``, tried up to ``read_attempts`` times while it fails transiently, with
        exponential backoff and jitter; then a ``SourceError``. A missing object is the
        caller's (a per-row error); a refusal (``s3_status``) the source's: a ``SourceError``
        at once. A read abandoned past its deadline stops before its next attempt."""
        attempts, last = blob.root.settings.read_attempts, ""
        for attempt in range(attempts):
            if cancel.is_set():
                raise ReadTimedOut("abandoned")
            try:
                return request()
            except OSError as exc:
                text = str(exc).removeprefix(f"source {blob.root.source!r}: ")
                kind = classify(exc)
                if kind == MISSING and isinstance(exc, FileNotFoundError):
                    raise
                if kind == MISSING:  # a GET of an object deleted since its HEAD
                    raise FileNotFoundError(text) from None
                if kind == REFUSED:
                    raise SourceError(f"{blob.uri}: {text} (S3 refused the request: neither a "
                                      "missing object nor a transient error)",
                                      source=blob.root.source) from None
                last = text
            if attempt + 1 < attempts:
                delay = min(BACKOFF_MOST, BACKOFF_FIRST * 2 ** attempt)
                cancel.wait(random.uniform(delay / 2, delay))  # noqa: S311 - jitter, not secrets
        raise SourceError(f"{blob.uri}: a request failed {attempts} attempts in a row with "
                          f"transient errors (raise the source's read_attempts to retry longer); "
                          f"last: {last}", source=blob.root.source)

    def map(self, function, items: list) -> list:
        """``function`` over ``items`` in the I/O pool, in order."""
        return list(self._pool.map(function, items))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
