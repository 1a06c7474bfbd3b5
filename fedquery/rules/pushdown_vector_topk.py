"""Turn ``ORDER BY <distance>(v.embedding, <query vector>) LIMIT k`` into a top-k search of the
vector table whose prefilter is the set of keys that pass every other filter.

For a SELECT of inner joins whose first ORDER BY key is ``array_cosine_distance``,
``array_distance`` or ``array_negative_inner_product`` of an array column of one scan (``v``)
and a constant (a parameter, a literal, an embedding of a literal), with an integer LIMIT:

- ``v`` alone: its scan gets the ORDER BY and ``LIMIT k + offset``;
- joined by one column ``v.key = x.col``: the keys query ``SELECT DISTINCT x.col FROM <every
  other table> WHERE <every condition not on v>`` runs first, and ``v``'s scan gets
  ``v.key IN (keys)`` with the ORDER BY and limit. A row of ``v`` passes exactly when it has a
  partner in the rest of the join, so the k nearest of those are the k nearest of the answer;
  when other ORDER BY keys break ties the scan keeps every row tied with the k-th. A remote
  partner joined on the key then takes the keys of the rows found (a dynamic filter).

Not applied (the query computes every distance, still exactly) when a condition ties ``v`` to
another table other than by its key, ``v`` joins by two columns, a join is outer, or the SELECT
groups, aggregates, deduplicates or windows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sqlglot import exp

from fedquery.rules._shape import (
    RuleCatalog,
    conjuncts,
    is_correlated,
    referenced_tables,
    row_count,
    scan_table,
    source_of,
)
from fedquery.rules.dynamic_filters import DYNAMIC_FILTER, ESTIMATE, MATERIALIZE, KeyFilter

VECTOR_TOPK = "vector_topk"  # meta on the vector scan: the planned TopK
METRICS = {"array_cosine_distance": "cosine", "array_distance": "l2",
           "array_negative_inner_product": "dot"}  # DuckDB's function: the metric's name
NEAREST_FIRST = set(METRICS)
MAX_K = 100_000
_vectors = itertools.count()


@dataclass(frozen=True)
class TopK:
    """A planned top-k: ``keys`` (a query over the other tables, or None) yields the values
    ``column`` of the vector scan must take."""

    column: str | None
    keys: exp.Select | None
    k: int
    with_ties: bool
    query_vector: tuple[str, exp.Select] | None = None  # ($name in the scan, query run first)
    vector_column: str | None = None
    searched: bool = False  # the source searches vectors itself (the scan is fetched from it)
    count: exp.Select | None = None  # how many keys at most (a searched scan with keys)
    check: tuple[str, exp.Select] | None = None  # ($name of candidates, which are keys)


def pushdown_vector_topk(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Plan a prefiltered top-k for each nearest-neighbour SELECT."""
    for select in list(expression.find_all(exp.Select)):
        _plan_select(select, catalog)
    return expression


