"""Entities in SQL: ``FROM drive`` and ``FROM timeline('drive', 'frames', ...)``.

Both are expanded, before planning, into the SQL they stand for over the catalog's tables, so
the planner pushes their filters and joins like any other query's.

``FROM drive`` is one row per row of the root table with its columns and, for each member the
query reads (``d.frames``, or ``*``), a ``LIST(STRUCT(...))`` of that member's rows ordered by
its time column: the root LEFT JOINed to the member grouped by its key. A member no column
reads is not joined at all.

``FROM timeline('drive', 'frames' [, members := ['lidar']] [, tolerance := INTERVAL ...])`` is
one row per row of the base member (frames) joined to its root row, with the root's columns,
the base member's columns (those the root does not already have) and, for each other member,
its latest row at or before the base row's time (``ASOF LEFT JOIN``), within the tolerance,
as columns ``<member>_<column>``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from sqlglot import exp

from fedquery.catalog import Catalog, EntitySpec, MemberSpec
from fedquery.errors import PlanError
from fedquery.rules._shape import conjuncts, null_supplying

TIMELINE_USAGE = ("timeline('entity', 'base member' [, members := ['member', ...]] "
                  "[, tolerance := INTERVAL '...'])")


def expand_entities(tree: exp.Expr, catalog: Catalog, schema_of: Callable[[str], pa.Schema]) -> bool:
    """Replace ``FROM <entity>`` and ``FROM timeline(...)`` by their subqueries; True if any.
    (An entity's name is no table's: the catalog refuses that.)"""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    found = False
    for table in list(tree.find_all(exp.Table)):
        if isinstance(table.this, exp.Anonymous) and table.this.name.lower() == "timeline":
            expanded = _timeline(table, catalog, schema_of)
            _copy_timeline_filters(table, expanded)
            table.replace(expanded)
            found = True
            continue
        entity = catalog.entity(table.name) if isinstance(table.this, exp.Identifier) else None
        if entity is not None and not table.db and table.name.lower() not in ctes:
            root_columns = schema_of(entity.table).names
            members = _read_members(table, entity)
            _check_member_names(entity, members, root_columns)
            filters = _own_filters(table, {c.lower() for c in root_columns})
            table.replace(_entity(table, entity, members, schema_of, filters))
            found = True
    return found


# ------------------------------------------------------------------ FROM <entity>


def _read_members(table: exp.Table, entity: EntitySpec) -> list[MemberSpec]:
    """The members a query reads from the entity: by column name (qualified by the entity's
    alias, or not), or all of them under ``*`` / ``alias.*``."""
    alias = table.alias_or_name.lower()
    select = table.find_ancestor(exp.Select)
    scope = select if select is not None else table.root()
    names = {m.lower(): m for m in entity.members}
    read: set[str] = set()
    for node in scope.walk():
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            owner = node.parent.table if isinstance(node.parent, exp.Column) else ""
            if owner in ("", alias):
                return list(entity.members.values())
        if isinstance(node, exp.Columns) or (  # COLUMNS(...), or the row itself (to_json(d))
                isinstance(node, exp.Column) and not node.table and node.name.lower() == alias):
            return list(entity.members.values())
        if isinstance(node, exp.Column) and node.name.lower() in names:
            if node.table.lower() in ("", alias):
                read.add(names[node.name.lower()])
            elif isinstance(node.this, exp.Star) and node.table.lower() == alias:
                return list(entity.members.values())
    return [entity.members[m] for m in entity.members if m in read]


def _check_member_names(entity: EntitySpec, members: list[MemberSpec], root_columns: list[str]) -> None:
    """A member read under the name of a root column would be ambiguous: refuse it."""
    roots = {c.lower() for c in root_columns}
    for member in members:
        if member.name.lower() in roots:
            raise PlanError(f"entity {entity.name!r}: member {member.name!r} has the name of a column "
                            f"of {entity.table!r}, so {member.name!r} is ambiguous; rename the "
                            "member in the catalog")


def _entity(table: exp.Table, entity: EntitySpec, members: list[MemberSpec],
            schema_of: Callable[[str], pa.Schema], filters: list[exp.Expr]) -> exp.Subquery:
    """The root LEFT JOIN each member's lists. ``filters`` (conditions of the enclosing WHERE
    on root columns alone) are also applied on the root, and each member's rows are joined to
    the filtered roots before they are listed, so a member's source can be asked for the rows
    of those roots only (by dynamic filtering, or DuckDB's join filters)."""
    root = _table(entity.table, "__root")
    query = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("__root"))).from_(root)
    if filters:
        query = query.where(exp.and_(*(_renamed(c, "__root") for c in filters)), copy=False)
    for i, member in enumerate(members):
        alias = f"__m{i}"
        rows = exp.Coalesce(this=exp.column(member.name, table=alias, quoted=True),
                            expressions=[exp.Array(expressions=[])])
        query = query.select(exp.alias_(rows, member.name, quoted=True), copy=False)
        on = exp.column("__key", table=alias).eq(exp.column(member.root_key, table="__root"))
        lists = _member_lists(member, schema_of(member.table))
        if filters:
            lists = _of_roots(lists, entity, member, filters)
        query = query.join(lists.subquery(alias), on=on, join_type="left", copy=False)
    alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(entity.name))
    return exp.Subquery(this=query, alias=alias.copy())


