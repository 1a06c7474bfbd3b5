"""Merge the scans of one SQL source that are inner-joined in a SELECT into one fragment.

``FROM (scan drives d) JOIN (scan vehicles v) ON v.id = d.vehicle_id JOIN (scan frames f) ...``
becomes ``FROM (SELECT d.x AS d__x, v.y AS v__y FROM drives AS d JOIN vehicles AS v ON ...)
AS __j0 JOIN (scan frames f) ...``: the warehouse runs its own join. Only SELECTs whose joins
are all inner or cross are merged (their conditions may then move freely between ON and WHERE).
"""

from __future__ import annotations

import itertools

from sqlglot import exp

from fedquery.rules._shape import (
    RuleCatalog,
    conjoin,
    conjuncts,
    portable,
    referenced_tables,
    scan_table,
    source_of,
)
from fedquery.rules.pushdown_projections import ROW_MARKER

JOIN_PREFIX = "__j"


def pushdown_joins(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Merge same-source scans joined by inner joins into one single-source subquery."""
    counter = itertools.count()
    for select in list(expression.find_all(exp.Select)):
        if not _all_inner(select):
            continue
        for group in _groups(select, catalog):
            for members in _not_multiplying(select, group, catalog):
                capabilities = catalog.capabilities(source_of(scan_table(members[0])))
                _merge(select, members, f"{JOIN_PREFIX}{next(counter)}", capabilities)
    return expression


def _not_multiplying(select: exp.Select, group: list[exp.Subquery],
                     catalog: RuleCatalog) -> list[list[exp.Subquery]]:
    """The group, or connected parts of it, whose join the source's planner estimates at no
    more rows than its inputs together: a join that multiplies rows (customers and suppliers
    of a nation: TPC-H 5 sends 12M rows where its inputs hold 160k) is left to DuckDB, which
    joins each side to the rest first. Without estimates the group is merged whole."""
    source, estimate_query = source_of(scan_table(group[0])), catalog.estimate_query
    own = {m.alias: estimate_query(source, m.this.sql("duckdb")) for m in group}
    if None in own.values():
        return [group]

    def joined(members: list[exp.Subquery]) -> int | None:
        merged = _merged_select(members, _conditions_among(select, members))
        return estimate_query(source, merged.sql("duckdb"))

    whole = joined(group)
    if whole is not None and whole <= sum(own[m.alias] for m in group):
        return [group]
    links, parts, left = _links(select), [], sorted(group, key=lambda m: own[m.alias])
    while len(left) > 1:
        chosen, rest = [left[0]], left[1:]
        grown = True
        while grown:
            grown = False
            for member in list(rest):
                if not any({member.alias, c.alias} in links for c in chosen):
                    continue
                estimate = joined(chosen + [member])
                if estimate is not None and estimate <= sum(own[m.alias] for m in chosen + [member]):
                    chosen.append(member)
                    rest.remove(member)
                    grown = True
        if len(chosen) > 1:
            parts.append(sorted(chosen, key=group.index))
        left = rest
    return parts


def _conditions_among(select: exp.Select, members: list[exp.Subquery]) -> list[exp.Expr]:
    """The conjuncts a merge of ``members`` would take inside (read-only)."""
    aliases = {m.alias for m in members}
    found = [c for m in members for c in conjuncts(_where(m.this))]
    ons = [c for m in members if isinstance(m.parent, exp.Join)
           for c in conjuncts(m.parent.args.get("on"))]
    for condition in conjuncts(_where(select)) + ons:
        tables = referenced_tables(condition)
        if tables and tables <= aliases:
            found.append(condition.copy())
    return found


def _all_inner(select: exp.Select) -> bool:
    joins = select.args.get("joins") or []
    return bool(joins) and all(
        not j.side and j.kind in ("", "INNER", "CROSS") and not j.args.get("using")
        and not j.args.get("method") for j in joins)


def _groups(select: exp.Select, catalog: RuleCatalog) -> list[list[exp.Subquery]]:
    """Scans of one source that runs joins, linked to each other by join conditions: each
    group of two or more is one join the source can run (never a cross product of tables
    that are only linked through another source's table)."""
    items = [select.args["from_"]] + list(select.args["joins"])
    by_source: dict[str, list[exp.Subquery]] = {}
    for item in items:
        table = scan_table(item.this)
        if table is None or item.this.this.args.get("limit") or item.this.this.args.get("order"):
            continue
        if catalog.capabilities(source_of(table)).subtrees:
            by_source.setdefault(source_of(table), []).append(item.this)
    links = _links(select)
    return [group for members in by_source.values() for group in _connected(members, links)
            if len(group) > 1]


def _links(select: exp.Select) -> list[set[str]]:
    """Pairs of aliases an equality conjunct of the WHERE or an ON relates. Only an equi-join
    links two tables: one related by ``<>``, ``<`` or an OR alone is nearly a cross product
    (TPC-DS 64's ``cd1.cd_marital_status <> cd2.cd_marital_status``), which the source would
    build in full where DuckDB first joins each side to the rest of the query."""
    conditions = conjuncts(_where(select))
    for join in select.args.get("joins") or []:
        conditions += conjuncts(join.args.get("on"))
    return [tables for c in conditions if isinstance(c, exp.EQ)
            and len(tables := referenced_tables(c) or set()) == 2
            and all(referenced_tables(side) for side in (c.this, c.expression))]


def _connected(members: list[exp.Subquery], links: list[set[str]]) -> list[list[exp.Subquery]]:
    """``members`` split into groups connected through links among themselves."""
    groups: list[list[exp.Subquery]] = []
    for member in members:
        joined = [g for g in groups if any({member.alias, m.alias} in links for m in g)]
        merged = [m for g in joined for m in g] + [member]
        groups = [g for g in groups if g not in joined] + [merged]
    return [sorted(g, key=members.index) for g in groups]


def _merge(select: exp.Select, members: list[exp.Subquery], alias: str,
           capabilities) -> None:
    aliases = {m.alias for m in members}
    if _reads_star(select, aliases) or _names_too_long(members, capabilities):
        return
    inner_where = [c for m in members for c in conjuncts(_where(m.this))]
    moved = _take_conditions(select, aliases, members)
    inner_where += [c for c in moved if (referenced_tables(c) or {""}) <= aliases
                    and portable(c, capabilities)]
    outer = [c for c in moved if c not in inner_where]
    merged = _merged_select(members, inner_where)
    first = members[0]
    for member in members[1:]:
        member.parent.pop()
    first.replace(exp.Subquery(this=merged, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    if outer:
        select.where(conjoin(outer), copy=False)
    _rename_columns(select, aliases, alias)


def _names_too_long(members: list[exp.Subquery], capabilities) -> bool:
    """Whether the source would cut a merged column's name (``t__column``) it sends back."""
    limit = capabilities.max_identifier_length
    return bool(limit) and any(len(f"{m.alias}__{p.alias_or_name}".encode()) > limit
                               for m in members for p in m.this.expressions)


def _reads_star(select: exp.Select, aliases: set[str]) -> bool:
    return any(isinstance(c.this, exp.Star) and c.table in aliases
               for c in select.find_all(exp.Column))


def _where(select: exp.Select) -> exp.Expr | None:
    where = select.args.get("where")
    return where.this if where else None


def _take_conditions(select: exp.Select, aliases: set[str], members: list) -> list[exp.Expr]:
    """Remove the ON conditions of merged joins and the WHERE conjuncts over merged tables."""
    taken = []
    for member in members:
        join = member.parent
        if isinstance(join, exp.Join) and join.args.get("on"):
            taken.extend(conjuncts(join.args["on"]))
            join.set("on", exp.true())
    kept = []
    for condition in conjuncts(_where(select)):
        tables = referenced_tables(condition)
        (taken if tables and tables <= aliases else kept).append(condition)
    select.set("where", exp.Where(this=conjoin(kept)) if kept else None)
    return taken


def _merged_select(members: list[exp.Subquery], where: list[exp.Expr]) -> exp.Select:
    projections = []
    for member in members:
        for p in member.this.expressions:
            name = ROW_MARKER if p.alias_or_name == ROW_MARKER else p.alias_or_name
            value = exp.true() if name == ROW_MARKER else exp.column(name, table=member.alias)
            projections.append(exp.alias_(value, f"{member.alias}__{name}"))
    tables = [scan_table(m).copy() for m in members]
    merged = exp.select(*projections).from_(tables[0])
    for table in tables[1:]:
        merged = merged.join(table, join_type="CROSS")
    return merged.where(conjoin(where)) if where else merged


def _rename_columns(select: exp.Select, aliases: set[str], alias: str) -> None:
    """``d.x`` outside the merged subquery becomes ``__j0.d__x``."""
    merged = next(s for s in select.find_all(exp.Subquery) if s.alias == alias)
    for column in list(select.walk(prune=lambda n: n is merged)):
        if isinstance(column, exp.Column) and column.table in aliases:
            column.replace(exp.column(f"{column.table}__{column.name}", table=alias))
