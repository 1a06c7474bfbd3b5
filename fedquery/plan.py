"""The plan: data, not code. Fragments (what each source receives) and the residual SQL.

``Plan.residual`` reads the fragments by name (``__f0``...) and runs in DuckDB; another engine
can execute the same plan. ``Plan.local_sql`` is the residual with the fragments of sources
DuckDB reads natively put back inline, so DuckDB's own pushdown applies to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sqlglot import exp

from fedquery.connectors.base import ScanRequest, SearchSettings, VectorQuery
from fedquery.parse import DIALECT
from fedquery.rules._shape import ROW_MARKER, RuleCatalog, scan_table, source_of, subtree_source
from fedquery.rules.dynamic_filters import DYNAMIC_FILTER, IN_LIST_MAX, MATERIALIZE
from fedquery.rules.pushdown_vector_topk import METRICS, VECTOR_TOPK
from fedquery.vector_search import SEARCH_SETTINGS
from fedquery.vectors import array_type

FRAGMENT_PREFIX = "__f"


@dataclass(frozen=True)
class Fragment:
    """One piece of work sent to one source.

    ``kind`` is ``scan`` (one table: ``request`` says columns, filter, limit) or ``sql`` (a
    whole single-source subtree). ``sql`` is the fragment in DuckDB's dialect over bound names.
    """

    name: str
    source: str
    kind: str
    sql: str
    tables: tuple[str, ...]
    native: bool
    request: ScanRequest | None = None
    parameters: tuple[str, ...] = ()
    key_filter: DynamicFilter | None = None
    materialize: bool = False
    vector_keys: VectorKeys | None = None
    query_vector: QueryVector | None = None

    @property
    def inline(self) -> bool:
        """Run inside the residual by DuckDB, rather than fetched first and registered."""
        return (self.native and not self.materialize and self.key_filter is None
                and self.vector_keys is None and self.query_vector is None
                and (self.request is None or self.request.vector is None))


@dataclass(frozen=True)
class QueryVector:
    """A top-k scan's query vector computed by a query (a scalar subquery): ``plan`` runs
    first and its one value, typed ``sql_type``, is the scan's parameter ``parameter``."""

    parameter: str
    plan: Plan
    sql_type: str


@dataclass(frozen=True)
class VectorKeys:
    """The prefilter of a top-k vector scan: ``column IN`` the keys ``plan`` returns (its one
    column), run first; an exact set, whatever its size. For a source that searches vectors,
    ``count`` tells how many keys there are, and ``check`` which of some candidates are keys,
    so that many keys need not be loaded."""

    column: str
    plan: Plan
    count: Plan | None = None  # at least the number of distinct keys (one row, one column)
    check: tuple[str, Plan] | None = None  # ($name of a list of candidates, which are keys)


@dataclass(frozen=True)
class DynamicFilter:
    """Keys of the ``build`` fragment's ``build_column``, sent into ``column`` of this one when
    the build side has run: an IN list up to ``in_list_max`` keys, else a min/max range."""

    column: str
    build: str
    build_column: str
    build_rows: int
    probe_rows: int | None
    in_list_max: int


@dataclass(frozen=True)
class Plan:
    """Fragments, the residual over them, and the names and order of the output columns."""

    fragments: tuple[Fragment, ...]
    residual: str
    local_sql: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    parameters: tuple[str, ...] = ()
    residual_parameters: tuple[str, ...] = ()
    local_parameters: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    blob_columns: tuple[tuple[str, str], ...] = ()  # (output column, files source) of URI columns
    vector_parameters: tuple[tuple[str, str], ...] = ()  # ($name, FLOAT[n]) of query vectors


@dataclass(frozen=True)
class Cut:
    """A rewritten tree cut into fragments: the residual and local SQL, and the parameters each
    of them names (DuckDB refuses values for parameters a statement does not use)."""

    fragments: list[Fragment]
    residual: str
    local_sql: str
    residual_parameters: tuple[str, ...]
    local_parameters: tuple[str, ...]


