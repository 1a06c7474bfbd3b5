"""fedquery's errors as PostgreSQL ErrorResponse fields: SQLSTATE code, message, position.

A client sees fedquery's own message (secrets already masked by the API boundary, never a
traceback) under the SQLSTATE a PostgreSQL client expects, so ``psycopg`` raises its matching
class (``errors.SyntaxError``, ``InsufficientPrivilege``, ``QueryCanceled``, ...) and ``psql``
prints ``ERROR:  ...``. Anything that is not a ``FedQueryError`` reaching the server is a bug:
it is reported as ``XX000`` without its text, which could hold anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedquery.boundary import INTERNAL
from fedquery.errors import (
    CatalogError,
    FedQueryError,
    ForbiddenError,
    ParseError,
    PlanError,
    QueryCancelled,
    SourceError,
)
from fedquery.serve_auth import AuthFailed


class Unsupported(FedQueryError):
    """A protocol feature the server does not offer (binary results of a list, a COPY from
    the client): SQLSTATE 0A000."""


class InvalidValue(FedQueryError):
    """A parameter value that does not read as its declared type: SQLSTATE 22P02."""


class UnknownSetting(FedQueryError):
    """``SHOW`` or ``current_setting`` of a name the server does not know: SQLSTATE 42704."""


class ProtocolViolation(FedQueryError):
    """A malformed message from the client: SQLSTATE 08P01."""


# (class, SQLSTATE); the first match along the list wins, so subclasses come first
CODES: tuple[tuple[type[BaseException], str], ...] = (
    (AuthFailed, "28P01"),          # invalid_password
    (ParseError, "42601"),          # syntax_error
    (ForbiddenError, "42501"),      # insufficient_privilege: the read-only sandbox refused it
    (QueryCancelled, "57014"),      # query_canceled (QueryTimeout is one too)
    (SourceError, "58000"),         # system_error: a source failed (a database, S3, a file)
    (CatalogError, "F0000"),        # config_file_error: the catalog is wrong
    (Unsupported, "0A000"),         # feature_not_supported
    (ProtocolViolation, "08P01"),   # protocol_violation
    (InvalidValue, "22P02"),        # invalid_text_representation
    (UnknownSetting, "42704"),      # undefined_object
    (PlanError, "42000"),           # syntax_error_or_access_rule_violation (refined below)
    (FedQueryError, "XX000"),
)
# a PlanError's message says which kind it is (PlanError has no subclasses to tell them apart)
PLAN_CODES: tuple[tuple[str, str], ...] = (
    ("unknown table", "42P01"),                          # undefined_table
    ("Referenced column", "42703"),                      # undefined_column
    ("the result has more than", "54000"),               # program_limit_exceeded: max_rows
    ("needs more memory than", "53200"),                 # out_of_memory: memory_limit
    ("out of memory", "53200"),
    ("too deeply nested", "54001"),                      # statement_too_complex
)


@dataclass(frozen=True)
class ErrorFields:
    """What an ErrorResponse carries: severity, SQLSTATE, message, detail, position."""

    code: str
    message: str
    detail: str | None = None
    position: int | None = None  # 1-based character offset in the query
    severity: str = "ERROR"


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of an error raised while serving a client."""
    if isinstance(exc, FedQueryError) and getattr(exc, INTERNAL, False):
        return "XX000"  # a bug fedquery's boundary caught (its message says so)
    code = next((c for kind, c in CODES if isinstance(exc, kind)), "XX000")
    if code == "42000":
        text = str(exc)
        code = next((c for needle, c in PLAN_CODES if needle in text), code)
    return code


def error_fields(exc: BaseException, query: str | None = None) -> ErrorFields:
    """The fields of ``exc``'s ErrorResponse; a ParseError's line and column become the
    position in ``query`` (psql then draws the caret under it) and its first line the
    message."""
    code = sqlstate(exc)
    if isinstance(exc, AuthFailed):
        return ErrorFields(code, "password authentication failed", severity="FATAL")
    if not isinstance(exc, FedQueryError):
        return ErrorFields(code, f"internal error in fedquery serve ({type(exc).__name__}); "
                                 "this is a bug, please report it with the query")
    message, _, detail = str(exc).partition("\n")
    if isinstance(exc, ParseError) and exc.line and query:
        return ErrorFields(code, message, None, _position(query, exc.line, exc.col or 1))
    return ErrorFields(code, message, detail.strip("\n") or None)


def _position(query: str, line: int, col: int) -> int:
    """The 1-based character offset of (line, col) in ``query``."""
    lines = query.split("\n")
    before = sum(len(text) + 1 for text in lines[: max(line - 1, 0)])
    return before + col
