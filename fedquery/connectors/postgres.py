"""``kind: postgres``: a PostgreSQL database, read through ADBC as Arrow record batches.

Fragments arrive in DuckDB's dialect (a one-table ``ScanRequest`` or a whole single-source
query) and are rewritten by sqlglot into the SQL PostgreSQL receives (``source_sql`` shows it,
``sent`` remembers the last 100 texts run). Sessions are read-only, in UTC, with the catalog's
statement timeout and the settings the generated SQL relies on; they come from a small pool, a
fragment holds one while its rows stream, and no wait for the server outlasts ``read_timeout``
(see ``_postgres_session``). A session found dead is replaced, and a statement that had handed
out no rows yet is run once more on the new one. Before each statement, the columns it reads are
checked unchanged since their types were read (see ``_postgres_drift``).

>>> con = fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": "${PG_DSN}",
...                                            "connect_timeout": 5, "statement_timeout": "30s"}},
...                         "tables": {"drives": {"source": "pg", "table": "public.drives"}}})
... # doctest: +SKIP

Settings: ``dsn`` (a libpq URI or ``key=value`` string; secret), ``connect_timeout`` (seconds,
default 10: libpq's own, so an unreachable server fails ``fedquery.connect`` in that time),
``statement_timeout`` (seconds, or a PostgreSQL interval such as ``"2min"``; default none),
``read_timeout`` (seconds any one wait for the server may last; default statement_timeout + 5 s,
else 300 s), ``batch_rows`` (largest record batch returned; default: the driver's) and
``pool_size`` (idle sessions kept, default 4). Type mapping: see ``fedquery/connectors/_postgres_types.py``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from fedquery.connectors import _postgres_drift as drift
from fedquery.connectors import _postgres_sql as pgsql
from fedquery.connectors import _sql_render as render
from fedquery.connectors._native import keys_in_filter
from fedquery.connectors._native import table_ref as table_ref_of
from fedquery.connectors._postgres_semantics import EXACT_EXPRESSIONS
from fedquery.connectors._postgres_session import (
    Pool,
    Session,
    SessionTimeout,
    connection_lost,
    cursor_of,
    driver_message,
)
from fedquery.connectors._postgres_settings import BATCH_BYTES, Settings, location
from fedquery.connectors._postgres_stream import FragmentStream, Statement
from fedquery.connectors._postgres_types import numeric_type, target_schema
from fedquery.connectors.base import Capabilities, Connector, ScanRequest, SQLSource, TableRef
from fedquery.control import stopping
from fedquery.errors import FedQueryError, SourceError
from fedquery.secrets import MASK

if TYPE_CHECKING:
    from fedquery.catalog import Catalog, SourceSpec

SENT_KEPT = 100
T = TypeVar("T")

TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT c.relispartition
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY 1, 2"""
ESTIMATE_SQL = """
SELECT c.reltuples, c.relkind FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2"""
SIZE_SQL = """
SELECT pg_catalog.pg_relation_size(c.oid) FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2"""
KEY_SQL = """
SELECT a.attname FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
  AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)"""
SPLIT_ROWS = 250_000  # a scan of fewer estimated rows is read whole, by one task
COUNT_BYTES_MAX = 64 << 20  # a table never analyzed is counted when smaller than this
HINTS = {  # a pattern of the server's words (a streaming error has no SQLSTATE) -> a hint
    "due to statement timeout": "the query ran past the source's statement_timeout of {timeout}",
    "read-only transaction": "fedquery opens PostgreSQL sessions read-only",
    r"^(column|relation) \S+ does not exist": "if the table changed since fedquery read its "
                                              "schema, reconnect (fedquery.connect)",
}


