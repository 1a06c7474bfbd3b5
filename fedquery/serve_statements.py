"""The session statements a PostgreSQL client sends, answered by the server itself.

Drivers and BI tools open with ``SET``, ``SHOW``, ``BEGIN``, ``SELECT version()`` or
``SELECT current_schema()`` before any query of theirs; fedquery's sandbox would refuse them
all (it reads, nothing else). They change nothing a query sees, so the server answers them:
``SET`` is kept for ``SHOW`` and ``current_setting``, transactions are no-ops over a
read-only federation, and the session functions report fixed values. Anything else is a
query for fedquery (``None`` here).

>>> state = SessionState(user="ana", database="fleet")
>>> answer("SHOW TimeZone", state).table.to_pylist()
[{'TimeZone': 'UTC'}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa
import sqlglot
from sqlglot import exp

from fedquery.serve_errors import UnknownSetting, Unsupported

SERVER_VERSION = "15.0"
DEFAULTS = {
    "server_version": SERVER_VERSION, "server_version_num": "150000",
    "server_encoding": "UTF8", "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres", "TimeZone": "UTC", "integer_datetimes": "on",
    "standard_conforming_strings": "on", "search_path": '"$user", public',
    "transaction_isolation": "read committed", "transaction_read_only": "on",
    "default_transaction_read_only": "on", "default_transaction_isolation": "read committed",
    "is_superuser": "off", "max_identifier_length": "63", "extra_float_digits": "1",
    "application_name": "", "lc_collate": "C", "lc_ctype": "C", "max_index_keys": "32",
    "statement_timeout": "0", "bytea_output": "hex",
}
# ParameterStatus messages sent after authentication, as PostgreSQL sends them
REPORTED = ("server_version", "server_encoding", "client_encoding", "application_name",
            "DateStyle", "IntervalStyle", "TimeZone", "integer_datetimes",
            "standard_conforming_strings", "is_superuser", "default_transaction_read_only")
TRANSACTIONS = {"BEGIN": "BEGIN", "START": "START TRANSACTION", "COMMIT": "COMMIT",
                "END": "COMMIT", "ROLLBACK": "ROLLBACK", "ABORT": "ROLLBACK",
                "SAVEPOINT": "SAVEPOINT", "RELEASE": "RELEASE"}
COMMENT = re.compile(r"^\s*(?:--[^\n]*(?:\n|$)|/\*.*?\*/)", re.S)
SET = re.compile(r"^SET\s+(?:SESSION\s+|LOCAL\s+)?(?P<name>[\w.]+|TIME\s+ZONE)\s*(?:=|\s+TO\s+|\s)"
                 r"\s*(?P<value>.*)$", re.I | re.S)


@dataclass
class SessionState:
    """One client's session: who it is and what it ``SET``."""

    user: str = ""
    database: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    in_transaction: bool = False

    def setting(self, name: str) -> str:
        """A setting's value, by case-insensitive name (``SET`` ones first)."""
        key = name.lower()
        for values in (self.settings, DEFAULTS):
            for known, value in values.items():
                if known.lower() == key:
                    return value
        raise UnknownSetting(f'unrecognized configuration parameter "{name}"')

    def reported(self) -> dict[str, str]:
        """The ParameterStatus values of a new session."""
        return {name: self.setting(name) for name in REPORTED}


@dataclass(frozen=True)
class Local:
    """The server's own answer: a command tag, rows, or an empty query."""

    status: str = ""
    table: pa.Table | None = None
    empty: bool = False


def answer(sql: str, state: SessionState) -> Local | None:
    """The answer to a session statement, or None for a query fedquery runs."""
    text = _bare(sql)
    if not text:
        return Local(empty=True)
    word = text.split(None, 1)[0].upper()
    if word in TRANSACTIONS:
        return _transaction(word, text, state)
    if word == "SET":
        return _set(text, state)
    if word in ("RESET", "DISCARD", "DEALLOCATE", "UNLISTEN"):
        return Local(status=" ".join(text.upper().split()[:2]) if word != "RESET" else "RESET")
    if word == "SHOW":
        return _show(text, state)
    if word == "SELECT":
        return _session_select(text, state)
    return None


def _bare(sql: str) -> str:
    """The statement without leading comments, surrounding blanks and trailing semicolons."""
    previous = None
    while previous != sql:
        previous, sql = sql, COMMENT.sub("", sql, count=1)
    return sql.strip().rstrip(";").strip()


