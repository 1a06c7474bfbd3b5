"""Fragments in DuckDB's dialect turned into the SQL PostgreSQL receives, through sqlglot trees.

The dialect-independent work (scan requests as SELECTs, local table names, column names matched
and quoted, ``$name`` values bound as literals) is ``_sql_render``'s; this module adds
PostgreSQL's: list lengths as ``cardinality``, DuckDB's meaning kept where PostgreSQL's differs
(see ``_postgres_semantics``), PostgreSQL's literals for bytes, intervals and non-finite numbers,
and the decimal types of a fragment's outputs.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from fedquery.connectors import _sql_render as render
from fedquery.connectors._postgres_semantics import keep_duckdb_semantics
from fedquery.connectors._sql_render import ROW_MARKER, fragment_tree, parse  # noqa: F401
from fedquery.connectors.base import ScanRequest, TableRef

DIALECT = "postgres"
_LIST_LENGTH = {"len", "length", "list_length", "array_length"}


def scan_tree(request: ScanRequest, table: TableRef, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """The SELECT answering a one-table scan request; ``types`` are the table's columns."""
    return localize(render.scan_select(request, table, types), types)


def localize(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Column names spelled and quoted as the source's columns; DuckDB list lengths as
    PostgreSQL's ``cardinality`` (``length`` of an array is an error there, ``array_length``
    is NULL for an empty one); DuckDB's meaning kept where PostgreSQL's differs (see
    ``_postgres_semantics``)."""
    tree = render.match_names(tree, types)
    tree = tree.transform(lambda node: _cardinality(node, types))
    return keep_duckdb_semantics(tree, types)


def _cardinality(node: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    if isinstance(node, exp.ArraySize) and not node.expression:
        return exp.Anonymous(this="CARDINALITY", expressions=[node.this])
    if isinstance(node, exp.Anonymous) and node.name.lower() in _LIST_LENGTH and len(
            node.expressions) == 1:
        return exp.Anonymous(this="CARDINALITY", expressions=node.expressions)
    if isinstance(node, exp.Length) and isinstance(node.this, exp.Column):
        kind = types.get(node.this.name)
        if kind is not None and (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            return exp.Anonymous(this="CARDINALITY", expressions=[node.this])
    return node


# ---------------------------------------------------------------------- parameter values


def bind_values(tree: exp.Expr, params: Mapping[str, Any] | Sequence[Any] | None) -> exp.Expr:
    """Every ``$name`` placeholder replaced by a PostgreSQL literal of its value (see
    ``_sql_render.bind_values``)."""
    return render.bind_values(tree, params, literal, "PostgreSQL")


def literal(value: Any) -> exp.Expr:
    """A PostgreSQL literal for a Python value, built by sqlglot from the value itself (see
    ``_sql_render.plain_literal``)."""
    plain = render.plain_literal(value)
    if plain is not None:
        return plain
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, decimal.Decimal):
        return exp.cast(exp.Literal.string(decimal.Decimal.__str__(value)), "NUMERIC")
    if isinstance(value, bytes | bytearray | memoryview):
        return exp.cast(exp.Literal.string("\\x" + bytes(value).hex()), "BYTEA")
    if isinstance(value, dt.timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return exp.cast(exp.Literal.string(f"{int(micros)} microseconds"), "INTERVAL")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return exp.convert(render.plain_time(value))
    if isinstance(value, list | tuple):
        return exp.Array(expressions=[literal(v) for v in value])
    raise TypeError(f"a {type(value).__name__} value cannot be sent to PostgreSQL")


def _float(value: float) -> exp.Expr:
    if math.isfinite(value):
        return exp.Literal.number(repr(value))
    text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return exp.cast(exp.Literal.string(text), "DOUBLE PRECISION")


# ---------------------------------------------------------------------- result types


def numeric_outputs(tree: exp.Expr, columns: Mapping[str, pa.DataType]) -> dict[str, pa.DataType]:
    """Decimal types for a fragment's output columns, where the query shows them.

    PostgreSQL reports no precision for computed ``numeric`` values to the driver, so the type
    is read from the query: a column keeps its table type; ``sum`` of decimal(p, s) or of a
    bigint is decimal(38, s) (DuckDB's type for it); ``min``/``max`` keep the argument's type;
    a cast to ``DECIMAL(p, s)`` is that type; outputs of subqueries and CTEs are known by name
    to the queries that read them. Other numeric outputs become float64.
    """
    scope = dict(columns)
    for inner in reversed(list(tree.find_all(exp.Subquery, exp.CTE))):  # innermost first
        scope.update(_outputs(inner.this, scope))
    return _outputs(tree, scope)


def _outputs(query: exp.Expr, scope: Mapping[str, pa.DataType]) -> dict[str, pa.DataType]:
    select = query
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return {}
    out: dict[str, pa.DataType] = {}
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column)
                                                and isinstance(projection.this, exp.Star)):
            out.update({k: _decimal(v) for k, v in scope.items() if _decimal(v) is not None})
            continue
        kind = _decimal_of(projection.unalias(), scope)
        if kind is not None:
            out[projection.alias_or_name] = kind
    return out


def _decimal_of(node: exp.Expr, columns: Mapping[str, pa.DataType]) -> pa.DataType | None:
    if isinstance(node, exp.Column):
        return _decimal(columns.get(node.name))
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DECIMAL):
        params = [int(p.name) for p in node.to.expressions if p.name.isdigit()]
        return pa.decimal128(*params) if len(params) == 2 and params[0] <= 38 else None
    if isinstance(node, exp.Sum):
        inner = node.this.expressions[0] if isinstance(node.this, exp.Distinct) else node.this
        kind = columns.get(inner.name) if isinstance(inner, exp.Column) else None
        if kind is not None and pa.types.is_decimal(kind):
            return pa.decimal128(38, kind.scale)
        return pa.decimal128(38, 0) if kind is not None and pa.types.is_integer(kind) else None
    if isinstance(node, exp.Min | exp.Max):
        return _decimal_of(node.this, columns)
    return None


def _decimal(kind: pa.DataType | None) -> pa.DataType | None:
    """The decimal type of a column's numeric values (of its elements, for an array)."""
    while kind is not None and (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        kind = kind.value_type
    return kind if kind is not None and pa.types.is_decimal(kind) else None
