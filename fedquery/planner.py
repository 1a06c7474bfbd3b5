"""From SQL text to a ``Plan``: parse, sandbox, bind, qualify, rewrite, cut into fragments.

Plans are cached by SQL text and parameter names: a plan holds SQL and decisions, never data,
so it stays valid while the sources change.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from typing import Any

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from fedquery import array_widths
from fedquery.bind import SOURCE, BoundTable, TableIndex, bind_tables
from fedquery.catalog import Catalog
from fedquery.connectors.base import Capabilities, SQLSource, TableRef
from fedquery.entities import expand_entities
from fedquery.errors import PlanError
from fedquery.execute import Session
from fedquery.functions.embedding import REGISTRY
from fedquery.parameters import POSITIONAL, name_positional, param_key, select_params
from fedquery.parse import DIALECT, parse, parse_statements
from fedquery.plan import Plan, extract_fragments
from fedquery.plan import placeholders as plan_placeholders
from fedquery.rules import (
    RULES,
    apply_rules,
    bind_blob_sources,
    bind_embedders,
    dynamic_filters,
    isolate_tables,
)
from fedquery.rules.bind_blob_sources import blob_source
from fedquery.rules.bind_embedders import describe_sql
from fedquery.sandbox import check_sandbox, check_statement_keyword
from fedquery.vector_search import expand_vector_search
from fedquery.vectors import array_type, vector_parameters

__all__ = ["Planner", "build_index", "relation_name", "select_params"]
logger = logging.getLogger("fedquery")
CACHE_SIZE = 256
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ESTIMATES_KEPT = 4096
_UNKNOWN = object()


class Planner:
    """Plans queries against one catalog and one executor session."""

    def __init__(self, catalog: Catalog, session: Session) -> None:
        self.catalog, self.session = catalog, session
        self.index = build_index(catalog, session)
        session.add_names({name: relation_name(bound)
                           for name, bound in self.index.catalog_names.items()
                           if self.capabilities(bound.source).native})
        self._schemas: dict[str, pa.Schema] = {}
        self._estimates: dict[tuple, int | None] = {}
        self._cache: OrderedDict[tuple, Plan] = OrderedDict()
        self._lock = threading.RLock()  # the caches above, held only while they change
        self._describing: dict[str, threading.Lock] = {}  # one lock a table being described

    # RuleCatalog protocol
    def capabilities(self, source: str) -> Capabilities:
        return self.session.connectors[source].capabilities

    def columns(self, table: exp.Table) -> list[str]:
        return self.table_schema(table).names

    def table_schema(self, table: exp.Table) -> pa.Schema:
        """A bound table's Arrow schema (asked of its source once per connection)."""
        key = ".".join(p.name for p in table.parts)
        with self._lock:
            if key in self._schemas:
                return self._schemas[key]
            describing = self._describing.setdefault(key, threading.Lock())
        # one thread describes (and shadows) a table while threads wanting it wait; a slow or
        # stalled source holds up no other table and no planning that needs none
        with describing:
            with self._lock:
                if key in self._schemas:
                    return self._schemas[key]
            bound = BoundTable(table.catalog, TableRef(table.db, table.name))
            schema = self.session.schema(bound.source, bound.ref)
            if not self.capabilities(bound.source).native:
                self._shadow(bound, schema)
            with self._lock:
                self._schemas[key] = schema
            return schema

    def estimate_rows(self, table: exp.Table) -> int | None:
        """The source's own estimate of a table's row count, if it has one (asked once per
        connection: on PostgreSQL each is a round trip, and a plan asks per join side)."""
        key = ("rows", table.catalog, table.db, table.name)
        if (known := self._estimates.get(key, _UNKNOWN)) is not _UNKNOWN:
            return known
        connector = self.session.connectors[table.catalog]
        return self._remember_estimate(key, connector.estimate_rows(TableRef(table.db, table.name)))

    def _remember_estimate(self, key: tuple, value: int | None) -> int | None:
        with self._lock:
            if len(self._estimates) >= ESTIMATES_KEPT:
                self._estimates.clear()
            self._estimates[key] = value
        return value

    def blob_source(self, table: exp.Table, column: str) -> str | None:
        """The files source a column holds URIs into (``blobs:`` in the catalog)."""
        bound = BoundTable(table.catalog, TableRef(table.db, table.name))
        spec = self.catalog.sources.get(bound.source)
        if spec is not None and spec.kind == "files" and column == "uri":
            return bound.source  # a files source's listing: its URIs are relative to it
        for name, other in self.index.catalog_names.items():
            source = self.catalog.blobs.get(f"{name}.{column}")
            if other == bound and source:
                return source
        return None

    def estimate_query(self, source: str, sql: str) -> int | None:
        """The source planner's own row estimate for a fragment, if the source offers one
        (asked once per connection and fragment text)."""
        key = ("sql", source, sql)
        if (known := self._estimates.get(key, _UNKNOWN)) is not _UNKNOWN:
            return known
        connector = self.session.connectors[source]
        estimate = connector.estimate_sql_rows(sql) if isinstance(connector, SQLSource) else None
        return self._remember_estimate(key, estimate)

    def subplan(self, tree: exp.Expr) -> Plan:
        """A rewritten query that the executor runs first, as a plan of its own (the keys of a
        vector top-k's prefilter), with dynamic filters planned among its joins."""
        tree = dynamic_filters(tree, catalog=self)
        parameters = plan_placeholders(tree)  # before the cut takes the fragments out
        names = tuple(p.alias_or_name for p in tree.expressions) if isinstance(tree, exp.Select) else ()
        cut = extract_fragments(tree, catalog=self, is_native=lambda s: self.capabilities(s).native)
        return Plan(tuple(cut.fragments), cut.residual, cut.local_sql, names, ("",) * len(names),
                    parameters, cut.residual_parameters, cut.local_parameters)

    def _shadow(self, bound: BoundTable, schema) -> None:
        """Let DuckDB describe queries over a table it cannot scan: an empty stand-in, named as
        SQL may name it (catalog names, ``source.table`` in the source's default schema)."""
        default = self.capabilities(bound.source).default_schema
        self.session.shadow(bound.source, bound.ref, schema, alias_schema=default != "main")
        names = {n: relation_name(b) for n, b in self.index.catalog_names.items() if b == bound}
        self.session.add_names(names)

    def forget_plans(self) -> None:
        """Drop the cached plans (a source changed what they decided on, e.g. a new index)."""
        with self._lock:
            self._cache.clear()

    def forget_table(self, bound: BoundTable) -> None:
        """Drop what is known of a table that changed (registered again from Python) and the
        plans that may have read it."""
        with self._lock:
            self._schemas.pop(bound.key, None)
            self._estimates.pop(("rows", bound.source, bound.ref.schema, bound.ref.name), None)
            self._cache.clear()

    def cached_plan(self, sql: str, params: Any = None) -> Plan:
        """``plan`` through an LRU cache keyed by SQL text and parameter names."""
        key = (sql, param_key(params), REGISTRY.generation)
        with self._lock:
            plan = self._cache.get(key)
            if plan is not None:
                self._cache.move_to_end(key)
                return plan
        plan = self.plan(sql, params)  # outside the lock: threads plan different queries at once
        with self._lock:
            self._cache[key] = plan
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return plan

    def plan(self, sql: str, params: Any = None) -> Plan:
        """Plan one SELECT (no cache)."""
        written = sql
        sql = renamed = name_positional(written)
        tree = self.parse_checked(sql)
        expanded = expand_entities(tree, self.catalog, self._schema_named)
        if expand_vector_search(tree, self._schema_named) or expanded:
            sql = tree.sql(DIALECT)  # DuckDB describes the expansion (it has no such tables)
        bind_tables(tree, self.index)
        bound = [t for t in tree.find_all(exp.Table) if SOURCE in t.meta]
        for table in bound:
            self.columns(table)  # a table its source could not open fails here, named
        native = {".".join(p.name for p in t.parts) for t in bound
                  if self.capabilities(t.meta[SOURCE]).native}
        placeholders = plan_placeholders(tree)
        vectors = vector_parameters(tree, self._array_column_types(bound))
        values = select_params(placeholders, params, vectors)
        described, macros, embedders = describe_sql(sql, tree)
        array_widths.check_models(tree)  # two models' vectors, whatever their widths
        for embedder in embedders:
            self.session.add_embedder(embedder)
        if described == renamed != written and isinstance(params, list | tuple):
            # DuckDB names an output after the text as written (``(x + $1)``, not ``$__p1``)
            typed = values or {}  # query vectors typed as their columns, by position
            described, values = written, [typed.get(f"{POSITIONAL}{i + 1}", value)
                                          for i, value in enumerate(params)]
        try:
            outputs = self.session.describe(described, values, native, macros)
        except PlanError as exc:
            raise array_widths.explained(exc, tree, self._array_column_types(bound)) from None
        rewritten, notes = self._rewrite(tree, sql)
        _name_outputs(rewritten, [name for name, _ in outputs])
        blob_columns = _blob_outputs(rewritten, self)
        cut = extract_fragments(rewritten, catalog=self,
                                is_native=lambda s: self.capabilities(s).native)
        return Plan(tuple(cut.fragments), cut.residual, cut.local_sql,
                    tuple(n for n, _ in outputs), tuple(t for _, t in outputs), placeholders,
                    cut.residual_parameters, cut.local_parameters, tuple(notes),
                    blob_columns, vectors)

    def _schema_named(self, name: str) -> pa.Schema:
        """The schema of a table as a query names it (catalog name or source.table)."""
        table = bind_tables(exp.select("*").from_(exp.to_table(name, dialect=DIALECT)),
                            self.index).find(exp.Table)
        return self.table_schema(table)

    def _array_column_types(self, tables: list[exp.Table]):
        """``column -> FLOAT[n]`` for the array columns of a query's tables: by table alias,
        else (a CTE's or derived table's column) by a name only one table's array column has."""
        by_alias: dict[str, dict[str, str]] = {}
        for table in tables:
            types = {f.name: array_type(f.type) for f in self.table_schema(table)}
            by_alias[table.alias_or_name] = {n: t for n, t in types.items() if t}

        def column_type(column: exp.Column) -> str | None:
            if column.table in by_alias:
                return by_alias[column.table].get(column.name)
            found = {types[column.name] for types in by_alias.values() if column.name in types}
            return found.pop() if len(found) == 1 else None

        return column_type

    def parse_checked(self, sql: str) -> exp.Expr:
        """Parse and run the sandbox check."""
        check_statement_keyword(sql)
        statements = parse_statements(sql)
        for statement in statements:
            check_sandbox(statement)
        return parse(sql) if len(statements) > 1 else statements[0]

    def _rewrite(self, tree: exp.Expr, sql: str) -> tuple[exp.Expr, list[str]]:
        """Qualify columns, then apply the rules; without qualification only isolate tables."""
        pristine = tree.copy()  # keeps each embedding call's resolved embedder (meta)
        try:
            qualified = qualify(tree, schema=self._schema_for(tree), dialect=DIALECT,
                                identify=False, validate_qualify_columns=True)
            _check_columns_named(qualified)
            return apply_rules(qualified, catalog=self, rules=RULES), []
        except (OptimizeError, SqlglotError, KeyError, ValueError) as exc:
            logger.debug("qualification failed, planning without pushdown: %s", exc)
            note = f"columns could not be resolved by the planner ({exc}); scans are not narrowed"
            fresh = pristine
            for rule in (bind_blob_sources, bind_embedders, isolate_tables):
                fresh = rule(fresh, catalog=self)
            return fresh, [note]

    def _schema_for(self, tree: exp.Expr) -> MappingSchema:
        mapping: dict[str, dict] = {}
        for table in tree.find_all(exp.Table):
            if SOURCE in table.meta:
                columns = {_schema_key(c): "UNKNOWN" for c in self.columns(table)}
                catalog, db = mapping.setdefault(_schema_key(table.catalog), {}), _schema_key(table.db)
                catalog.setdefault(db, {})[_schema_key(table.name)] = columns
        return MappingSchema(mapping, dialect=DIALECT)


