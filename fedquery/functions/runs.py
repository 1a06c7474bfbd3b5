"""Per-run state of the blob functions: cached bytes and vectors, and the errors a run raised.

A run is one execution of a plan. DuckDB's functions are database-wide and DuckDB calls them
from its own threads, so neither the function object nor a thread can tell whose call it is.
``Runs.start(cursor)`` gives each run a random token and sets it as the DuckDB variable
``__fq_run`` on the run's own cursor (variables are per cursor); the plan passes
``getvariable('__fq_run')`` to every blob function (``bind_blob_sources``), so every cache key
and every recorded error carries its run and no run sees another's. A call without a run (a
fragment fetched on another cursor, a direct Python call) gets a token of its own.

DuckDB passes on only the text of what a function raises, so a recorded error is raised with a
tag (``[fedquery error <run>.<n>]``) and ``take`` finds it again by that tag, exactly.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import weakref
from collections import OrderedDict
from typing import Any

from fedquery.errors import QueryCancelled

RUN_VARIABLE = "__fq_run"
CACHE_ENTRIES = 512
CACHE_BYTES = 64 << 20
CACHE_VECTORS = 4096
KEPT_FAILURES = 1024
_TAG = re.compile(r"\[fedquery error ([0-9a-f]+\.\d+)\]")


def new_token() -> str:
    return secrets.token_hex(8)


class TaggedError(Exception):
    """What a blob function raises to DuckDB: a recorded error's text and its tag."""


class Runs:
    """Caches and failures of every live run, keyed by run token."""

    def __init__(self) -> None:
        self.bytes = _Lru(CACHE_ENTRIES, CACHE_BYTES)
        self.vectors = _Lru(CACHE_VECTORS, None)
        self._failures: OrderedDict[str, BaseException] = OrderedDict()
        self._serial = itertools.count()
        self._ended: list[str] = []
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()  # runs whose query was stopped

    def start(self, cursor: Any, joining: str | None = None) -> str:
        """A new run on ``cursor`` (or the run ``joining``, for a plan that is part of it): its
        token set as ``__fq_run`` there; a new run's state is dropped once its cursor is gone."""
        while self._ended:  # runs whose cursors were collected since the last start
            self.end(self._ended.pop())
        token = joining or new_token()
        cursor.execute(f"SET VARIABLE {RUN_VARIABLE} = ?", [token])
        if joining is None:
            # the garbage collector may run this inside any lock: it only notes the run as ended
            weakref.finalize(cursor, self._ended.append, token)
        return token

    def cancel(self, token: str) -> None:
        """Stop run ``token``: its functions raise ``QueryCancelled`` before their next file."""
        with self._lock:
            self._cancelled.add(token)

    def check(self, token: str) -> None:
        """Raise ``QueryCancelled`` if run ``token`` was stopped (called between files)."""
        if token in self._cancelled:
            raise QueryCancelled("the query was stopped while its blob functions ran")

    def end(self, token: str) -> None:
        """Forget what run ``token`` cached and the errors it left untaken."""
        self.bytes.drop(token)
        self.vectors.drop(token)
        with self._lock:
            self._cancelled.discard(token)
            for tag in [t for t in self._failures if t.startswith(token + ".")]:
                del self._failures[tag]

    def tagged(self, token: str, error: BaseException) -> TaggedError:
        """``error`` recorded under run ``token``; raise the result to DuckDB."""
        tag = f"{token}.{next(self._serial)}"
        with self._lock:
            self._failures[tag] = error
            while len(self._failures) > KEPT_FAILURES:
                self._failures.popitem(last=False)
        return TaggedError(f"{error} [fedquery error {tag}]")

    def take(self, message: str) -> BaseException | None:
        """The recorded error whose tag DuckDB's ``message`` carries (removed once taken)."""
        match = _TAG.search(message)
        if match is None:
            return None
        with self._lock:
            return self._failures.pop(match.group(1), None)


class _Lru:
    """A least-recently-used map whose keys start with a run token, bounded in entries and
    (for bytes) in total size; ``drop(token)`` forgets one run's entries."""

    def __init__(self, entries: int, nbytes: int | None) -> None:
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._entries, self._nbytes, self._size = entries, nbytes, 0
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bool, Any]:
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key]

    def put(self, key: tuple, value: Any, size: int = 0) -> None:
        """Keep ``value`` (of ``size`` bytes); a value over the whole budget is not kept."""
        if self._nbytes is not None and size > self._nbytes:
            return
        with self._lock:
            if key in self._items:
                self._size -= self._sizes.pop(key, 0)
            self._items[key] = value
            self._items.move_to_end(key)
            self._sizes[key] = size
            self._size += size
            while self._items and (len(self._items) > self._entries
                                   or (self._nbytes is not None and self._size > self._nbytes)):
                old, _ = self._items.popitem(last=False)
                self._size -= self._sizes.pop(old, 0)

    def drop(self, token: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == token]:
                del self._items[key]
                self._size -= self._sizes.pop(key, 0)
