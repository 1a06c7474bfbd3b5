"""Tell each blob function which files source its URIs are relative to.

``image_info(f.image_uri)`` becomes ``__fq_image_info(f.image_uri, 'camera')`` when
``frames.image_uri`` is declared under ``blobs:`` as holding URIs into ``camera`` — followed
through derived tables and CTEs that pass the column on. Any other argument gets NULL: its
URIs must then be full URIs (or absolute paths) inside a declared root, or relative to the only
files source. The executor's functions are named ``__fq_<name>`` and take the source and then
the query's run last: ``getvariable('__fq_run')``, set on each query's own cursor, so the
functions (database-wide in DuckDB) keep their caches and errors per run.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.rules._shape import RuleCatalog, source_of

BLOB_FUNCTIONS = {"image_info": 1, "thumbnail": 2, "read_blob": 1, "pointcloud_info": 1,
                  "read_pointcloud": 1, "image_stats": 1, "pointcloud_stats": 1}
PREFIX = "__fq_"


def bind_blob_sources(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Rename blob functions to the executor's and add their URIs' files source."""
    for call in list(expression.find_all(exp.Anonymous)):
        name = call.name.lower()
        if name not in BLOB_FUNCTIONS or not call.expressions:
            continue
        args = list(call.expressions)
        args += [exp.null()] * (BLOB_FUNCTIONS[name] - len(args))
        source = blob_source(args[0], catalog)
        args.append(exp.Literal.string(source) if source else exp.null())
        call.replace(exp.Anonymous(this=PREFIX + name, expressions=[*args, run_argument()]))
    return expression


def run_argument() -> exp.Expr:
    """``getvariable('__fq_run')``: the run token of the query the call belongs to."""
    from fedquery.functions.runs import RUN_VARIABLE

    return exp.Anonymous(this="getvariable", expressions=[exp.Literal.string(RUN_VARIABLE)])


def blob_source(argument: exp.Expr, catalog: RuleCatalog, depth: int = 8) -> str | None:
    """The files source a column's URIs are relative to, following derived tables and CTEs;
    for an expression (``'0001/' || f.name``), the one source all its blob columns agree on."""
    if not isinstance(argument, exp.Column):
        found = {blob_source(c, catalog, depth) for c in argument.find_all(exp.Column)}
        found.discard(None)
        return found.pop() if len(found) == 1 else None
    select = argument.find_ancestor(exp.Select)
    if depth == 0 or select is None:
        return None
    relation = _relation(select, argument.table) if argument.table else _only_relation(select)
    if isinstance(relation, exp.Table) and source_of(relation):
        return catalog.blob_source(relation, argument.name)
    query = relation.this if isinstance(relation, exp.Subquery | exp.CTE) else None
    if isinstance(query, exp.Select):
        for projection in query.expressions:
            if projection.alias_or_name == argument.name:
                return blob_source(projection.unalias(), catalog, depth - 1)
    if isinstance(query, exp.SetOperation):
        return _set_operation_source(query, argument.name, catalog, depth)
    return None


def _set_operation_source(query: exp.SetOperation, name: str, catalog: RuleCatalog,
                          depth: int) -> str | None:
    """A UNION's column is a blob column when every branch's column at its position (named by
    the first branch) holds URIs into the same files source."""
    branches = [b for b in _branches(query) if isinstance(b, exp.Select)]
    if not branches:
        return None
    names = [p.alias_or_name for p in branches[0].expressions]
    if name not in names:
        return None
    position = names.index(name)
    found = {blob_source(b.expressions[position].unalias(), catalog, depth - 1)
             if position < len(b.expressions) else None for b in branches}
    return found.pop() if len(found) == 1 else None


def _branches(query: exp.Expr) -> list[exp.Expr]:
    if isinstance(query, exp.SetOperation):
        return _branches(query.this) + _branches(query.expression)
    return [query.this if isinstance(query, exp.Subquery) else query]


def _only_relation(select: exp.Select) -> exp.Expr | None:
    """The one relation of a SELECT without joins (an unqualified column is its column)."""
    from_ = select.args.get("from_")
    if from_ is None or select.args.get("joins"):
        return None
    return _relation(select, from_.this.alias_or_name)


def _relation(select: exp.Select, alias: str) -> exp.Expr | None:
    """What an alias names in a SELECT's FROM and JOINs: a table, a derived table or a CTE."""
    items = [select.args.get("from_")] + list(select.args.get("joins") or [])
    for item in filter(None, items):
        node = item.this
        if node.alias_or_name == alias:
            if isinstance(node, exp.Table) and not source_of(node):
                return _cte(select, node.name)
            return node
    return None


def _cte(select: exp.Select, name: str) -> exp.CTE | None:
    scope: exp.Expr | None = select
    while scope is not None:
        with_ = scope.args.get("with_") if isinstance(scope, exp.Query) else None
        for cte in with_.expressions if with_ else []:
            if cte.alias == name:
                return cte
        scope = scope.parent
    return None