def _schema_key(name: str) -> str:
    """A name as sqlglot's MappingSchema reads it (it parses keys as SQL): plain names as they
    are (case-insensitive, as DuckDB's), any other (``c;d``, ``a"b``, ``e.f``) quoted."""
    return name if _PLAIN_NAME.fullmatch(name) else exp.to_identifier(name, quoted=True).sql(DIALECT)


def _check_columns_named(tree: exp.Expr) -> None:
    """Raise when columns are chosen by pattern or position (``COLUMNS('x.*')``, ``#1``, ``* LIKE``):
    the planner cannot tell which columns such a query reads, so it must not narrow scans."""
    for node in tree.find_all(exp.Columns, exp.PositionalColumn, exp.Star):
        if isinstance(node, exp.Star) and isinstance(node.parent, exp.Count | exp.Column):
            continue
        raise OptimizeError(f"{node.sql(DIALECT)} selects columns by pattern or position")


def build_index(catalog: Catalog, session: Session) -> TableIndex:
    """Catalog names, then every table of each SQL source as source[.schema].table."""
    index = TableIndex()
    for name, spec in catalog.tables.items():
        connector = session.connectors.get(spec.source)
        if connector is None:  # files sources become listing tables with the blob functions
            continue
        default = connector.capabilities.default_schema
        if spec.table and connector.capabilities.dialect:
            ref = _table_in_source(spec.table, default)
        else:
            ref = TableRef(default, name)
        index.add_catalog_table(name, BoundTable(spec.source, ref))
    for source, connector in session.connectors.items():
        if connector.capabilities.dialect:
            for ref in connector.tables():
                index.add_source_table(BoundTable(source, ref), connector.capabilities.default_schema)
    return index


