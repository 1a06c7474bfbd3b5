"""Fragments in DuckDB's dialect turned into the SQL another engine receives, through sqlglot
trees; shared by the PostgreSQL connector and ``kind: adbc``.

Values never reach a source as spliced text: each ``$name`` placeholder becomes a literal that
sqlglot produces from the Python value (the source's ``literal`` function decides how its dialect
writes each type). Table names lose their source part and are quoted as the source spells them;
column names are matched to the table's columns (DuckDB names are case-insensitive) and quoted.
What each dialect needs beyond this (its rewrites keeping DuckDB's meaning) stays in its module.
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
from fedquery.connectors.base import ScanRequest, TableRef

ROW_MARKER = "__row"  # the column a scan without columns returns (the planner's marker)


def scan_schema(request: ScanRequest, table: TableRef, schema: pa.Schema, source: str) -> pa.Schema:
    """The schema a scan of ``table`` answers with: its asked columns in their order (a
    ``SourceError`` names one it lacks), or the row marker when none is asked."""
    from fedquery.errors import SourceError

    columns = request.columns if request.columns is not None else tuple(schema.names)
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise SourceError(f"table {table} has no column {missing[0]!r} (it has: "
                          f"{', '.join(schema.names)})", source=source)
    if not columns:
        return pa.schema([pa.field(ROW_MARKER, pa.bool_())])
    return pa.schema([schema.field(c) for c in columns])
Literal = Callable[[Any], exp.Expr]


def parse(sql: str) -> exp.Expr:
    """A DuckDB-dialect statement as a sqlglot tree."""
    return sqlglot.parse_one(sql, dialect="duckdb")


def scan_select(request: ScanRequest, table: TableRef, types: Mapping[str, pa.DataType]) -> exp.Select:
    """The SELECT answering a one-table scan request (DuckDB's dialect, names not yet matched to
    the source's); ``types`` are the table's columns. A ``with_ties`` top-N keeps every row tied
    with the last of the first ``limit`` rows, through a rank window (``_native.with_ties``)."""
    names = list(request.columns) if request.columns is not None else list(types)
    projection = ([exp.column(name, quoted=True) for name in names] if names
                  else [exp.alias_(exp.true(), ROW_MARKER, quoted=True)])
    select = exp.select(*projection).from_(exp.table_(table.name, db=table.schema, quoted=True))
    if request.filter:
        select = select.where(parse(request.filter))
    if request.with_ties and request.order_by and request.limit is not None:
        outer = [exp.column(name, quoted=True) for name in names or [ROW_MARKER]]
        return with_ties(select, outer, request)
    if request.order_by:
        select = select.order_by(*request.order_by, dialect="duckdb")
    if request.limit is not None:
        select = select.limit(request.limit)
    return select


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


def match_names(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Column names spelled and quoted as the source's columns (an exact name, else the one
    name that matches ignoring case); output aliases quoted, as DuckDB keeps them as written."""
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
    return tree


def _keep_output_names(tree: exp.Expr) -> None:
    """Quote the output aliases (an engine may fold unquoted ones; DuckDB keeps them as
    written) and the ORDER BY references to them."""
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


# ---------------------------------------------------------------------- parameter values


def bind_values(tree: exp.Expr, params: Mapping[str, Any] | Sequence[Any] | None,
                literal: Literal, target: str) -> exp.Expr:
    """Every ``$name`` placeholder replaced by ``literal(value)``.

    ``$1``, ``$2`` take their values from a list (or from a dict keyed ``"1"``, ``"2"``); a
    bare ``?`` cannot be matched once the planner moved it, and is refused rather than guessed.
    With ``params`` None the placeholders stay, shown as ``$name`` (what ``explain`` prints
    before values are known). A missing value raises ``KeyError`` naming the parameter; a value
    the source cannot receive raises ``TypeError`` (from ``literal``). ``target`` names the
    source's engine in messages.
    """

    def value_of(placeholder: exp.Placeholder) -> tuple[str, Any]:
        key = placeholder.this
        if not key:  # a bare ?: its place in the user's query is lost by now
            if params is None:
                return "?", None
            raise KeyError(f"a positional ? parameter reached {target} without its number; "
                           "write $1, $2, ... or $name instead")
        return key, (None if params is None else _value(params, key))

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.In) and isinstance(node.args.get("field"), exp.Placeholder):
            subject = node.this.transform(replace)
            key, values = value_of(node.args["field"])
            return (exp.In(this=subject, field=_shown(key)) if params is None
                    else _in_list(subject, values, literal))
        if not isinstance(node, exp.Placeholder):
            return node
        key, value = value_of(node)
        return _shown(key) if params is None else literal(value)

    return tree.transform(replace)


def _shown(key: str) -> exp.Expr:
    return exp.var("?" if key == "?" else f"${key}")


def _in_list(subject: exp.Expr, values: Any, literal: Literal) -> exp.Expr:
    """``x IN $values`` with a list value: DuckDB tests membership, SQL engines need a list."""
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


def plain_literal(value: Any) -> exp.Expr | None:
    """The literal of a value every SQL engine writes alike (NULL, booleans, integers, finite
    numbers, strings, UUIDs as text), built by sqlglot from the value itself: a subclass of a
    built-in type is read through the built-in's own methods, so no ``__str__`` or
    ``__repr__`` of a caller's class ever reaches the SQL text. None for any other value (the
    dialect's ``literal`` decides)."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=bool.__bool__(value))
    if isinstance(value, int):
        return exp.Literal.number(int.__repr__(value))
    if isinstance(value, float) and math.isfinite(float.__float__(value)):
        return exp.Literal.number(repr(float.__float__(value)))
    if isinstance(value, decimal.Decimal) and decimal.Decimal.is_finite(value):
        return exp.Literal.number(decimal.Decimal.__str__(value))
    if isinstance(value, str):  # an untyped string literal: the engine infers
        return exp.Literal.string(str.__str__(value))
    if isinstance(value, uuid.UUID):
        return exp.Literal.string(uuid.UUID.__str__(value))
    return None


def plain_time(value: dt.date | dt.time) -> dt.date | dt.time:
    """A date, time or datetime rebuilt from its fields (no subclass methods)."""
    if isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, value.hour, value.minute,
                           value.second, value.microsecond, value.tzinfo)
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    return dt.time(value.hour, value.minute, value.second, value.microsecond, value.tzinfo)
