"""The settings of a ``kind: postgres`` source: checked catalog values, the libpq connection
string fedquery uses, and the session settings the SQL it sends relies on."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlglot import exp

from fedquery.errors import CatalogError

SETTINGS = {"dsn", "connect_timeout", "statement_timeout", "read_timeout", "batch_rows",
            "pool_size"}
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_READ_TIMEOUT = 300  # seconds of silence tolerated when no statement_timeout bounds it
READ_MARGIN = 5  # past statement_timeout: time for the server's own timeout error to arrive
BATCH_BYTES = 4 << 20  # the driver's batch size: a read that waits long for one batch is silent
# libpq keepalives find a dead path while a read waits; the DSN's own values win.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
              "keepalives_count": "3"}
TCP_USER_TIMEOUT_MAX = 30  # seconds unacknowledged data may wait before the kernel gives up
# What the generated SQL relies on: literals read with standard_conforming_strings (a
# backslash is an ordinary character), ISO dates, UTC for timestamptz values; sessions
# read-only. Set on every session, whatever the server, database or role defaults are.
SESSION_SETTINGS = {
    "default_transaction_read_only": "on",
    "standard_conforming_strings": "on",
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}
_GUC_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
_GUC_UNITS = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400}


class Settings:
    """The source's settings, checked; errors name the catalog key.

    ``connect_timeout`` is libpq's (whole seconds, at least 2: libpq reads 1 as 2) and goes
    into the DSN; ``statement_timeout`` (seconds, or a PostgreSQL interval text) is set on
    each session; ``read_timeout`` (seconds) is how long a read may wait for the server
    before the session is given up (default: statement_timeout + 5 s, else 300 s).
    """

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.where = where
        unknown = sorted(set(raw) - SETTINGS)
        if unknown:
            raise CatalogError(f"{self.where}.{unknown[0]}: unknown setting for a postgres source; "
                               f"expected: {', '.join(sorted(SETTINGS))}")
        self.dsn = raw.get("dsn")
        if not isinstance(self.dsn, str) or not self.dsn.strip():
            raise CatalogError(f"{self.where}.dsn: expected a connection string")
        self.explicit_timeout = "connect_timeout" in raw
        self.connect_timeout = max(2, math.ceil(self._seconds(raw, "connect_timeout",
                                                              DEFAULT_CONNECT_TIMEOUT)))
        self.statement_timeout = self._statement_timeout(raw.get("statement_timeout"))
        self.read_timeout = float(self._seconds(raw, "read_timeout", self._default_read_timeout()))
        self.batch_rows = self._count(raw, "batch_rows", None)
        self.pool_size = self._count(raw, "pool_size", 4)

    @property
    def open_timeout(self) -> float:
        """The deadline for a new session: libpq's connect, then the driver's and fedquery's
        first queries on it."""
        return self.connect_timeout + self.read_timeout

    def effective_dsn(self) -> str:
        """The DSN with libpq's connect_timeout (the catalog's wins, else the DSN's, else 10 s),
        TCP keepalives and tcp_user_timeout (the DSN's win), UTF-8 and an application name.
        libpq keeps the last value of a repeated key."""
        extra = {}
        if self.explicit_timeout or not _has_key(self.dsn, "connect_timeout"):
            extra["connect_timeout"] = str(self.connect_timeout)
        defaults = {**KEEPALIVES, "application_name": "fedquery",
                    "tcp_user_timeout": str(round(min(self.read_timeout, TCP_USER_TIMEOUT_MAX) * 1000))}
        extra.update({k: v for k, v in defaults.items() if not _has_key(self.dsn, k)})
        extra["client_encoding"] = "UTF8"
        if "://" in self.dsn:
            joiner = "&" if "?" in self.dsn else "?"
            return self.dsn + joiner + "&".join(f"{k}={v}" for k, v in extra.items())
        return " ".join([self.dsn, *(f"{k}={v}" for k, v in extra.items())])

    def session_values(self) -> dict[str, str]:
        """Every setting a new session gets (the statement timeout when given)."""
        values = dict(SESSION_SETTINGS)
        if self.statement_timeout:
            values["statement_timeout"] = self.statement_timeout
        return values

    def session_sql(self) -> str:
        """One SELECT of ``set_config`` calls that apply ``session_values`` and return them."""
        calls = [exp.func("set_config", exp.Literal.string(k), exp.Literal.string(v), exp.false())
                 for k, v in self.session_values().items()]
        return exp.select(*calls).sql("postgres")

    def _default_read_timeout(self) -> float:
        seconds = statement_seconds(self.statement_timeout)
        return DEFAULT_READ_TIMEOUT if seconds is None else seconds + READ_MARGIN

    def _seconds(self, raw: Mapping, key: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
                or not math.isfinite(value):
            raise CatalogError(f"{self.where}.{key}: expected a number of seconds, got {value!r}")
        return value

    def _statement_timeout(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip():
            return value.strip()  # a PostgreSQL interval ("30s", "2min"); checked at connect
        return f"{round(self._seconds({'statement_timeout': value}, 'statement_timeout', 0) * 1000)}ms"

    def _count(self, raw: Mapping, key: str, default: int | None) -> int | None:
        value = raw.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CatalogError(f"{self.where}.{key}: expected a positive integer, got {value!r}")
        return value


def statement_seconds(value: str | None) -> float | None:
    """Seconds of a statement_timeout in PostgreSQL's units ("500ms", "30s", "2min"; a bare
    number is milliseconds); None when unset, zero or not in that form."""
    match = _GUC_TIME.match(value or "")
    if not match:
        return None
    seconds = float(match.group(1)) * _GUC_UNITS[match.group(2)]
    return seconds or None


def _has_key(dsn: str, key: str) -> bool:
    return re.search(rf"(^|[\s?&]){key}\s*=", dsn) is not None


def location(dsn: str) -> dict[str, str | None]:
    """Host, port and database named by a DSN (never the user or password)."""
    if "://" in dsn:
        parts = _safe(lambda: urlsplit(dsn))
        if parts is None:  # a malformed URL (the catalog refuses one; libpq says what is wrong)
            return {"host": None, "port": None, "database": None}
        query = parse_qs(parts.query)
        host = _safe(lambda: parts.hostname) or (query.get("host") or [None])[0]
        port = _safe(lambda: parts.port)
        port = str(port) if port is not None else (query.get("port") or [None])[0]
        database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [None])[0]
    else:
        found = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", dsn))
        host, port, database = (found.get(k, "").strip("'") or None
                                for k in ("host", "port", "dbname"))
    return {"host": host or "localhost", "port": port, "database": database}


def _safe(read):
    try:
        return read()
    except ValueError:
        return None
