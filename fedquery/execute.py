"""The executor: a locked-down in-process DuckDB that runs plans.

At connect, each native source binds its tables (``source.schema.table``) into one DuckDB
database; then file access is limited to the declared lake roots, external access is switched
off and the configuration is locked, so a residual query can reach nothing but what the plan
registered. Each query runs on its own cursor, where fragments of other sources are registered
as Arrow streams.
"""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from fedquery import progress
from fedquery.catalog import Settings
from fedquery.conform import ArrowTypes, conform, expected
from fedquery.connectors._native import BATCH_ROWS, SharedConnection, View, open_relations, quote
from fedquery.connectors.base import Connector, NativeSource, TableRef
from fedquery.control import QueryControl
from fedquery.control import current as current_control
from fedquery.errors import FedQueryError, PlanError, QueryCancelled, SourceError
from fedquery.fetch import FragmentStats, fetch_fragments, native_probe, subset
from fedquery.functions.runs import RUN_VARIABLE
from fedquery.plan import Plan
from fedquery.waiting import Producer, off_thread

if TYPE_CHECKING:
    from fedquery.functions.embedding import Embedder
    from fedquery.functions.udfs import BlobFunctions
    from fedquery.secrets import Secrets

_STREAM_PREFIX = re.compile(r"(reading the stream|exporting a stream from the object) registered "
                            r"as '[^']*' failed: (\w+Error: )?")
_EXECUTOR_FUNCTION = re.compile(r"__fq_(embed_image|embed_text)__\w+?_\d+\b|__fq_(\w+)", re.IGNORECASE)


