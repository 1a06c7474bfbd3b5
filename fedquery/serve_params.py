"""Bind parameters from the wire as Python values for ``Connection.sql(query, params=[...])``.

A client sends each ``$n`` value as text or binary, with the type OID it declared in Parse
(0 when it left the type to the server). Text of an undeclared or text type stays a ``str``
(fedquery types it by the column it meets, as for ``--param``); declared numbers, booleans,
dates and timestamps become Python's. buenavista's own decoding parses every undeclared text
value as a date, so it is replaced by this.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from collections.abc import Callable

from fedquery.serve_errors import InvalidValue, Unsupported
from fedquery.serve_types import (
    BOOL,
    BYTEA,
    DATE,
    EPOCH_DAYS,
    FLOAT4,
    FLOAT8,
    INT2,
    INT4,
    INT8,
    NUMERIC,
    TIMESTAMP,
    TIMESTAMPTZ,
)

EPOCH = datetime.datetime(2000, 1, 1)
UTC = datetime.UTC


def _timestamp_text(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace(" ", "T", 1))


TEXT_DECODERS: dict[int, Callable[[str], object]] = {
    INT2: int, INT4: int, INT8: int,
    FLOAT4: float, FLOAT8: float,
    NUMERIC: decimal.Decimal,
    BOOL: lambda text: text.strip().lower() in ("t", "true", "1", "yes", "on", "y"),
    DATE: datetime.date.fromisoformat,
    TIMESTAMP: _timestamp_text,
    TIMESTAMPTZ: _timestamp_text,
    BYTEA: lambda text: bytes.fromhex(text[2:]) if text.startswith("\\x") else text.encode(),
}
BINARY_DECODERS: dict[int, Callable[[bytes], object]] = {
    INT2: lambda data: struct.unpack("!h", data)[0],
    INT4: lambda data: struct.unpack("!i", data)[0],
    INT8: lambda data: struct.unpack("!q", data)[0],
    FLOAT4: lambda data: struct.unpack("!f", data)[0],
    FLOAT8: lambda data: struct.unpack("!d", data)[0],
    BOOL: lambda data: data != b"\x00",
    BYTEA: bytes,
    DATE: lambda data: datetime.date.fromordinal(
        datetime.date(1970, 1, 1).toordinal() + EPOCH_DAYS + struct.unpack("!i", data)[0]),
    TIMESTAMP: lambda data: EPOCH + datetime.timedelta(microseconds=struct.unpack("!q", data)[0]),
    TIMESTAMPTZ: lambda data: (EPOCH + datetime.timedelta(
        microseconds=struct.unpack("!q", data)[0])).replace(tzinfo=UTC),
}
TEXT_TYPES = (0, 25, 705, 1043, 1042, 19, 114, 3802)  # unknown, text, varchar, char, name, json


def decode(value: bytes | None, oid: int, binary: bool) -> object:
    """One parameter's value (None for SQL NULL)."""
    if value is None:
        return None
    try:
        if binary:
            if oid in TEXT_TYPES:
                return value.decode()
            decoder = BINARY_DECODERS.get(oid)
            if decoder is None:
                raise Unsupported(f"a parameter of type OID {oid} in binary format is not "
                                  "supported; send it as text")
            return decoder(value)
        text = value.decode()
        decoder = TEXT_DECODERS.get(oid)
        return text if decoder is None else decoder(text)
    except (ValueError, struct.error, decimal.InvalidOperation, OverflowError) as exc:
        raise InvalidValue(f"a parameter of type OID {oid} has a malformed value "
                                f"({type(exc).__name__})") from None