def _table_in_source(name: str, default_schema: str) -> TableRef:
    """A catalog's ``table:`` setting (``schema.table``, quoted parts allowed: ``"a.b"``)."""
    try:
        table = exp.to_table(name, dialect=DIALECT)
    except SqlglotError:
        table = None
    if table is None or not table.name:
        schema, _, plain = name.rpartition(".")
        return TableRef(schema or default_schema, plain)
    return TableRef(table.db or default_schema, table.name)


def relation_name(bound: BoundTable) -> str:
    """The quoted three-part name a bound table has in the executor's DuckDB."""
    return ".".join(exp.to_identifier(p, quoted=True).sql(DIALECT)
                    for p in (bound.source, bound.ref.schema, bound.ref.name))


def _name_outputs(tree: exp.Expr, names: list[str]) -> None:
    """Give the top-level projections DuckDB's own output names for the original query."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select) or len(select.expressions) != len(names):
        return
    renamed = {}
    for projection, name in zip(select.expressions, names, strict=True):
        if projection.alias_or_name != name:
            renamed[projection.alias_or_name] = name
            target = projection.this if isinstance(projection, exp.Alias) else projection
            projection.replace(exp.alias_(target.copy(), exp.to_identifier(name)))
    for holder in (tree, select):
        order = holder.args.get("order")
        for column in order.find_all(exp.Column) if order else []:
            if not column.table and column.name in renamed:
                column.set("this", exp.to_identifier(renamed[column.name]))


def _blob_outputs(tree: exp.Expr, catalog: Planner) -> tuple[tuple[str, str], ...]:
    """(output name, files source) for each top-level projection that is a plain blob column."""
    if not isinstance(tree, exp.Select):
        return ()
    found = []
    for projection in tree.expressions:
        column = projection.unalias()
        source = blob_source(column, catalog) if isinstance(column, exp.Column) else None
        if source:
            found.append((projection.alias_or_name, source))
    return tuple(found)
