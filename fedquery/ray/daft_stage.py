"""The part of a residual Daft runs distributed: joins, filters and aggregates.

A residual that is one SELECT over fragments, made only of constructs Daft answers exactly as
DuckDB does, is cut in two: the core (the SELECT without ORDER BY and LIMIT) runs in Daft's
SQL on the cluster, hash joins and partial aggregates spread over the workers; DuckDB then
orders and limits the core's rows on a worker (Daft's ORDER BY ignores NULLS LAST and does not
order the output of window functions). Anything else (``None`` here) runs whole in DuckDB.

Daft answers some constructs differently, so they never reach it: integer arithmetic and
integer sums (Daft wraps on overflow where DuckDB raises), CASE (Daft gives NULL where DuckDB
takes the ELSE of a NULL condition), the average of decimals (Daft keeps a decimal), window
functions, DISTINCT, subqueries, casts other than a date literal's, and any other function.
Differential fuzzing (``tests/ray_engine/test_daft_stage_fuzz.py``) found more, kept out as well:
``x IS TRUE`` and ``IS FALSE`` (Daft takes them for ``x = TRUE``: NULL for a NULL ``x``);
comparisons, join keys and GROUP BY keys of floats (Daft orders -0.0 before 0.0, and its hash
joins match neither -0.0 with 0.0 nor NaN with NaN); min and max of floats (Daft merges the
partial results of its partitions as if NaN were not there); a number literal with a fraction
(a float64 in Daft, a DECIMAL in DuckDB) but compared with a decimal column of at most 15 digits
or in float arithmetic, and an integer literal beyond BIGINT; products of decimals, and sums
of decimals wider than 18 digits (Daft neither raises on overflow nor keeps DuckDB's types); a
table alias that is also a column's name (Daft reads ``b.x`` as the field ``x`` of a column
``b``); ``JOIN ... ON`` but equalities of columns of the two sides (Daft's distributed runner
panics on any other condition); an equality of an integer and a decimal (Daft makes them a hash
join's keys and finds no type for both); BETWEEN of strings (Daft's aggregates fail on one).
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

CORE = "__core"
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul)
NARROW_DECIMAL = 18  # digits of a decimal Daft adds and sums as DuckDB does
DOUBLE_DIGITS = 15  # digits every double tells apart


@dataclass(frozen=True)
class Stages:
    """``core``: Daft SQL over the fragments; ``final``: DuckDB SQL over ``__core``."""

    core: str
    final: str


def split(tree: exp.Expr, schemas: dict[str, pa.Schema]) -> Stages | None:
    """The two stages of ``tree`` (the residual), or None when Daft must not run any of it."""
    if not isinstance(tree, exp.Select) or tree.args.get("with_") or tree.args.get("distinct"):
        return None
    if any(tree.args.get(k) for k in ("qualify", "windows", "prewhere", "sample", "settings")):
        return None
    tables = _tables(tree, schemas)
    if tables is None or _shadowed(tables):
        return None
    order, limit, offset = tree.args.get("order"), tree.args.get("limit"), tree.args.get("offset")
    core = tree.copy()
    for key in ("order", "limit", "offset"):
        core.set(key, None)
    names = _output_names(core)
    if names is None or not _safe(core, tables):
        return None
    final = exp.select("*").from_(exp.to_table(CORE))
    if order is not None:
        keys = []
        for ordered in order.expressions:
            name = _as_output(ordered.this, core, names)
            if name is None:
                return None
            key = ordered.copy()
            key.set("this", exp.column(name, quoted=True))
            keys.append(key)
        final = final.order_by(*keys)
    for key, value in (("limit", limit), ("offset", offset)):
        if value is not None:
            if not isinstance(value.expression, exp.Literal):
                return None
            final.set(key, value.copy())
    return Stages(core.sql("duckdb"), final.sql("duckdb"))


def _tables(select: exp.Select, schemas: dict[str, pa.Schema]) -> dict[str, pa.Schema] | None:
    """Alias -> schema of every table the SELECT reads: fragments only, joined by kinds Daft
    and DuckDB agree on."""
    source = select.args.get("from_")
    if source is None:
        return None
    tables = [source.this]
    for join in select.args.get("joins") or ():
        if (join.side.upper() not in ("", "LEFT") or join.kind.upper() not in ("", "INNER")
                or join.args.get("using") or join.args.get("method")):
            return None
        tables.append(join.this)
    out = {}
    for table in tables:
        if not isinstance(table, exp.Table) or table.name not in schemas or table.args.get("db"):
            return None
        out[table.alias_or_name] = schemas[table.name]
    return out if _equi_joins(select, out) else None


def _equi_joins(select: exp.Select, tables: dict[str, pa.Schema]) -> bool:
    """Whether every ``JOIN ... ON`` is a conjunction of equalities between a column of the
    joined table and one of a table before it (comma joins have none): Daft's distributed
    runner panics on any other join condition (a constant, a comparison, an OR, a condition on
    one side of a LEFT JOIN), a Rust panic no ``except Exception`` catches."""
    seen = {select.args["from_"].this.alias_or_name}
    for join in select.args.get("joins") or ():
        alias = join.this.alias_or_name
        on = join.args.get("on")
        for part in _conjuncts(on) if on is not None else ():
            if not (isinstance(part, exp.EQ) and isinstance(part.left.unnest(), exp.Column)
                    and isinstance(part.right.unnest(), exp.Column)):
                return False
            left, right = _owner(part.left.unnest(), tables), _owner(part.right.unnest(), tables)
            if not (left == alias and right in seen or right == alias and left in seen):
                return False
        seen.add(alias)
    return True


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    node = node.unnest()
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _owner(column: exp.Column, tables: dict[str, pa.Schema]) -> str | None:
    """The alias of the table a column reference reads (None: unknown or ambiguous)."""
    if column.table:
        return column.table if column.table in tables else None
    owners = [alias for alias, schema in tables.items() if column.name in schema.names]
    return owners[0] if len(owners) == 1 else None


def _shadowed(tables: dict[str, pa.Schema]) -> bool:
    """Whether a table's alias is also the name of a column: Daft reads ``b.x`` as the field
    ``x`` of the column ``b`` then."""
    columns = {name.lower() for schema in tables.values() for name in schema.names}
    return any(alias.lower() in columns for alias in tables)


def _output_names(select: exp.Select) -> list[str] | None:
    names = []
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or projection.find(exp.Star) and not isinstance(
                projection.unalias(), exp.Count):
            return None
        names.append(projection.alias_or_name)
    if len({n.lower() for n in names}) < len(names) or any(not n for n in names):
        return None
    return names


def _as_output(key: exp.Expr, select: exp.Select, names: list[str]) -> str | None:
    """The output column an ORDER BY key is: an output name, or a projection's expression."""
    if isinstance(key, exp.Column) and not key.table:
        for name in names:
            if name.lower() == key.name.lower():
                return name
    for projection, name in zip(select.expressions, names, strict=True):
        if projection.unalias() == key:
            return name
    return None


