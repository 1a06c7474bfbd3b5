"""DuckDB's meaning kept in the SQL PostgreSQL receives, where the two engines differ.

Fragments are written in DuckDB's dialect and must give DuckDB's answer when PostgreSQL runs
them. sqlglot transpiles syntax; these rewrites keep what the same syntax means:

- ``LIKE``/``ILIKE``: PostgreSQL treats a backslash in the pattern as an escape character,
  DuckDB as an ordinary one, so a pattern without ``ESCAPE`` gets ``ESCAPE ''``.
- Text order: DuckDB orders strings by their bytes; PostgreSQL by the collation of the column
  or the database (an ICU or ``en_US`` collation puts ``'a'`` before ``'B'``). Where text is
  ordered (``ORDER BY`` keys, also of windows and aggregates, ``<``, ``<=``, ``>``, ``>=``,
  ``BETWEEN``, ``min``, ``max``, ``greatest``, ``least``) the text side gets
  ``COLLATE "C"``, byte order. A DISTINCT query or a set operation may only order by its
  output columns, so its ORDER BY/LIMIT moves to a query around it.
- ``round`` is never sent (``EXACT_EXPRESSIONS`` leaves it out): PostgreSQL rounds doubles
  half to even, and rounding them through ``numeric`` loses their last digits.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from sqlglot import exp

# The sqlglot expressions PostgreSQL evaluates as DuckDB does, once translated by sqlglot and
# by the rewrites of this module (the planner keeps every other one in DuckDB). Left out on
# purpose: lower/upper/initcap (Unicode case rules depend on the server's locale), regular
# expressions (another engine), // (DIV truncates DECIMALs), string functions with negative
# positions, date formatting, and everything not listed.
EXACT_EXPRESSIONS = frozenset({
    # query structure
    "Select", "From", "Join", "Where", "Group", "Having", "Order", "Ordered", "Limit", "Offset",
    "Subquery", "Union", "Intersect", "Except", "With", "CTE", "TableAlias", "Table",
    "Identifier", "Column", "Alias", "Star", "Tuple", "Paren", "Distinct", "Literal", "Boolean",
    "Null", "Placeholder", "Var", "DataType", "Exists", "In", "Rollup", "Cube", "GroupingSets",
    "Grouping",
    # operators
    "And", "Or", "Not", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Is", "Between", "Like", "ILike",
    "Escape", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Case", "If", "Coalesce", "Nullif",
    "Greatest", "Least", "Abs", "Cast", "Interval", "Extract", "Substring", "Length",
    "DateTrunc",
    # aggregates and windows
    "Count", "Sum", "Avg", "Min", "Max", "Stddev", "StddevSamp", "StddevPop", "Variance",
    "VariancePop", "Filter", "Window", "WindowSpec", "RowNumber", "Rank", "DenseRank",
    "PercentRank", "CumeDist", "Ntile", "GroupConcat",
})
# Left out, each for a difference found by differential tests: round (doubles round half to
# even there, and through numeric lose digits), || (a number or date becomes text in
# PostgreSQL's format, not DuckDB's), lower/upper/initcap (locale-dependent case rules),
# regular expressions (another engine), // (DIV truncates DECIMALs). The planner also checks
# arguments (rules/_portable.py): casts only to numbers, dates and timestamps, intervals of
# whole literal quantities, substr from positive literals, string_agg with a literal
# separator, no DISTINCT ON, GROUP BY ALL, ORDER BY ALL or UNION BY NAME.

_TEXT_FUNCTIONS = (exp.Lower, exp.Upper, exp.Substring, exp.Trim, exp.Concat, exp.ConcatWs,
                   exp.DPipe, exp.Initcap, exp.Left, exp.Right, exp.Pad)
_TEXT_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR,
               exp.DataType.Type.NVARCHAR, exp.DataType.Type.NCHAR)
_ORDERING = (exp.GT, exp.GTE, exp.LT, exp.LTE)


def keep_duckdb_semantics(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Rewrite ``tree`` so PostgreSQL gives DuckDB's answer; ``types`` are the Arrow types of
    the columns it reads, by name. Returns the tree (a new root when the outermost query's
    ORDER BY had to move out, see ``_sort_outside``)."""
    for like in list(tree.find_all(exp.Like, exp.ILike)):
        if not isinstance(like.parent, exp.Escape):
            like.replace(exp.Escape(this=like.copy(), expression=exp.Literal.string("")))
    for node in list(tree.find_all(*_ORDERING, exp.Between, exp.Min, exp.Max, exp.Greatest,
                                   exp.Least)):
        _collate(node, types)
    for order in reversed(list(tree.find_all(exp.Order))):  # inner queries first
        tree = _collate_order(order, types, tree)
    return tree


def _collate(node: exp.Expr, types: Mapping[str, pa.DataType]) -> None:
    """Byte order for the text that a comparison, ``min``/``max`` or ``greatest``/``least``
    orders."""
    if isinstance(node, _ORDERING):
        side = next((s for s in (node.this, node.expression) if is_text(s, types)), None)
        if side is not None:
            _wrap(side)
    elif isinstance(node, exp.Between | exp.Min | exp.Max):
        if is_text(node.this, types):
            _wrap(node.this)
    else:  # greatest, least
        first = next((a for a in [node.this, *node.expressions] if is_text(a, types)), None)
        if first is not None:
            _wrap(first)