class PostgresConnector(SQLSource, Connector):
    """Tables of one PostgreSQL database; whole single-source joins and aggregates run there."""

    kind = "postgres"
    capabilities = Capabilities(dialect="postgres", native=False, subtrees=True,
                                default_schema="public", remote=True,
                                expressions=EXACT_EXPRESSIONS, max_identifier_length=63)

    @classmethod
    def check_settings(cls, given: Mapping[str, Any], where: str) -> None:
        Settings(given, where)  # the DSN, timeouts, pool size (see _postgres_settings)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        super().__init__(spec, catalog)
        self._secrets = catalog.secrets
        settings = Settings(spec.settings, f"{catalog.origin}: sources.{spec.name}")
        self._settings = settings
        self._dsn = settings.effective_dsn()
        self._secrets.add_setting(self._dsn)
        self._where = self._location(settings.dsn)
        self.sent: deque[str] = deque(maxlen=SENT_KEPT)
        self._pool = Pool(self._open_session, settings.pool_size)
        self._lock = threading.Lock()
        self._columns: dict[TableRef, pa.Schema] = {}
        self._definitions: drift.Definitions = {}  # what the schemas were read from
        self._listing: list[TableRef] | None = None
        self._streams: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # reader: stream
        self._pool.release(self._pool.acquire()[0])  # a bad DSN fails fedquery.connect, named

    def _location(self, dsn: str) -> dict[str, str | None]:
        """Host, port and database as explain and repr show them: ``***`` for each that was
        read from the environment (a ``${VAR}`` DSN is a secret, its parts too)."""
        where = location(dsn)
        return {k: MASK if self._secrets.from_environment(v) else v for k, v in where.items()}

    def __repr__(self) -> str:
        return f"<PostgresConnector {self.name!r} {self._where['host']}/{self._where['database']}>"

    # ------------------------------------------------------------------ description

    def tables(self) -> list[TableRef]:
        """Every table, view and materialized view the session may read, outside pg_catalog
        and information_schema (partitions are reached through their parent)."""
        rows = self._catalog_query(TABLES_SQL, ())
        listing = [TableRef(schema, name) for schema, name in rows]
        with self._lock:
            self._listing = listing
        return list(listing)

    def schema(self, table: TableRef) -> pa.Schema:
        """The Arrow schema scans of the table return (see the module's type mapping)."""
        table = self.resolve(table)
        with self._lock:
            cached = self._columns.get(table)
        if cached is None:
            loaded, columns = self._load_schema(table)
            with self._lock:  # kept for the connection's life: plans are made with it
                cached = self._columns.setdefault(table, loaded)
                self._definitions.setdefault(table, columns)
        return cached

    def estimate_rows(self, table: TableRef) -> int | None:
        """PostgreSQL's own estimate: ``pg_class.reltuples`` once the table was analyzed, else
        what its planner guesses from the table's size (``EXPLAIN``); None for views it can't."""
        table = self.resolve(table)
        rows = self._catalog_query(ESTIMATE_SQL, (table.schema, table.name))
        if not rows or rows[0][1] not in ("r", "m", "p"):
            return None
        if rows[0][0] is not None and rows[0][0] >= 0:
            return int(rows[0][0])
        size = self._catalog_query(SIZE_SQL, (table.schema, table.name))[0][0]
        if size > COUNT_BYTES_MAX:  # never analyzed and big: about 100 bytes a row
            return int(size) // 100
        return int(self._catalog_query(f"SELECT count(*) FROM {_relation(table)}", ())[0][0])

    def estimate_sql_rows(self, sql: str) -> int | None:
        """PostgreSQL's planner estimate of a fragment's rows (``EXPLAIN``): it knows its
        statistics, joins and filters. None for fragments with parameters or on failure."""
        tree, _, _ = self._fragment(sql)
        if tree.find(exp.Placeholder) or any(v.name.startswith("$") for v in tree.find_all(exp.Var)):
            return None
        text = "EXPLAIN (FORMAT JSON) " + tree.sql(pgsql.DIALECT)

        def explain(conn):
            with cursor_of(conn) as cursor:  # EXPLAIN cannot run inside the driver's COPY
                from adbc_driver_postgresql import StatementOptions

                cursor.adbc_statement.set_options(**{StatementOptions.USE_COPY.value: "false"})
                cursor.execute(text)
                return cursor.fetchall()[0][0]

        try:
            plan = self._run(explain, "estimate failed")
        except SourceError:  # an estimate is optional: the planner falls back to its own
            return None
        with contextlib.suppress(LookupError, TypeError, ValueError):
            return int((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]["Plan Rows"])
        return None

    def describe(self, table: TableRef) -> dict[str, Any]:
        """Where the table lives: host, port and database (never the user or password)."""
        return {"kind": self.kind, **self._where, "relation": _relation(table)}

    def resolve(self, table: TableRef) -> TableRef:
        """The table as PostgreSQL spells it: an exact name, or the one that matches ignoring
        case (DuckDB names are case-insensitive)."""
        for attempt in range(2):
            listing = self._listing if attempt == 0 and self._listing is not None else self.tables()
            if table in listing:
                return table
            folded = [t for t in listing if (t.schema.lower(), t.name.lower())
                      == (table.schema.lower(), table.name.lower())]
            if len(folded) == 1:
                return folded[0]
        raise SourceError(f"no table {table} in database {self._where['database']!r}",
                          source=self.name)

    # ------------------------------------------------------------------ fragments

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        """Stream the rows of a one-table request; the filter, keys and top-N run in
        PostgreSQL."""
        request = keys_in_filter(request)
        table, schema = self._scan_parts(request)
        sql = self._render(lambda: pgsql.scan_tree(request, table, _types(self.schema(table))),
                           request.params or {})
        reads = {table: {name.lower() for name in schema.names}}
        return self._stream(sql, lambda raw: self._planned_result(table, raw, schema), reads)

    def split(self, request: ScanRequest, parts: int) -> list[ScanRequest]:
        """A big table's scan as ranges of its integer primary key (its first column), each
        read by its own statement (each sees its own snapshot of the table)."""
        table = self.resolve(table_ref_of(request.table))
        rows = self.estimate_rows(table) or 0
        count = min(parts, rows // (SPLIT_ROWS // 2))
        keys = self._catalog_query(KEY_SQL, (table.schema, table.name)) if count > 1 else []
        if not keys:
            return [request]
        key = exp.column(keys[0][0], quoted=True)
        low, high = self._catalog_query(
            f"SELECT min({key.sql(pgsql.DIALECT)}), max({key.sql(pgsql.DIALECT)}) "
            f"FROM {_relation(table)}", ())[0]
        if low is None or high - low < count:
            return [request]
        bounds = [low + (high - low + 1) * i // count for i in range(count)] + [None]
        requests = []
        for start, end in zip(bounds, bounds[1:], strict=False):
            part = key.copy() >= exp.convert(start) if end is None else exp.and_(
                key.copy() >= exp.convert(start), key.copy() < exp.convert(end))
            condition = part if not request.filter else exp.and_(
                exp.paren(sqlglot.parse_one(request.filter, dialect="duckdb")), part)
            requests.append(replace(request, filter=condition.sql("duckdb")))
        return requests

    def run_sql(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.RecordBatchReader:
        """Run a whole fragment: DuckDB SQL over ``source.schema.table`` names, with the values
        of its ``$name`` placeholders."""
        tree, columns, tables = self._fragment(sql)
        text = self._render(lambda: tree, params or {})
        numeric = pgsql.numeric_outputs(tree, columns)
        names = {column.name.lower() for column in tree.find_all(exp.Column)}
        return self._stream(text, lambda raw: target_schema(raw, numeric),
                            dict.fromkeys(tables, names))

    def source_sql(self, fragment: str | ScanRequest, params: Mapping[str, Any] | None = None) -> str:
        """Exactly the text PostgreSQL receives for a fragment (SQL or a scan request); without
        ``params`` each placeholder shows as ``$name`` where its literal value will go."""
        if isinstance(fragment, ScanRequest):
            table, _ = self._scan_parts(fragment)
            return self._render(lambda: pgsql.scan_tree(fragment, table, _types(self.schema(table))),
                                params)
        tree, _, _ = self._fragment(fragment)
        return self._render(lambda: tree, params)

    def cancel(self, reader: pa.RecordBatchReader) -> None:
        """Give up a stream this source returned, from any thread (an interrupt, a timeout):
        a read waiting for the server raises ``SourceError`` at once, and so does any later
        read; the statement is cancelled on the server. Other readers are ignored."""
        with self._lock:
            stream = self._streams.get(reader)
        if stream is not None:
            stream.cancel()

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ internals

    def _scan_parts(self, request: ScanRequest) -> tuple[TableRef, pa.Schema]:
        _, schema_name, name = request.table.split(".", 2)
        table = self.resolve(TableRef(schema_name, name))
        return table, render.scan_schema(request, table, self.schema(table), self.name)

    def _fragment(self, sql: str) -> tuple[exp.Expr, dict[str, pa.DataType], list[TableRef]]:
        """A fragment's tree with local, quoted names; the types of the columns it can read;
        the tables it reads."""
        try:
            tree, tables = pgsql.fragment_tree(sql, self.name,
                                               lambda s, n: self.resolve(TableRef(s, n)))
        except (ValueError, SqlglotError) as exc:
            raise SourceError(f"cannot send this SQL: {str(exc).splitlines()[0]}",
                              source=self.name) from exc
        columns: dict[str, pa.DataType] = {}
        for table in tables:
            for name, kind in _types(self.schema(table)).items():
                columns.setdefault(name, kind)
        return pgsql.localize(tree, columns), columns, tables

    def _render(self, build: Callable[[], exp.Expr], params: Any) -> str:
        """PostgreSQL SQL text of a tree with parameter values bound as literals."""
        try:
            return pgsql.bind_values(build(), params).sql(pgsql.DIALECT)
        except (KeyError, TypeError) as exc:
            raise SourceError(str(exc).strip("'\""), source=self.name) from None

    def _load_schema(self, table: TableRef) -> tuple[pa.Schema, dict[str, drift.PgColumn]]:
        """Arrow types from the driver (a ``LIMIT 0`` query, the path scans take); decimal
        precision from the column type modifiers, which the driver does not report for arrays.
        Also the columns as ``pg_catalog`` describes them, which fragments are checked against."""
        rows = self._catalog_query(drift.definitions_sql([table]), ())
        columns = drift.definitions(rows).get(table, {})
        numeric = {c.name: numeric_type(c.typmod) for c in columns.values()
                   if c.typname in drift.NUMERIC_TYPES}
        probe = exp.select(*(exp.column(name, quoted=True) for name in columns)).from_(
            exp.table_(table.name, db=table.schema, quoted=True)).limit(0).sql(pgsql.DIALECT)

        def describe(conn) -> pa.Schema:
            with cursor_of(conn) as cursor:
                cursor.execute(probe)
                raw = cursor.fetch_record_batch()
                schema = raw.schema
                raw.close()
                return schema

        schema = self._run(describe, f"cannot read the columns of {table}")
        return target_schema(schema, numeric), columns

    def _catalog_query(self, sql: str, args: tuple) -> list[tuple]:
        def query(conn) -> list[tuple]:
            with cursor_of(conn) as cursor:
                cursor.execute(sql, parameters=args or None)
                return cursor.fetchall()

        return self._run(query, "catalog query failed")

    def _run(self, work: Callable[[Any], T], what: str) -> T:
        """``work(connection)`` on a pooled session, within the read timeout; a session lost
        on the way is replaced and the work run once more (it reads its whole answer)."""
        for attempt in range(2):
            session, _ = self._pool.acquire(fresh=attempt > 0)
            try:
                result = session.call(work, self._settings.read_timeout)
            except Exception as exc:
                lost = connection_lost(exc)
                self._pool.release(session, healthy=not lost)
                if lost:
                    self._pool.invalidate()
                if lost and attempt == 0 and not isinstance(exc, SessionTimeout):
                    continue
                self._fail(exc, what)
            self._pool.release(session)
            return result
        raise AssertionError("unreachable")

    def _stream(self, sql: str, schema_of: Callable[[pa.Schema], pa.Schema],
                reads: Mapping[TableRef, set[str] | None]) -> pa.RecordBatchReader:
        """Start a query once the tables it ``reads`` are checked unchanged; its batches come
        out of a reader that owns a pooled session."""
        self.sent.append(sql)
        check = self._unchanged(reads)
        stream = FragmentStream(lambda fresh: self._start(sql, fresh, check), self._pool,
                                schema_of=schema_of, read_timeout=self._settings.read_timeout,
                                batch_rows=self._settings.batch_rows, translate=self._fail)
        reader = stream.reader()
        with self._lock:
            self._streams[reader] = stream
        return reader

    def _start(self, sql: str, fresh: bool, check: Callable[[Any], None] | None) -> Statement:
        session, _ = self._pool.acquire(fresh)
        try:
            # until its first rows, a statement has no stream to cancel: a stop of the query
            # cancels the session (PostgreSQL may compute for minutes before it sends a row)
            with stopping(session.cancel):
                return Statement.start(session, sql, self._settings.read_timeout, BATCH_BYTES,
                                       check)
        except Exception as exc:
            self._pool.release(session, healthy=not connection_lost(exc))
            raise

    def _unchanged(self, reads: Mapping[TableRef, set[str] | None]) -> Callable[[Any], None] | None:
        """Work for a fragment's session before its statement: a ``SourceError`` when a column
        it reads changed type or went away since the schema was read (see ``_postgres_drift``);
        None for a fragment that reads no table."""
        if not reads:
            return None
        sql = drift.definitions_sql(reads)
        with self._lock:
            planned = {table: self._definitions.get(table, {}) for table in reads}

        def check(conn) -> None:
            with cursor_of(conn) as cursor:
                cursor.execute(sql)
                now = drift.definitions(cursor.fetchall())
            changed = drift.changes(planned, now, reads)
            if changed:
                raise SourceError(changed, source=self.name)

        return check

    def _planned_result(self, table: TableRef, raw: pa.Schema, planned: pa.Schema) -> pa.Schema:
        """A scan's planned schema, once the result's own description agrees with it."""
        if planned.names != [pgsql.ROW_MARKER]:
            changed = drift.result_changes(table, raw, planned)
            if changed:
                raise SourceError(changed, source=self.name)
        return planned

    def _open_session(self) -> Session:
        """A new session: libpq's connect, then the session settings, within connect_timeout
        plus read_timeout (the driver itself queries the server while connecting)."""
        try:
            return Session.open(self.name, self._connect, self._settings.open_timeout)
        except SessionTimeout as exc:
            self._fail(exc, "cannot connect")

    def _connect(self):
        """Connect and set up the session (runs on the session's own thread)."""
        import adbc_driver_postgresql.dbapi as adbc

        try:
            conn = adbc.connect(self._dsn, autocommit=True)
        except Exception as exc:
            self._fail(exc, "cannot connect")
        try:
            with cursor_of(conn) as cursor:
                cursor.execute(self._settings.session_sql())
                applied = dict(zip(self._settings.session_values(), cursor.fetchall()[0],
                                   strict=True))
        except Exception as exc:
            conn.close()
            self._fail(exc, "cannot set up the session (check statement_timeout)")
        if applied["standard_conforming_strings"] != "on" or \
                applied["default_transaction_read_only"] != "on":
            conn.close()
            raise SourceError("the server refused standard_conforming_strings = on or read-only "
                              "transactions; fedquery needs both", source=self.name)
        return conn

    def _fail(self, exc: BaseException, what: str, note: str = "") -> NoReturn:
        """Raise a driver failure in words, every secret masked, chained to the driver's
        exception unless that one's text shows a secret. Errors already in fedquery's words
        pass through."""
        if isinstance(exc, FedQueryError):
            raise exc
        text = driver_message(exc)
        for words, hint in HINTS.items():
            if re.search(words, text):
                text += f" ({hint.format(timeout=self._settings.statement_timeout)})"
        if isinstance(exc, SessionTimeout):
            text += "; the session was dropped: check the network path to the server"
            if exc.setting == "read_timeout":
                text += ", or raise read_timeout for statements that wait long for rows"
        elif connection_lost(exc) and what != "cannot connect":
            text = f"the connection to the server was lost ({text})"
        if what == "cannot connect":
            text = text.removeprefix("Failed to connect: ")
            if "timeout expired" in text:
                text += f" (connect_timeout is {self._settings.connect_timeout} s)"
        if note:
            text += f"; {note}"
        error = SourceError(self._secrets.redact(f"{what}: {text}"), source=self.name)
        raise error from (exc if self._secrets.redact(str(exc)) == str(exc) else None)


# ---------------------------------------------------------------------- helpers


def _types(schema: pa.Schema) -> dict[str, pa.DataType]:
    return {field.name: field.type for field in schema}


def _relation(table: TableRef) -> str:
    return exp.table_(table.name, db=table.schema, quoted=True).sql(pgsql.DIALECT)


