"""Fragments in DuckDB's dialect turned into the SQL PostgreSQL receives, through sqlglot trees.

Values never reach PostgreSQL as spliced text: each ``$name`` placeholder becomes a literal that
sqlglot produces from the Python value. Table names lose their source part and are quoted as the
source spells them; column names are matched to the table's columns (DuckDB names are
case-insensitive, PostgreSQL folds unquoted names to lower case) and quoted.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from fedquery.connectors._native import with_ties
from fedquery.connectors._postgres_semantics import keep_duckdb_semantics
from fedquery.connectors.base import ScanRequest, TableRef

DIALECT = "postgres"
ROW_MARKER = "__row"  # the column a scan without columns returns (the planner's marker)
_LIST_LENGTH = {"len", "length", "list_length", "array_length"}


def parse(sql: str) -> exp.Expr:
    """A DuckDB-dialect statement as a sqlglot tree."""
    return sqlglot.parse_one(sql, dialect="duckdb")


def scan_tree(request: ScanRequest, table: TableRef, types: Mapping[str, pa.DataType]) -> exp.Select:
    """The SELECT answering a one-table scan request; ``types`` are the table's columns."""
    names = list(request.columns) if request.columns is not None else list(types)
    projection = ([exp.column(name, quoted=True) for name in names] if names
                  else [exp.alias_(exp.true(), ROW_MARKER, quoted=True)])
    select = exp.select(*projection).from_(exp.table_(table.name, db=table.schema, quoted=True))
    if request.filter:
        select = select.where(parse(request.filter))
    if request.with_ties and request.order_by and request.limit is not None:
        outer = [exp.column(name, quoted=True) for name in names or [ROW_MARKER]]
        return localize(with_ties(select, outer, request), types)
    if request.order_by:
        select = select.order_by(*request.order_by, dialect="duckdb")
    if request.limit is not None:
        select = select.limit(request.limit)
    return localize(select, types)


def fragment_tree(sql: str, source: str, resolve: Callable[[str, str], TableRef]) -> tuple[
        exp.Expr, list[TableRef]]:
    """A whole fragment with its ``source.schema.table`` names made local; the tables it reads.

    ``resolve(schema, name)`` returns the table as the source spells it. Anything but one
    query raises ValueError, as does SQL that does not parse (``sqlglot.errors.ParseError``).
    """
    tree = parse(sql)
    if not isinstance(tree, exp.Query):
        raise ValueError(f"a fragment is one query (SELECT, WITH, set operation), not "
                         f"{tree.key.upper()}")
    tables = []
    for table in tree.find_all(exp.Table):
        if table.catalog.lower() != source.lower() or not table.db:
            continue
        ref = resolve(table.db, table.name)
        table.set("catalog", None)
        table.set("db", exp.to_identifier(ref.schema, quoted=True))
        table.set("this", exp.to_identifier(ref.name, quoted=True))
        tables.append(ref)
    return tree, tables