def _collate_order(order: exp.Order, types: Mapping[str, pa.DataType], root: exp.Expr) -> exp.Expr:
    """Byte order for the text keys of one ORDER BY; the (possibly new) root."""
    query = order.parent
    if not isinstance(query, exp.Select | exp.SetOperation | exp.Subquery):
        for ordered in order.expressions:  # a window's or an aggregate's: keys over input rows
            if is_text(ordered.this, types):
                _wrap(ordered.this)
        return root
    outputs = _outputs(query)
    if isinstance(query, exp.Select) and not query.args.get("distinct"):
        for ordered in order.expressions:
            key = _output_expression(ordered.this, outputs)
            if key is not None and is_text(key, types):
                ordered.set("this", _collated(key.copy()))
            elif key is None and is_text(ordered.this, types):
                _wrap(ordered.this)
        return root
    # DISTINCT and set operations order by output columns only: sort outside them
    keys = [_output_name(ordered.this, outputs) for ordered in order.expressions]
    texts = [name is not None and is_text(outputs[name], types) for name in keys]
    if not any(texts) or None in keys or len(set(outputs)) < len(outputs):
        return root
    sorted_query = _sort_outside(query, order, keys, texts)
    if query is root:
        return sorted_query
    query.replace(sorted_query)
    return root


def _outputs(query: exp.Expr) -> dict[str, exp.Expr]:
    """Output name -> expression, from the query's (first branch's) SELECT list."""
    select = query
    while isinstance(select, exp.SetOperation | exp.Subquery):
        select = select.this
    if not isinstance(select, exp.Select):
        return {}
    return {p.alias_or_name: p.unalias() for p in select.expressions
            if not isinstance(p.unalias(), exp.Star)}


def _output_name(key: exp.Expr, outputs: dict[str, exp.Expr]) -> str | None:
    """The output a sort key names: by name, by position, or as the same expression."""
    names = list(outputs)
    if isinstance(key, exp.Literal) and key.is_int and 0 < int(key.name) <= len(names):
        return names[int(key.name) - 1]
    if isinstance(key, exp.Column) and not key.table and key.name in outputs:
        return key.name
    return next((name for name, expr in outputs.items() if expr == key), None)


def _output_expression(key: exp.Expr, outputs: dict[str, exp.Expr]) -> exp.Expr | None:
    """The SELECT-list expression a plain query's sort key names by alias or position (a key
    that is an input column of the same name is that column)."""
    name = _output_name(key, outputs)
    if name is None or (isinstance(key, exp.Column) and outputs[name] == key):
        return None
    if isinstance(key, exp.Column | exp.Literal):
        return outputs[name]
    return None


def _sort_outside(query: exp.Expr, order: exp.Order, keys: list[str], texts: list[bool]) -> exp.Expr:
    """``SELECT * FROM (query without its ORDER BY/LIMIT/OFFSET) ORDER BY <outputs, text ones
    COLLATE "C"> LIMIT/OFFSET``: the same rows in DuckDB's order."""
    inner = query.copy()
    limit, offset = inner.args.get("limit"), inner.args.get("offset")
    for arg in ("order", "limit", "offset"):
        inner.set(arg, None)
    alias = "__fq_sorted"
    ordered = []
    for original, name, text in zip(order.expressions, keys, texts, strict=True):
        column = exp.column(name, table=alias, quoted=True)
        ordered.append(_with_key(original, _collated(column) if text else column))
    outer = exp.select("*").from_(exp.Subquery(this=inner, alias=exp.TableAlias(
        this=exp.to_identifier(alias, quoted=True))))
    outer.set("order", exp.Order(expressions=ordered))
    if limit is not None:
        outer.set("limit", limit)
    if offset is not None:
        outer.set("offset", offset)
    return outer


def _with_key(ordered: exp.Ordered, key: exp.Expr) -> exp.Ordered:
    copy = ordered.copy()
    copy.set("this", key)
    return copy


def is_text(node: exp.Expr, types: Mapping[str, pa.DataType]) -> bool:
    """Whether ``node`` is known to be text: a text column, a text function, a cast to text.
    String literals are not: PostgreSQL may read one as a date or a number."""
    if isinstance(node, exp.Paren):
        return is_text(node.this, types)
    if isinstance(node, exp.Column):
        kind = types.get(node.name)
        return kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                                     or pa.types.is_string_view(kind))
    if isinstance(node, exp.Cast):
        return node.to.is_type(*_TEXT_TYPES)
    if isinstance(node, exp.Min | exp.Max):
        return is_text(node.this, types)
    if isinstance(node, exp.Coalesce):
        return any(is_text(arg, types) for arg in [node.this, *node.expressions])
    return isinstance(node, (*_TEXT_FUNCTIONS, exp.Collate))


def _wrap(node: exp.Expr) -> None:
    if isinstance(node, exp.Collate) or isinstance(node.parent, exp.Collate):
        return
    node.replace(_collated(node.copy()))


def _collated(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Collate):
        return node
    return exp.Collate(this=node, expression=exp.to_identifier("C", quoted=True))
