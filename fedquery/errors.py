"""The one tree of errors fedquery raises.

Every error a user sees is a ``FedQueryError``; driver exceptions are translated once, at the
connector boundary, and chained with ``raise ... from``.
"""

from __future__ import annotations


class FedQueryError(Exception):
    """Base of every error fedquery raises."""

    def __reduce__(self):
        """Pickled as it is, without calling ``__init__`` again (an error a Ray task raised
        travels to the driver; ``SourceError`` cannot be made from its text alone)."""
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(cls: type[FedQueryError], args: tuple, state: dict) -> FedQueryError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ParseError(FedQueryError):
    """SQL that does not parse; ``line`` and ``col`` are 1-based, the message shows a caret."""

    def __init__(self, message: str, *, sql: str | None = None, line: int | None = None,
                 col: int | None = None) -> None:
        self.line, self.col, self.sql = line, col, sql
        super().__init__(message + _caret(sql, line, col))


class CatalogError(FedQueryError):
    """A catalog that is malformed: names the file, the key path and what was expected."""


class PlanError(FedQueryError):
    """A query that cannot be planned: unknown table or column, wrong types, bad parameters."""


class ForbiddenError(FedQueryError):
    """A statement or function refused by the read-only sandbox, before anything runs."""


class SourceError(FedQueryError):
    """A source that failed; ``source`` names it and the message says why in words."""

    def __init__(self, message: str, *, source: str) -> None:
        self.source = source
        super().__init__(f"source {source!r}: {message}")


class QueryCancelled(FedQueryError):
    """A query stopped before its end: cancelled (``Result.cancel``, ``Connection.interrupt``,
    Ctrl-C), or its connection was closed."""


class QueryTimeout(QueryCancelled):
    """A query stopped because it ran past its ``timeout`` (``con.sql(..., timeout=)`` or the
    catalog's ``settings.timeout``)."""


class Interrupted(QueryCancelled, KeyboardInterrupt):
    """Ctrl-C while a query ran: a ``QueryCancelled`` that is also the ``KeyboardInterrupt``
    it stands for, so ``except KeyboardInterrupt`` and ``except FedQueryError`` both see it."""


def _caret(sql: str | None, line: int | None, col: int | None) -> str:
    """The offending SQL line with a caret under column ``col``."""
    if not sql or not line:
        return ""
    lines = sql.splitlines() or [""]
    text = lines[min(line, len(lines)) - 1]
    pad = " " * max((col or 1) - 1, 0)
    return f"\n  line {line}, column {col or 1}:\n    {text}\n    {pad}^"