def extract_fragments(expression: exp.Expr, *, catalog: RuleCatalog, is_native) -> Cut:
    """Cut the rewritten tree into fragments; the residual reads them by name."""
    fragments: list[Fragment] = []
    whole, everything = expression.sql(DIALECT), placeholders(expression)
    local = expression.copy() if _has_streamed(expression, is_native) else None
    names: dict[int, str] = {}
    residual = _cut(expression, local, fragments, (catalog, is_native, names))
    fragments[:] = [_link_key_filter(f, names) for f in fragments]
    if any(w.args.get("recursive") for w in expression.find_all(exp.With)):
        # a recursive CTE scans what it reads once per step: a stream can be read only once
        fragments[:] = [f if f.inline else replace(f, materialize=True) for f in fragments]
    if local is not None and residual is not expression and not fragments[0].inline:
        local = residual  # the whole statement is one fragment fetched from its source
    if local is None:
        return Cut(fragments, residual.sql(DIALECT), whole, placeholders(residual), everything)
    return Cut(fragments, residual.sql(DIALECT), local.sql(DIALECT), placeholders(residual),
               placeholders(local))


def placeholders(node: exp.Expr) -> tuple[str, ...]:
    """Names of the ``$name`` parameters in a tree, sorted."""
    return tuple(sorted({p.name for p in node.find_all(exp.Placeholder)}))


def _has_streamed(expression: exp.Expr, is_native) -> bool:
    """Whether some fragment will be fetched first rather than run inline by DuckDB."""
    for node in expression.find_all(exp.Subquery):
        topk = node.meta.get(VECTOR_TOPK)
        if MATERIALIZE in node.meta or (topk and (topk.keys or topk.query_vector or topk.searched)):
            return True
    return any(not is_native(source_of(t)) for t in expression.find_all(exp.Table)
               if source_of(t) is not None)


def _cut(node: exp.Expr, local: exp.Expr | None, fragments: list[Fragment], context) -> exp.Expr:
    """Walk ``node`` and its twin in the local tree together, replacing fragments in both.

    The local tree keeps inline fragments in place; when every fragment is inline it is None.
    """
    catalog, is_native, names = context
    fragment = _fragment_of(node, catalog, len(fragments), is_native)
    if fragment is not None:
        fragments.append(fragment)
        names[id(node)] = fragment.name
        replaced = _reference(node, fragment.name)
        if local is not None and not fragment.inline:
            _replace(local, _reference(local, fragment.name))
        return _replace(node, replaced)
    twins = list(local.iter_expressions()) if local is not None else None
    for i, child in enumerate(list(node.iter_expressions())):
        _cut(child, twins[i] if twins is not None else None, fragments, context)
    return node


def _fragment_of(node: exp.Expr, catalog, index: int, is_native) -> Fragment | None:
    name = f"{FRAGMENT_PREFIX}{index}"
    marks = {"key_filter": node.meta.get(DYNAMIC_FILTER), "materialize": MATERIALIZE in node.meta}
    table = scan_table(node)
    if table is not None:
        source = source_of(table)
        request, topk = _request(node.this, table), node.meta.get(VECTOR_TOPK)
        vector_keys = query_vector = None
        if topk is not None:
            request = replace(request, with_ties=topk.with_ties)
            if topk.searched:
                request = replace(request, vector=_vector_query(node.this, table))
            if topk.keys is not None:
                count = catalog.subplan(topk.count) if topk.count is not None else None
                check = (topk.check[0], catalog.subplan(topk.check[1])) if topk.check else None
                vector_keys = VectorKeys(topk.column, catalog.subplan(topk.keys), count, check)
            if topk.query_vector is not None:
                parameter, query = topk.query_vector
                field = catalog.table_schema(table).field(topk.vector_column)
                query_vector = QueryVector(parameter, catalog.subplan(query),
                                           array_type(field.type) or "")
        return Fragment(name, source, "scan", node.this.sql(DIALECT), (_key(table),),
                        is_native(source), request, placeholders(node), **marks,
                        vector_keys=vector_keys, query_vector=query_vector)
    query = _whole_query(node)
    source = subtree_source(query, catalog) if query is not None else None
    if source is not None:
        tables = tuple(sorted({_key(t) for t in query.find_all(exp.Table) if source_of(t)}))
        return Fragment(name, source, "sql", query.sql(DIALECT), tables, is_native(source),
                        parameters=placeholders(query), **marks)
    return None


