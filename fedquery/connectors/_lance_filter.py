"""A scan's DuckDB predicate as a pyarrow expression, for Lance's own (pre)filter.

A vector search run by Lance takes its filter as a pyarrow ``Expression``. Only predicates
whose meaning is the same in both engines are translated: comparisons, ``IN`` lists,
``BETWEEN``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT`` (Kleene logic, as SQL's three-valued
logic), over plain columns, numbers, strings, booleans and ``$parameters`` holding those.
Anything else (casts, functions, LIKE, dates) gives None, and the caller scans with DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

_COMPARISONS = {exp.EQ: "__eq__", exp.NEQ: "__ne__", exp.GT: "__gt__", exp.GTE: "__ge__",
                exp.LT: "__lt__", exp.LTE: "__le__"}
_NOT_A_VALUE = object()


class Untranslatable(Exception):
    """A part of the predicate has no exact pyarrow equivalent."""


def arrow_filter(sql: str | None, params: Mapping[str, Any] | None = None
                 ) -> pc.Expression | None | bool:
    """The pyarrow expression of ``sql`` (None: no filter); False when it cannot be
    translated exactly."""
    if not sql:
        return None
    try:
        return _expression(sqlglot.parse_one(sql, dialect="duckdb"), params or {})
    except (Untranslatable, sqlglot.errors.ParseError):
        return False


def _expression(node: exp.Expr, params: Mapping[str, Any]) -> pc.Expression:
    if isinstance(node, exp.Paren):
        return _expression(node.this, params)
    if isinstance(node, exp.And):
        return _expression(node.this, params) & _expression(node.expression, params)
    if isinstance(node, exp.Or):
        return _expression(node.this, params) | _expression(node.expression, params)
    if isinstance(node, exp.Not):
        if node.find(exp.In):  # pyarrow's is_in gives false for NULL, SQL gives NULL
            raise Untranslatable(node.sql("duckdb"))
        return ~_expression(node.this, params)
    if type(node) in _COMPARISONS:
        left, right = _operand(node.this, params), _operand(node.expression, params)
        if not any(isinstance(side, pc.Expression) for side in (left, right)):
            raise Untranslatable(node.sql("duckdb"))
        if not isinstance(left, pc.Expression):
            left, right = right, left
            flipped = {exp.GT: "__lt__", exp.GTE: "__le__", exp.LT: "__gt__", exp.LTE: "__ge__"}
            return getattr(left, flipped.get(type(node), _COMPARISONS[type(node)]))(right)
        return getattr(left, _COMPARISONS[type(node)])(right)
    if isinstance(node, exp.In) and not node.args.get("query") and not node.args.get("unnest"):
        column = _column(node.this)
        values = [_value(v, params) for v in node.expressions]
        if any(v is None for v in values):
            raise Untranslatable("NULL in an IN list")  # SQL: NULL, not false, for a miss
        return column.isin(values)
    if isinstance(node, exp.Between):
        column = _column(node.this)
        low, high = _value(node.args["low"], params), _value(node.args["high"], params)
        return (column >= low) & (column <= high)
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return _column(node.this).is_null()
    if isinstance(node, exp.Boolean):
        return pc.scalar(bool(node.this))
    if isinstance(node, exp.Column):
        return _column(node)  # a boolean column
    raise Untranslatable(node.sql("duckdb"))


def _operand(node: exp.Expr, params: Mapping[str, Any]) -> Any:
    if isinstance(node, exp.Column):
        return _column(node)
    value = _value(node, params)
    if value is None:
        raise Untranslatable("a comparison with NULL")
    return value


def _column(node: exp.Expr) -> pc.Expression:
    if isinstance(node, exp.Paren):
        return _column(node.this)
    if not isinstance(node, exp.Column) or node.table:
        raise Untranslatable(node.sql("duckdb"))
    return pc.field(node.name)


def _value(node: exp.Expr, params: Mapping[str, Any]) -> Any:
    """A literal's Python value (numbers, strings, booleans, NULL), else Untranslatable."""
    if isinstance(node, exp.Paren):
        return _value(node.this, params)
    if isinstance(node, exp.Neg):
        value = _value(node.this, params)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Untranslatable(node.sql("duckdb"))
        return -value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise Untranslatable(text) from None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Placeholder) and node.name and node.name in params:
        value = params[node.name]
        if value is None or isinstance(value, bool | int | float | str):
            return value
    raise Untranslatable(node.sql("duckdb"))
