"""How a notebook table writes one value: text, compact JSON, or a small nested table.

Scalars are their text (as DuckDB's client gives them: ``2024-03-04 04:30:53``, ``12.50``).
A list of structs (an entity's members, ``LIST(STRUCT(...))``) is a nested table of its first
``NESTED_ROWS`` items; a struct or map a one-row nested table of its first ``NESTED_KEYS``
fields; anything nested deeper, and lists of scalars (``FLOAT[512]`` embeddings), compact JSON
of the first ``JSON_ITEMS`` items of each list, cut at ``JSON_CHARS`` characters: never a
Python repr. A map arrives as a ``dict`` or as a list of ``(key, value)`` pairs (Arrow's).

>>> compact_json({"a": 1, "b": [0.1234567, 2.0], "c": None})
'{"a": 1, "b": [0.123457, 2], "c": null}'
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from typing import Any

import numpy as np

JSON_ITEMS = 8  # items of a list (and fields of a struct) shown in compact JSON
JSON_DEPTH = 4  # nesting shown in compact JSON; deeper is {…} / […]
JSON_CHARS = 300  # characters of compact JSON in one cell
NESTED_ROWS = 4  # items of a list of structs shown as nested table rows
NESTED_KEYS = 16  # fields of a struct shown as nested table columns


def is_nested(value: Any) -> bool:
    """A struct, map or list (what ``compact_json`` or a nested table shows)."""
    return isinstance(value, dict | list | tuple) or _is_array(value)


def as_mapping(value: Any) -> dict | None:
    """A struct or map as a dict (a map given as ``(key, value)`` pairs too), else None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and value and all(
            isinstance(item, tuple) and len(item) == 2 for item in value):
        return None if len({_key(k) for k, _ in value}) < len(value) else dict(
            (_key(k), v) for k, v in value)
    return None


def struct_rows(value: Any) -> list[dict] | None:
    """A list of structs (NULL items allowed, at least one struct), else None."""
    if not isinstance(value, list) or not value:
        return None
    if all(item is None or isinstance(item, dict) for item in value) and any(value):
        return value
    return None


def compact_json(value: Any, limit: int = JSON_CHARS) -> str:
    """``value`` as compact JSON, lists cut at ``JSON_ITEMS`` items ("… 504 more") and the
    whole at ``limit`` characters; built piece by piece, so a huge list costs its first items."""
    out: list[str] = []
    budget = [limit + 1]

    def put(text: str) -> bool:
        out.append(text)
        budget[0] -= len(text)
        return budget[0] > 0

    _write(value, put, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _write(value: Any, put, depth: int) -> bool:
    """Write ``value`` through ``put``; False once the budget is spent."""
    mapping = as_mapping(value) if not isinstance(value, str) else None
    if mapping is not None:
        return _write_items(list(mapping.items()), put, depth, "{", "}", True)
    if isinstance(value, list | tuple) or _is_array(value):
        return _write_items(list(value[: JSON_ITEMS + 1]), put, depth, "[", "]", False,
                            total=len(value))
    return put(scalar_json(value))


def _write_items(items: list, put, depth: int, opening: str, closing: str, keyed: bool,
                 total: int | None = None) -> bool:
    total = len(items) if total is None else total
    if not items:
        return put(opening + closing)
    if depth >= JSON_DEPTH:
        return put(opening + "…" + closing)
    if not put(opening):
        return False
    for i, item in enumerate(items[:JSON_ITEMS]):
        if i and not put(", "):
            return False
        if keyed and not put(json.dumps(_key(item[0]), ensure_ascii=False) + ": "):
            return False
        if not _write(item[1] if keyed else item, put, depth + 1):
            return False
    if total > JSON_ITEMS:
        put(f", … {total - JSON_ITEMS:,} more")
    return put(closing)


def scalar_json(value: Any) -> str:
    """One scalar as JSON (NaN and infinities as JavaScript writes them; dates, times,
    decimals and UUIDs as DuckDB's text of them, quoted where JSON has no such type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return json.dumps(f"<{len(value)} bytes>")
    if isinstance(value, dt.date | dt.time | dt.timedelta | uuid.UUID):
        return json.dumps(str(value))
    if isinstance(value, np.generic):
        return scalar_json(value.item())
    return json.dumps(str(value), ensure_ascii=False)


def scalar_text(value: Any, compact: bool = False) -> str:
    """One scalar as text (``NULL``, ``<12 bytes>``, else DuckDB's client's text); ``compact``
    (in a nested table): a float to 6 significant digits."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if compact and isinstance(value, float):
        return _float(value)
    return str(value)


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return f"{value:.6g}"  # a float32 holds about 7 significant digits: a display needs 6


def _key(key: Any) -> str:
    return key if isinstance(key, str) else scalar_json(key).strip('"')


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray)

