"""Arrow columns as PostgreSQL values: each column's type OID and its values' wire encoding.

A result reaches the client one Arrow record batch at a time; each column of a batch is
encoded at once (Arrow casts where they give PostgreSQL's text form, Python per value where
they do not), in the text format every client reads or, when a client asks for it, the
binary format of the scalar types. Lists become PostgreSQL arrays (``int4[]``, ``float4[]``
for an embedding, ``text[]``...), structs and maps ``json``, so psycopg gives Python lists
and dicts.
"""

from __future__ import annotations

import datetime
import decimal
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from fedquery.serve_errors import Unsupported

Values = list  # of bytes, or None for NULL
EPOCH_DAYS = 10957  # 2000-01-01 (PostgreSQL's epoch) in days since 1970-01-01
EPOCH_US = EPOCH_DAYS * 86_400_000_000

BOOL, BYTEA, INT8, INT2, INT4, TEXT, JSON = 16, 17, 20, 21, 23, 25, 114
FLOAT4, FLOAT8, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC = (
    700, 701, 1082, 1083, 1114, 1184, 1186, 1700)
ARRAY_OF = {BOOL: 1000, BYTEA: 1001, INT2: 1005, INT4: 1007, TEXT: 1009, INT8: 1016,
            FLOAT4: 1021, FLOAT8: 1022, TIMESTAMP: 1115, DATE: 1182, TIME: 1183,
            TIMESTAMPTZ: 1185, INTERVAL: 1187, NUMERIC: 1231, JSON: 199}
TYPE_NAMES = {BOOL: "boolean", BYTEA: "bytea", INT8: "bigint", INT2: "smallint", INT4: "integer",
              TEXT: "text", JSON: "json", FLOAT4: "real", FLOAT8: "double precision",
              DATE: "date", TIME: "time without time zone",
              TIMESTAMP: "timestamp without time zone", TIMESTAMPTZ: "timestamp with time zone",
              INTERVAL: "interval", NUMERIC: "numeric"}


@dataclass(frozen=True)
class PgColumn:
    """One result column: its name, PostgreSQL type OID and how its values are written."""

    name: str
    oid: int
    arrow_type: pa.DataType

    def encode(self, array: pa.Array, binary: bool = False) -> Values:
        """The column's values in a batch, text (format 0) or binary (format 1)."""
        array = _plain(array)
        if binary:
            encoder = BINARY.get(self.oid)
            if encoder is None:
                raise Unsupported(f"column {self.name!r}: binary results of type "
                                  f"{TYPE_NAMES.get(self.oid, self.oid)} are not supported; "
                                  "ask for text results")
            return encoder(array)
        return _text(array)


def columns(schema: pa.Schema) -> list[PgColumn]:
    """The PostgreSQL columns of an Arrow schema."""
    return [PgColumn(field.name, type_oid(field.type), field.type) for field in schema]


def type_oid(arrow_type: pa.DataType) -> int:
    """The PostgreSQL type that holds values of ``arrow_type``."""
    t = _storage(arrow_type)
    if _is_list(t):
        element = t.value_type
        while _is_list(_storage(element)):  # PostgreSQL arrays have dimensions, not nesting
            element = _storage(element).value_type
        return ARRAY_OF.get(type_oid(element), ARRAY_OF[TEXT])
    for test, oid in SCALARS:
        if test(t):
            return oid
    return JSON if pa.types.is_struct(t) or pa.types.is_map(t) else TEXT


