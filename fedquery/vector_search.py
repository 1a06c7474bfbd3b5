"""``vector_search('table', query_vector, k [, metric := 'cosine'] [, column := 'vec']
[, nprobes := n] [, refine := n] [, exact := true])``.

A convenience table function: the k rows of a vector table nearest to the query vector, with
the table's columns and ``_distance``. It is expanded before planning into the SQL it stands
for, ``(SELECT *, array_cosine_distance(vec, q) AS _distance FROM table ORDER BY _distance
LIMIT k)``, so the planner's top-k rewrite sends it to the vector table as a top-k scan.
Conditions on its output filter those k rows (as for any table function); to filter first, join
the vector table and order by the distance instead. ``nprobes``, ``refine`` and ``exact`` set
how an ANN index of the table is used for this query (``SearchSettings``); they ride on the
table's node to the top-k scan.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from sqlglot import exp

from fedquery.connectors.base import SearchSettings
from fedquery.errors import PlanError
from fedquery.vectors import array_type

METRICS = {"cosine": "array_cosine_distance", "l2": "array_distance",
           "euclidean": "array_distance", "dot": "array_negative_inner_product"}
USAGE = ("vector_search('table', query_vector, k [, metric := 'cosine'|'l2'|'dot'] "
         "[, column := 'name'] [, nprobes := n] [, refine := n] [, exact := true|false])")
DISTANCE = "_distance"
SEARCH_SETTINGS = "search_settings"  # meta on the table node: this query's SearchSettings


def expand_vector_search(tree: exp.Expr, schema_of: Callable[[str], pa.Schema]) -> bool:
    """Replace every ``vector_search(...)`` in FROM by its subquery; True if any was."""
    found = False
    for table in list(tree.find_all(exp.Table)):
        if _is_vector_search(table.this):
            table.replace(_expanded(table, schema_of))
            found = True
    return found


def _is_vector_search(node: exp.Expr) -> bool:
    return isinstance(node, exp.VectorSearch) or (
        isinstance(node, exp.Anonymous) and node.name.lower() == "vector_search")


def _expanded(table: exp.Table, schema_of: Callable[[str], pa.Schema]) -> exp.Subquery:
    positional, named = _arguments(table.this)
    if len(positional) != 3:
        raise PlanError(f"vector_search takes 3 arguments and named options: {USAGE}")
    name, query, k = positional
    if not (isinstance(name, exp.Literal) and name.is_string):
        raise PlanError(f"vector_search: the table must be a string literal: {USAGE}")
    if not (isinstance(k, exp.Literal) and k.is_int and int(k.this) > 0):
        raise PlanError(f"vector_search: k must be a positive integer literal, not {k.sql('duckdb')}")
    metric = _option(named, "metric", "cosine")
    if metric not in METRICS:
        raise PlanError(f"vector_search: unknown metric {metric!r}; one of "
                        f"{', '.join(sorted(METRICS))}")
    target = _table_named(name.name)
    column = _vector_column(name.name, schema_of(target.sql("duckdb")), _option(named, "column", None))
    settings = SearchSettings(_count(named, "nprobes"), _count(named, "refine"), _flag(named, "exact"))
    if settings != SearchSettings():
        target.meta[SEARCH_SETTINGS] = settings
    if named:
        raise PlanError(f"vector_search: unknown option {sorted(named)[0]!r}: {USAGE}")
    distance = exp.Anonymous(this=METRICS[metric], expressions=[exp.column(column, quoted=True),
                                                               query.copy()])
    select = (exp.select(exp.Star(), exp.alias_(distance, DISTANCE))
              .from_(target)
              .order_by(exp.Ordered(this=exp.column(DISTANCE), nulls_first=False))
              .limit(int(k.this)))
    alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier("vector_search"))
    return exp.Subquery(this=select, alias=alias.copy())


def _table_named(name: str) -> exp.Table:
    """The table a name string stands for, built from identifiers (``table``,
    ``source.table``, ``source.schema.table``): whatever the string holds, quotes and
    semicolons included, it is a name and never parsed as SQL."""
    parts = name.split(".")
    if not name.strip() or len(parts) > 3 or not all(p.strip() for p in parts):
        raise PlanError(f"vector_search: {name!r} is not a table name (table, source.table or "
                        f"source.schema.table): {USAGE}")
    identifiers = [exp.to_identifier(p, quoted=True) for p in parts]
    return exp.Table(this=identifiers[-1], db=identifiers[-2] if len(parts) > 1 else None,
                     catalog=identifiers[-3] if len(parts) > 2 else None)


def _arguments(func: exp.Expr) -> tuple[list[exp.Expr], dict[str, exp.Expr]]:
    """Positional arguments in order, and named ones (``name := value``) by lower-case name."""
    values = list(func.expressions) if isinstance(func, exp.Anonymous) else [
        v for v in (func.args.get(k) for k in func.arg_types) if v is not None]
    positional, named = [], {}
    for value in values:
        named_form = isinstance(value, exp.PropertyEQ | exp.Kwarg | exp.EQ)
        if named_form and isinstance(value.this, exp.Identifier | exp.Column):
            named[value.this.name.lower()] = value.expression
        else:
            positional.append(value)
    return positional, named


def _option(named: dict[str, exp.Expr], key: str, default: str | None) -> str | None:
    value = named.pop(key, None)
    if value is None:
        return default
    if not (isinstance(value, exp.Literal) and value.is_string):
        raise PlanError(f"vector_search: {key} must be a string literal, not {value.sql('duckdb')}")
    return value.name.lower() if key == "metric" else value.name


def _count(named: dict[str, exp.Expr], key: str) -> int | None:
    value = named.pop(key, None)
    if value is None:
        return None
    if not (isinstance(value, exp.Literal) and value.is_int and 1 <= int(value.this) <= 100_000):
        raise PlanError(f"vector_search: {key} must be an integer literal from 1 to 100000, not "
                        f"{value.sql('duckdb')}")
    return int(value.this)


def _flag(named: dict[str, exp.Expr], key: str) -> bool | None:
    value = named.pop(key, None)
    if value is None:
        return None
    if not isinstance(value, exp.Boolean):
        raise PlanError(f"vector_search: {key} must be true or false, not {value.sql('duckdb')}")
    return bool(value.this)


def _vector_column(table: str, schema: pa.Schema, wanted: str | None) -> str:
    arrays = [f.name for f in schema if array_type(f.type)]
    if wanted is not None:
        if wanted not in arrays:
            raise PlanError(f"vector_search: {table!r} has no vector column {wanted!r} "
                            f"(vector columns: {', '.join(arrays) or 'none'})")
        return wanted
    if len(arrays) != 1:
        raise PlanError(f"vector_search: {table!r} has {len(arrays) or 'no'} vector columns"
                        f"{' (' + ', '.join(arrays) + ')' if arrays else ''}; name one with "
                        "column := 'name'")
    return arrays[0]
