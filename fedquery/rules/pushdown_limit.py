"""Send a LIMIT (with its ORDER BY, as a top-N) into the one scan a SELECT reads.

Only when nothing between the scan and the LIMIT changes the row count: no join, no remaining
WHERE, no grouping, DISTINCT, window or aggregate, and the scan has no LIMIT of its own. The
outer LIMIT stays; the scan gets ``LIMIT limit + offset``, and an ORDER BY only when every key is
a column of the scan (directly or through the output name of a projected column), and only into
a source whose capabilities take a limit (``Capabilities.limit``).
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.rules._shape import RuleCatalog, row_count, scan_table, source_of


def pushdown_limit(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Copy row limits of single-scan SELECTs into their scans."""
    for select in list(expression.find_all(exp.Select)):
        count = row_count(select)
        scan = select.args.get("from_") and select.args["from_"].this
        if count is None or scan_table(scan) is None or scan.this.args.get("limit"):
            continue
        if not _preserves_rows(select) or not catalog.capabilities(source_of(scan_table(scan))).limit:
            continue
        order = select.args.get("order")
        if order is not None:
            order = _scan_order(order, select, scan.alias)
            if order is None:
                continue
            scan.this.set("order", order)
        scan.this.limit(count, copy=False)
    return expression


def _preserves_rows(select: exp.Select) -> bool:
    if any(select.args.get(k) for k in ("joins", "where", "group", "having", "distinct", "qualify")):
        return False
    changes_rows = (exp.AggFunc, exp.Window, exp.Unnest, exp.UDTF, exp.Explode)
    return not any(p.find(*changes_rows) for p in select.expressions)


def _scan_order(order: exp.Order, select: exp.Select, alias: str) -> exp.Order | None:
    """The ORDER BY in the scan's columns (output names resolved), or None if a key is not one."""
    outputs = {p.alias_or_name: p.unalias() for p in select.expressions}
    order = order.copy()
    for ordered in order.expressions:
        key = ordered.this
        if isinstance(key, exp.Column) and not key.table and key.name in outputs:
            key = outputs[key.name]
            ordered.set("this", key.copy())
        if not (isinstance(key, exp.Column) and key.table == alias):
            return None
    return order
