"""DuckDB's meaning kept in the SQL PostgreSQL receives, where the two engines differ.

Fragments are written in DuckDB's dialect and must give DuckDB's answer when PostgreSQL runs
them. sqlglot transpiles syntax; these rewrites keep what the same syntax means:

- ``LIKE``/``ILIKE``: PostgreSQL treats a backslash in the pattern as an escape character,
  DuckDB as an ordinary one, so a pattern without ``ESCAPE`` gets ``ESCAPE ''``.
- Text order: DuckDB orders strings by their bytes; PostgreSQL by the collation of the column
  or the database (an ICU or ``en_US`` collation puts ``'a'`` before ``'B'``). Where text is
  ordered (``ORDER BY`` keys, ``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``, ``min``, ``max``,
  ``greatest``, ``least``) the text side gets ``COLLATE "C"``, byte order.
- ``round`` of a double: PostgreSQL rounds halves to even, DuckDB away from zero; the value
  is rounded as ``numeric`` (away from zero) and cast back.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from sqlglot import exp

_TEXT_FUNCTIONS = (exp.Lower, exp.Upper, exp.Substring, exp.Trim, exp.Concat, exp.ConcatWs,
                   exp.DPipe, exp.Initcap, exp.Left, exp.Right, exp.Pad)
_TEXT_TYPES = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR,
               exp.DataType.Type.NVARCHAR, exp.DataType.Type.NCHAR)
_DOUBLE_TYPES = {exp.DataType.Type.DOUBLE: "DOUBLE PRECISION", exp.DataType.Type.FLOAT: "REAL"}
_ORDERING = (exp.GT, exp.GTE, exp.LT, exp.LTE)


def keep_duckdb_semantics(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    """Rewrite ``tree`` (in place) so PostgreSQL gives DuckDB's answer; ``types`` are the
    Arrow types of the columns it reads, by name."""
    for like in list(tree.find_all(exp.Like, exp.ILike)):
        if not isinstance(like.parent, exp.Escape):
            like.replace(exp.Escape(this=like.copy(), expression=exp.Literal.string("")))
    for node in list(tree.find_all(exp.Ordered, *_ORDERING, exp.Between, exp.Min, exp.Max,
                                   exp.Greatest, exp.Least)):
        _collate(node, types)
    for node in list(tree.find_all(exp.Round)):
        _round_half_away(node, types)
    return tree


def _collate(node: exp.Expr, types: Mapping[str, pa.DataType]) -> None:
    """Byte order for the text that ``node`` orders."""
    if isinstance(node, exp.Ordered):
        if _orders_by_text_column(node, types):
            _wrap(node.this)
    elif isinstance(node, _ORDERING):
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


def _orders_by_text_column(ordered: exp.Ordered, types: Mapping[str, pa.DataType]) -> bool:
    """A sort key that is text and may carry a collation: not in a set operation's or a
    DISTINCT query's ORDER BY (those must name output columns), not an output alias."""
    if not is_text(ordered.this, types):
        return False
    order = ordered.parent
    query = order.parent if isinstance(order, exp.Order) else None
    if isinstance(query, exp.SetOperation):
        return False
    if isinstance(query, exp.Select):
        if query.args.get("distinct"):
            return False
        key = ordered.this
        if isinstance(key, exp.Column) and not key.table:
            for projection in query.expressions:
                if (isinstance(projection, exp.Alias) and projection.alias.lower() == key.name.lower()
                        and not (isinstance(projection.this, exp.Column)
                                 and projection.this.name == key.name)):
                    return False
    return True


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
    return isinstance(node, _TEXT_FUNCTIONS)


def _wrap(node: exp.Expr) -> None:
    if isinstance(node, exp.Collate) or isinstance(node.parent, exp.Collate):
        return
    node.replace(exp.Collate(this=node.copy(), expression=exp.to_identifier("C", quoted=True)))


def _round_half_away(node: exp.Round, types: Mapping[str, pa.DataType]) -> None:
    kind = _float_type(node.this, types)
    if kind is None:
        return
    rounded = exp.Round(this=exp.cast(node.this.copy(), "NUMERIC"),
                        decimals=node.args["decimals"].copy() if node.args.get("decimals") else None)
    node.replace(exp.cast(rounded, kind, dialect="postgres"))


def _float_type(node: exp.Expr, types: Mapping[str, pa.DataType]) -> str | None:
    """The PostgreSQL name of ``node``'s floating-point type, when it surely has one."""
    if isinstance(node, exp.Paren):
        return _float_type(node.this, types)
    if isinstance(node, exp.Column):
        kind = types.get(node.name)
        if kind is not None and pa.types.is_floating(kind):
            return "REAL" if kind == pa.float32() else "DOUBLE PRECISION"
        return None
    if isinstance(node, exp.Cast):
        return next((name for t, name in _DOUBLE_TYPES.items() if node.to.is_type(t)), None)
    if isinstance(node, exp.Div):  # DuckDB's / gives a double (sqlglot casts it so)
        return "DOUBLE PRECISION"
    if isinstance(node, exp.Min | exp.Max):
        return _float_type(node.this, types)
    if isinstance(node, exp.Sum | exp.Avg):  # a double in both engines, even over a real
        return "DOUBLE PRECISION" if _float_type(node.this, types) else None
    return None