def _safe(select: exp.Select, tables: dict[str, pa.Schema]) -> bool:
    for part in ("expressions", "joins", "where", "group", "having"):
        value = select.args.get(part)
        for node in (value if isinstance(value, list) else [value]):
            if node is not None and not _safe_tree(node, tables):
                return False
    group = select.args.get("group")
    return group is None or (not group.args.get("all") and all(
        isinstance(g, exp.Column) and _family(g, tables) != "float" for g in group.expressions))


def _safe_tree(node: exp.Expr, tables: dict[str, pa.Schema]) -> bool:
    return all(_allowed(child, tables) for child in node.walk())


def _allowed(node: exp.Expr, tables: dict[str, pa.Schema]) -> bool:
    if isinstance(node, exp.Column):
        return _type(node, tables) is not None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return "\\" not in node.this
        kind = _kind(node, tables)
        if kind == "fraction":  # a float64 in Daft: only where _comparable or _kind checks it
            parent = node.parent
            while isinstance(parent, exp.Paren):
                parent = parent.parent
            return isinstance(parent, _COMPARISONS + _ARITHMETIC + (exp.Between, exp.In))
        return kind is not None
    if isinstance(node, exp.Is):  # x IS TRUE: Daft takes it for x = TRUE
        return isinstance(node.expression, exp.Null)
    if isinstance(node, exp.Join | exp.Alias | exp.Paren | exp.Identifier | exp.Table
                  | exp.TableAlias | exp.Group | exp.Where | exp.Having | exp.Boolean | exp.Null
                  | exp.And | exp.Or | exp.Not | exp.DataType | exp.Star):
        return True
    if isinstance(node, _COMPARISONS):
        return _comparable(node.left, node.right, tables) and not (
            isinstance(node, exp.EQ) and _mixed_keys(node.left, node.right, tables))
    if isinstance(node, exp.Between):  # of strings: Daft fails on count(s BETWEEN 'a' AND 'b')
        return _family(node.this, tables) != "string" and all(
            _comparable(node.this, node.args[k], tables) for k in ("low", "high"))
    if isinstance(node, exp.In):
        return (not node.args.get("query") and bool(node.expressions)
                and all(isinstance(e, exp.Literal) and _comparable(node.this, e, tables)
                        for e in node.expressions))
    if isinstance(node, exp.Like):
        return (isinstance(node.expression, exp.Literal) and node.expression.is_string
                and _family(node.this, tables) == "string" and not node.args.get("escape"))
    if isinstance(node, _ARITHMETIC):
        return _kind(node, tables) in ("float", "decimal")
    if isinstance(node, exp.Cast):
        return (node.to.this == exp.DataType.Type.DATE and isinstance(node.this, exp.Literal)
                and node.this.is_string)
    if isinstance(node, exp.Count):
        return not node.find(exp.Distinct)
    if isinstance(node, exp.Sum):
        return _kind(node.this, tables) in ("float", "decimal")
    if isinstance(node, exp.Avg):
        return _kind(node.this, tables) == "float"
    if isinstance(node, exp.Min | exp.Max):  # of floats: Daft merges partial results with NaN
        return _kind(node.this, tables) not in (None, "float")  # as if NaN were not there
    return False