class Session:
    """The executor's DuckDB database and the connectors bound into it."""

    def __init__(self, connectors: dict[str, Connector], secrets: Secrets,
                 functions: BlobFunctions, settings: Settings | None = None) -> None:
        self.connectors, self.secrets, self.functions = connectors, secrets, functions
        self.settings = settings or Settings()
        self._tmp = tempfile.TemporaryDirectory(prefix="fedquery-")
        memory = {"memory_limit": self.settings.memory_limit} if self.settings.memory_limit else {}
        self.con = duckdb.connect(":memory:", config={**memory,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            # an unknown table name must never resolve to a Python variable of the caller's frame
            "python_enable_replacements": False,
            "temp_directory": self._tmp.name,
            # remote lakes are read through per-query paths: a cache across queries never hits
            "enable_external_file_cache": False,
        })
        self._lock = threading.RLock()
        self._running: weakref.WeakSet = weakref.WeakSet()  # cursors of queries not yet done
        self._controls: weakref.WeakSet = weakref.WeakSet()  # stop switches of those queries
        self._progress = progress.wanted(self.settings.progress)
        self.closing = threading.Event()  # set by close(): every wait for a query ends
        self._shadow_catalogs: set[str] = set()
        self._views: dict[int, list[View]] = {}  # per query cursor: what to check and free
        self.arrow_types = ArrowTypes()
        allowed = [self._tmp.name]
        shared = SharedConnection(self.con, self._lock)
        for connector in connectors.values():
            if connector.capabilities.native:
                allowed.extend(connector.bind(shared))
        functions.register(self.con)
        self._lock_down(allowed)

    def _lock_down(self, allowed: list[str]) -> None:
        directories = [d if d.endswith("://") else d.rstrip("/") + "/" for d in allowed]
        self.con.execute("SET allowed_directories = $dirs", {"dirs": directories})
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def schema(self, source: str, table: TableRef) -> pa.Schema:
        return self.connectors[source].schema(table)

    def cursor(self, tables: Iterable[str] = (), *, reading: bool = True) -> duckdb.DuckDBPyConnection:
        """A cursor on which DuckDB can scan the given native tables (``source.schema.table``):
        their sources' Python-side objects (Lance datasets, a remote lake's pinned objects)
        registered; not ``reading``, stand-ins that only describe them."""
        with self._lock:
            cursor = self.con.cursor()
        by_source: dict[str, list[str]] = {}
        for key in tables:
            source, _, name = key.split(".", 2)
            by_source.setdefault(source, []).append(name)
        views: list[View] = []
        try:
            for source, names in by_source.items():
                connector = self.connectors[source]
                if isinstance(connector, NativeSource):
                    views += open_relations(cursor, connector.relations(tables=names, reading=reading))
        except BaseException:
            for view in views:
                view.release()
            cursor.close()
            raise
        if views:
            self._views[id(cursor)] = views
        return cursor

    def finish_views(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """After a query's last row: what its views read is checked (``SourceError``)."""
        for view in self._views.get(id(cursor), ()):
            view.finish()

    def _release_views(self, cursor: duckdb.DuckDBPyConnection) -> None:
        for view in self._views.pop(id(cursor), ()):
            with contextlib.suppress(Exception):
                view.release()

    def shadow(self, source: str, table: TableRef, schema: pa.Schema, *,
               alias_schema: bool) -> None:
        """An empty table ``source.schema.table`` with the table's columns: DuckDB describes
        queries over it, and never reads it (the plan streams that source's fragments)."""
        catalog, target = quote(source), f"{quote(source)}.{quote(table.schema)}"
        with self._lock:
            if source not in self._shadow_catalogs:
                self.con.execute(f"ATTACH ':memory:' AS {catalog}")
                self._shadow_catalogs.add(source)
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {target}")
            cursor = self.con.cursor()
            cursor.register("__fq_empty", schema.empty_table())
            cursor.execute(f"CREATE OR REPLACE TABLE {target}.{quote(table.name)} AS "
                           "SELECT * FROM __fq_empty")
            cursor.close()
            if alias_schema:  # DuckDB resolves source.table in the catalog's main schema
                self.con.execute(f"CREATE OR REPLACE VIEW {catalog}.main.{quote(table.name)} "
                                 f"AS SELECT * FROM {target}.{quote(table.name)}")

    def add_names(self, names: dict[str, str]) -> None:
        """Views named as the catalog names tables, so DuckDB can describe the user's own SQL."""
        for name, relation in names.items():
            # a table its source could not bind is skipped: planning it raises the reason
            with self._lock, contextlib.suppress(duckdb.Error):
                self.con.execute(f"CREATE OR REPLACE VIEW memory.main.{quote(name)} AS "
                                 f"SELECT * FROM {relation}")

    def remove_names(self, names: Iterable[str]) -> None:
        """Drop views made by ``add_names`` (a table registered from Python, unregistered)."""
        for name in names:
            with self._lock:
                self.con.execute(f"DROP VIEW IF EXISTS memory.main.{quote(name)}")

    def add_embedder(self, embedder: Embedder) -> None:
        """Create the executor function of an embedder, if not yet there."""
        with self._lock:  # the connection object takes one call at a time
            self.functions.add_embedder(self.con, embedder)

    def describe(self, sql: str, params: Any, tables: Iterable[str],
                 macros: Iterable[str] = ()) -> list[tuple[str, str]]:
        """Output names and types of the user's query, from DuckDB's binder (nothing runs).

        The query text is the user's, so DuckDB names unaliased columns as it always would and
        its error messages point into the user's SQL; ``macros`` (temporary, on this query's
        cursor) stand for functions that the plan spells otherwise.
        """
        cursor = self.cursor(tables, reading=False)
        try:
            for macro in macros:
                cursor.execute(macro)
            rows = cursor.execute(f"DESCRIBE {sql}", params or None).fetchall()
        except duckdb.Error as exc:
            raise PlanError(self.secrets.redact(public_names(_without_describe(str(exc))))) from None
        finally:
            cursor.close()
        return [(r[0], r[1]) for r in rows]

    def control(self, timeout: float | None = None) -> QueryControl:
        """A new query's stop switch: ``timeout`` seconds (else the catalog's), stopped by
        ``interrupt()`` and ``close()`` too."""
        control = QueryControl(timeout if timeout is not None else self.settings.timeout,
                               self.closing)
        self._controls.add(control)
        return control

    def interrupt(self) -> None:
        """Stop every query running now (their callers get ``QueryCancelled``); the connection
        stays open for the next."""
        for control in list(self._controls):
            control.stop(QueryCancelled("the query was interrupted by Connection.interrupt()"))

    def run(self, plan: Plan, params: Any, *, analyze: bool = False,
            control: QueryControl | None = None, max_rows: int | None = None) -> Execution:
        """Start a plan: fragments fetched and registered, the local SQL bound.

        With ``analyze`` every fragment is fetched through its connector, none runs inline, so
        each one's rows, time and bytes are counted; the residual is then ``plan.residual``.
        ``control`` stops it; more than ``max_rows`` rows fail it (``PlanError``).
        """
        return self._start(plan, params, analyze=analyze, control=control, max_rows=max_rows)

    def table(self, plan: Plan, params: Any, *, control: QueryControl | None = None,
              max_rows: int | None = None) -> pa.Table:
        """Every row of a plan, started and fetched in one hand-off to a worker thread."""
        return self._start(plan, params, then=Execution.fetch_table, control=control,
                           max_rows=max_rows)

    def _start(self, plan: Plan, params: Any, *, analyze: bool = False,
               then: Callable[[Execution], Any] | None = None,
               control: QueryControl | None = None, max_rows: int | None = None) -> Any:
        """``run``'s work on a worker thread; with ``then``, its value for the execution,
        computed on the same worker (the cursor is closed after it). A plan run as part of a
        running query (on its worker) is stopped with it."""
        parent = current_control()
        control = control or (parent.child() if parent is not None else self.control())
        inline = set() if analyze else {f.name for f in plan.fragments if f.inline}
        read_here = inline | (set() if analyze else {f.name for f in plan.fragments
                                                    if native_probe(f)})
        cursor = self.cursor(t for f in plan.fragments if f.name in read_here for t in f.tables)
        sql, names = ((plan.residual, plan.residual_parameters) if analyze
                      else (plan.local_sql, plan.local_parameters))
        # blob functions keep their state under this run (plans run to fetch its fragments join
        # it); a plan that calls none needs no run (setting one costs a statement per query)
        calls_functions = RUN_VARIABLE in sql or any(RUN_VARIABLE in f.sql for f in plan.fragments)
        abandoned = threading.Event()

        fetched: list[FragmentStats] = []  # filled as fragments open: give_up cancels them

        def start() -> Execution:
            with (control.current(),
                  self.functions.run_on(cursor) if calls_functions else contextlib.nullcontext() as run):
                if run is not None:  # blob functions stop between files once it is stopped
                    control.on_stop(functools.partial(self.functions.runs.cancel, run))
                try:
                    stats = fetch_fragments(self, plan, params, cursor, inline=inline,
                                            whole=analyze, opened=fetched)
                    relation = cursor.sql(sql, params=subset(params, names))
                    if max_rows is not None:
                        relation = relation.limit(max_rows + 1)
                except duckdb.Error as exc:
                    self.finished(cursor)
                    cursor.close()
                    control.done()
                    raise self.translate(exc, plan, fetched, control) from exc
                except BaseException:
                    self.finished(cursor)
                    cursor.close()
                    control.done()
                    raise
            execution = Execution(self, plan, cursor, relation, stats, control, max_rows)
            if then is None:
                return execution
            try:
                return then(execution)
            finally:
                execution.close()

        def give_up() -> None:
            abandoned.set()
            for stat in list(fetched):  # a read still waiting for its source, while fetching
                if stat.cancel is not None:
                    with contextlib.suppress(Exception):
                        stat.cancel()
            with contextlib.suppress(duckdb.Error):
                cursor.interrupt()

        def close_if_abandoned() -> None:
            if abandoned.is_set():
                self.finished(cursor)
                cursor.close()
                control.done()

        self._running.add(cursor)
        control.on_stop(give_up)
        return off_thread(start, give_up, close_if_abandoned, control,
                          self.progress_of(cursor) if then is not None else None)

    def progress_of(self, cursor: duckdb.DuckDBPyConnection) -> Callable[[], float] | None:
        """How far the query on ``cursor`` is (DuckDB's estimate, percent), for the progress
        bar; None when bars are off."""
        return cursor.query_progress if self._progress else None

    def translate(self, exc: duckdb.Error, plan: Plan, stats: list[FragmentStats] = (),
                  control: QueryControl | None = None) -> FedQueryError:
        """A DuckDB error as fedquery's: why the query was stopped when it was, a fragment's
        own error when a stream failed, a file that failed names its source."""
        stopped = control.reason() if control is not None else None
        if stopped is not None:
            return stopped
        if isinstance(exc, duckdb.InterruptException):
            return QueryCancelled("the query was interrupted (Ctrl-C, or its connection was "
                                  "closed while it ran)")
        if isinstance(exc, duckdb.OutOfMemoryException):
            return PlanError(f"the query needs more memory than the connection may use "
                             f"({_first_line(str(exc))}); ask for fewer rows or columns, or raise "
                             "settings.memory_limit in the catalog")
        failed = self.functions.take_failure(str(exc)) or self._connector_failure(str(exc))
        failed = failed or next((s.error for s in stats if s.error is not None), None)
        if isinstance(failed, FedQueryError | KeyboardInterrupt):
            return failed
        if failed is not None:
            return SourceError(self.secrets.redact(str(failed)),
                               source=next(s.source for s in stats if s.error is failed))
        message = self.secrets.redact(public_names(_duckdb_message(exc)))
        named = self.source_named_in(str(exc))
        if named and isinstance(exc, duckdb.IOException | duckdb.PermissionException
                                | duckdb.InvalidInputException):
            return SourceError(message, source=named)
        if isinstance(exc, duckdb.IOException | duckdb.PermissionException):
            return SourceError(message, source=", ".join(sorted({f.source for f in plan.fragments})))
        return PlanError(message)

    def _connector_failure(self, text: str) -> FedQueryError | None:
        """The error a connector raised inside a scan DuckDB ran (an S3 lake's failing object),
        which DuckDB passes on as text only."""
        for connector in self.connectors.values():
            failed = connector.take_failure(text)
            if failed is not None:
                return failed
        return None

    def source_named_in(self, text: str) -> str | None:
        """The source whose file or folder a message mentions, if any."""
        for name, connector in self.connectors.items():
            location = connector.location()
            if location and location in text:
                return name
        return None

    def finished(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """A query's cursor is done with (closed by the thread that ran it)."""
        self._running.discard(cursor)
        self._release_views(cursor)

    def close(self, wait: float = 5.0) -> None:
        """Interrupt the queries still running (their callers get ``QueryCancelled``), give
        them ``wait`` seconds to stop, then close DuckDB and remove the temporary folder."""
        self.closing.set()
        for cursor in list(self._running):
            with contextlib.suppress(duckdb.Error):
                cursor.interrupt()
        deadline = time.monotonic() + wait
        while self._running and time.monotonic() < deadline:
            time.sleep(0.02)
        self.functions.blobs.close()
        self.arrow_types.close()
        with contextlib.suppress(duckdb.Error):  # a query that would not stop: leave it be
            self.con.close()
        self._tmp.cleanup()


class Execution:
    """A bound query on its own cursor: fetch it whole or as a stream, once."""

    def __init__(self, session: Session, plan: Plan, cursor: duckdb.DuckDBPyConnection,
                 relation: duckdb.DuckDBPyRelation, stats: list[FragmentStats],
                 control: QueryControl, max_rows: int | None = None) -> None:
        self._session, self._plan, self._cursor, self._relation = session, plan, cursor, relation
        self.stats, self.control, self._max_rows = stats, control, max_rows
        self.residual_rows: int | None = None
        self.seconds = 0.0
        self._wanted = expected(plan.types, session.arrow_types)

    def table(self) -> pa.Table:
        """Every row, materialised by DuckDB in parallel (on a worker thread: the caller's
        Ctrl-C interrupts the query at once)."""
        return off_thread(self.fetch_table, self.interrupt, self.close, self.control,
                          self._session.progress_of(self._cursor))

    def fetch_table(self) -> pa.Table:
        """``table()``'s work, on the calling thread."""
        started = time.perf_counter()
        table = self._table()
        self.residual_rows, self.seconds = table.num_rows, time.perf_counter() - started
        return table

    def _table(self) -> pa.Table:
        try:
            table = self._relation.to_arrow_table()
            self._check_rows(table.num_rows)
            self._session.finish_views(self._cursor)
            return conform(table, self._wanted, self._plan.columns)
        except duckdb.Error as exc:
            raise self._session.translate(exc, self._plan, self.stats, self.control) from exc
        except pa.ArrowInvalid as exc:
            raise arrow_error(exc) from exc

    def reader(self) -> pa.RecordBatchReader:
        """A stream of record batches, pulled by a worker thread a few batches ahead; the
        cursor closes when the stream ends or the reader is dropped."""
        try:
            source = off_thread(lambda: self._relation.to_arrow_reader(BATCH_ROWS), self.interrupt,
                                control=self.control,
                                progress=self._session.progress_of(self._cursor))
        except duckdb.Error as exc:
            self.close()
            raise self._session.translate(exc, self._plan, self.stats, self.control) from exc
        except pa.ArrowInvalid as exc:
            self.close()
            raise arrow_error(exc) from exc
        except BaseException:
            self.close()
            raise
        # from_batches, not schema.empty_table(): that builds arrays from Python lists, which
        # imports pandas (0.2-0.4 s) and fails on a UNION column
        empty = pa.Table.from_batches([], schema=source.schema)
        schema = conform(empty, self._wanted, self._plan.columns).schema
        batches = Producer(self._batches(source), self.interrupt, self.close,
                           control=self.control, progress=self._session.progress_of(self._cursor))
        return pa.RecordBatchReader.from_batches(schema, iter(batches))

    def _batches(self, source: pa.RecordBatchReader):
        rows = 0
        try:
            for batch in source:
                rows += batch.num_rows
                self._check_rows(rows)
                yield conform(batch, self._wanted, self._plan.columns)
            self._session.finish_views(self._cursor)
        except (duckdb.Error, OSError) as exc:  # OSError: DuckDB's error through its Arrow stream
            raise self._session.translate(exc, self._plan, self.stats, self.control) from exc
        except pa.ArrowInvalid as exc:
            raise arrow_error(exc) from exc

    def _check_rows(self, rows: int) -> None:
        check_rows(rows, self._max_rows)

    def interrupt(self) -> None:
        """Stop the query DuckDB runs for this execution (its worker then cleans up): the
        fragments' reads that wait for their sources are woken first, then DuckDB stops."""
        for stat in self.stats:
            if stat.cancel is not None:
                with contextlib.suppress(Exception):
                    stat.cancel()
        with contextlib.suppress(duckdb.Error):  # it may have ended and closed meanwhile
            self._cursor.interrupt()

    def close(self) -> None:
        """Free the query's cursor (after its rows, or when it is abandoned)."""
        self.control.done()
        self._session.finished(self._cursor)
        with contextlib.suppress(duckdb.Error):  # its connection may be closed already
            self._cursor.close()


def check_rows(rows: int, max_rows: int | None) -> None:
    """More than ``max_rows`` rows (``settings.max_rows``) is a ``PlanError``."""
    if max_rows is not None and rows > max_rows:
        raise PlanError(f"the result has more than {max_rows:,} rows, the most this connection "
                        "returns (settings.max_rows in the catalog); add a LIMIT or an aggregate, "
                        "or raise the setting")


def arrow_error(exc: pa.ArrowInvalid) -> PlanError:
    """An answer Arrow cannot hold (lists or structs nested past its 64 levels, say)."""
    text = str(exc).splitlines()[0]
    if "nesting" in text.lower() or "depth" in text.lower():
        return PlanError("the result nests lists or structs more than 64 levels deep, the most "
                         f"an Arrow answer can hold ({text})")
    return PlanError(f"the result cannot be returned as Arrow: {text}")


def public_names(message: str) -> str:
    """A DuckDB message with the executor's functions named as users write them
    (``__fq_embed_text__numpy_trigram_256_2`` is ``embed_text``)."""
    return _EXECUTOR_FUNCTION.sub(lambda m: (m.group(1) or m.group(2)).lower(), message)


def _without_describe(message: str) -> str:
    """DuckDB's message about ``DESCRIBE <query>`` as if about the query: the prefix is cut
    from the quoted line and the caret under it moves left with it."""
    lines, prefix = message.split("\n"), "DESCRIBE "
    for i, line in enumerate(lines):
        head, found, rest = line.partition(prefix)
        if found and head.startswith("LINE 1:"):
            lines[i] = head + rest
            if i + 1 < len(lines) and lines[i + 1].startswith(" " * len(prefix)):
                lines[i + 1] = lines[i + 1][len(prefix):]
            break
    return "\n".join(lines)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _duckdb_message(exc: duckdb.Error) -> str:
    """DuckDB's message without what points into rewritten SQL (LINE and caret) or into
    Python (the traceback of a failed Arrow stream, and the stream's internal name)."""
    text = str(exc)
    for cut in ("\n\nLINE ", "\nLINE ", "\nDetail: Python exception", "\n\nDetail:"):
        text = text.split(cut, 1)[0]
    return _STREAM_PREFIX.sub("", text).strip()