def _plan_select(select: exp.Select, catalog: RuleCatalog) -> None:
    k = row_count(select)
    order = select.args.get("order")
    if k is None or not 0 < k <= MAX_K or order is None or not _keeps_rows(select):
        return
    if is_correlated(select):
        return  # the keys query could not run on its own
    if any(p.this is None for p in select.root().find_all(exp.Placeholder)):
        return  # ? parameters are numbered by position: a keys query cannot take a subset
    shape = _sides(select)
    if shape is None:
        return
    sides, nullable = shape
    order.set("expressions", [o if isinstance(o, exp.Ordered) else exp.Ordered(this=o)
                              for o in order.expressions])
    first = order.expressions[0]
    distance = _distance(first, select)
    if distance is None or first.args.get("desc"):
        return
    column, query = distance
    vector = sides.get(column.table)
    if vector is None or column.table in nullable:
        return
    query_vector = None
    if query.find(exp.Query) is not None:
        query_vector = _query_vector(query, select)
        if query_vector is None:
            return
    elif query.find(exp.Column) is not None:
        return
    capabilities = catalog.capabilities(source_of(scan_table(vector)))
    if not capabilities.native or not capabilities.limit:
        return  # the distance functions are DuckDB's; the source must take a top-k
    conditions = _conditions(select)
    if any(_reads(c, nullable) for c in conditions):
        return  # a condition on an outer-joined table removes rows after all
    key = _join_key(conditions, column.table)
    if key is False:
        return
    extra = [_resolved(o, select) for o in order.expressions[1:]]
    vector_only = all(referenced_tables(o.this) == {column.table} for o in extra)
    scan = vector.this
    nearest = _resolved(first, select)
    if query_vector is not None:  # the scan takes the vector's value as a parameter
        call = nearest.this
        for arg in call.expressions:
            if not (isinstance(arg, exp.Column) and arg.table == column.table):
                arg.replace(exp.Placeholder(this=query_vector[0]))
    scan.set("order", exp.Order(expressions=[nearest] + (extra if vector_only else [])))
    scan.set("limit", exp.Limit(expression=exp.Literal.number(k)))
    keys = None if key is None else _keys_query(select, {column.table} | nullable, key, conditions,
                                                 catalog)
    with_ties = bool(extra) and not vector_only
    searched = (catalog.capabilities(source_of(scan_table(vector))).vector_search
                and not extra)
    count = check = None
    if searched and keys is not None:
        count, check = _count_query(keys), _check_query(keys)
    vector.meta[VECTOR_TOPK] = TopK(key[0].name if key else None, keys, k, with_ties=with_ties,
                                    query_vector=query_vector, vector_column=column.name,
                                    searched=searched, count=count, check=check)
    if key is not None and len(key[1]) == 1:
        _send_top_keys(vector, (key[0], key[1][0]), sides, k, catalog)


def _query_vector(query: exp.Expr, select: exp.Select) -> tuple[str, exp.Select] | None:
    """A query vector that reads tables only through uncorrelated scalar subqueries
    (``(SELECT embedding FROM ...)``, ``embed_image((SELECT image_uri FROM probe))``): a
    parameter name for the scan, and ``SELECT <the vector>`` with the CTEs it reads, to run
    first. None when a column outside the subqueries, or a correlated one, is read."""
    subqueries = [s for s in query.find_all(exp.Subquery)]
    if not subqueries or any(not isinstance(s.this, exp.Select) or is_correlated(s.this)
                             for s in subqueries):
        return None
    if any(not any(_within(c, s) for s in subqueries) for c in query.find_all(exp.Column)):
        return None
    # an Alias node: alias_() on a Subquery would rename the subquery, which is a scan
    standalone = exp.select(exp.Alias(this=query.copy(), alias=exp.to_identifier("query_vector")))
    ctes = _ctes_read(query, select)
    if ctes:
        standalone.set("with_", exp.With(expressions=[c.copy() for c in ctes]))
    return f"__fq_query_vector_{next(_vectors)}", standalone


