"""PostgreSQL's side of the shared ADBC sessions (``_adbc_session``): libpq's error words and
which failures lose a session. ``Session``, ``Pool`` and the rest are re-exported for the
connector's modules."""

from __future__ import annotations

import re

from fedquery.connectors._adbc_session import (  # noqa: F401  (re-exported)
    Cancelled,
    Pool,
    Session,
    SessionTimeout,
    close_quietly,
    cursor_of,
)


def driver_message(exc: BaseException) -> str:
    """The server's or libpq's words, without the driver's status prefix or the query echo."""
    text = str(exc).strip()
    text = re.sub(r"\s*Query was:.*\Z", "", text, flags=re.S)
    text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", text)
    text = re.sub(r"^\[libpq\] ", "", text)
    if "ERROR:" in text:
        text = text.split("ERROR:", 1)[1]
    text = re.sub(r"\s*\.?\s*SQLSTATE: (\w+)", r" (SQLSTATE \1)", text)
    text = " ".join(text.split()).rstrip(":").strip()
    return text or "the connection to the server was lost"


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the session itself is gone, not just the statement.

    A statement's error carries a SQLSTATE or the server's ``ERROR:`` words; the session
    then still works (a statement timeout, a bad column). Anything else from the driver or
    the network (libpq's "server closed the connection", an ``OSError``, a SQLSTATE of class
    08 or 57P, a FATAL message, a missed deadline) loses the session.
    """
    if isinstance(exc, SessionTimeout):
        return True
    state = getattr(exc, "sqlstate", None)
    if state:
        return state.startswith("08") or state.startswith("57P")
    text = str(exc)
    if "ERROR:" in text and "FATAL:" not in text:
        return False
    return hasattr(exc, "status_code") or isinstance(exc, OSError | ConnectionError | EOFError)
