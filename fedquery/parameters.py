"""Query parameters: ``$name`` values from a dict, ``?`` and ``$1`` values from a list.

Positional parameters are named before planning (the first ``?`` becomes ``$__p1``, ``$2``
becomes ``$__p2``), so that every fragment, whatever part of the query it holds, binds exactly
the values it names; a list of values is turned into the matching dict for each run.

>>> name_positional("SELECT * FROM t WHERE a = ? AND b = '?' AND c = ?")
"SELECT * FROM t WHERE a = $__p1 AND b = '?' AND c = $__p2"
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from fedquery.errors import PlanError
from fedquery.parse import placeholder_casts
from fedquery.vectors import typed_vectors

POSITIONAL = "__p"


def name_positional(sql: str) -> str:
    """``sql`` with each ``?`` and ``$<n>`` spelled ``$__p<n>`` (strings and comments untouched)."""
    try:
        tokens = placeholder_casts(Dialect.get_or_raise("duckdb").tokenize(sql))
    except SqlglotError:
        return sql  # the parser reports the error, with its position
    edits, count = [], 0
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            count += 1
            edits.append((token.start, token.end, f"${POSITIONAL}{count}"))
        elif (token.token_type == TokenType.PARAMETER and following is not None
              and following.token_type == TokenType.NUMBER and following.start == token.end + 1
              and following.text.isdigit()):
            edits.append((token.start, following.end, f"${POSITIONAL}{int(following.text)}"))
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end + 1:]
    return sql


def param_key(params: Any) -> Any:
    """What of the values a plan depends on: the names given, or how many."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return tuple(sorted(map(str, params)))
    if isinstance(params, list | tuple):
        return len(params)
    return type(params).__name__


def select_params(names: tuple[str, ...], params: Any,
                  vectors: tuple[tuple[str, str], ...] = ()) -> dict[str, Any] | None:
    """The values of the parameters a query uses, by name (query vectors typed as their
    columns); PlanError says what is missing or of the wrong kind."""
    if not names:
        return None
    positional = all(n.startswith(POSITIONAL) for n in names)
    shown = ", ".join(display(n) for n in names)
    if params is None:
        raise PlanError(f"the query uses parameters ({shown}) but params= was not given")
    if isinstance(params, list | tuple) and positional:
        params = _by_position(names, params)
    elif isinstance(params, Mapping) and positional:
        raise PlanError(f"the query uses positional parameters ({shown}): pass params as a list")
    elif isinstance(params, list | tuple):
        raise PlanError(f"the query uses named parameters ({shown}): pass params as a dict")
    elif not isinstance(params, Mapping):
        raise PlanError(f"params must be a dict (for $name) or a list (for ? and $1), not "
                        f"{type(params).__name__}")
    missing = [p for p in names if p not in params]
    if missing:
        given = ", ".join(sorted(str(k) for k in params)) or "none"
        raise PlanError(f"no value for parameter {display(missing[0])}; given: {given}")
    values = {k: _plain(params[k]) for k in names}
    return typed_vectors(values, vectors) if vectors else values


def display(name: str) -> str:
    """A parameter as the user wrote it (``$city``; a positional one as ``?3``)."""
    return f"?{name[len(POSITIONAL):]}" if name.startswith(POSITIONAL) else f"${name}"


def _by_position(names: tuple[str, ...], values: Sequence[Any]) -> dict[str, Any]:
    needed = max(int(n[len(POSITIONAL):]) for n in names)
    if len(values) < needed:
        raise PlanError(f"the query uses {needed} positional parameters but params has "
                        f"{len(values)} value(s)")
    return {f"{POSITIONAL}{i + 1}": value for i, value in enumerate(values)}


def _plain(value: Any, depth: int = 0) -> Any:
    """A value as the plain Python value DuckDB and the connectors bind: numpy arrays and
    scalars as Python values, lists and dicts item by item, and a subclass of a built-in type
    (an ``int`` whose ``__str__`` says something else) as the built-in value it holds."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, list | tuple | dict):
        value = tolist()
    if depth > 64:
        raise PlanError("a parameter value nests lists or dicts more than 64 levels deep")
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in value.items()}
    for base, plain in _BASES:
        if isinstance(value, base):
            return value if type(value) is base else plain(value)
    return value


_BASES: tuple[tuple[type, Any], ...] = (
    (bool, bool.__bool__),
    (int, lambda v: int(int.__repr__(v))),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, bytes),
    (decimal.Decimal, lambda v: decimal.Decimal(decimal.Decimal.__str__(v))),
    (uuid.UUID, lambda v: uuid.UUID(int=v.int)),
    (dt.datetime, lambda v: dt.datetime(v.year, v.month, v.day, v.hour, v.minute, v.second,
                                        v.microsecond, v.tzinfo)),
    (dt.date, lambda v: dt.date(v.year, v.month, v.day)),
    (dt.time, lambda v: dt.time(v.hour, v.minute, v.second, v.microsecond, v.tzinfo)),
    (dt.timedelta, lambda v: dt.timedelta(v.days, v.seconds, v.microseconds)),
)