def _within(node: exp.Expr, ancestor: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _ctes_read(body: exp.Expr, select: exp.Select) -> list[exp.CTE]:
    """The CTEs in scope that ``body`` reads, directly or through each other, in order."""
    scope: dict[str, exp.CTE] = {}
    node: exp.Expr | None = select
    while node is not None:
        with_ = node.args.get("with_") if isinstance(node, exp.Query) else None
        for cte in with_.expressions if with_ else []:
            scope.setdefault(cte.alias, cte)
        node = node.parent
    wanted: list[str] = []
    pending = [body]
    while pending:
        for table in pending.pop().find_all(exp.Table):
            if not table.db and table.name in scope and table.name not in wanted:
                wanted.append(table.name)
                pending.append(scope[table.name].this)
    order = list(scope)
    return [scope[n] for n in sorted(wanted, key=order.index)]


def _send_top_keys(vector: exp.Subquery, key: tuple[exp.Column, exp.Expr],
                   sides: dict[str, exp.Subquery], k: int, catalog: RuleCatalog) -> None:
    """A remote partner joined on the key takes the keys of the k rows found (a dynamic
    filter whose build is the vector scan), so it sends only the rows of those."""
    mine, other = key
    partner = sides.get(other.table) if isinstance(other, exp.Column) else None
    if partner is None or not catalog.capabilities(source_of(scan_table(partner))).remote:
        return
    partner.meta[DYNAMIC_FILTER] = KeyFilter(other.name, vector, mine.name, k, None)
    partner.meta[ESTIMATE] = k  # so keys flow on from it along the join (dynamic_filters)
    vector.meta[MATERIALIZE] = True


def _keeps_rows(select: exp.Select) -> bool:
    """No grouping, DISTINCT, QUALIFY, window or aggregate between the joins and the LIMIT."""
    if any(select.args.get(k) for k in ("group", "having", "distinct", "qualify")):
        return False
    nodes = list(select.expressions) + list(select.args["order"].expressions)
    return not any(_owned_by_this(found, n) for n in nodes
                   for found in n.find_all(exp.AggFunc, exp.Window, exp.Unnest, exp.UDTF))


def _owned_by_this(found: exp.Expr, item: exp.Expr) -> bool:
    """Whether an aggregate found in ``item`` belongs to the SELECT of ``item`` (not to a
    subquery nested inside it)."""
    nearest = found.find_ancestor(exp.Subquery)
    return nearest is None or any(nearest is s for s in _enclosing(item))


def _enclosing(node: exp.Expr) -> tuple[exp.Expr, ...]:
    """Subqueries enclosing ``node`` (a select-list or ORDER BY item): an aggregate nested in
    a scalar subquery inside the item is that subquery's own, not this SELECT's."""
    return tuple(a for a in _ancestors(node) if isinstance(a, exp.Subquery))


def _ancestors(node: exp.Expr):
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _sides(select: exp.Select) -> tuple[dict[str, exp.Subquery], set[str]] | None:
    """The scans a SELECT joins, by alias, and the aliases LEFT JOINed (they never remove a
    row of what they are joined to); None when anything else is joined or a join is neither
    inner nor LEFT."""
    sides, nullable = {}, set()
    for item in [select.args.get("from_")] + list(select.args.get("joins") or []):
        if item is None:
            return None
        if isinstance(item, exp.Join):
            left = item.side == "LEFT" and item.kind in ("", "OUTER")
            inner = not item.side and item.kind in ("", "INNER", "CROSS")
            if not (left or inner) or item.method or item.args.get("using"):
                return None
            if left:
                nullable.add(item.this.alias)
        node = item.this
        if scan_table(node) is None or not node.alias:
            return None
        sides[node.alias] = node
    return sides, nullable


def _reads(condition: exp.Expr, aliases: set[str]) -> bool:
    return any(c.table in aliases for c in condition.find_all(exp.Column))


def _distance(ordered: exp.Ordered, select: exp.Select) -> tuple[exp.Column, exp.Expr] | None:
    """The vector column and the query vector of a nearest-first distance ORDER BY key."""
    key = ordered.this
    if isinstance(key, exp.Column) and not key.table:
        outputs = {p.alias_or_name: p.unalias() for p in select.expressions}
        key = outputs.get(key.name, key)
    if not (isinstance(key, exp.Anonymous) and key.name.lower() in NEAREST_FIRST
            and len(key.expressions) == 2):
        return None
    left, right = key.expressions
    if isinstance(left, exp.Column) and left.table:
        return left, right
    if isinstance(right, exp.Column) and right.table:
        return right, left
    return None


def _conditions(select: exp.Select) -> list[exp.Expr]:
    """WHERE and inner-join ON conjuncts: what decides whether a row is in the answer."""
    where = select.args.get("where")
    found = conjuncts(where.this if where else None)
    for join in select.args.get("joins") or []:
        if join.side != "LEFT":
            found += conjuncts(join.args.get("on"))
    return found


def _join_key(conditions: list[exp.Expr], alias: str):
    """``(v.key, [other sides])`` of the one column that joins ``v`` (``v.key = a.x AND
    v.key = b.y``: both); None when nothing joins it; False when ``v`` is tied otherwise (two
    of its columns, or a condition not an equality)."""
    keys = []
    for condition in conditions:
        tables = referenced_tables(condition)
        if tables is None and alias in {c.table for c in condition.find_all(exp.Column)}:
            return False
        if tables is None or alias not in tables:
            continue
        if tables == {alias}:
            return False  # a condition on v alone left above its scan: not safe to cut v
        pair = _equality(condition, alias)
        if pair is None:
            return False
        keys.append(pair)
    if not keys:
        return None
    if len({key.name for key, _ in keys}) != 1:
        return False
    return keys[0][0], [other for _, other in keys]


def _equality(condition: exp.Expr, alias: str) -> tuple[exp.Column, exp.Expr] | None:
    if not isinstance(condition, exp.EQ):
        return None
    left, right = condition.this, condition.expression
    for mine, other in ((left, right), (right, left)):
        if isinstance(mine, exp.Column) and mine.table == alias and alias not in {
                c.table for c in other.find_all(exp.Column)}:
            return mine, other
    return None


def _keys_query(select: exp.Select, left_out: set[str], key: tuple[exp.Column, list[exp.Expr]],
                conditions: list[exp.Expr], catalog: RuleCatalog) -> exp.Select:
    """``SELECT DISTINCT <other side> AS key FROM <the other inner-joined scans> WHERE <the
    rest>``; when ``v.key`` equals several other sides, they equal each other there. Over
    sources DuckDB reads itself the keys come without DISTINCT (a set is built from them
    anyway, and DuckDB's DISTINCT of a million keys costs more than the search); a remote
    source deduplicates before the keys cross the network."""
    alias = key[0].table
    others = [item.this for item in [select.args["from_"]] + list(select.args.get("joins") or [])
              if item.this.alias not in left_out]
    first, *more = key[1]
    query = exp.select(exp.alias_(first.copy(), "key"))
    if not all(catalog.capabilities(source_of(scan_table(o))).native for o in others):
        query = query.distinct()
    query = query.from_(others[0].copy())
    for other in others[1:]:
        query = query.join(other.copy(), join_type="cross")
    rest = [c.copy() for c in conditions if alias not in (referenced_tables(c) or set())]
    rest += [exp.EQ(this=first.copy(), expression=other.copy()) for other in more]
    return query.where(exp.and_(*rest)) if rest else query


def _count_query(keys: exp.Select) -> exp.Select:
    """``SELECT count(<key>) ...``: at least the number of distinct keys, without them."""
    query = keys.copy()
    query.set("distinct", None)
    key = query.expressions[0].unalias()
    query.set("expressions", [exp.alias_(exp.Count(this=key.copy()), "n")])
    return query


def _check_query(keys: exp.Select) -> tuple[str, exp.Select]:
    """The keys query kept to some candidate keys (a list parameter): which of them are keys.
    A source that over-fetches nearest rows checks its candidates with it instead of loading
    every key."""
    name = f"__fq_candidates_{next(_vectors)}"
    query = keys.copy()
    key = query.expressions[0].unalias()
    candidates = exp.select(exp.Unnest(expressions=[exp.Placeholder(this=name)]))
    return name, query.where(exp.In(this=key.copy(), query=exp.Subquery(this=candidates)))


def _resolved(ordered: exp.Ordered, select: exp.Select) -> exp.Ordered:
    """An ORDER BY key with an output name replaced by the expression it names."""
    ordered = ordered.copy()
    key = ordered.this
    if isinstance(key, exp.Column) and not key.table:
        outputs = {p.alias_or_name: p.unalias() for p in select.expressions}
        if key.name in outputs:
            ordered.set("this", outputs[key.name].copy())
    return ordered