def _of_roots(lists: exp.Select, entity: EntitySpec, member: MemberSpec,
              filters: list[exp.Expr]) -> exp.Select:
    """The member's lists over its rows whose key is a filtered root's: a join with the root
    (its key is unique) or with the root's distinct values of the linking column."""
    condition = exp.and_(*(_renamed(c, "__r") for c in filters))
    link = exp.column(member.root_key, table="__r", quoted=True)
    if member.root_key == entity.key:
        roots: exp.Expr = _table(entity.table, "__r")
        lists = lists.where(condition, copy=False)
    else:
        roots = (exp.select(link.copy()).distinct().from_(_table(entity.table, "__r"))
                 .where(condition).subquery("__r"))
    on = exp.column(member.key, table="__m", quoted=True).eq(link)
    return lists.join(roots, on=on, copy=False)


def _own_filters(table: exp.Table, columns: set[str]) -> list[exp.Expr]:
    """The enclosing WHERE's conjuncts that read only ``columns`` of ``table`` (lower-case
    names), when ``table`` is not the NULL-extended side of a join."""
    select = table.find_ancestor(exp.Select)
    if select is None or not select.args.get("where") or not select.args.get("from_"):
        return []
    alias = table.alias_or_name
    if alias in null_supplying(select):
        return []
    found = []
    for condition in conjuncts(select.args["where"].this):
        read = list(condition.find_all(exp.Column))
        if read and condition.find(exp.Query) is None and not _has_positional(condition) and all(
                c.table == alias and c.name.lower() in columns for c in read):
            found.append(condition)
    return found


def _has_positional(node: exp.Expr) -> bool:
    """A ``?`` parameter: copied, it would stand for the next value as well."""
    return any(p.this is None for p in node.find_all(exp.Placeholder))


def _renamed(condition: exp.Expr, alias: str, names: dict[str, str] | None = None) -> exp.Expr:
    """A copy of a condition on the expansion's output, on ``alias``'s columns instead."""
    inner = condition.copy()
    for column in inner.find_all(exp.Column):
        column.set("table", exp.to_identifier(alias))
        if names and column.name.lower() in names:
            column.set("this", exp.to_identifier(names[column.name.lower()], quoted=True))
    return inner


def _member_lists(member: MemberSpec, schema: pa.Schema) -> exp.Select:
    """``SELECT key AS __key, list(struct_pack(...) ORDER BY time) AS <member> ... GROUP BY key``."""
    _check_columns(member, schema)
    fields = [exp.PropertyEQ(this=exp.to_identifier(f.name, quoted=True),
                             expression=exp.column(f.name, table="__m", quoted=True))
              for f in schema]
    row: exp.Expr = exp.Struct(expressions=fields)
    if member.time:
        row = exp.Order(this=row, expressions=[exp.Ordered(
            this=exp.column(member.time, table="__m", quoted=True), nulls_first=False)])
    lists = exp.alias_(exp.ArrayAgg(this=row), member.name, quoted=True)
    key = exp.column(member.key, table="__m", quoted=True)
    return (exp.select(exp.alias_(key.copy(), "__key"), lists)
            .from_(_table(member.table, "__m"))
            .where(key.copy().is_(exp.null()).not_()).group_by(key.copy()))


def _table(name: str, alias: str) -> exp.Table:
    table = exp.to_table(name, dialect="duckdb")
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return table