def _vector_query(select: exp.Select, table: exp.Table) -> VectorQuery | None:
    """The nearest-first ORDER BY of a top-k scan as data, when it is the scan's only sort
    key (another key breaks ties, which only the exact scan keeps)."""
    order = select.args.get("order")
    if order is None or len(order.expressions) != 1 or order.expressions[0].args.get("desc"):
        return None
    call = order.expressions[0].this
    if not (isinstance(call, exp.Anonymous) and call.name.lower() in METRICS):
        return None
    columns = [a for a in call.expressions if isinstance(a, exp.Column)]
    if len(columns) != 1 or len(call.expressions) != 2:
        return None
    query = next(a for a in call.expressions if a is not columns[0])
    settings = table.meta.get(SEARCH_SETTINGS) or SearchSettings()
    return VectorQuery(columns[0].name, METRICS[call.name.lower()], query.sql(DIALECT), settings)


def _link_key_filter(fragment: Fragment, names: dict[int, str]) -> Fragment:
    """The rule's key filter (which names a tree node) as data (which names a fragment)."""
    planned = fragment.key_filter
    if planned is None or isinstance(planned, DynamicFilter):
        return fragment
    build = names.get(id(planned.build))
    if build is None:  # the build side did not become a fragment: no filter
        return replace(fragment, key_filter=None)
    return replace(fragment, key_filter=DynamicFilter(
        planned.column, build, planned.build_column, planned.build_rows, planned.probe_rows,
        IN_LIST_MAX))


def _whole_query(node: exp.Expr) -> exp.Expr | None:
    """The query a node stands for: the statement, a subquery's or CTE's body, or a query that
    stands alone inside another (a set-operation branch, an EXISTS or ARRAY body)."""
    if node.parent is None:
        return node
    if isinstance(node, exp.Subquery | exp.CTE):
        return node.this
    if isinstance(node, exp.Query) and not isinstance(node.parent, exp.Subquery | exp.CTE):
        return node
    return None


def _reference(node: exp.Expr, name: str) -> exp.Expr:
    """What stands in the residual where a fragment was cut out."""
    if isinstance(node, exp.Subquery) and isinstance(node.parent, exp.From | exp.Join):
        return exp.Table(this=exp.to_identifier(name), alias=node.args.get("alias"))
    star = exp.select("*").from_(name)
    if isinstance(node, exp.Subquery | exp.CTE):
        copy = node.copy()
        copy.set("this", star)
        return copy
    return star


def _replace(node: exp.Expr, new: exp.Expr) -> exp.Expr:
    if node.parent is None:
        return new
    node.replace(new)
    return new


def _key(table: exp.Table) -> str:
    return ".".join(p.name for p in table.parts)


def _request(select: exp.Select, table: exp.Table) -> ScanRequest:
    """The scan request of a scan-shaped SELECT, with column names as the source knows them."""
    where, order, limit = (select.args.get(k) for k in ("where", "order", "limit"))
    columns = tuple(p.alias_or_name for p in select.expressions if p.alias_or_name != ROW_MARKER)
    return ScanRequest(
        table=_key(table),
        columns=columns,
        filter=_unqualified(where.this).sql(DIALECT) if where else None,
        limit=int(limit.expression.this) if limit else None,
        order_by=tuple(_unqualified(o).sql(DIALECT) for o in order.expressions) if order else (),
    )


def _unqualified(condition: exp.Expr) -> exp.Expr:
    """A one-table predicate with its column references stripped of the table alias."""
    def strip(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.table:
            return exp.column(node.this.copy())
        return node

    return condition.copy().transform(strip)
