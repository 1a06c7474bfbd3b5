"""``kind: adbc``: any warehouse with an ADBC driver (SQLite, Snowflake, BigQuery, Flight SQL...).

Fragments arrive in DuckDB's dialect and are rewritten by sqlglot into the warehouse's
(``dialect``, by default the driver's). How far they are pushed depends on what is known to give
DuckDB's answer there (``_adbc_dialects``): for SQLite, filters, top-N, joins and aggregates with
the rewrites of ``_sqlite_semantics``; elsewhere, comparisons and a top-N of one table. A part of
a fragment the warehouse would answer differently is never sent: DuckDB evaluates it over the
rows the warehouse sends (``source_sql`` shows both). Sessions, their pool, read timeouts and
cancelling are the PostgreSQL connector's (``_adbc_session``, ``_adbc_stream``).

>>> con = fedquery.connect({"sources": {"lite": {"kind": "adbc", "driver": "sqlite",
...                                              "uri": "warehouse.sqlite"}},
...                         "tables": {"items": {"source": "lite", "table": "items"}}})
... # doctest: +SKIP

Settings: ``driver`` (``sqlite``, ``adbc_driver_snowflake``, ... or the path of a driver
library), ``uri`` (for SQLite a file, relative to the catalog, opened read-only), ``options``
(the driver's database options; never shown: they may hold credentials), ``dialect`` (sqlglot's
name of the warehouse's SQL), ``read_timeout`` (seconds a read may wait, default 300),
``batch_rows`` and ``pool_size`` (idle sessions kept, default 4).
"""

from __future__ import annotations

import importlib
import re
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import SqlglotError

from fedquery.connectors import _adbc_dialects as dialects
from fedquery.connectors import _sql_render as render
from fedquery.connectors import settings as kinds
from fedquery.connectors._adbc_local import run_in_duckdb
from fedquery.connectors._adbc_session import Pool, Session, SessionTimeout, cursor_of
from fedquery.connectors._adbc_stream import FragmentStream, Statement
from fedquery.connectors._native import keys_in_filter
from fedquery.connectors._sqlite_semantics import NotExact, declared_type, output_type, stored
from fedquery.connectors.base import Capabilities, Connector, ScanRequest, SQLSource, TableRef
from fedquery.connectors.settings import Setting
from fedquery.errors import CatalogError, FedQueryError, SourceError
from fedquery.secrets import MASK

if TYPE_CHECKING:
    from fedquery.catalog import Catalog, SourceSpec

T = TypeVar("T")
SENT_KEPT = 100
DEFAULT_READ_TIMEOUT = 300.0
_SECRET_OPTION = re.compile(r"auth|pass|secret|token|key|credential|jwt|header|cookie", re.I)


def _dialect(value: Any, where: str) -> None:
    kinds.text(value, where)
    import sqlglot

    try:
        sqlglot.Dialect.get_or_raise(value)
    except ValueError:
        raise CatalogError(f"{where}: unknown SQL dialect {value!r}; expected one of sqlglot's "
                           "(sqlite, snowflake, bigquery, postgres, duckdb, trino, ...)") from None