def _check_columns(member: MemberSpec, schema: pa.Schema) -> None:
    for column in (member.key, member.time):
        if column and column not in schema.names:
            raise PlanError(f"entity member {member.name!r}: table {member.table!r} has no column "
                            f"{column!r} (columns: {', '.join(schema.names)})")


# ------------------------------------------------------------------ FROM timeline(...)


def _timeline(table: exp.Table, catalog: Catalog,
              schema_of: Callable[[str], pa.Schema]) -> exp.Subquery:
    entity, base, members, tolerance = _timeline_arguments(table.this, catalog)
    root_schema, base_schema = schema_of(entity.table), schema_of(base.table)
    _check_columns(base, base_schema)
    if entity.key not in root_schema.names or base.root_key not in root_schema.names:
        raise PlanError(f"entity {entity.name!r}: table {entity.table!r} has no column "
                        f"{base.root_key!r}")
    if base.root_key != entity.key:
        raise PlanError(f"timeline: base member {base.name!r} links to {entity.table!r} by "
                        f"{base.root_key!r}, not by its key {entity.key!r}, so a row of it may "
                        "have several roots")
    if tolerance is not None and _has_positional(tolerance):
        raise PlanError("timeline: give the tolerance as a literal or a $name parameter, not ?")
    base_names = _base_output_names(base, base_schema, root_schema)
    query = exp.select(*(exp.column(n, table="__root", quoted=True) for n in root_schema.names))
    query = query.select(*(exp.alias_(exp.column(n, table="__base", quoted=True), out, quoted=True)
                           for n, out in base_names.items()), copy=False)
    query = query.from_(_table(base.table, "__base"))
    query = query.join(_table(entity.table, "__root"),
                       on=exp.column(base.key, table="__base", quoted=True).eq(
                           exp.column(base.root_key, table="__root", quoted=True)), copy=False)
    base_time = exp.column(base.time, table="__base", quoted=True)
    for i, member in enumerate(members):
        query = _asof_member(query, member, schema_of(member.table), f"__m{i}", base_time,
                             tolerance)
    alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier("timeline"))
    expanded = exp.Subquery(this=query, alias=alias.copy())
    expanded.meta["timeline"] = {
        "root": {n.lower(): n for n in root_schema.names},
        "base": {out.lower(): n for n, out in base_names.items()},
        "time": base_names[base.time], "tolerance": tolerance,
        "members": [(f"__m{i}", m.time) for i, m in enumerate(members)]}
    return expanded


def _base_output_names(base: MemberSpec, schema: pa.Schema, root: pa.Schema) -> dict[str, str]:
    """The base member's columns and their output names: as they are, but the link key is left
    out (the root has it) and a name the root also has becomes ``<member>_<name>``."""
    roots = {n.lower() for n in root.names}
    names = {}
    for name in schema.names:
        if name == base.key and base.key.lower() == base.root_key.lower():
            continue
        names[name] = f"{base.name}_{name}" if name.lower() in roots else name
    return names


def _copy_timeline_filters(table: exp.Table, expanded: exp.Subquery) -> None:
    """Root-column and base-column conditions of the enclosing WHERE, also inside on the root
    and base tables; a range on the base time also bounds each member's time (from the lower
    bound less the tolerance; without a tolerance only the upper bound)."""
    layout: dict = expanded.meta.pop("timeline")
    query = expanded.this
    for owner, columns in (("__root", layout["root"]), ("__base", layout["base"])):
        filters = _own_filters(table, set(columns))
        if filters:
            query.where(exp.and_(*(_renamed(c, owner, columns) for c in filters)), copy=False)
    time = layout["time"].lower()
    for condition in _own_filters(table, {time}):
        for alias, member_time in layout["members"]:
            bound = _member_bound(condition, alias, member_time, layout["tolerance"])
            if bound is not None:  # the member's rows, filtered: a derived table of it
                join = next(j for j in query.args["joins"] if j.this.alias_or_name == alias)
                member = join.this
                if isinstance(member, exp.Table):
                    member = exp.select("*").from_(member.copy()).subquery(alias)
                    join.set("this", member)
                member.this.where(bound, copy=False)


