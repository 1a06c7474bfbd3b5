"""``connect`` and ``Connection``: the user's handle on a catalog.

Every public method runs inside ``boundary``: what it raises is a ``FedQueryError`` with the
catalog's secrets masked. Arguments are checked here, before anything is planned: the query
is a ``str``, ``params`` a mapping of names (``$name``) or a list or tuple of values (``?``,
``$1``), and keyword arguments are the documented ones.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from fedquery.bind import BoundTable, reserved_name
from fedquery.boundary import boundary
from fedquery.catalog import Catalog, load_catalog
from fedquery.connectors import open_connector
from fedquery.connectors.base import TableRef
from fedquery.connectors.registered import RegisteredTables, scannable
from fedquery.errors import CatalogError, FedQueryError, PlanError
from fedquery.execute import Session
from fedquery.explain import render
from fedquery.parse import first_keyword, require_text
from fedquery.planner import Planner, relation_name, select_params
from fedquery.preview import limited_query
from fedquery.result import Result
from fedquery.sandbox_functions import fold, is_internal

if TYPE_CHECKING:
    from fedquery.connectors._lance_search import VectorIndex
    from fedquery.vector_index import IndexInfo

CATALOG_STATEMENTS = {"SHOW", "DESCRIBE", "DESC"}
logger = logging.getLogger("fedquery")


def blob_functions(catalog: Catalog, *, strict: bool = False):
    """The blob and embedding functions over the catalog's files sources (which may be none:
    then every URI is refused, and ``embed_text`` still works)."""
    from fedquery.functions.blobs import Blobs
    from fedquery.functions.udfs import BlobFunctions

    return BlobFunctions(Blobs.from_catalog(catalog), strict=strict)


def connect(catalog: str | os.PathLike | Mapping[str, Any], *, strict: bool = False,
            engine: str = "local", ray_address: str | None = None, **unknown: Any) -> Connection:
    """Open a catalog (a YAML path or a dict) and return a ``Connection``.

    ``strict``: a missing or corrupt file read by a blob function fails the query with
    ``SourceError`` instead of giving a value whose ``error`` says why.
    ``engine``: ``"local"`` (in-process DuckDB) or ``"ray"``: the same plans run on a Ray
    cluster through Daft (``pip install 'fedquery[ray]'``), the one at ``ray_address`` or
    ``$FEDQUERY_RAY_ADDRESS``, else a local one (docs/scale-out.md).

    >>> with fedquery.connect("catalog.yaml") as con:  # doctest: +SKIP
    ...     con.sql("SELECT count(*) FROM frames").fetchall()
    """
    with boundary():
        _no_unknown("connect", unknown, ("strict", "engine", "ray_address"), CatalogError)
        if not isinstance(strict, bool):
            raise CatalogError(f"connect: strict must be True or False, got {strict!r}")
        _check_engine(engine, ray_address)
        catalog = load_catalog(catalog)
    return Connection(catalog, strict=strict, engine=engine, ray_address=ray_address)


ENGINES = ("local", "ray")


def _check_engine(engine: Any, ray_address: Any) -> None:
    if engine not in ENGINES:
        raise CatalogError(f"connect: engine must be one of {', '.join(map(repr, ENGINES))}, "
                           f"got {engine!r}")
    if ray_address is not None and not isinstance(ray_address, str):
        raise CatalogError(f"connect: ray_address must be a string such as 'ray://head:10001' "
                           f"or 'head:6379', got {type(ray_address).__name__}")
    if ray_address is not None and engine != "ray":
        raise CatalogError("connect: ray_address is for engine='ray'")


class Connection:
    """SQL over every source of one catalog, as if it were one database."""

    def __init__(self, catalog: Catalog, *, strict: bool = False, engine: str = "local",
                 ray_address: str | None = None) -> None:
        self.catalog, self.engine = catalog, engine
        self._ray_address = ray_address
        self._closed = True
        with boundary(catalog.secrets):
            self._open(catalog, strict)
        self._closed = False

    def _open(self, catalog: Catalog, strict: bool) -> None:
        connectors: dict = {}
        try:
            for name, spec in catalog.sources.items():
                with boundary(catalog.secrets, sources=[name], opening=True):
                    connectors[name] = open_connector(spec, catalog)
            self._registered = RegisteredTables(set(connectors))
            connectors[self._registered.name] = self._registered
            functions = blob_functions(catalog, strict=strict)
            if self.engine == "ray":
                from fedquery.ray.session import RaySession

                self._session = RaySession(connectors, catalog.secrets, functions, catalog.settings,
                                           catalog=catalog, strict=strict, address=self._ray_address)
            else:
                self._session = Session(connectors, catalog.secrets, functions, catalog.settings)
            self._planner = Planner(catalog, self._session)
        except BaseException:
            for connector in connectors.values():
                connector.close()
            raise

    def sql(self, query: str, params: Mapping[str, Any] | list | tuple | None = None,
            timeout: float | None = None, **unknown: Any) -> Result:
        """Plan a query now (errors surface here) and return its lazily run ``Result``.

        ``params``: a mapping for ``$name`` parameters, or a list or tuple for ``?`` and ``$1``.
        ``timeout``: seconds the query may run (each time it runs) before it is stopped with
        ``QueryTimeout``; default the catalog's ``settings.timeout``, else none.
        """
        with boundary(self.catalog.secrets):
            _no_unknown("sql", unknown, ("params", "timeout"))
            self._check_open()
            return self._sql(require_text(query), checked_params(params), checked_timeout(timeout))

    def interrupt(self) -> None:
        """Stop every query of this connection running now, from any thread (their callers get
        ``QueryCancelled``); the connection stays open for the next query."""
        with boundary(self.catalog.secrets):
            if not self._closed:
                self._session.interrupt()

    def _sql(self, query: str, params: Any, timeout: float | None = None) -> Result:
        if first_keyword(query) in CATALOG_STATEMENTS:
            tree = self._planner.parse_checked(query)
            if isinstance(tree, exp.Show | exp.Describe):
                return self._catalog_statement(tree, params)
        plan = self._planner.cached_plan(query, params)
        return Result(self._session, plan,
                      select_params(plan.parameters, params, plan.vector_parameters),
                      closed=lambda: self._closed,
                      preview=functools.partial(self._limited_plan, query, params),
                      timeout=timeout)

    def _limited_plan(self, query: str, params: Any, rows: int):
        """The plan of ``query`` limited to its first ``rows`` rows, and its parameter values,
        for a display; None when there is no such query (or it does not plan: then the whole
        query runs, as it would for ``arrow()``)."""
        limited = limited_query(query, rows)
        if limited is None:
            return None
        try:
            plan = self._planner.cached_plan(limited, params)
        except FedQueryError as exc:
            logger.debug("no limited plan for a preview, the whole query runs: %s", exc)
            return None
        return plan, select_params(plan.parameters, params, plan.vector_parameters)

    def explain(self, query: str, analyze: bool = False,
                params: Mapping[str, Any] | list | tuple | None = None, **unknown: Any) -> str:
        """The plan: each fragment, exactly what its source receives, and the residual SQL.

        ``analyze=True`` also runs it and shows rows, time and bytes per fragment. Like
        ``sql(query, params)``, a mapping, list or tuple in the second place is ``params``.
        """
        with boundary(self.catalog.secrets):
            _no_unknown("explain", unknown, ("analyze", "params"))
            self._check_open()
            analyze, params = _analyze_and_params(analyze, params)
            if first_keyword(require_text(query)) in CATALOG_STATEMENTS:
                tree = self._planner.parse_checked(query)
                if isinstance(tree, exp.Show | exp.Describe):
                    return self._explain_catalog_statement(tree, params, analyze)
            plan = self._planner.cached_plan(query, params)
            if not analyze:
                return self._engine_note(analyze) + render(plan, self._session, None)
        with boundary(self.catalog.secrets, sources=plan_sources(plan)):
            values = select_params(plan.parameters, params, plan.vector_parameters)
            execution = self._session.run(plan, values, analyze=True)
            execution.table()
            return self._engine_note(analyze) + render(plan, self._session, execution)

    def _engine_note(self, analyze: bool) -> str:
        """What explain says first on the Ray engine: where the plan's parts run."""
        if self.engine != "ray":
            return ""
        if analyze:
            return ("engine: ray; analyze runs the plan on the local engine (figures are per "
                    "fragment, of one process)\n")
        return ("engine: ray; each fragment is read by Daft tasks on the workers (a lake scan split "
                "by file, a big PostgreSQL table by primary-key range); the residual's joins, "
                "filters and aggregates run in Daft when it answers them as DuckDB does, the rest "
                "in DuckDB on a worker\n")

    def _explain_catalog_statement(self, tree: exp.Expr, params: Any, analyze: bool) -> str:
        """SHOW TABLES and DESCRIBE are answered by fedquery itself: no source reads anything."""
        what = ("the catalog's table names" if isinstance(tree, exp.Show)
                else "the columns DuckDB's binder gives the described table or query")
        text = (f"Plan: a catalog statement, answered by fedquery ({what}); no rows are read "
                f"from any source\n  {tree.sql('duckdb')}")
        rows = self._catalog_statement(tree, params).arrow().num_rows  # refuses what sql() would
        return text + (f"\n  analyze: {rows:,} rows" if analyze else "")

    def tables(self) -> list[str]:
        """Catalog table names, then ``source.table`` names of SQL sources."""
        with boundary(self.catalog.secrets):
            self._check_open()
            names = list(self._planner.index.catalog_names)
            known = set(self.catalog.tables) | {fold(n) for n in self._registered_names()}
            extra = sorted(n for n in self._planner.index.names() if n not in known)
            return names + extra

    def register(self, name: str, data: Any) -> None:
        """Make ``data`` a table named ``name`` that queries read beside the catalog's tables
        (and join with them): a pandas or polars DataFrame, a pyarrow Table, RecordBatch,
        Dataset or RecordBatchReader, or any object with ``__arrow_c_stream__`` (a stream is
        read whole now, as the name may be queried many times). Registering a name again
        replaces its data; a catalog table's or entity's name is refused (``CatalogError``).

        >>> con.register("picked", pandas.DataFrame({"frame_id": [3, 7]}))  # doctest: +SKIP
        >>> con.sql("SELECT f.* FROM frames f JOIN picked USING (frame_id)").df()  # doctest: +SKIP
        """
        with boundary(self.catalog.secrets):
            self._check_open()
            self._check_registered_name(name)
            table = scannable(data)
            known = self._planner.index.lookup(name)
            if known is not None:
                self._unregister(known)
            self._registered.add(name, table)
            bound = BoundTable(self._registered.name, TableRef("main", name))
            self._planner.index.add_catalog_table(name, bound)
            self._session.add_names({name: relation_name(bound)})
            self._planner.forget_table(bound)

    def unregister(self, name: str) -> None:
        """Forget a table registered with ``register`` (a name never registered: nothing
        happens, as with DuckDB's ``unregister``; a catalog table's name: ``CatalogError``)."""
        with boundary(self.catalog.secrets):
            self._check_open()
            if not isinstance(name, str):
                raise PlanError(f"unregister: expected a table name (str), got {type(name).__name__}")
            bound = self._planner.index.lookup(name)
            if bound is not None and bound.source != self._registered.name:
                raise CatalogError(f"unregister: {name!r} is a table of the catalog (source "
                                   f"{bound.source!r}), not one registered from Python")
            if bound is not None:
                self._unregister(bound)

    def _unregister(self, bound: BoundTable) -> None:
        self._planner.index.remove(bound.ref.name)
        self._session.remove_names([bound.ref.name])
        self._registered.remove(bound.ref.name)
        self._planner.forget_table(bound)

    def _registered_names(self) -> list[str]:
        return [ref.name for ref in self._registered.tables()]

    def _check_registered_name(self, name: Any) -> None:
        """A name ``register`` may take: a new one, or one registered before."""
        if not isinstance(name, str) or not name.strip():
            raise PlanError(f"register: the name must be a non-empty string, got {name!r}")
        if "." in name or is_internal(fold(name)) or reserved_name([name]):
            raise PlanError(f"register: {name!r} cannot name a table (a name has no dots, does "
                            "not start with '__' and is not one of DuckDB's system views); "
                            "choose another")
        known = self._planner.index.lookup(name)
        clash = (f"a table of the catalog (source {known.source!r})"
                 if known is not None and known.source != self._registered.name
                 else "an entity of the catalog" if self.catalog.entity(name) is not None
                 else None)
        if clash:
            raise CatalogError(f"register: {name!r} is {clash}; register the data under "
                               "another name")

    def indices(self) -> dict[str, list[VectorIndex]]:
        """The vector indices of each catalog table that has one, as this connection sees them:
        ``{"frame_embeddings": [VectorIndex("embedding_idx", "embedding", "IVF_PQ", "cosine",
        20)]}`` (name, column, kind, metric, partitions).
        """
        with boundary(self.catalog.secrets):
            self._check_open()
            found = {}
            for name, spec in self.catalog.tables.items():
                connector = self._session.connectors[spec.source]
                with boundary(self.catalog.secrets, sources=[spec.source]):
                    indices = list(connector.vector_indexes(name).values())
                if indices:
                    found[name] = indices
            return found

    def create_index(self, table: str, column: str | None = None, *, kind: str = "IVF_PQ",
                     metric: str = "cosine", replace: bool = False, **params: Any) -> IndexInfo:
        """Build an ANN index on a vector ``column`` (default: the only one) of a LanceDB
        table: the one method that writes, and only index files and a new manifest version.
        ``metric`` must be the distance queries use (an index answers only its own);
        ``params`` are the lancedb.index config's (``num_partitions``, ``num_sub_vectors``,
        ``m``, ...), defaults measured. This connection's next queries see the index.

        >>> con.create_index("frame_embeddings", kind="IVF_PQ", metric="cosine")  # doctest: +SKIP
        """
        from fedquery.vector_index import create_index

        with boundary(self.catalog.secrets):
            self._check_open()
            info = create_index(self.catalog, table, column, kind=kind, metric=metric,
                                replace=replace, **params)
            self._session.connectors[self.catalog.tables[table].source].refresh(table)
            self._planner.forget_plans()
            return info

    def schema(self, name: str) -> pa.Schema:
        """The Arrow schema of a table (or an entity) as SQL sees it."""
        with boundary(self.catalog.secrets):
            self._check_open()
            if not isinstance(name, str):
                raise PlanError(f"schema: expected a table name (str), got {type(name).__name__}")
            if self.catalog.entity(name) is not None:
                quoted = exp.to_identifier(name, quoted=True).sql("duckdb")
                return self.sql(f"SELECT * FROM {quoted} LIMIT 0").arrow().schema
            bound = self._planner.index.lookup(name)
            if bound is None:
                raise PlanError(f"unknown table {name!r}{self._planner.index.suggest(name)}")
        with boundary(self.catalog.secrets, sources=[bound.source]):
            return self._session.schema(bound.source, bound.ref)

    def profile(self, source: str, column: str | None = None,
                by: str | list[str] | None = None, sample: int | float | None = None):
        """Measure a set of files: a ``files`` source's, or those the URI ``column`` of a table
        or a SELECT points at, grouped by ``by`` (an output column, or a list of them);
        ``sample``: a count or a fraction, a seeded subset chosen in SQL.

        >>> con.profile("SELECT f.image_uri, d.weather FROM frames f JOIN drives d "
        ...             "USING (drive_id)", by="weather").groups        # doctest: +SKIP
        """
        from fedquery.profile import build_profile

        with boundary(self.catalog.secrets):
            self._check_open()
            _check_profile_arguments(source, column, by, sample)
            return build_profile(self, source, column, by, sample)

    def close(self) -> None:
        """Release every source; the connection cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            with boundary(self.catalog.secrets):
                self._session.closing.set()  # queries still waiting give up (QueryCancelled)
                for connector in self._session.connectors.values():
                    connector.close()
                self._session.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"sources={list(self.catalog.sources)}"
        return f"<fedquery.Connection {self.catalog.origin!r} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise FedQueryError("the connection is closed")

    def _catalog_statement(self, tree: exp.Expr, params: Any) -> Result:
        """SHOW TABLES and DESCRIBE answered from the catalog and the planner."""
        if isinstance(tree, exp.Show):
            table = pa.table({"name": self.tables()})
        elif isinstance(tree.this, exp.Table) and not isinstance(tree.this.this, exp.Func):
            name = ".".join(p.name for p in tree.this.parts)
            if self.catalog.entity(name) is None:
                self.schema(name)  # unknown names fail here with a suggestion
            plan = self._planner.cached_plan(f"SELECT * FROM {tree.this.sql('duckdb')}")
            table = pa.table({"column_name": list(plan.columns), "column_type": list(plan.types)})
        else:
            plan = self._planner.cached_plan(tree.this.sql("duckdb"), params)
            table = pa.table({"column_name": list(plan.columns), "column_type": list(plan.types)})
        return _TableResult(table)


def checked_timeout(timeout: Any) -> float | None:
    """``timeout=``: None, or a positive number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0 \
            or timeout != timeout:
        raise PlanError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def checked_params(params: Any) -> dict[str, Any] | list | None:
    """``params`` as the planner takes them: a dict with ``str`` keys, or a list."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        named: dict[str, Any] = {}
        for name, value in params.items():
            if not isinstance(name, str):
                raise PlanError(f"params: parameter names must be strings ($name), got "
                                f"{name!r} ({type(name).__name__})")
            bare = name[1:] if name.startswith("$") else name  # {"$city": ...} is $city too
            if bare in named:
                raise PlanError(f"params: ${bare} is given twice (as {bare!r} and {'$' + bare!r})")
            named[bare] = value
        return named
    if isinstance(params, list | tuple):
        return list(params)
    raise PlanError(f"params must be a dict of named values ($name) or a list or tuple of "
                    f"positional values (? or $1), got {type(params).__name__}")


def plan_sources(plan) -> list[str]:
    """The sources a plan reads (named by an I/O error no connector translated)."""
    return [f.source for f in plan.fragments]


def _analyze_and_params(analyze: Any, params: Any) -> tuple[bool, Any]:
    """``explain(sql, params)`` as ``sql(sql, params)`` takes it; else analyze is a bool."""
    if isinstance(analyze, Mapping | list | tuple):
        if params is not None:
            raise PlanError("explain: params given twice (in the second place and as params=)")
        analyze, params = False, analyze
    if not (isinstance(analyze, bool | int) and analyze in (0, 1)):
        raise PlanError(f"explain: analyze must be True or False, got {analyze!r}")
    return bool(analyze), checked_params(params)


def _check_profile_arguments(source: Any, column: Any, by: Any, sample: Any) -> None:
    if not isinstance(source, str):
        raise PlanError(f"profile: expected a source, table or SELECT (str), got "
                        f"{type(source).__name__}")
    if column is not None and not isinstance(column, str):
        raise PlanError(f"profile: column must be a column name (str), got {type(column).__name__}")
    names = by if isinstance(by, list | tuple) else [by]
    if by is not None and not all(isinstance(n, str) for n in names):
        raise PlanError("profile: by must be a column name or a list of them")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int | float)):
        raise PlanError(f"profile: sample must be a count or a fraction, got {sample!r}")


def _no_unknown(method: str, unknown: Mapping[str, Any], known: tuple[str, ...],
                error: type[FedQueryError] = PlanError) -> None:
    """Refuse keyword arguments a method does not take, suggesting the nearest one."""
    if unknown:
        name = sorted(unknown)[0]
        hint = difflib.get_close_matches(name, known, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise error(f"{method}() got an unknown argument {name!r}{did}; it takes "
                    f"{', '.join(known)}")


class _TableResult(Result):
    """A result computed without running a plan (SHOW TABLES, DESCRIBE): VARCHAR columns."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__(None, None, None)
        self._table = table

    @property
    def columns(self) -> list[str]:
        return self._table.column_names

    @property
    def types(self) -> list[str]:
        return ["VARCHAR"] * self._table.num_columns
