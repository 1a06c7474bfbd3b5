"""Whether a source can evaluate part of a query and give DuckDB's answer.

The residual runs in DuckDB, so DuckDB's meaning is the meaning of every query. A source that
runs DuckDB (a DuckDB file) can take anything but fedquery's own functions. A source of another
dialect declares, in its capabilities (``Capabilities.expressions``), the sqlglot expressions it
evaluates exactly as DuckDB does; anything else stays in DuckDB, over columns the source sends.
A few expressions mean the same only with some arguments (``substr`` from a positive start,
``extract`` of whole-number parts), checked here.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.connectors.base import Capabilities

# extract() parts that are whole numbers with the same meaning in DuckDB and PostgreSQL
# (PostgreSQL's ``second`` has a fraction, ``week`` of early January differs by convention).
SAME_PARTS = {"year", "quarter", "month", "day", "hour", "minute", "epoch"}
# Types a value may be cast to in another dialect with DuckDB's result: numbers, dates and
# timestamps (text formats numbers, intervals and booleans differently).
CAST_TARGETS = {exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
                exp.DataType.Type.BIGINT, exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE,
                exp.DataType.Type.DECIMAL, exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP,
                exp.DataType.Type.TIMESTAMPNTZ}


def portable(node: exp.Expr, capabilities: Capabilities) -> bool:
    """Whether ``node`` may run inside a source of these capabilities: fedquery's own functions
    only in the executor's DuckDB; another dialect only the expressions it declares, and joins
    whose ON conditions read their own FROM item (DuckDB lets ``FROM a, b JOIN c ON a.x = c.x``
    read ``a`` laterally; PostgreSQL refuses it)."""
    functions = list(node.find_all(exp.Anonymous))
    if not capabilities.native and any(is_executor_function(f) for f in functions):
        return False
    if capabilities.dialect in (None, "duckdb"):
        return True
    allowed = capabilities.expressions
    if functions or (allowed is not None and not all(_allowed(n, allowed) for n in node.walk())):
        return False
    if capabilities.max_identifier_length and _long_names(node, capabilities.max_identifier_length):
        return False
    return all(_joins_read_own_item(s) for s in node.find_all(exp.Select))


def _long_names(node: exp.Expr, limit: int) -> bool:
    """Whether ``node`` names an alias the source would cut (PostgreSQL keeps 63 bytes). The
    output names of a whole statement do not count: the executor gives answers DuckDB's names."""
    whole = node.parent is None and isinstance(node, exp.Select)
    outputs = set(map(id, node.expressions)) if whole else set()
    for alias in node.find_all(exp.Alias, exp.TableAlias, exp.CTE):
        if id(alias) in outputs:
            continue
        names = [alias.alias] + [c.name for c in alias.args.get("columns") or []] \
            if isinstance(alias, exp.TableAlias) else [alias.alias]
        if any(len(n.encode()) > limit for n in names):
            return True
    return False


def is_executor_function(func: exp.Anonymous) -> bool:
    """fedquery's own functions run in the executor, never inside a source."""
    from fedquery.sandbox import FEDQUERY_FUNCTIONS

    name = func.name.lower()
    return name in FEDQUERY_FUNCTIONS or name.startswith("__fq_")


def _allowed(node: exp.Expr, allowed: frozenset[str]) -> bool:
    if type(node).__name__ not in allowed:
        return False
    check = _ARGUMENT_CHECKS.get(type(node))
    return check(node) if check is not None else True


def _positive_literal(node: exp.Expr | None) -> bool:
    return isinstance(node, exp.Literal) and node.is_int and int(node.this) > 0


def _whole_quantity(node: exp.Interval) -> bool:
    """``INTERVAL 30 DAY``, ``INTERVAL '30' DAY``: DuckDB truncates a fractional quantity."""
    quantity = node.this
    return isinstance(quantity, exp.Literal) and quantity.this.strip().lstrip("-").isdigit()


_ARGUMENT_CHECKS = {
    exp.Substring: lambda n: _positive_literal(n.args.get("start"))
    and (n.args.get("length") is None or _positive_literal(n.args.get("length"))),
    exp.Extract: lambda n: n.this.name.lower() in SAME_PARTS,
    exp.Cast: lambda n: n.to.this in CAST_TARGETS,
    exp.Interval: _whole_quantity,
    exp.GroupConcat: lambda n: isinstance(n.args.get("separator"), exp.Literal)
    and n.args["separator"].is_string,
    exp.Distinct: lambda n: n.args.get("on") is None,
    exp.Group: lambda n: not n.args.get("all"),
    exp.Ordered: lambda n: not (isinstance(n.this, exp.Var) and n.this.name.upper() == "ALL"),
    exp.Union: lambda n: not n.args.get("by_name"),
}


def _joins_read_own_item(select: exp.Select) -> bool:
    """Every explicit join's ON condition reads only tables of the comma-separated FROM item it
    belongs to (or tables outside this SELECT)."""
    from_ = select.args.get("from_")
    if from_ is None:
        return True
    everything = {from_.this.alias_or_name}
    item = {from_.this.alias_or_name}
    for join in select.args.get("joins") or []:
        alias = join.this.alias_or_name
        everything.add(alias)
        if _is_comma(join):
            item = {alias}
            continue
        item.add(alias)
        condition = join.args.get("on")
        read = {c.table for c in condition.find_all(exp.Column)} if condition else set()
        if (read & everything) - item:
            return False
    return True


def _is_comma(join: exp.Join) -> bool:
    return not (join.side or join.kind or join.args.get("on") or join.args.get("using")
                or join.method)