SCALARS: tuple[tuple[Callable[[pa.DataType], bool], int], ...] = (
    (pa.types.is_boolean, BOOL),
    (lambda t: t in (pa.int8(), pa.int16(), pa.uint8()), INT2),
    (lambda t: t in (pa.int32(), pa.uint16()), INT4),
    (lambda t: t in (pa.int64(), pa.uint32()), INT8),
    (lambda t: t == pa.uint64(), NUMERIC),
    (lambda t: t in (pa.float16(), pa.float32()), FLOAT4),
    (pa.types.is_float64, FLOAT8),
    (pa.types.is_decimal, NUMERIC),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)
     or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t), BYTEA),
    (pa.types.is_date, DATE),
    (pa.types.is_time, TIME),
    (lambda t: pa.types.is_timestamp(t) and t.tz is None, TIMESTAMP),
    (pa.types.is_timestamp, TIMESTAMPTZ),
    (lambda t: pa.types.is_duration(t) or pa.types.is_interval(t), INTERVAL),
)


def _storage(t: pa.DataType) -> pa.DataType:
    if isinstance(t, pa.ExtensionType):
        t = t.storage_type
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t))


def _plain(array: pa.Array) -> pa.Array:
    """The array without its extension type or dictionary encoding."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


# ---------------------------------------------------------------------- text format

def _text(array: pa.Array) -> Values:
    t = array.type
    oid = type_oid(t)
    if oid in (INT2, INT4, INT8, NUMERIC, DATE, TEXT) and not _is_list(t) \
            and not pa.types.is_struct(t) and not pa.types.is_map(t) and not pa.types.is_null(t):
        return _as_bytes(pc.cast(array, pa.large_string()))
    if oid == BOOL:
        return _as_bytes(pc.if_else(array, "t", "f"))
    if oid in (FLOAT4, FLOAT8):
        return [SPECIAL_FLOATS.get(v, v) for v in _as_bytes(pc.cast(array, pa.large_string()))]
    if oid in (TIME, TIMESTAMP, TIMESTAMPTZ):
        return _times(array, oid)
    return [None if v is None else _value_text(v, top=True).encode() for v in array.to_pylist()]


SPECIAL_FLOATS = {b"inf": b"Infinity", b"-inf": b"-Infinity", b"nan": b"NaN"}


def _as_bytes(strings: pa.Array) -> Values:
    return pc.cast(strings, pa.large_binary()).to_pylist()


def _times(array: pa.Array, oid: int) -> Values:
    """Times and timestamps to microseconds, as PostgreSQL keeps them; timestamps with a
    time zone in UTC, which the server announces as its TimeZone."""
    unit = pa.time64("us") if oid == TIME else pa.timestamp("us")
    text = _as_bytes(pc.cast(pc.cast(array, unit, safe=False), pa.large_string()))
    return [v + b"+00" if v is not None and oid == TIMESTAMPTZ else v for v in text]


def _value_text(value: object, *, top: bool = False) -> str:
    """One Python value (from a list, struct or other column) in PostgreSQL's text form;
    inside an array, every value but a number or boolean is quoted."""
    if isinstance(value, list) and not _is_record(value):
        return _array_text(value)
    if isinstance(value, dict) or _is_record(value):
        text = _json(value)
    else:
        text = _scalar_text(value)
        if isinstance(value, bool | int | float | decimal.Decimal):
            return text
    return text if top else _quoted(text)


def _array_text(values: list) -> str:
    return "{" + ",".join("NULL" if v is None else _value_text(v) for v in values) + "}"


def _is_record(value: object) -> bool:
    """A map's value: a list of (key, value) tuples."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, tuple) for v in value)


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}.get(repr(value), repr(value))
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, datetime.datetime):
        text = value.isoformat(sep=" ")
        return text.replace("+00:00", "+00")
    if isinstance(value, datetime.timedelta):
        return _interval(0, value.days, value.seconds * 10**6 + value.microseconds)
    if type(value).__name__ == "MonthDayNano":
        months, days, nanos = value
        return _interval(months, days, nanos // 1000)
    return str(value)


def _interval(months: int, days: int, micros: int) -> str:
    """PostgreSQL's own interval output (IntervalStyle postgres): ``1 year 2 mons 3 days
    04:05:06.5``, the form psycopg and JDBC parse."""
    years, months = divmod(months, 12) if months >= 0 else (-divmod(-months, 12)[0],
                                                            -divmod(-months, 12)[1])
    parts = [f"{n} {unit}{'' if abs(n) == 1 else 's'}"
             for n, unit in ((years, "year"), (months, "mon"), (days, "day")) if n]
    if micros or not parts:
        seconds, micro = divmod(abs(micros), 10**6)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        parts.append(("-" if micros < 0 else "") + clock + (f".{micro:06d}".rstrip("0")
                                                            if micro else ""))
    return " ".join(parts)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json(value: object) -> str:
    return json.dumps(_jsonable(value), default=str, separators=(", ", ": "))


def _jsonable(value: object) -> object:
    if _is_record(value) and all(isinstance(k, str) for k, _ in value):
        return {k: _jsonable(v) for k, v in value}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, float) and value != value:
        return None
    return value


