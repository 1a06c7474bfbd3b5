"""Give every source table that is not inside a pushable subtree a scan of its own.

``FROM lake.main.frames AS f`` becomes ``FROM (SELECT f.a, f.b, ... FROM lake.main.frames AS f)
AS f``: the derived table is what the lake will be asked for, and the other rules narrow it.
A query whose tables all live in one SQL source is left whole: it is pushed as it is.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.rules._shape import RuleCatalog, scan_table, source_of, subtree_source


def isolate_tables(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Wrap each bound table outside a single-source subtree in its own scan."""
    for table in _tables_to_isolate(expression, catalog):
        alias = table.alias_or_name
        columns = [exp.column(c, table=alias) for c in catalog.columns(table)]
        scan = exp.select(*columns).from_(table.copy())
        table.replace(exp.Subquery(this=scan, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    return expression


def _tables_to_isolate(root: exp.Expr, catalog: RuleCatalog) -> list[exp.Table]:
    """Bound tables reached without entering a pushable subtree or an existing scan, in the
    order of the query's text (a loop, not recursion: 5,000 ORs nest 5,000 deep)."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if subtree_source(node, catalog) is not None or scan_table(node) is not None:
            continue
        if source_of(node) is not None:
            found.append(node)
            continue
        stack.extend(reversed(list(node.iter_expressions())))
    return found