def _comparable(left: exp.Expr, right: exp.Expr, tables: dict[str, pa.Schema]) -> bool:
    """Whether Daft compares the two values as DuckDB does: values of one family, never floats
    (Daft orders -0.0 before 0.0, and its hash joins match neither -0.0 with 0.0 nor NaN with
    NaN), and a number literal with a fraction (a float64 in Daft, a DECIMAL in DuckDB) only
    with a decimal column: both compare exactly as doubles when of 15 digits at most."""
    family = _family(left, tables)
    if family is None or family == "float" or family != _family(right, tables):
        return False
    for one, other in ((left, right), (right, left)):
        if _kind(one, tables) == "fraction":
            type_ = _type(other.unnest(), tables) if isinstance(other.unnest(), exp.Column) else None
            if (type_ is None or not pa.types.is_decimal(type_) or type_.precision > DOUBLE_DIGITS
                    or _digits(one.unnest()) > DOUBLE_DIGITS):
                return False
    return True


def _mixed_keys(left: exp.Expr, right: exp.Expr, tables: dict[str, pa.Schema]) -> bool:
    """Whether an equality of two values is of an integer and a decimal: Daft makes it a hash
    join's keys (in ON, or in WHERE across tables) and fails finding a type for both."""
    kinds = {_kind(left, tables), _kind(right, tables)}
    return "int" in kinds and bool(kinds & {"decimal", "wide"})


