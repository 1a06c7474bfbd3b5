"""Narrow each scan to the columns the rest of the query reads.

A scan keeps a column when any column reference outside it, in its SELECT or in a subquery of
that SELECT, names the scan's alias and that column. A scan that no column is read from (as in
``count(*)``) keeps one constant, so the source sends rows and no values.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.rules._shape import ROW_MARKER, RuleCatalog, scan_table


def pushdown_projections(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Drop the columns of every scan that nothing outside it reads."""
    for subquery in list(expression.find_all(exp.Subquery)):
        if scan_table(subquery) is None or not isinstance(subquery.parent, exp.From | exp.Join):
            continue
        outer = subquery.find_ancestor(exp.Select)
        if outer is None:
            continue
        needed = _needed_columns(outer, subquery)
        if needed is not None:
            _narrow(subquery.this, needed)
    return expression


def _needed_columns(outer: exp.Select, scan: exp.Subquery) -> set[str] | None:
    """Names the outer query reads from the scan; None means all of them (``alias.*``)."""
    alias, needed = scan.alias, set()
    for node in outer.walk(prune=lambda n: n is scan):
        if isinstance(node, exp.Column) and node.table == alias:
            if isinstance(node.this, exp.Star):
                return None
            needed.add(node.name)
        elif isinstance(node, exp.TableColumn) and node.name == alias:
            return None  # the whole row as a struct value: SELECT f FROM frames f
    return needed


def _narrow(select: exp.Select, needed: set[str]) -> None:
    kept = [p for p in select.expressions if p.alias_or_name in needed]
    if not kept:
        kept = [exp.alias_(exp.true(), ROW_MARKER)]
    select.set("expressions", kept)