def _transaction(word: str, text: str, state: SessionState) -> Local:
    tag = TRANSACTIONS[word]
    if word == "ROLLBACK" and re.search(r"\bTO\b", text, re.I):
        return Local(status="ROLLBACK")  # ROLLBACK TO SAVEPOINT: the transaction goes on
    if word in ("BEGIN", "START"):
        state.in_transaction = True
    elif word not in ("SAVEPOINT", "RELEASE"):
        state.in_transaction = False
    return Local(status=tag)


def _set(text: str, state: SessionState) -> Local:
    if re.match(r"^SET\s+(SESSION\s+CHARACTERISTICS|TRANSACTION)\b", text, re.I):
        return Local(status="SET")  # isolation and read-only: a read-only federation already
    match = SET.match(text)
    if match is None:
        return Local(status="SET")
    name = "TimeZone" if match["name"].upper().replace(" ", "") == "TIMEZONE" else match["name"]
    value = match["value"].strip().strip("'\"")
    if name.lower() == "client_encoding" and value.upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise Unsupported(f"client_encoding {value!r}: this server speaks UTF8 only")
    state.settings[name] = value
    return Local(status="SET")


def _show(text: str, state: SessionState) -> Local | None:
    name = " ".join(text.split()[1:])
    if name.upper() in ("TABLES", "ALL TABLES"):
        return None  # fedquery's own SHOW TABLES
    if name.upper() == "ALL":
        names = sorted({**DEFAULTS, **state.settings}, key=str.lower)
        return Local(table=pa.table({"name": names,
                                     "setting": [state.setting(n) for n in names]}))
    if name.upper() == "TRANSACTION ISOLATION LEVEL":
        name = "transaction_isolation"
    name = name.strip('"')
    return Local(table=pa.table({name: [state.setting(name)]}))


def _session_select(text: str, state: SessionState) -> Local | None:
    """``SELECT version()``, ``current_schema()``, ``current_setting('x')``... without FROM."""
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or tree.args.get("from") or tree.args.get("from_") \
            or any(tree.args.get(k) for k in ("where", "group", "having", "with")):
        return None
    values = [_session_value(e, state) for e in tree.expressions]
    if not values or any(v is None for v in values) \
            or all(isinstance(e.unalias(), exp.Literal) for e in tree.expressions):
        return None
    return Local(table=pa.table({name: [value] for name, value in _unique(values)}))


def _session_value(node: exp.Expression, state: SessionState) -> tuple[str, object] | None:
    """(column name, value) of one session function or literal, else None."""
    inner = node.unalias()
    if isinstance(inner, exp.Literal):
        value = inner.to_py()
        return node.alias or "?column?", value
    name = _function_name(inner)
    functions = {
        "version": lambda: version_text(), "current_schema": lambda: "public",
        "current_database": lambda: state.database, "current_catalog": lambda: state.database,
        "current_user": lambda: state.user, "session_user": lambda: state.user,
        "user": lambda: state.user, "current_role": lambda: state.user,
        "current_schemas": lambda: ["public"], "pg_backend_pid": lambda: 0,
        "pg_is_in_recovery": lambda: False, "current_setting": lambda: _setting_arg(inner, state),
    }
    if name not in functions:
        return None
    return node.alias or name, functions[name]()


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Dot):
        node = node.expression
    if isinstance(node, exp.Column):
        return node.name.lower()
    match = re.match(r"(?:pg_catalog\.)?([a-z_]+)", node.sql("postgres").lower())
    return match[1] if match and isinstance(node, exp.Func) else ""


def _setting_arg(node: exp.Expression, state: SessionState) -> str:
    literal = next(node.find_all(exp.Literal), None)
    if literal is None or not literal.is_string:
        raise Unsupported("current_setting() takes a setting's name as a string literal")
    return state.setting(literal.this)


def _unique(values: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Column names made unique (an Arrow table needs that; PostgreSQL repeats them)."""
    seen: dict[str, int] = {}
    unique = []
    for name, value in values:
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}_{seen[name]}", value))
    return unique


def version_text() -> str:
    """What ``SELECT version()`` says: PostgreSQL's form, which tools parse, then fedquery."""
    from fedquery import __version__

    return f"PostgreSQL {SERVER_VERSION} (fedquery {__version__}, read-only federation)"
