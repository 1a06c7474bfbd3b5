"""``connect`` and ``Connection``: the user's handle on a catalog."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from sqlglot import exp

from connectors import open_connector
from fedquery.catalog import Catalog, load_catalog
from fedquery.errors import FedQueryError, PlanError
from fedquery.execute import Session
from fedquery.explain import render
from fedquery.parse import first_keyword
from fedquery.planner import Planner, select_params
from fedquery.result import Result

CATALOG_STATEMENTS = {"SHOW", "DESCRIBE", "DESC"}


def blob_functions(catalog: Catalog, *, strict: bool = False):
    """The blob and embedding functions over the catalog's files sources (which may be none:
    then every URI is refused, and ``embed_text`` still works)."""
    from fedquery.functions.blobs import Blobs
    from fedquery.functions.udfs import BlobFunctions

    return BlobFunctions(Blobs.from_catalog(catalog), strict=strict)


def connect(catalog: str | os.PathLike | Mapping[str, Any], *, strict: bool = False) -> Connection:
    """Open a catalog (a YAML path or a dict) and return a ``Connection``.

    ``strict``: a missing or corrupt file read by a blob function fails the query with
    ``SourceError`` instead of giving a value whose ``error`` says why.

    >>> with fedquery.connect("catalog.yaml") as con:  # doctest: +SKIP
    ...     con.sql("SELECT count(*) FROM frames").fetchall()
    """
    if isinstance(catalog, str | os.PathLike):
        catalog = os.path.expanduser(catalog)
    return Connection(load_catalog(catalog), strict=strict)


class Connection:
    """SQL over every source of one catalog, as if it were one database."""

    def __init__(self, catalog: Catalog, *, strict: bool = False) -> None:
        self.catalog = catalog
        self._closed = True
        with catalog.secrets.scrubbing():
            self._open(catalog, strict)
        self._closed = False

    def _open(self, catalog: Catalog, strict: bool) -> None:
        connectors: dict = {}
        try:
            for name, spec in catalog.sources.items():
                connectors[name] = open_connector(spec, catalog)
            self._session = Session(connectors, catalog.secrets,
                                    blob_functions(catalog, strict=strict))
            self._planner = Planner(catalog, self._session)
        except FedQueryError:
            for connector in connectors.values():
                connector.close()
            raise

    def sql(self, query: str, params: Mapping[str, Any] | list | None = None) -> Result:
        """Plan a query now (errors surface here) and return its lazily run ``Result``."""
        self._check_open()
        with self.catalog.secrets.scrubbing():
            return self._sql(query, params)

    def _sql(self, query: str, params: Any) -> Result:
        if first_keyword(query) in CATALOG_STATEMENTS:
            tree = self._planner.parse_checked(query)
            if isinstance(tree, exp.Show | exp.Describe):
                return self._catalog_statement(tree, params)
        plan = self._planner.cached_plan(query, params)
        return Result(self._session, plan,
                      select_params(plan.parameters, params, plan.vector_parameters))

    def explain(self, query: str, analyze: bool = False, params: Mapping[str, Any] | None = None) -> str:
        """The plan: each fragment, exactly what its source receives, and the residual SQL."""
        self._check_open()
        with self.catalog.secrets.scrubbing():
            plan = self._planner.cached_plan(query, params)
            execution = None
            if analyze:
                values = select_params(plan.parameters, params, plan.vector_parameters)
                execution = self._session.run(plan, values, analyze=True)
                execution.table()
            return render(plan, self._session, execution)

    def tables(self) -> list[str]:
        """Catalog table names, then ``source.table`` names of SQL sources."""
        self._check_open()
        names = list(self._planner.index.catalog_names)
        extra = sorted(n for n in self._planner.index.names() if n not in self.catalog.tables)
        return names + extra

    def schema(self, name: str) -> pa.Schema:
        """The Arrow schema of a table (or an entity) as SQL sees it."""
        self._check_open()
        if self.catalog.entity(name) is not None:
            quoted = exp.to_identifier(name, quoted=True).sql("duckdb")
            return self.sql(f"SELECT * FROM {quoted} LIMIT 0").arrow().schema
        bound = self._planner.index.lookup(name)
        if bound is None:
            raise PlanError(f"unknown table {name!r}{self._planner.index.suggest(name)}")
        with self.catalog.secrets.scrubbing():
            return self._session.schema(bound.source, bound.ref)

    def profile(self, source: str, column: str | None = None, by: str | None = None,
                sample: int | float | None = None):
        """Measure a set of files: a ``files`` source's, or those a table's blob ``column``
        points at, grouped by the table's column ``by``; ``sample``: a count or a fraction.

        >>> con.profile("frames", by="camera").summary["corrupt"]        # doctest: +SKIP
        0
        """
        from fedquery.profile import build_profile

        self._check_open()
        with self.catalog.secrets.scrubbing():
            return build_profile(self, source, column, by, sample)

    def close(self) -> None:
        """Release every source; the connection cannot be used afterwards."""
        if not self._closed:
            self._closed = True
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


class _TableResult(Result):
    """A result computed without running a plan (SHOW TABLES, DESCRIBE)."""

    def __init__(self, table: pa.Table) -> None:
        self._session, self._plan, self._params, self._table = None, None, None, table

    @property
    def columns(self) -> list[str]:
        return self._table.column_names
