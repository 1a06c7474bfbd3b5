"""The API boundary: whatever fails inside fedquery leaves it as a ``FedQueryError``.

Errors are translated where they arise (a connector translates its driver's, the planner its
own); this is the net under them, at every public entry point (``connect``, the methods of
``Connection`` and ``Result``, a result's stream, the CLI). A ``FedQueryError`` passes with
its secrets masked; any other exception is a bug and becomes one whose message says so, with
the original chained (unless it shows a secret). ``KeyboardInterrupt`` and ``SystemExit``
pass untouched.

A ``FedQueryError`` meant for the user (not an internal one) leaves with its traceback cut to
the frame of the public method that holds the boundary, and its implicit context hidden: its
message says everything, so a notebook shows one frame, not the planner's internals. An
internal error keeps its whole chain (the original, with its traceback, is its cause).

>>> with boundary(secrets, sources=("lake",)):   # doctest: +SKIP
...     run_the_query()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from fedquery.errors import FedQueryError, PlanError, SourceError

if TYPE_CHECKING:
    from fedquery.secrets import Secrets

REPORT = "this is a bug in fedquery; please report it with the query"
CLOSED = "the connection is closed; read a result before closing its connection"
INTERNAL = "_fedquery_internal"  # set on an error that stands for a bug: keeps its chain


class boundary:  # noqa: N801 - used as a function: ``with boundary(secrets):``
    """Let only ``FedQueryError`` out of the block, secrets masked; ``sources``: the sources
    the block reads, named by an I/O error that no connector translated (by any error with
    ``opening``: the block opens that source); ``closed``: true once the connection the block
    uses is closed, which is then the error. A class, not a generator: ``contextlib`` would
    give an error back the traceback this cuts."""

    def __init__(self, secrets: Secrets | None = None, *, sources: Iterable[str] = (),
                 opening: bool = False, closed: Callable[[], bool] | None = None) -> None:
        self.secrets, self.sources, self.opening, self.closed = secrets, sources, opening, closed

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # BaseExceptions (Ctrl-C, exit) pass
        if self.secrets is not None:
            self.secrets.scrub(exc)  # a translated one stays the new error's __context__
        if isinstance(exc, FedQueryError):
            if not getattr(exc, INTERNAL, False):
                _shorten(exc, tb)
            return False
        if self.closed is not None and self.closed():
            raise FedQueryError(CLOSED) from exc
        error = internal_error(exc, self.secrets, self.sources, opening=self.opening)
        setattr(error, INTERNAL, True)
        raise error from exc


def _shorten(exc: FedQueryError, tb: TracebackType | None) -> None:
    """Cut the traceback to its first frame (the one holding the boundary) and hide an implicit
    context (one the error was not raised ``from``); an explicit cause stays shown."""
    if tb is not None:
        exc.__traceback__ = TracebackType(None, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)
    if exc.__cause__ is None:
        exc.__suppress_context__ = True


def internal_error(exc: BaseException, secrets: Secrets | None = None,
                   sources: Iterable[str] = (), *, opening: bool = False) -> FedQueryError:
    """The ``FedQueryError`` that stands for an untranslated exception: ``SourceError`` for an
    I/O error while sources are read or any error while one opens, ``PlanError`` otherwise."""
    text = _first_line(str(exc))
    if secrets is not None:
        text = secrets.redact(text)
    kind = type(exc).__name__
    if isinstance(exc, RecursionError):
        return PlanError(f"the query is too deeply nested to plan ({kind}); simplify it, or split "
                         f"it with WITH ({REPORT})")
    if isinstance(exc, MemoryError):
        return PlanError(f"out of memory ({kind}); ask for fewer rows or columns")
    named = ", ".join(sorted(set(sources)))
    if opening and named:
        return SourceError(f"cannot open the source: internal error: {kind}: {text} ({REPORT})",
                           source=named)
    if isinstance(exc, OSError) and named:
        return SourceError(f"reading failed: {kind}: {text} (internal error: not translated by "
                           f"the connector; {REPORT})", source=named)
    return PlanError(f"internal error: {kind}: {text} ({REPORT})")


def guarded_batches(reader, secrets: Secrets | None, sources: Iterable[str] = (),
                    closed: Callable[[], bool] | None = None):
    """A record batch reader whose stream lets only ``FedQueryError`` out, like the API."""
    import pyarrow as pa

    sources = tuple(sources)

    def batches():
        with boundary(secrets, sources=sources, closed=closed):
            yield from reader

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _first_line(text: str, limit: int = 500) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(no message)"
    return line if len(line) <= limit else line[: limit - 3] + "..."
