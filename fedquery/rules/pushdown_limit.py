"""Send a LIMIT (with its ORDER BY, as a top-N) into the one scan a SELECT reads.

Only when nothing between the scan and the LIMIT changes the row count: no join, no remaining
WHERE, no grouping, DISTINCT, window or aggregate. The outer LIMIT stays; the scan gets
``LIMIT limit + offset``, and an ORDER BY only when every key is a column of the scan.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.rules._shape import RuleCatalog, scan_table


def pushdown_limit(expression: exp.Expr, *, catalog: RuleCatalog) -> exp.Expr:
    """Copy row limits of single-scan SELECTs into their scans."""
    for select in list(expression.find_all(exp.Select)):
        count = _row_count(select)
        scan = select.args.get("from_") and select.args["from_"].this
        if count is None or scan_table(scan) is None or not _preserves_rows(select):
            continue
        order = select.args.get("order")
        if order is not None:
            if not _orders_by_scan_columns(order, scan.alias):
                continue
            scan.this.set("order", order.copy())
        scan.this.limit(count, copy=False)
    return expression


def _row_count(select: exp.Select) -> int | None:
    """limit + offset when both are integer literals."""
    limit, offset = select.args.get("limit"), select.args.get("offset")
    values = []
    for clause in (limit, offset):
        value = clause.expression if clause is not None else exp.Literal.number(0)
        if not (isinstance(value, exp.Literal) and value.is_int):
            return None
        values.append(int(value.this))
    return sum(values) if limit is not None else None


def _preserves_rows(select: exp.Select) -> bool:
    if any(select.args.get(k) for k in ("joins", "where", "group", "having", "distinct", "qualify")):
        return False
    return not any(p.find(exp.AggFunc, exp.Window) for p in select.expressions)


def _orders_by_scan_columns(order: exp.Order, alias: str) -> bool:
    keys = [o.this for o in order.expressions]
    return all(isinstance(k, exp.Column) and k.table == alias for k in keys)