# ---------------------------------------------------------------------- binary format

def _packed(fmt: str) -> Callable[[pa.Array], Values]:
    pack = struct.Struct(fmt).pack
    return lambda array: [None if v is None else pack(v) for v in array.to_pylist()]


def _shifted(to: pa.DataType, shift: int, fmt: str) -> Callable[[pa.Array], Values]:
    """Dates and timestamps: integers counted from 2000-01-01, as PostgreSQL sends them."""
    pack = struct.Struct(fmt).pack
    counter = pa.int32() if to == pa.date32() else pa.int64()

    def encode(array: pa.Array) -> Values:
        counted = pc.cast(pc.cast(array, to, safe=False), counter)
        return [None if v is None else pack(v - shift) for v in counted.to_pylist()]
    return encode


def _numeric(value: decimal.Decimal) -> bytes:
    """A numeric in PostgreSQL's binary form: base-10000 digits, weight, sign, scale."""
    if value.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    sign, digits, exponent = value.as_tuple()
    scale = max(-exponent, 0)
    text = ("".join(map(str, digits)) + "0" * max(exponent, 0)).rjust(scale + 1, "0")
    whole, fraction = (text[: len(text) - scale], text[len(text) - scale:]) if scale else (text, "")
    whole = whole.lstrip("0")
    whole = whole.rjust(-(-len(whole) // 4) * 4, "0")
    fraction = fraction.ljust(-(-len(fraction) // 4) * 4, "0")
    groups = [int((whole + fraction)[i:i + 4]) for i in range(0, len(whole + fraction), 4)]
    weight = len(whole) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    weight = weight if groups else 0
    return struct.pack(f"!hhHh{len(groups)}h", len(groups), weight, 0x4000 if sign else 0,
                       scale, *groups)


BINARY: dict[int, Callable[[pa.Array], Values]] = {
    BOOL: lambda a: [None if v is None else (b"\x01" if v else b"\x00") for v in a.to_pylist()],
    INT2: lambda a: _packed("!h")(pc.cast(a, pa.int16())),
    INT4: lambda a: _packed("!i")(pc.cast(a, pa.int32())),
    INT8: lambda a: _packed("!q")(pc.cast(a, pa.int64())),
    FLOAT4: lambda a: _packed("!f")(pc.cast(a, pa.float32())),
    FLOAT8: _packed("!d"),
    TEXT: lambda a: _as_bytes(pc.cast(a, pa.large_string())),
    JSON: lambda a: _text(a),
    BYTEA: lambda a: pc.cast(a, pa.large_binary()).to_pylist(),
    DATE: _shifted(pa.date32(), EPOCH_DAYS, "!i"),
    TIME: _shifted(pa.time64("us"), 0, "!q"),
    TIMESTAMP: _shifted(pa.timestamp("us"), EPOCH_US, "!q"),
    TIMESTAMPTZ: _shifted(pa.timestamp("us", "UTC"), EPOCH_US, "!q"),
    NUMERIC: lambda a: [None if v is None else _numeric(decimal.Decimal(v))
                        for v in a.to_pylist()],
}
