"""What a display of a result shows: its first rows, asked for as such, and a text table.

A notebook shows 20 rows; computing every row to show 20 would run every blob function of the
query over the whole table. ``limited_query`` asks the planner for the first rows only, so the
limit reaches the scans (``pushdown_limit``) and functions run on those rows alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from fedquery.errors import FedQueryError
from fedquery.parse import DIALECT, parse

TEXT_WIDTH = 32  # characters of one value in a text table


def limited_query(sql: str, rows: int) -> str | None:
    """``sql`` asking for at most ``rows`` rows, or None when it cannot be limited (not one
    query) or needs not be (its own LIMIT is that small: it is cheap as it is).

    >>> limited_query("SELECT a FROM t ORDER BY a", 21)
    'SELECT a FROM t ORDER BY a LIMIT 21'
    >>> limited_query("SELECT a FROM t UNION SELECT b FROM u", 21)
    'SELECT * FROM (SELECT a FROM t UNION SELECT b FROM u) AS preview LIMIT 21'
    """
    try:
        tree = parse(sql)
    except FedQueryError:
        return None
    if not isinstance(tree, exp.Query):
        return None
    limit, offset = tree.args.get("limit"), tree.args.get("offset")
    own = _literal_count(limit)
    if own is not None and own <= rows:
        return None
    if isinstance(tree, exp.Select) and limit is None and offset is None:
        return tree.limit(rows).sql(DIALECT)  # a LIMIT is the last step of a SELECT: the same rows
    return exp.select("*").from_(tree.subquery("preview")).limit(rows).sql(DIALECT)


def _literal_count(limit: exp.Expr | None) -> int | None:
    count = limit.expression if isinstance(limit, exp.Limit) else None
    return int(count.this) if isinstance(count, exp.Literal) and count.is_int else None


def text_table(columns: Sequence[str], types: Sequence[str], rows: Sequence[tuple], *,
               more: bool) -> str:
    """Rows under their column names and types, as aligned text columns, each value cut at
    ``TEXT_WIDTH`` characters."""
    header = [[_text(c) for c in columns], [_text(t) for t in types]]
    cells = header + [[_text(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in cells]
    lines.insert(2, "-+-".join("-" * w for w in widths))
    if more:
        lines.append("…")
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes | bytearray | memoryview):
        text = f"<{len(value)} bytes>"
    else:
        text = " ".join(str(value).split())
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"
