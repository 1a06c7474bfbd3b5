"""DuckDB's meaning kept in the SQL SQLite receives, and SQLite's loose types made exact.

Types: a column's Arrow type is read from its declared type (SQLite keeps any value in any
column; the declaration is the only promise): ``BOOLEAN``/``BOOL`` → bool (stored 0/1), ``DATE``
→ date32 (ISO text ``YYYY-MM-DD``), ``DATETIME``/``TIMESTAMP`` → timestamp[us] (ISO text
``YYYY-MM-DD HH:MM:SS[.ffffff]``, ``T`` or space), then SQLite's affinity rules: ``INT`` anywhere
→ int64; ``CHAR``/``CLOB``/``TEXT`` → string; ``BLOB`` → binary; ``REAL``/``FLOA``/``DOUB`` and
every other name (``NUMERIC``, ``DECIMAL(10,2)``) → float64; no declared type → string. A value
that does not fit its column (text in an INTEGER column, a date that is not ISO text) is an error
naming the column, never a silent NULL or a guess.

Semantics: sqlglot translates syntax; these rewrites keep what the syntax means:

- ``LIKE``: SQLite's ignores ASCII case; it becomes ``GLOB`` with the pattern translated
  (``%`` → ``*``, ``_`` → ``?``, GLOB's own ``*?[`` quoted), case-sensitive as DuckDB's.
- Text order and equality: ``COLLATE BINARY`` (byte order, DuckDB's) on every text comparison,
  ``min``/``max`` and sort key, whatever collation a column was declared with.
- Dates and timestamps are text: a typed literal (``DATE '2024-02-29'``) or a string compared
  with such a column becomes the ISO text of its value; timestamps are compared in one form
  (``T`` as a space, trailing zeros of the fraction dropped), so text order is time order.
- ``NULLS FIRST/LAST`` are written out by sqlglot (SQLite puts NULLs first, DuckDB last).

What cannot be made exact raises ``NotExact`` (the connector then lets DuckDB evaluate it over
the rows SQLite sends): ``/`` (SQLite divides integers whole and gives NULL for a division by
zero, DuckDB raises), ``%`` of non-integers, a comparison of text with a number (SQLite compares
as text, DuckDB as numbers), casts other than of literals, ``ILIKE``, ``LIKE ... ESCAPE``, date
and time functions, arithmetic on anything but numbers (``date + 1``), products of integers
(SQLite turns an overflow into a double), dates and timestamps inside ``COALESCE``/``CASE`` or
typed literals outside a comparison, and a timestamp grouped, made distinct or compared with a
subquery (one instant may be stored as several texts). Timestamp sort keys and ``min``/``max``
read the one text form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from fedquery.connectors import _sql_render as render

DIALECT = "sqlite"
# The sqlglot expressions SQLite evaluates as DuckDB does, once rewritten here (the planner
# keeps every other one in DuckDB). Left out: / and // (integer division, NULL for a division
# by zero), ILIKE, ESCAPE, string functions (SQLite's lower/upper are ASCII only), date and time
# functions (SQLite has no date type), round (SQLite rounds half away from zero on doubles
# differently), window functions, set operations on mixed types.
EXPRESSIONS = frozenset({
    "Select", "From", "Join", "Where", "Group", "Having", "Order", "Ordered", "Limit", "Offset",
    "Subquery", "With", "CTE", "TableAlias", "Table", "Identifier", "Column", "Alias", "Star",
    "Tuple", "Paren", "Distinct", "Literal", "Boolean", "Null", "Placeholder", "Var", "Exists",
    "In", "And", "Or", "Not", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Is", "Between", "Like",
    "Add", "Sub", "Mul", "Neg", "Case", "If", "Coalesce", "Abs", "Cast", "DataType", "Length",
    "Count", "Sum", "Avg", "Min", "Max",
})
TIMESTAMP = pa.timestamp("us")
_ORDERING = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.Abs)
_TEXT = ("CHAR", "CLOB", "TEXT")
_TIMESTAMPS = (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.DATETIME)


class NotExact(ValueError):
    """SQLite would not give DuckDB's answer for this part of a fragment."""


# ---------------------------------------------------------------------- types


def declared_type(declared: str | None) -> pa.DataType:
    """The Arrow type of a column declared ``declared`` (see the module's table)."""
    name = (declared or "").upper().strip()
    base = name.split("(")[0].strip()
    if base in ("BOOLEAN", "BOOL"):
        return pa.bool_()
    if base == "DATE":
        return pa.date32()
    if base in ("DATETIME", "TIMESTAMP"):
        return TIMESTAMP
    if "INT" in name:
        return pa.int64()
    if not name or any(word in name for word in _TEXT):
        return pa.string()
    if "BLOB" in name:
        return pa.binary()
    return pa.float64()


