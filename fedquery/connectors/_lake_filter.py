"""A scan's DuckDB filter as a pruning predicate for a table format's own file planner.

Iceberg and Delta Lake skip whole data files by their metadata (partition values, min/max
statistics) when given a predicate. Only the parts of a filter whose meaning is DuckDB's on
the column's type are kept: comparisons, ``IN``, ``BETWEEN``, ``IS [NOT] NULL``, ``AND`` and
``OR`` over plain columns of integer, string, date, timestamp (without a time zone), boolean
and decimal types, against literals or ``$parameters``. Any other conjunct of the top-level
``AND`` is dropped, which only keeps more files: the scan applies the whole filter exactly
afterwards, in DuckDB. Floating-point columns are never used (NaN orders differently).

>>> import pyarrow as pa
>>> schema = pa.schema([("id", pa.int32()), ("name", pa.string())])
>>> prune_predicate("id > 4 AND lower(name) = 'a'", None, schema)
Cmp(column='id', op='>', value=4)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

_OPS = {exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_FLIP = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


@dataclass(frozen=True)
class Cmp:
    """``column op value`` (``op``: = != < <= > >=)."""

    column: str
    op: str
    value: Any


@dataclass(frozen=True)
class In:
    column: str
    values: tuple


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    parts: tuple


@dataclass(frozen=True)
class Or:
    parts: tuple


Node = Cmp | In | IsNull | And | Or


class _Untranslatable(Exception):
    """A part of the filter has no exact equivalent in the pruning vocabulary."""


def prune_predicate(sql: str | None, params: Mapping[str, Any] | None,
                    schema: pa.Schema) -> Node | None:
    """The conjuncts of ``sql`` that can prune files (None: none can)."""
    if not sql:
        return None
    try:
        tree = sqlglot.parse_one(sql, dialect="duckdb")
    except sqlglot.errors.ParseError:
        return None
    kept = []
    for conjunct in _conjuncts(tree):
        try:
            kept.append(_Translator(schema, params or {}).node(conjunct))
        except _Untranslatable:
            continue
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def columns_of(node: Node | None) -> set[str]:
    """The columns a pruning predicate names."""
    if node is None:
        return set()
    if isinstance(node, And | Or):
        return set().union(*(columns_of(p) for p in node.parts))
    return {node.column}


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


class _Translator:
    def __init__(self, schema: pa.Schema, params: Mapping[str, Any]) -> None:
        self.schema, self.params = schema, params

    def node(self, node: exp.Expr) -> Node:
        if isinstance(node, exp.Paren):
            return self.node(node.this)
        if isinstance(node, exp.And):
            return And((self.node(node.this), self.node(node.expression)))
        if isinstance(node, exp.Or):
            return Or((self.node(node.this), self.node(node.expression)))
        if type(node) in _OPS:
            return self.comparison(node)
        if isinstance(node, exp.In) and not node.args.get("query") and not node.args.get("unnest"):
            column, kind = self.column(node.this)
            values = tuple(self.value(v, kind) for v in node.expressions)
            return In(column, values)
        if isinstance(node, exp.Between) and not node.args.get("symmetric"):
            column, kind = self.column(node.this)
            low = self.value(node.args["low"], kind)
            high = self.value(node.args["high"], kind)
            return And((Cmp(column, ">=", low), Cmp(column, "<=", high)))
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return IsNull(self.column(node.this)[0])
        if isinstance(node, exp.Not) and isinstance(node.this, exp.Is) \
                and isinstance(node.this.expression, exp.Null):
            return IsNull(self.column(node.this.this)[0], negated=True)
        if isinstance(node, exp.Column):
            column, kind = self.column(node)
            if kind != "bool":
                raise _Untranslatable(node.sql("duckdb"))
            return Cmp(column, "=", True)
        raise _Untranslatable(node.sql("duckdb"))

    def comparison(self, node: exp.Expr) -> Cmp:
        op, left, right = _OPS[type(node)], node.this, node.expression
        if not _is_column(left):
            left, right, op = right, left, _FLIP[op]
        column, kind = self.column(left)
        return Cmp(column, op, self.value(right, kind))

    def column(self, node: exp.Expr) -> tuple[str, str]:
        """The schema's name of a plain column and the kind of its type."""
        while isinstance(node, exp.Paren):
            node = node.this
        if not _is_column(node):
            raise _Untranslatable(node.sql("duckdb"))
        name = node.name
        names = self.schema.names
        if name not in names:
            folded = [n for n in names if n.lower() == name.lower()]
            if len(folded) != 1:
                raise _Untranslatable(name)
            name = folded[0]
        kind = _kind(self.schema.field(name).type)
        if kind is None:
            raise _Untranslatable(name)
        return name, kind

    def value(self, node: exp.Expr, kind: str) -> Any:
        """A literal's (or parameter's) value, exactly as DuckDB compares it to the column."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Placeholder) and node.name in self.params:
            raw = self.params[node.name]
            return _typed(getattr(raw, "object", raw), kind)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) \
                and not node.this.is_string and kind in ("int", "decimal"):
            return -self.value(node.this, kind)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return _typed(node.this, kind)
            return _number(node.this, kind)
        if isinstance(node, exp.Boolean) and kind == "bool":
            return bool(node.this)
        if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
            target = node.to.this
            if (kind == "date" and target == exp.DataType.Type.DATE) or (
                    kind == "timestamp" and target in (exp.DataType.Type.TIMESTAMP,
                                                       exp.DataType.Type.TIMESTAMPNTZ)):
                return _typed(node.this.this, kind)
        raise _Untranslatable(node.sql("duckdb"))


def _is_column(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier)


def _kind(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) \
            or pa.types.is_string_view(arrow_type):
        return "string"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
        return "timestamp"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_decimal(arrow_type):
        return f"decimal:{arrow_type.precision}:{arrow_type.scale}"
    return None


def _number(text: str, kind: str) -> Any:
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise _Untranslatable(text) from None
    if kind.startswith("decimal"):
        return _typed(text, kind)
    raise _Untranslatable(text)


def _typed(value: Any, kind: str) -> Any:
    """``value`` as the column's kind, when DuckDB would compare them exactly so."""
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "date":
        return _date(value)
    if kind == "timestamp":
        return _timestamp(value)
    if kind.startswith("decimal:") and not isinstance(value, bool | float):
        _, precision, scale = kind.split(":")
        return _decimal(value, int(precision), int(scale))
    raise _Untranslatable(repr(value))


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _Untranslatable(repr(value))


def _timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value
    if isinstance(value, str) and 10 < len(value) <= 26 and value[10] in " T":
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Untranslatable(value) from None
        if parsed.tzinfo is None:
            return parsed
    raise _Untranslatable(repr(value))


def _decimal(value: Any, precision: int, scale: int) -> Decimal:
    """A number the column's type holds exactly (a finer one could round when bound, a larger
    one does not fit the type the table format casts it to)."""
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise _Untranslatable(repr(value)) from None
    if not number.is_finite() or number.as_tuple().exponent < -scale:
        raise _Untranslatable(repr(value))
    try:
        number = number.quantize(Decimal(1).scaleb(-scale))  # written at the column's scale
    except InvalidOperation:
        raise _Untranslatable(repr(value)) from None
    if len(number.as_tuple().digits) > precision:
        raise _Untranslatable(repr(value))
    return number