def _digits(literal: exp.Literal) -> int:
    """The significant digits of a number literal."""
    return len(decimal.Decimal(literal.this).normalize().as_tuple().digits)


def _type(column: exp.Column, tables: dict[str, pa.Schema]) -> pa.DataType | None:
    """The Arrow type of a column reference (None: unknown or ambiguous)."""
    if column.table:
        schema = tables.get(column.table)
        found = [schema.field(column.name).type] if schema is not None and column.name in schema.names else []
    else:
        found = [s.field(column.name).type for s in tables.values() if column.name in s.names]
    return found[0] if len(found) == 1 else None


def _kind(node: exp.Expr, tables: dict[str, pa.Schema]) -> str | None:
    """What Daft computes a value as: ``float``, ``decimal`` (of at most 18 digits: its sums and
    sums of sums stay within DuckDB's 38), ``wide`` (a wider decimal column), ``int``,
    ``integer`` (a literal within BIGINT), ``fraction`` (any other number literal: a float64 in
    Daft, a DECIMAL in DuckDB), ``other`` (strings, dates, booleans: compared, never computed
    on), None: not allowed."""
    if isinstance(node, exp.Paren):
        return _kind(node.this, tables)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return "other"
        try:
            value = decimal.Decimal(node.this)
        except decimal.InvalidOperation:
            return None
        if not value.is_finite():
            return None
        if "." in node.this or "e" in node.this.lower():
            return "fraction"
        return "integer" if -(2**63) <= value < 2**63 else None
    if isinstance(node, exp.Cast):
        return "other"
    if isinstance(node, exp.Column):
        kind = _column_class(_type(node, tables))
        return kind if kind in ("float", "decimal", "wide", "int", None) else "other"
    if isinstance(node, _ARITHMETIC):
        kinds = {_kind(node.left, tables), _kind(node.right, tables)}
        if None in kinds or "int" in kinds or "other" in kinds:
            return None
        if "float" in kinds:
            return "float"
        # decimals: Daft's products neither raise on overflow nor keep DuckDB's types, a
        # fraction makes a float64 of the sum, and sums of wide decimals fail or wrap
        if isinstance(node, exp.Mul) or kinds & {"fraction", "wide"} or kinds == {"integer"}:
            return None
        return "decimal"
    return None


def _family(node: exp.Expr, tables: dict[str, pa.Schema]) -> str | None:
    """What a compared value is: ``number`` (integers and decimals), ``float``, ``string``,
    ``date``, ``timestamp``, ``bool``; values of one family compare alike in Daft and DuckDB
    (no implicit casts between them), but for floats (``_comparable``)."""
    if isinstance(node, exp.Paren):
        return _family(node.this, tables)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return "string"
        return "number" if _kind(node, tables) is not None else None
    if isinstance(node, exp.Boolean):
        return "bool"
    if isinstance(node, exp.Cast):
        return "date"
    if isinstance(node, exp.Column):
        kind = _column_class(_type(node, tables))
        return {"int": "number", "decimal": "number", "wide": "number",
                "timestamptz": None}.get(kind, kind)
    return {"float": "float", "decimal": "number"}.get(_kind(node, tables))


def _column_class(type_: pa.DataType | None) -> str | None:
    """A column's type as the stage tells them apart: ``float``, ``decimal`` (at most
    ``NARROW_DECIMAL`` digits), ``wide``, ``int``, ``string``, ``date``, ``timestamp``,
    ``timestamptz``, ``bool``; None: any other (never in Daft)."""
    if type_ is None:
        return None
    if pa.types.is_floating(type_):
        return "float"
    if pa.types.is_decimal(type_):
        return "decimal" if type_.precision <= NARROW_DECIMAL else "wide"
    if pa.types.is_integer(type_):
        return "int"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    if pa.types.is_date(type_):
        return "date"
    if pa.types.is_timestamp(type_):
        return "timestamp" if type_.tz is None else "timestamptz"
    if pa.types.is_boolean(type_):
        return "bool"
    return None
