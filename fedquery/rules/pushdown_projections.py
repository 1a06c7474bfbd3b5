"""Narrow every derived table, CTE and scan to the columns the rest of the query reads.

sqlglot's ``pushdown_projections`` does the work on the ``Scope`` tree: starting from the
statement's outputs, a projection of a derived table or CTE stays when a scope selecting from it
reads it (in any clause, in a correlated subquery through that subquery's external columns, as a
whole row ``f`` or ``to_json(f)``), over every reference, so a CTE read twice keeps both readers'
columns; outer scopes are pruned first, so a scan under a CTE keeps what survives above it. What
decides rows or positions keeps all its columns: ``SELECT DISTINCT``, ``UNION`` (not ``ALL``),
``INTERSECT``/``EXCEPT``, an IN subquery; ``UNION ALL`` branches are narrowed alike, position by
position. A SELECT with a star left unexpanded (``u.*`` of an UNNEST), or ordered BY ALL, keeps
its projections, and what they read. An EXISTS subquery selects one constant. A scan that no
column is read from (as in ``count(*)``) keeps one constant, ``TRUE AS __row``, so the source
sends rows and no values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.pushdown_projections import projection_reachability, prune_projections

from fedquery.rules._shape import ROW_MARKER, RuleCatalog, scan_table

HIDDEN_STAR = "__fq_star"  # a star projection is named so while sqlglot analyses the query


def pushdown_projections(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Drop the projections of every derived table, CTE and scan that nothing outside reads."""
    for exists in expression.find_all(exp.Exists):
        _select_nothing(exists.this)
    scans = [s.this for s in expression.find_all(exp.Subquery) if scan_table(s) is not None]
    with _as_sqlglot_expects(expression), contextlib.suppress(OptimizeError):
        # OptimizeError: a UNION of a star and columns, whose positions are unknown
        prune_projections(projection_reachability(expression, whole_query=True), root=0)
    for select in scans:
        if [p.sql() for p in select.expressions] == ["1 AS _"]:  # sqlglot's placeholder
            select.set("expressions", [exp.alias_(exp.true(), ROW_MARKER)])
    return expression


def _select_nothing(query: exp.Expr) -> None:
    """An EXISTS subquery's projections decide nothing (only whether a row exists): one constant
    instead (``EXISTS (SELECT * FROM t WHERE ...)`` reads only what its WHERE reads). Not where a
    projection can make or drop rows: an aggregate (one row even from none), a window, DISTINCT,
    grouping, HAVING, QUALIFY or ORDER BY (which may name a projection)."""
    if not isinstance(query, exp.Select) or any(
            query.args.get(k) for k in ("distinct", "group", "having", "qualify", "order")):
        return
    if any(p.find(exp.AggFunc, exp.Window) for p in query.expressions):
        return
    if len(query.expressions) == 1 and isinstance(query.expressions[0].unalias(), exp.Literal):
        return  # already one constant (``SELECT 1``)
    query.set("expressions", [exp.Literal.number(1)])


@contextlib.contextmanager
def _as_sqlglot_expects(expression: exp.Expr) -> Iterator[None]:
    """While sqlglot analyses the query, a query it would misjudge is marked DISTINCT (it keeps all
    its projections, and what they read): one with a star (whose names are unknown) or ordered by
    ``ALL`` (DuckDB's: every projection is a sort key); ``t.*`` becomes ``t`` (the whole row, so
    t keeps all), a bare ``*`` gets a name (a star in a scope keeps every source's columns); a
    SEMI or ANTI join is inner (sqlglot keeps every column of its right side, though only its ON
    clause reads them). Each is put back after."""
    undo = []
    for join in expression.find_all(exp.Join):
        if join.is_semi_or_anti_join:
            undo.append((join, "kind", join.args["kind"]))
            join.set("kind", None)
    for query in list(expression.find_all(exp.Select, exp.SetOperation)):
        starred = isinstance(query, exp.Select) and any(_stars(p) for p in query.expressions)
        if query.args.get("distinct") or not (starred or _ordered_by_all(query)):
            continue
        undo.append((query, "distinct", query.args.get("distinct")))
        query.set("distinct", exp.Distinct() if isinstance(query, exp.Select) else True)
        for star in [s for p in query.expressions for s in _stars(p)] if starred else []:
            if isinstance(star.parent, exp.Column) and star.parent.table:
                undo.append((star.parent, None, star.parent.replace(exp.TableColumn(
                    this=exp.to_identifier(star.parent.table)))))
        for projection in list(query.expressions) if starred else []:
            if projection.is_star:
                undo.append((projection, None, projection.replace(
                    exp.alias_(projection.copy(), HIDDEN_STAR))))
    try:
        yield
    finally:
        for node, arg, value in reversed(undo):
            if arg is None:
                value.replace(node)  # the stand-in ``value`` gives its place back to ``node``
            else:
                node.set(arg, value)


def _stars(projection: exp.Expr) -> list[exp.Star]:
    """Stars outside an aggregate (``count(*)``): columns of unknown names."""
    return [s for s in projection.find_all(exp.Star) if not isinstance(s.parent, exp.AggFunc)]


def _ordered_by_all(query: exp.Query) -> bool:
    order = query.args.get("order")
    return order is not None and any(isinstance(o.this, exp.Var) and o.this.name.upper() == "ALL"
                                     for o in order.expressions)
