"""Shapes the rules recognise in a bound, qualified tree, and what rules ask of the catalog.

A *scan* is a derived table over exactly one source table: ``(SELECT a.x, a.y FROM s.d.t AS a
[WHERE ...] [ORDER BY ...] [LIMIT n]) AS a``: same alias inside and out, columns under their own
names, nothing read from outside, so a predicate on the derived table holds inside it as written
and a plan can send it as a scan request. A *subtree* is any query whose tables all live
in one source that runs SQL (joins, aggregates), with no reference to an outer query.
"""

from __future__ import annotations

from typing import Protocol

from sqlglot import exp

from fedquery.bind import SOURCE
from fedquery.connectors.base import Capabilities
from fedquery.rules._portable import is_executor_function, portable

ROW_MARKER = "__row"  # the constant a scan keeps when only its row count is read
NONDETERMINISTIC = {"random", "uuid", "gen_random_uuid", "setseed", "nextval", "now",
                    "current_timestamp", "get_current_timestamp"}


class RuleCatalog(Protocol):
    """What rewrite rules need to know about sources and tables."""

    def capabilities(self, source: str) -> Capabilities: ...

    def columns(self, table: exp.Table) -> list[str]: ...

    def estimate_rows(self, table: exp.Table) -> int | None: ...

    def estimate_query(self, source: str, sql: str) -> int | None: ...

    def blob_source(self, table: exp.Table, column: str) -> str | None: ...


def source_of(table: exp.Expr) -> str | None:
    """The source of a bound table node, else None (CTE refs, table functions)."""
    return table.meta.get(SOURCE) if isinstance(table, exp.Table) else None


def scan_table(node: exp.Expr) -> exp.Table | None:
    """The one source table of a scan-shaped derived table, else None."""
    if not isinstance(node, exp.Subquery) or not isinstance(node.this, exp.Select):
        return None
    select = node.this
    table = select.args.get("from_") and select.args["from_"].this
    if source_of(table) is None or not _is_plain_select(select):
        return None
    alias = table.alias_or_name
    if node.alias not in ("", alias) or any(c.table != alias for c in select.find_all(exp.Column)):
        return None
    return table


def _is_plain_select(select: exp.Select) -> bool:
    """No join, grouping, DISTINCT, QUALIFY, CTE, OFFSET or subquery; an integer LIMIT; plain
    columns."""
    if any(select.args.get(k) for k in ("joins", "group", "having", "distinct", "qualify", "with_",
                                        "offset")):
        return False
    limit = select.args.get("limit")
    if limit is not None and not (isinstance(limit.expression, exp.Literal) and limit.expression.is_int):
        return False
    if any(node.find(exp.Query) for node in (select.args.get("where"), select.args.get("order")) if node):
        return False  # a subquery has sources of its own: a source cannot take it as a scan filter
    return all(_is_plain_projection(p) for p in select.expressions)


def _is_plain_projection(projection: exp.Expr) -> bool:
    """A column under its own name, or the constant a row-count scan keeps."""
    if isinstance(projection, exp.Alias):
        value = projection.this
        if isinstance(value, exp.Boolean):
            return projection.alias == ROW_MARKER
        return isinstance(value, exp.Column) and value.name == projection.alias
    return isinstance(projection, exp.Column)


def subtree_source(query: exp.Expr, catalog: RuleCatalog) -> str | None:
    """The one SQL-capable source a whole uncorrelated query lives in, else None."""
    if not isinstance(query, exp.Query):
        return None
    ctes = {cte.alias.lower() for cte in query.find_all(exp.CTE)}
    tables = [t for t in query.find_all(exp.Table) if t.db or t.name.lower() not in ctes]
    sources = {source_of(t) for t in tables}
    if len(sources) != 1 or None in sources:
        return None
    source = sources.pop()
    capabilities = catalog.capabilities(source)
    if not capabilities.subtrees or is_correlated(query) or not portable(query, capabilities):
        return None
    if any(is_executor_function(f) for f in query.find_all(exp.Anonymous)):
        return None
    return source


def is_correlated(query: exp.Expr) -> bool:
    """True when a column of the query refers to a table defined outside it."""
    defined = {t.alias_or_name for t in query.find_all(exp.Table)}
    defined |= {s.alias for s in query.find_all(exp.Subquery) if s.alias}
    defined |= {c.alias for c in query.find_all(exp.CTE)}
    return any(c.table and c.table not in defined for c in query.find_all(exp.Column))


def is_deterministic(node: exp.Expr) -> bool:
    """No random, clock or sequence functions anywhere in ``node``."""
    for func in node.find_all(exp.Func):
        name = func.name if isinstance(func, exp.Anonymous) else func.sql_name()
        if isinstance(func, exp.Rand) or name.lower() in NONDETERMINISTIC:
            return False
    return True


def row_count(select: exp.Select) -> int | None:
    """limit + offset of a SELECT when both are integer literals and the LIMIT is a plain row
    count (not ``LIMIT 10%`` nor ``WITH TIES``); else None."""
    limit, offset = select.args.get("limit"), select.args.get("offset")
    if limit is None or (isinstance(limit, exp.Limit) and limit.args.get("limit_options")):
        return None
    total = 0
    for clause in (limit, offset):
        value = clause.expression if clause is not None else exp.Literal.number(0)
        if not (isinstance(value, exp.Literal) and value.is_int):
            return None
        total += int(value.this)
    return total


def conjoin(conditions: list[exp.Expr]) -> exp.Expr:
    """``a AND b AND ...`` of one or more conditions (``exp.and_`` refuses operands that are
    not conditions, as a bare table reference ``WHERE o`` is; DuckDB reports those)."""
    parts = [exp.Paren(this=c) if isinstance(c, exp.Connector) else c for c in conditions]
    if len(parts) == 1:
        return conditions[0]
    joined = parts[0]
    for condition in parts[1:]:
        joined = exp.And(this=joined, expression=condition)
    return joined


def conjuncts(condition: exp.Expr | None) -> list[exp.Expr]:
    """The AND-ed parts of a condition (none for None)."""
    if condition is None:
        return []
    return list(condition.flatten()) if isinstance(condition, exp.And) else [condition]


def referenced_tables(node: exp.Expr) -> set[str] | None:
    """Table aliases a predicate reads; None if it has a subquery or an unqualified column."""
    if node.find(exp.Query, exp.Exists) is not None:
        return None
    tables = set()
    for column in node.find_all(exp.Column):
        if not column.table:
            return None
        tables.add(column.table)
    return tables


def null_supplying(select: exp.Select) -> set[str]:
    """Aliases whose rows an outer join may replace by NULLs."""
    seen = [select.args["from_"].this.alias_or_name]
    nullable: set[str] = set()
    for join in select.args.get("joins") or []:
        alias = join.this.alias_or_name
        if join.side in ("RIGHT", "FULL"):
            nullable.update(seen)
        if join.side in ("LEFT", "FULL"):
            nullable.add(alias)
        seen.append(alias)
    return nullable
