"""Values of a result as text for the ``fedquery`` command: CSV fields and JSON.

Every type fedquery produces has one text form, shared by CSV and JSON:

- nested values (STRUCT, LIST, fixed-size ``FLOAT[n]`` arrays, MAP) are JSON: a struct an
  object, a list or array a JSON array, a map an object whose keys are the map keys as text
  (as DuckDB's ``to_json``); in CSV that JSON is the field's text;
- BLOB (and BIT) values are base64 (RFC 4648, with padding);
- DECIMAL and HUGEINT are exact numbers (``1.50``; all 39 digits of a HUGEINT);
- DOUBLE and FLOAT special values are ``NaN``, ``Infinity``, ``-Infinity`` in JSON (bare, as
  Python's and DuckDB's JSON write them) and ``nan``, ``inf``, ``-inf`` in CSV (as DuckDB's CSV);
- dates, times and timestamps are ISO 8601 with a space (``2024-01-01 10:00:00.500000``,
  ``+00:00`` for a zone); INTERVAL is DuckDB's text (``1 month 2 days 00:00:03``);
- NULL is JSON ``null`` and an empty CSV field (an empty string is ``""``).

Python values come from ``fedquery.pyvalues`` (the values ``fetchall`` gives), so what the
command writes reads back to what the Python API returns.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from typing import Any

import pyarrow as pa

_SPECIAL_JSON = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_text(value: Any, kind: pa.DataType | None = None) -> str:
    """``value`` (of Arrow type ``kind``, when known) as compact JSON text on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _SPECIAL_JSON.get(repr(value), repr(value))
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if _is_interval(value):
        return json.dumps(scalar_text(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{_key(k)}:{json_text(v, _field(kind, k))}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        if kind is not None and pa.types.is_map(kind):
            return "{" + ",".join(f"{_key(scalar_text(k))}:{json_text(v, kind.item_type)}"
                                  for k, v in value) + "}"
        item = getattr(kind, "value_type", None)
        return "[" + ",".join(json_text(v, item) for v in value) + "]"
    return json.dumps(scalar_text(value), ensure_ascii=False)


def _key(name: object) -> str:
    return json.dumps(str(name), ensure_ascii=False)


def _field(kind: pa.DataType | None, name: str) -> pa.DataType | None:
    if kind is None or not pa.types.is_struct(kind) or kind.get_field_index(name) < 0:
        return None
    return kind.field(name).type


def csv_text(value: Any, kind: pa.DataType | None = None) -> str | None:
    """``value`` as the text of one CSV field (None for NULL); nested values as JSON."""
    if value is None:
        return None
    if isinstance(value, dict | list | tuple) and not _is_interval(value):
        return json_text(value, kind)
    return scalar_text(value)


def scalar_text(value: Any) -> str:
    """A non-nested value as text: base64 for bytes, DuckDB's text for an interval."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, dt.timedelta):
        return interval_text(0, value.days, _micros(value) * 1000)
    if _is_interval(value):
        return interval_text(value.months, value.days, value.nanoseconds)
    return str(value)


def interval_text(months: int, days: int, nanos: int) -> str:
    """An interval as DuckDB prints it: ``1 year 2 months 3 days 04:05:06.5``."""
    years, months = divmod(months, 12) if months >= 0 else (-(-months // 12), -(-months % 12))
    parts = [f"{n} {unit}{'s' if abs(n) != 1 else ''}"
             for n, unit in ((years, "year"), (months, "month"), (days, "day")) if n]
    if nanos or not parts:
        parts.append(_clock(nanos))
    return " ".join(parts)


def _clock(nanos: int) -> str:
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    micros = nanos // 1000
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + (f".{fraction:06d}".rstrip("0") if fraction else "")


def _micros(value: dt.timedelta) -> int:
    return value.seconds * 1_000_000 + value.microseconds



def _is_interval(value: Any) -> bool:
    """pyarrow's ``MonthDayNano`` (a named tuple) of an INTERVAL."""
    return isinstance(value, tuple) and hasattr(value, "months") and hasattr(value, "nanoseconds")