def _member_bound(condition: exp.Expr, alias: str, time: str, tolerance: exp.Expr | None
                  ) -> exp.Expr | None:
    """A base-time range as a range on a member's time: ``< / <= / BETWEEN`` upper bounds as
    they are; ``> / >=`` lower bounds less the tolerance (none without one)."""
    column = exp.column(time, table=alias, quoted=True)
    if isinstance(condition, exp.Between):
        low, high = condition.args["low"], condition.args["high"]
        if any(isinstance(b, exp.Literal) and b.is_string for b in (low, high)):
            return None
        upper = column.copy() <= high.copy()
        lower = None if tolerance is None else column.copy() >= (low.copy() - tolerance.copy())
        return upper if lower is None else exp.and_(lower, upper)
    if not isinstance(condition, exp.LT | exp.LTE | exp.GT | exp.GTE):
        return None
    left, right = condition.this, condition.expression
    if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
        flipped = {exp.LT: exp.GT, exp.LTE: exp.GTE, exp.GT: exp.LT, exp.GTE: exp.LTE}
        condition = flipped[type(condition)](this=right, expression=left)
        left, right = right, left
    if not isinstance(left, exp.Column) or right.find(exp.Column) is not None:
        return None
    if isinstance(right, exp.Literal) and right.is_string:
        return None  # a text bound is cast by DuckDB against the base column only
    if isinstance(condition, exp.LT | exp.LTE):
        return type(condition)(this=column, expression=right.copy())
    if tolerance is None:
        return None
    return exp.GTE(this=column, expression=right.copy() - tolerance.copy())


def _asof_member(query: exp.Select, member: MemberSpec, schema: pa.Schema, alias: str,
                 base_time: exp.Column, tolerance: exp.Expr | None) -> exp.Select:
    """The member's latest row at or before the base row's time (within ``tolerance``)."""
    _check_columns(member, schema)
    time = exp.column(member.time, table=alias, quoted=True)
    on = exp.and_(exp.column(member.key, table=alias, quoted=True).eq(
        exp.column(member.root_key, table="__root", quoted=True)), time.copy() <= base_time.copy())
    query = query.join(_table(member.table, alias), on=on,
                       join_type="asof left", copy=False)
    within = None if tolerance is None else (base_time.copy() - time.copy()) <= tolerance.copy()
    for field in schema:
        if field.name == member.key:
            continue
        value: exp.Expr = exp.column(field.name, table=alias, quoted=True)
        if within is not None:
            value = exp.Case().when(within.copy(), value)
        query = query.select(exp.alias_(value, f"{member.name}_{field.name}", quoted=True), copy=False)
    return query


def _timeline_arguments(func: exp.Anonymous, catalog: Catalog):
    positional = [a for a in func.expressions if not isinstance(a, exp.PropertyEQ | exp.Kwarg)]
    named = {a.this.name.lower(): a.expression for a in func.expressions
             if isinstance(a, exp.PropertyEQ | exp.Kwarg)}
    if len(positional) != 2 or not all(isinstance(a, exp.Literal) and a.is_string for a in positional):
        raise PlanError(f"timeline takes two names and options: {TIMELINE_USAGE}")
    name, base_name = (a.name for a in positional)
    entity = catalog.entity(name)
    if entity is None:
        raise PlanError(f"timeline: unknown entity {name!r}; entities: "
                        f"{', '.join(sorted(catalog.entities)) or 'none'}")
    base = _member(entity, base_name)
    if base.time is None:
        raise PlanError(f"timeline: member {base.name!r} of {entity.name!r} has no time column")
    chosen = named.pop("members", None)
    if chosen is None:
        others = [m for m in entity.members.values() if m.name != base.name and m.time]
    elif isinstance(chosen, exp.Array) and all(
            isinstance(e, exp.Literal) and e.is_string for e in chosen.expressions):
        others = [_member(entity, e.name) for e in chosen.expressions]
    else:
        raise PlanError(f"timeline: members must be a list of member names: {TIMELINE_USAGE}")
    for member in others:
        if member.time is None:
            raise PlanError(f"timeline: member {member.name!r} has no time column to align by")
    tolerance = named.pop("tolerance", None)
    if named:
        raise PlanError(f"timeline: unknown option {sorted(named)[0]!r}: {TIMELINE_USAGE}")
    return entity, base, others, tolerance


def _member(entity: EntitySpec, name: str) -> MemberSpec:
    members = {m.lower(): spec for m, spec in entity.members.items()}
    if name.lower() not in members:
        raise PlanError(f"entity {entity.name!r} has no member {name!r}; members: "
                        f"{', '.join(entity.members) or 'none'}")
    return members[name.lower()]