def localize(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Column names spelled and quoted as the source's columns; DuckDB list lengths as
    PostgreSQL's ``cardinality`` (``length`` of an array is an error there, ``array_length``
    is NULL for an empty one); DuckDB's meaning kept where PostgreSQL's differs (see
    ``_postgres_semantics``)."""
    exact = set(types)
    folded: dict[str, list[str]] = {}
    for name in types:
        folded.setdefault(name.lower(), []).append(name)
    for column in tree.find_all(exp.Column):
        ident = column.this
        if not isinstance(ident, exp.Identifier):
            continue
        match = ident.name if ident.name in exact else None
        if match is None and not ident.quoted and len(folded.get(ident.name.lower(), [])) == 1:
            match = folded[ident.name.lower()][0]
        if match is not None:
            column.set("this", exp.to_identifier(match, quoted=True))
    _keep_output_names(tree)
    tree = tree.transform(lambda node: _cardinality(node, types))
    return keep_duckdb_semantics(tree, types)


def _keep_output_names(tree: exp.Expr) -> None:
    """Quote the output aliases (PostgreSQL folds unquoted ones to lower case; DuckDB keeps
    them as written) and the ORDER BY references to them."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    aliases = {}
    for projection in select.expressions:
        if isinstance(projection, exp.Alias) and isinstance(projection.args.get("alias"),
                                                            exp.Identifier):
            projection.args["alias"].set("quoted", True)
            aliases[projection.alias.lower()] = projection.alias
    order = tree.args.get("order")
    for column in order.find_all(exp.Column) if order else []:
        if not column.table and column.name.lower() in aliases and not column.this.quoted:
            column.set("this", exp.to_identifier(aliases[column.name.lower()], quoted=True))


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
    """Every ``$name`` placeholder replaced by a sqlglot literal of its value.

    ``$1``, ``$2`` take their values from a list (or from a dict keyed ``"1"``, ``"2"``); a
    bare ``?`` cannot be matched once the planner moved it, and is refused rather than guessed.
    With ``params`` None the placeholders stay, shown as ``$name`` (what ``explain`` prints
    before values are known). A missing value raises ``KeyError`` naming the parameter; a value
    PostgreSQL cannot receive raises ``TypeError``.
    """

    def value_of(placeholder: exp.Placeholder) -> tuple[str, Any]:
        key = placeholder.this
        if not key:  # a bare ?: its place in the user's query is lost by now
            if params is None:
                return "?", None
            raise KeyError("a positional ? parameter reached PostgreSQL without its number; "
                           "write $1, $2, ... or $name instead")
        return key, (None if params is None else _value(params, key))

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.In) and isinstance(node.args.get("field"), exp.Placeholder):
            subject = node.this.transform(replace)
            key, values = value_of(node.args["field"])
            return (exp.In(this=subject, field=_shown(key)) if params is None
                    else _in_list(subject, values))
        if not isinstance(node, exp.Placeholder):
            return node
        key, value = value_of(node)
        return _shown(key) if params is None else literal(value)

    return tree.transform(replace)


def _shown(key: str) -> exp.Expr:
    return exp.var("?" if key == "?" else f"${key}")


def _in_list(subject: exp.Expr, values: Any) -> exp.Expr:
    """``x IN $values`` with a list value: DuckDB tests membership, PostgreSQL needs a list."""
    if not isinstance(values, list | tuple | set | frozenset):
        return exp.In(this=subject, expressions=[literal(values)])
    members = [v for v in values if v is not None]  # DuckDB's membership never matches NULL
    if not members:  # NULL for a NULL subject, false otherwise, as DuckDB's
        return exp.If(this=exp.Is(this=subject, expression=exp.null()), true=exp.null(),
                      false=exp.false())
    return exp.In(this=subject, expressions=[literal(v) for v in members])


def _value(params: Any, key: str) -> Any:
    if isinstance(params, Mapping):
        if key not in params:
            raise KeyError(f"no value for parameter ${key}")
        return params[key]
    index = int(key) - 1 if key.isdigit() else -1
    if not 0 <= index < len(params):
        raise KeyError(f"no value for parameter ${key}")
    return params[index]


def literal(value: Any) -> exp.Expr:
    """A PostgreSQL literal for a Python value, built by sqlglot from the value itself: a
    subclass of a built-in type is read through the built-in's own methods, so no ``__str__``
    or ``__repr__`` of a caller's class ever reaches the SQL text."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=bool.__bool__(value))
    if isinstance(value, int):
        return exp.Literal.number(int.__repr__(value))
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, decimal.Decimal):
        text = decimal.Decimal.__str__(value)
        return (exp.Literal.number(text) if decimal.Decimal.is_finite(value)
                else exp.cast(exp.Literal.string(text), "NUMERIC"))
    if isinstance(value, str):  # an untyped string literal: PostgreSQL infers
        return exp.Literal.string(str.__str__(value))
    if isinstance(value, uuid.UUID):
        return exp.Literal.string(uuid.UUID.__str__(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return exp.cast(exp.Literal.string("\\x" + bytes(value).hex()), "BYTEA")
    if isinstance(value, dt.timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return exp.cast(exp.Literal.string(f"{int(micros)} microseconds"), "INTERVAL")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return exp.convert(_plain_time(value))
    if isinstance(value, list | tuple):
        return exp.Array(expressions=[literal(v) for v in value])
    raise TypeError(f"a {type(value).__name__} value cannot be sent to PostgreSQL")


def _plain_time(value: dt.date | dt.time) -> dt.date | dt.time:
    """A date, time or datetime rebuilt from its fields (no subclass methods)."""
    if isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, value.hour, value.minute,
                           value.second, value.microsecond, value.tzinfo)
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    return dt.time(value.hour, value.minute, value.second, value.microsecond, value.tzinfo)


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