class AdbcConnector(Connector, SQLSource):
    """Tables of one warehouse reached through an ADBC driver."""

    kind = "adbc"
    SETTINGS: ClassVar[Mapping[str, Setting]] = {
        "driver": Setting(kinds.text, required=True, doc="driver name or library path"),
        "uri": Setting(kinds.text, doc="the warehouse's URI; for SQLite a file"),
        "options": Setting(kinds.string_map, doc="the driver's database options (secret)"),
        "dialect": Setting(_dialect, doc="sqlglot dialect of the warehouse's SQL"),
        "read_timeout": Setting(kinds.seconds), "batch_rows": Setting(kinds.positive_int),
        "pool_size": Setting(kinds.positive_int),
    }

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any], where: str) -> None:
        super().check_settings(settings, where)
        driver = settings["driver"]
        if settings.get("dialect") is None and dialects.default_dialect(driver) is None:
            raise CatalogError(f"{where}.dialect: required for driver {driver!r}: the SQL "
                               "dialect the warehouse speaks, as sqlglot names it (duckdb, "
                               "trino, postgres, ...)")
        if dialects.default_dialect(driver) == "sqlite" and not settings.get("uri"):
            raise CatalogError(f"{where}.uri: required for the sqlite driver: the database file")

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        super().__init__(spec, catalog)
        where = f"{catalog.origin}: sources.{spec.name}"
        self.check_settings(spec.settings, where)
        raw = spec.settings
        self._secrets = catalog.secrets
        self._driver = raw["driver"]
        self._dialect = raw.get("dialect") or dialects.default_dialect(self._driver)
        self._profile = dialects.profile(self._dialect)
        self._sqlite = dialects.default_dialect(self._driver) == "sqlite"
        self._options = {str(k): str(v).lower() if isinstance(v, bool) else str(v)
                         for k, v in (raw.get("options") or {}).items()}
        self._uri, self._shown_uri = self._locate(spec, raw.get("uri"), where)
        self._read_timeout = float(raw.get("read_timeout", DEFAULT_READ_TIMEOUT))
        self._batch_rows = raw.get("batch_rows")
        self.capabilities = Capabilities(
            dialect=self._dialect, subtrees=self._profile.subtrees, remote=not self._sqlite,
            default_schema=dialects.DEFAULT_SCHEMA.get(self._dialect, "main"),
            expressions=self._profile.expressions,
            max_identifier_length=dialects.IDENTIFIER_LENGTH.get(self._dialect))
        self._module = self._driver_module(where)
        self.sent: deque[str] = deque(maxlen=SENT_KEPT)
        self._lock = threading.Lock()
        self._columns: dict[TableRef, tuple[pa.Schema, set[str]]] = {}
        self._listing: list[TableRef] | None = None
        self._streams: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._pool = Pool(self._open_session, int(raw.get("pool_size", 4)))
        self._pool.release(self._pool.acquire()[0])  # a bad uri or driver fails connect, named

    def _locate(self, spec: SourceSpec, uri: str | None, where: str) -> tuple[str | None, str]:
        """The URI the driver receives and the one ``describe`` shows (no credentials). A SQLite
        file is resolved against the catalog's folder and opened read-only; it must exist."""
        for key, value in self._options.items():
            if _SECRET_OPTION.search(key):
                self._secrets.add_setting(value)
        if uri is None:
            return None, ""
        if self._sqlite:
            path = Path(spec.resolve(uri.removeprefix("file:").split("?")[0]))
            if not path.is_file():
                raise CatalogError(f"{where}.uri: no SQLite database at {path} (fedquery opens "
                                   "it read-only and never creates one)")
            return f"file:{path}?mode=ro", str(path)
        parts = urlsplit(uri)
        if parts.password:
            self._secrets.add_setting(parts.password)
            self._secrets.add_setting(uri)
        shown = parts._replace(netloc=parts.hostname or "", query="").geturl() if parts.netloc \
            else uri.split("?")[0]
        return uri, MASK if self._secrets.from_environment(uri) else shown

    def _driver_module(self, where: str) -> Any:
        package = dialects.driver_package(self._driver)
        if package is None:
            return None
        try:
            return importlib.import_module(package[0])
        except ImportError as exc:
            raise CatalogError(f"{where}.driver: the ADBC driver {self._driver!r} is not "
                               f"installed; pip install {package[1]} (and "
                               "'fedquery[adbc]')") from exc

    def __repr__(self) -> str:
        return f"<AdbcConnector {self.name!r} {self._driver} {self._shown_uri}>"

    # ------------------------------------------------------------------ description

    def tables(self) -> list[TableRef]:
        """Every table and view the driver lists (for SQLite: of the ``main`` database)."""

        def listing(conn) -> list[TableRef]:
            objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
            return [TableRef(s["db_schema_name"] or c["catalog_name"] or "main", t["table_name"])
                    for c in objects for s in c["catalog_db_schemas"] or []
                    for t in s["db_schema_tables"] or []
                    if not (self._sqlite and t["table_name"].startswith("sqlite_"))]

        found = sorted(set(self._run(listing, "cannot list tables")), key=str)
        with self._lock:
            self._listing = found
        return list(found)

    def schema(self, table: TableRef) -> pa.Schema:
        """The Arrow schema scans return: for SQLite from the declared types (see
        ``_sqlite_semantics``), else the driver's."""
        return self._table(self.resolve(table))[0]

    def resolve(self, table: TableRef) -> TableRef:
        """The table as the warehouse spells it (an exact name, else the one matching ignoring
        case, as DuckDB names are)."""
        for attempt in range(2):
            listing = self._listing if attempt == 0 and self._listing is not None else self.tables()
            if table in listing:
                return table
            folded = [t for t in listing if (t.schema.lower(), t.name.lower())
                      == (table.schema.lower(), table.name.lower())]
            if len(folded) == 1:
                return folded[0]
        raise SourceError(f"no table {table} in {self._shown_uri or self._driver}",
                          source=self.name)

    def describe(self, table: TableRef) -> dict[str, Any]:
        return {"kind": self.kind, "driver": self._driver, "uri": self._shown_uri,
                "dialect": self._dialect, "relation": self._relation(table)}

    def estimate_rows(self, table: TableRef) -> int | None:
        """SQLite: the largest rowid (a count for a table rows are only added to); else None."""
        if not self._sqlite:
            return None
        sql = exp.select("max(_rowid_)").from_(self._relation_tree(self.resolve(table))).sql("sqlite")
        try:
            value = self._query(sql)[0][0]
        except SourceError:  # a view or a WITHOUT ROWID table
            return None
        return int(value) if value is not None else 0

    # ------------------------------------------------------------------ fragments

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        """Stream the rows of a one-table request; its keys become an ``IN`` list of its filter
        (``_native.keys_in_filter``), applied before its top-N."""
        request = keys_in_filter(request)
        table, schema = self._scan_parts(request)
        try:
            sql = self._scan_sql(request, table, request.params or {})
        except NotExact:
            return self._locally(render.scan_select(request, table, self._types(table)), [table],
                                 request.params or {}, schema)
        return self._stream(sql, lambda raw: schema)

    def run_sql(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.RecordBatchReader:
        tree, tables = self._fragment(sql)
        outputs = self._output_types(tree, tables)
        try:
            text = self._fragment_sql(tree, tables, params or {}, outputs)
        except NotExact:
            return self._locally(tree, tables, params or {}, None)
        return self._stream(text, lambda raw: pa.schema(
            [pa.field(f.name, outputs.get(f.name) or dialects.target_type(f.type)) for f in raw]))

    def source_sql(self, fragment: str | ScanRequest, params: Mapping[str, Any] | None = None) -> str:
        """Exactly the text the warehouse receives; for a fragment it would not answer as DuckDB
        does, the reads of whole tables it receives instead (DuckDB does the rest)."""
        try:
            if isinstance(fragment, ScanRequest):
                fragment = keys_in_filter(fragment)
                table, _ = self._scan_parts(fragment)
                return self._scan_sql(fragment, table, params)
            tree, tables = self._fragment(fragment)
            return self._fragment_sql(tree, tables, params, self._output_types(tree, tables))
        except NotExact as exc:
            tables = [self._scan_parts(fragment)[0]] if isinstance(fragment, ScanRequest) \
                else self._fragment(fragment)[1]
            reads = ";\n".join(self._full_read(t) for t in dict.fromkeys(tables))
            return f"{reads}\n-- then DuckDB evaluates the rest ({exc})"

    def cancel(self, reader: pa.RecordBatchReader) -> None:
        with self._lock:
            stream = self._streams.get(reader)
        if stream is not None:
            stream.cancel()

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ SQL text

    def _scan_sql(self, request: ScanRequest, table: TableRef, params: Any) -> str:
        types = self._types(table)
        tree = self._bind(render.scan_select(request, table, types), params)
        tree = self._profile.localize(tree, types)
        if self._sqlite and isinstance(tree, exp.Select):
            untyped = self._table(table)[1]
            tree.set("expressions", [
                exp.alias_(stored(p, types[p.name], p.name in untyped), p.name, quoted=True)
                if isinstance(p, exp.Column) and p.name in types else p for p in tree.expressions])
        return tree.sql(self._dialect)

    def _fragment_sql(self, tree: exp.Expr, tables: list[TableRef], params: Any,
                      outputs: Mapping[str, pa.DataType]) -> str:
        if not self._profile.subtrees:
            raise NotExact(f"joins and aggregates are not pushed to {self._dialect}")
        types: dict[str, pa.DataType] = {}
        for table in tables:
            for name, kind in self._types(table).items():
                types.setdefault(name, kind)
        tree = self._profile.localize(self._bind(tree.copy(), params), types)
        select = tree if isinstance(tree, exp.Select) else None
        for projection in select.expressions if select is not None else []:
            kind = outputs.get(projection.alias_or_name)
            if kind is not None and pa.types.is_floating(kind):
                inner = projection.unalias()
                inner.replace(stored(inner.copy(), kind))
        return tree.sql(self._dialect)

    def _bind(self, tree: exp.Expr, params: Any) -> exp.Expr:
        try:
            return render.bind_values(tree, params, self._profile.literal, self._dialect)
        except (KeyError, TypeError) as exc:
            raise SourceError(str(exc).strip("'\""), source=self.name) from None

    def _full_read(self, table: TableRef) -> str:
        return self._scan_sql(ScanRequest(table=f"{self.name}.{table}"), table, None)

    def _output_types(self, tree: exp.Expr, tables: list[TableRef]) -> dict[str, pa.DataType]:
        """The types DuckDB would give the fragment's outputs (sqlglot's annotation), for the
        outputs whose type it can tell; for SQLite only (other drivers type their results)."""
        if not self._sqlite:
            return {}
        from sqlglot.optimizer.annotate_types import annotate_types
        from sqlglot.optimizer.qualify import qualify

        schema: dict[str, dict[str, dict[str, str]]] = {}
        for t in tables:  # tables of one schema side by side (a join of two kept one only)
            schema.setdefault(t.schema, {})[t.name] = {n: _duck_type(k) for n, k in self._types(t).items()}
        try:
            typed = annotate_types(qualify(tree.copy(), schema=schema, dialect="duckdb",
                                           quote_identifiers=False), schema=schema)
        except (SqlglotError, KeyError, ValueError):
            return {}
        select = typed if isinstance(typed, exp.Select) else None
        found = {p.alias_or_name: output_type(p.type) for p in (select.expressions if select else [])}
        return {k: v for k, v in found.items() if v is not None}

    def _fragment(self, sql: str) -> tuple[exp.Expr, list[TableRef]]:
        try:
            return render.fragment_tree(sql, self.name, lambda s, n: self.resolve(TableRef(s, n)))
        except (ValueError, SqlglotError) as exc:
            raise SourceError(f"cannot send this SQL: {str(exc).splitlines()[0]}",
                              source=self.name) from exc

    # ------------------------------------------------------------------ tables

    def _scan_parts(self, request: ScanRequest) -> tuple[TableRef, pa.Schema]:
        _, schema_name, name = request.table.split(".", 2)
        table = self.resolve(TableRef(schema_name, name))
        return table, render.scan_schema(request, table, self.schema(table), self.name)

    def _types(self, table: TableRef) -> dict[str, pa.DataType]:
        return {f.name: f.type for f in self._table(table)[0]}

    def _table(self, table: TableRef) -> tuple[pa.Schema, set[str]]:
        with self._lock:
            cached = self._columns.get(table)
        if cached is None:
            cached = self._load_schema(table)
            with self._lock:
                cached = self._columns.setdefault(table, cached)
        return cached

    def _load_schema(self, table: TableRef) -> tuple[pa.Schema, set[str]]:
        """Declared types for SQLite (and the columns declared with none); the driver's else."""

        def load(conn) -> tuple[pa.Schema, set[str]]:
            if not self._profile.declared:
                raw = conn.adbc_get_table_schema(table.name, db_schema_filter=table.schema)
                return pa.schema([pa.field(f.name, dialects.target_type(f.type)) for f in raw]), set()
            objects = conn.adbc_get_objects(depth="columns", catalog_filter=table.schema,
                                            table_name_filter=table.name).read_all().to_pylist()
            columns = [c for cat in objects for s in cat["catalog_db_schemas"] or []
                       for t in s["db_schema_tables"] or [] if t["table_name"] == table.name
                       for c in t["table_columns"] or []]
            columns.sort(key=lambda c: c["ordinal_position"])
            return (pa.schema([pa.field(c["column_name"], declared_type(c["xdbc_type_name"]))
                               for c in columns]),
                    {c["column_name"] for c in columns if not (c["xdbc_type_name"] or "").strip()})

        return self._run(load, f"cannot read the columns of {table}")

    def _relation(self, table: TableRef) -> str:
        return self._relation_tree(table).sql(self._dialect)

    def _relation_tree(self, table: TableRef) -> exp.Table:
        return exp.table_(table.name, db=table.schema, quoted=True)

    # ------------------------------------------------------------------ running

    def _locally(self, tree: exp.Expr, tables: list[TableRef], params: Any,
                 schema: pa.Schema | None) -> pa.RecordBatchReader:
        """A fragment the warehouse would answer differently: DuckDB evaluates it over the
        rows of its tables, each read whole (with every column) from the warehouse."""
        reads = {t: self._stream(self._full_read(t), lambda raw, t=t: self._table(t)[0])
                 for t in dict.fromkeys(tables)}
        try:
            return run_in_duckdb(tree, reads, params, schema)
        except FedQueryError:
            raise
        except Exception as exc:
            raise SourceError(f"evaluating the fragment in DuckDB failed: {exc}",
                              source=self.name) from exc

    def _stream(self, sql: str, schema_of: Callable[[pa.Schema], pa.Schema]) -> pa.RecordBatchReader:
        self.sent.append(sql)
        stream = FragmentStream(lambda fresh: self._start(sql, fresh), self._pool,
                                schema_of=schema_of, read_timeout=self._read_timeout,
                                batch_rows=self._batch_rows, translate=self._fail,
                                convert=self._profile.convert, lost=_lost)
        reader = stream.reader()
        with self._lock:
            self._streams[reader] = stream
        return reader

    def _start(self, sql: str, fresh: bool) -> Statement:
        session, _ = self._pool.acquire(fresh)
        try:
            return Statement.start(session, sql, self._read_timeout, {})
        except Exception as exc:
            self._pool.release(session, healthy=not _lost(exc))
            raise

    def _query(self, sql: str) -> list[tuple]:
        def query(conn) -> list[tuple]:
            with cursor_of(conn) as cursor:
                cursor.execute(sql)
                return cursor.fetchall()

        return self._run(query, "query failed")

    def _run(self, work: Callable[[Any], T], what: str) -> T:
        session, _ = self._pool.acquire()
        try:
            result = session.call(work, self._read_timeout)
        except Exception as exc:
            self._pool.release(session, healthy=not _lost(exc))
            self._fail(exc, what)
        self._pool.release(session)
        return result

    def _open_session(self) -> Session:
        try:
            return Session.open(self.name, self._connect, self._read_timeout, prefix="adbc")
        except SessionTimeout as exc:
            self._fail(exc, "cannot connect")

    def _connect(self):
        import adbc_driver_manager.dbapi as dbapi

        kwargs = dict(self._options)
        if self._uri is not None:
            kwargs["uri"] = self._uri
        driver = self._module._driver_path() if self._module is not None else self._driver
        try:
            return dbapi.connect(driver=driver, db_kwargs=kwargs, autocommit=True)
        except Exception as exc:
            self._fail(exc, "cannot connect")

    def _fail(self, exc: BaseException, what: str, note: str = "") -> NoReturn:
        """A driver failure in words, every secret masked, chained to the driver's exception
        unless its text shows a secret."""
        if isinstance(exc, FedQueryError):
            raise exc
        text = re.sub(r"^[A-Z_]+: ", "", str(exc).strip()) or type(exc).__name__
        text = " ".join(text.split())
        if note:
            text += f"; {note}"
        error = SourceError(self._secrets.redact(f"{what}: {text}"), source=self.name)
        raise error from (exc if self._secrets.redact(str(exc)) == str(exc) else None)


def _lost(exc: BaseException) -> bool:
    """Whether a failure lost the session: a missed deadline, or the driver's I/O or network
    failure (a statement's own error leaves the session usable)."""
    if isinstance(exc, SessionTimeout):
        return True
    status = getattr(exc, "status_code", None)
    return getattr(status, "name", "") in ("IO", "UNAUTHENTICATED") or isinstance(
        exc, ConnectionError | EOFError)


def _duck_type(kind: pa.DataType) -> str:
    for test, name in ((pa.types.is_boolean, "BOOLEAN"), (pa.types.is_integer, "BIGINT"),
                       (pa.types.is_floating, "DOUBLE"), (pa.types.is_date, "DATE"),
                       (pa.types.is_timestamp, "TIMESTAMP"), (pa.types.is_string, "VARCHAR"),
                       (pa.types.is_binary, "BLOB")):
        if test(kind):
            return name
    return "VARCHAR"