def stored(column: exp.Expr, kind: pa.DataType, untyped: bool = False) -> exp.Expr:
    """The column as the driver should read it: a float column's integers as REAL (SQLite keeps
    ``7`` in a NUMERIC column as an integer, and the driver types a result by its first rows),
    an untyped column as text, a BLOB column as bytes."""
    if pa.types.is_floating(kind):
        is_int = exp.EQ(this=exp.func("typeof", column.copy()), expression=exp.Literal.string("integer"))
        return exp.Case(ifs=[exp.If(this=is_int, true=exp.cast(column.copy(), "REAL"))],
                        default=column)
    if untyped:
        return exp.cast(column, "TEXT")
    if pa.types.is_binary(kind):
        return exp.cast(column, "BLOB")
    return column


def convert_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A driver batch in the planned schema; a value its column's type cannot hold raises
    ValueError naming the column."""
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        try:
            columns.append(_convert(column, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise ValueError(f"column {field.name!r} holds a value that is not a {_word(field.type)} "
                             f"({str(exc).splitlines()[0]})") from exc
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _convert(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_null(array.type) or array.null_count == len(array):  # typed by no value
        return pa.nulls(len(array), target)
    if pa.types.is_boolean(target) and pa.types.is_integer(array.type):
        return pc.not_equal(array, 0)
    if pa.types.is_string(array.type) and (pa.types.is_date(target) or pa.types.is_timestamp(target)):
        return pc.cast(array, target)  # ISO text only: Arrow's parser refuses anything else
    if pa.types.is_integer(target) and pa.types.is_floating(array.type):
        return pc.cast(array, target, safe=True)  # 3.5 in an INTEGER column: an error
    if (pa.types.is_string(target) or pa.types.is_binary(target)) != (
            pa.types.is_string(array.type) or pa.types.is_binary(array.type)):
        raise ValueError(f"the driver read {array.type}")
    return pc.cast(array, target)


def _word(kind: pa.DataType) -> str:
    for test, word in ((pa.types.is_boolean, "boolean"), (pa.types.is_date, "date (YYYY-MM-DD)"),
                       (pa.types.is_timestamp, "timestamp (YYYY-MM-DD HH:MM:SS)"),
                       (pa.types.is_integer, "integer"), (pa.types.is_floating, "number"),
                       (pa.types.is_string, "text")):
        if test(kind):
            return word
    return str(kind)


def output_type(kind: exp.DataType | None) -> pa.DataType | None:
    """The Arrow type of a fragment output DuckDB would type ``kind`` (sqlglot's annotation);
    None when unknown (the driver's type is kept)."""
    if kind is None:
        return None
    t = exp.DataType.Type
    if kind.this in _TIMESTAMPS:
        return TIMESTAMP
    if kind.this in exp.DataType.INTEGER_TYPES:
        return pa.int64()
    if kind.this in exp.DataType.REAL_TYPES:
        return pa.float64()
    return {t.BOOLEAN: pa.bool_(), t.DATE: pa.date32(),
            t.VARCHAR: pa.string(), t.TEXT: pa.string(), t.BLOB: pa.binary()}.get(kind.this)


# ---------------------------------------------------------------------- literals


def literal(value: Any) -> exp.Expr:
    """A SQLite literal for a Python value: dates and timestamps as the ISO text SQLite keeps
    them in, bytes as a blob literal; a value SQLite has no form for raises ``TypeError``."""
    plain = render.plain_literal(value)
    if plain is not None:
        return exp.Literal.number(int(plain.this)) if isinstance(plain, exp.Boolean) else plain
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return exp.Literal.string(_timestamp_text(render.plain_time(value)))
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return exp.Literal.string(render.plain_time(value).isoformat())
    if isinstance(value, bytes | bytearray | memoryview):
        return exp.HexString(this=bytes(value).hex())
    raise TypeError(f"a {type(value).__name__} value cannot be sent to SQLite")


def _timestamp_text(value: dt.datetime) -> str:
    """The one form timestamps are compared in: ``YYYY-MM-DD HH:MM:SS[.f]``, no trailing zeros."""
    text = value.isoformat(" ")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------------- rewrites


def localize(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Names matched to the source's columns, then every rewrite of the module; raises
    ``NotExact`` for what SQLite cannot evaluate as DuckDB does."""
    tree = render.match_names(tree, types)
    types = {**types, **_aliased(tree, types)}
    for node in list(tree.walk()):
        _refuse(node, types)
    tree = tree.transform(lambda node: _temporal(node, types))
    for like in list(tree.find_all(exp.Like)):
        like.replace(_glob(like))
    for node in list(tree.find_all(*_ORDERING, exp.Between, exp.Min, exp.Max, exp.In)):
        _collate(node, types)
    _parenthesize(tree)
    for ordered in list(tree.find_all(exp.Ordered)):
        if _kind(ordered.this, types) == "text":
            ordered.set("this", _binary(ordered.this))
        elif _kind(ordered.this, types) == "timestamp":
            ordered.set("this", _timestamp_form(ordered.this.copy()))
    for extreme in list(tree.find_all(exp.Min, exp.Max)):
        if _kind(extreme.this, types) == "timestamp":
            extreme.set("this", _timestamp_form(extreme.this.copy()))
    return tree


def _aliased(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> dict[str, pa.DataType]:
    """The types of aliases of plain columns (a top-N with ties sorts by such aliases)."""
    return {a.alias: types[a.this.name] for a in tree.find_all(exp.Alias)
            if isinstance(a.this, exp.Column) and a.this.name in types and a.alias not in types}


def _refuse(node: exp.Expr, types: Mapping[str, pa.DataType]) -> None:
    if isinstance(node, exp.Window) and not _is_rank(node):
        raise NotExact("window functions other than rank() (a top-N with ties)")
    if isinstance(node, exp.Div | exp.IntDiv | exp.ILike | exp.Escape):
        raise NotExact(f"{node.key.upper()} does not mean the same in SQLite")
    if isinstance(node, exp.Mod) and not all(_kind(s, types) == "int" for s in (node.this, node.expression)):
        raise NotExact("% of non-integers")
    if isinstance(node, exp.Cast) and not _literal_cast(node):
        raise NotExact("a cast of a value that is not a literal")
    if isinstance(node, exp.Cast) and not isinstance(_parent(node), (*_ORDERING, exp.Between, exp.In)):
        raise NotExact("a date or timestamp value outside a comparison (SQLite keeps them as text)")
    if isinstance(node, _ARITHMETIC):
        _refuse_arithmetic(node, types)
    if isinstance(node, exp.Coalesce | exp.Case | exp.If):
        _branch_kind(node, types)  # raises NotExact for branches SQLite would mix
    if _timestamp_identity(node, types):
        raise NotExact("timestamps kept as text in several forms: grouped or made distinct "
                       "by DuckDB")
    if isinstance(node, (*_ORDERING, exp.Between, exp.In)):
        kinds = {_kind(s, types) for s in _operands(node)} - {None, "null"}
        if kinds & {"date", "timestamp"}:  # a string literal is read as one (see _temporal)
            kinds = {_kind(s, types) for s in _operands(node) if not _is_string(s)} - {None, "null"}
        if len(kinds) > 1 and not kinds <= {"int", "float"}:
            raise NotExact(f"a comparison of {' and '.join(sorted(kinds))}")
    if isinstance(node, exp.Length) and _kind(node.this, types) != "text":
        raise NotExact("length of a value that is not text")
    if isinstance(node, exp.Anonymous | exp.Func) and type(node).__name__ not in EXPRESSIONS \
            and not isinstance(node, exp.Cast | exp.Like) and not _ranking(node):
        raise NotExact(f"{node.sql('duckdb')[:40]} is not evaluated by SQLite as by DuckDB")


def _parent(node: exp.Expr) -> exp.Expr | None:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return parent


def _refuse_arithmetic(node: exp.Expr, types: Mapping[str, pa.DataType]) -> None:
    """Arithmetic SQLite does as DuckDB: on numbers only (``date + 1`` would add to the text's
    leading digits), and no product of integers (SQLite turns an overflow into a double where
    DuckDB raises)."""
    operands = [node.this] if isinstance(node, exp.Neg | exp.Abs) else [node.this, node.expression]
    kinds = {"param" if isinstance(s, exp.Placeholder) else _kind(s, types) for s in operands}
    if not kinds <= {"int", "float", "null", "param"}:
        raise NotExact("arithmetic on values that are not known numbers")
    if isinstance(node, exp.Mul) and "float" not in kinds:
        raise NotExact("a product of integers (SQLite gives a double on overflow, DuckDB raises)")


def _branch_kind(node: exp.Expr, types: Mapping[str, pa.DataType]) -> str | None:
    """The kind of a COALESCE, CASE or IF: its branches' one kind (int and float mix), None
    when no branch tells; raises NotExact for dates and timestamps (compared as SQLite's text
    forms) and for branches of different kinds (DuckDB casts them to one type, SQLite not)."""
    if isinstance(node, exp.Coalesce):
        branches = [node.this, *node.expressions]
    elif isinstance(node, exp.Case):
        branches = [i.args.get("true") for i in node.args.get("ifs") or []] + [node.args.get("default")]
    else:
        branches = [node.args.get("true"), node.args.get("false")]
    kinds = {_kind(b, types) for b in branches if b is not None} - {None, "null"}
    if kinds & {"date", "timestamp"}:
        raise NotExact("a date or timestamp chosen by COALESCE or CASE")
    if kinds == {"int", "float"}:
        return "float"
    if len(kinds) > 1:
        raise NotExact(f"branches of {' and '.join(sorted(kinds))}")
    return kinds.pop() if kinds else None


def _timestamp_identity(node: exp.Expr, types: Mapping[str, pa.DataType]) -> bool:
    """A timestamp grouped, counted distinct or compared with a subquery's values: equal
    instants may be stored as different text."""
    if isinstance(node, exp.Group):
        return any(_kind(k, types) == "timestamp" for k in node.expressions)
    if isinstance(node, exp.Distinct):
        return any(_kind(k, types) == "timestamp" for k in node.expressions) or (
            isinstance(node.parent, exp.Select) and any(
                _kind(c.unalias(), types) == "timestamp" for c in node.parent.expressions))
    if isinstance(node, exp.In) and node.args.get("query") is not None:
        return _kind(node.this, types) == "timestamp"
    return False


def _ranking(node: exp.Expr) -> bool:
    return isinstance(node.parent, exp.Window) and _is_rank(node.parent) and node is node.parent.this


def _is_rank(window: exp.Window) -> bool:
    """``rank() OVER (ORDER BY ...)``: ties are equal sort keys, in SQLite as in DuckDB."""
    func = window.this
    return (isinstance(func, exp.Rank) or (isinstance(func, exp.Anonymous) and func.name.lower()
                                            == "rank")) and not window.args.get("partition_by")


def _operands(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.Between):
        return [node.this, node.args["low"], node.args["high"]]
    if isinstance(node, exp.In):
        return [node.this, *node.expressions]
    return [node.this, node.expression]


def _is_string(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


def _literal_cast(node: exp.Cast) -> bool:
    """A typed literal: ``DATE '2024-02-29'``, ``TIMESTAMP '...'``, ``'5'::INTEGER``."""
    return isinstance(node.this, exp.Literal) and node.this.is_string and node.to.this in (
        exp.DataType.Type.DATE, *_TIMESTAMPS)


def _kind(node: exp.Expr, types: Mapping[str, pa.DataType]) -> str | None:
    """What a value is, where it can be told: int, float, text, date, timestamp, bool, null."""
    if isinstance(node, exp.Paren):
        return _kind(node.this, types)
    if isinstance(node, exp.Column):
        kind = types.get(node.name)
        return None if kind is None else _arrow_kind(kind)
    if isinstance(node, exp.Literal):
        return "text" if node.is_string else ("int" if node.is_int else "float")
    if isinstance(node, exp.Null):
        return "null"
    if isinstance(node, exp.Boolean | exp.Predicate | exp.Connector | exp.Not):
        return "bool"  # TRUE, and conditions: 0 or 1 in SQLite
    if isinstance(node, exp.Cast) and _literal_cast(node):
        return "date" if node.to.this == exp.DataType.Type.DATE else "timestamp"
    if isinstance(node, exp.Neg | exp.Abs):
        return _kind(node.this, types)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul):
        sides = {_kind(node.this, types), _kind(node.expression, types)}
        return "int" if sides == {"int"} else ("float" if sides <= {"int", "float"} else None)
    if isinstance(node, exp.Min | exp.Max | exp.Sum):
        return _kind(node.this, types)
    if isinstance(node, exp.Count | exp.Length):
        return "int"
    if isinstance(node, exp.Avg):
        return "float"
    if isinstance(node, exp.Coalesce | exp.Case | exp.If):
        return _branch_kind(node, types)
    return None


def _arrow_kind(kind: pa.DataType) -> str | None:
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_string(kind):
        return "text"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    return None


def _temporal(node: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Typed date/timestamp literals as their ISO text; timestamp columns that are compared
    in one text form; a string compared with a date or timestamp column as that type's text."""
    if not isinstance(node, (*_ORDERING, exp.Between, exp.In)):
        return node
    kinds = {_kind(s, types) for s in _operands(node)} & {"date", "timestamp"}
    if not kinds:
        return node
    if len(kinds) > 1:
        raise NotExact("a comparison of a date with a timestamp")
    kind = kinds.pop()
    for side in _operands(node):
        if kind == "timestamp" and not isinstance(side, exp.Column | exp.Cast | exp.Literal | exp.Null
                                                   | exp.Placeholder):
            raise NotExact("a timestamp computed in SQLite, compared as its stored text")
        if isinstance(side, exp.Column) and kind == "timestamp":
            side.replace(_timestamp_form(side.copy()))
        elif isinstance(side, exp.Cast | exp.Literal) and not isinstance(side, exp.Null):
            side.replace(exp.Literal.string(_temporal_text(side, kind)))
    return node


def _temporal_text(node: exp.Expr, kind: str) -> str:
    text = (node.this if isinstance(node, exp.Cast) else node).name
    try:
        if kind == "date":
            if isinstance(node, exp.Cast) and node.to.this != exp.DataType.Type.DATE:
                raise NotExact("a date compared with a timestamp")
            return dt.date.fromisoformat(text.strip()).isoformat()
        return _timestamp_text(dt.datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        if isinstance(exc, NotExact):
            raise
        raise NotExact(f"{text!r} is not read as DuckDB reads a {kind}") from exc


def _timestamp_form(column: exp.Expr) -> exp.Expr:
    """``replace(col, 'T', ' ')``, with a fraction's trailing zeros (and a bare dot) dropped."""
    spaced = exp.func("replace", column, exp.Literal.string("T"), exp.Literal.string(" "))
    trimmed = exp.func("rtrim", exp.func("rtrim", spaced.copy(), exp.Literal.string("0")),
                       exp.Literal.string("."))
    has_fraction = exp.GT(this=exp.func("instr", column.copy(), exp.Literal.string(".")),
                          expression=exp.Literal.number(0))
    return exp.Case(ifs=[exp.If(this=has_fraction, true=trimmed)], default=spaced)


def _parenthesize(tree: exp.Expr) -> None:
    """Conditions compared with something in parentheses: SQLite gives ``=`` and ``IN`` one
    precedence (``TRUE = b IN (7)`` is ``(TRUE = b) IN (7)`` there, ``TRUE = (b IN (7))`` in
    DuckDB), and sqlglot writes none."""
    conditions = (exp.Predicate, exp.Connector, exp.Not)
    for node in list(tree.find_all(*_ORDERING, exp.Between, exp.In, exp.Glob, exp.Is, exp.Like)):
        for key in ("this", "expression", "low", "high"):
            child = node.args.get(key)
            if isinstance(child, conditions):
                node.set(key, exp.Paren(this=child))
        if isinstance(node, exp.In):
            node.set("expressions", [exp.Paren(this=e) if isinstance(e, conditions) else e
                                     for e in node.expressions])


def _glob(like: exp.Like) -> exp.Expr:
    """``x LIKE p`` as ``x GLOB q``: the same match, case-sensitive as DuckDB's."""
    pattern = like.expression
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        translated: exp.Expr = exp.Literal.string(glob_pattern(pattern.name))
    else:
        translated = pattern
        for old, new in (("[", "[[]"), ("*", "[*]"), ("?", "[?]"), ("%", "*"), ("_", "?")):
            translated = exp.func("replace", translated, exp.Literal.string(old),
                                  exp.Literal.string(new))
    glob = exp.Glob(this=like.this, expression=translated)
    return exp.Not(this=glob) if like.args.get("negate") else glob


def glob_pattern(like: str) -> str:
    """A LIKE pattern (no escape character) as a GLOB pattern."""
    special = {"[": "[[]", "*": "[*]", "?": "[?]", "%": "*", "_": "?"}
    return "".join(special.get(ch, ch) for ch in like)


def _collate(node: exp.Expr, types: Mapping[str, pa.DataType]) -> None:
    """Byte order and equality for the text a comparison, ``IN`` or ``min``/``max`` reads."""
    sides = [node.this] if isinstance(node, exp.Min | exp.Max) else _operands(node)[:1 if isinstance(
        node, exp.In) else 2]
    for side in sides:
        if _kind(side, types) == "text" and not isinstance(side, exp.Literal):
            side.replace(_binary(side.copy()))
            return


def _binary(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Collate):
        return node
    return exp.Collate(this=node, expression=exp.var("BINARY"))
