"""``--param`` values of the ``fedquery`` command, and its error for command-line mistakes.

``NAME=VALUE`` passes VALUE as a string, and the query types it by what it meets: compared
with an INTEGER column it is cast to an integer, with a VARCHAR column it stays text
(``--param city=007`` matches ``'007'``, never 7), opposite a ``FLOAT[n]`` column in a
distance function a JSON array (``[0.1, 0.2, ...]``) becomes the vector. Where nothing gives
it a type (``SELECT $n + 1``), say it: ``NAME:TYPE=VALUE``, TYPE one of ``TYPES``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable
from typing import Any

from fedquery.errors import FedQueryError


class CommandError(FedQueryError):
    """A mistake in the command line itself (a path, a ``--param``): printed as one line.
    (Here rather than in ``cli``, which runs as ``__main__`` under ``python -m``.)"""


class ParamError(CommandError):
    """A ``--param`` the command cannot read; the message says which and why."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "t", "yes", "1"):
        return True
    if lowered in ("false", "f", "no", "0"):
        return False
    raise ValueError(text)


TYPES: dict[str, Callable[[str], Any]] = {
    "text": str,
    "int": int,
    "float": float,
    "decimal": decimal.Decimal,
    "bool": _bool,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timestamp": dt.datetime.fromisoformat,
    "json": json.loads,
}
ALIASES = {"str": "text", "string": "text", "varchar": "text", "integer": "int",
           "bigint": "int", "double": "float", "numeric": "decimal", "boolean": "bool",
           "datetime": "timestamp", "list": "json", "float[]": "json"}


def parse_params(pairs: list[str]) -> dict[str, Any] | None:
    """``{name: value}`` for ``NAME=VALUE`` / ``NAME:TYPE=VALUE`` pairs (None for none)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, value = _one(pair)
        if name in params:
            raise ParamError(f"--param {name} is given twice")
        params[name] = value
    return params or None


def _one(pair: str) -> tuple[str, Any]:
    head, sep, text = pair.partition("=")
    name, _, kind = head.partition(":")
    name = name.strip().lstrip("$")
    if not sep or not name:
        raise ParamError(f"--param {pair!r}: expected NAME=VALUE or NAME:TYPE=VALUE")
    if not kind:
        return name, text
    key = ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if key not in TYPES:
        raise ParamError(f"--param {pair!r}: unknown type {kind!r}; use one of "
                         f"{', '.join(TYPES)}")
    try:
        return name, TYPES[key](text)
    except (ValueError, decimal.InvalidOperation):
        raise ParamError(f"--param {pair!r}: {text!r} is not a valid {key}") from None
