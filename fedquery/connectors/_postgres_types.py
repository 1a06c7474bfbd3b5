"""PostgreSQL types as the Arrow types DuckDB would give them, and the batch conversion.

ADBC's PostgreSQL driver returns most types as DuckDB expects them; three need work:

========================  ==========================  ==========================================
PostgreSQL                ADBC returns                fedquery returns
========================  ==========================  ==========================================
numeric(p, s), p <= 38    opaque string               decimal128(p, s)
numeric (no typmod)       opaque string               float64 (DuckDB's postgres extension too)
json, jsonb               arrow.json (string)         string
other opaque (inet, ...)  opaque string/binary        its storage: string or binary
========================  ==========================  ==========================================

Everything else passes through: int2/4/8, float4/8, bool, text/varchar/char/name, date,
timestamp → timestamp[us], timestamptz → timestamp[us, UTC], time → time64[us], interval →
month_day_nano_interval, uuid → arrow.uuid (DuckDB reads it as UUID), bytea → binary,
arrays → list of the element type (numeric elements converted as above).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

NUMERIC_FALLBACK = pa.float64()
MAX_DECIMAL_PRECISION = 38


def numeric_type(typmod: int) -> pa.DataType:
    """The Arrow type of ``numeric`` with a type modifier (-1: none), as DuckDB maps it."""
    if typmod < 4:
        return NUMERIC_FALLBACK
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024  # PostgreSQL 15+ allows a negative scale
    if not 0 < precision <= MAX_DECIMAL_PRECISION or not 0 <= scale <= precision:
        return NUMERIC_FALLBACK
    return pa.decimal128(precision, scale)


def is_numeric(arrow_type: pa.DataType) -> bool:
    """True for ADBC's opaque ``numeric`` (a string holding the decimal text)."""
    return isinstance(arrow_type, pa.BaseExtensionType) and _opaque_name(arrow_type) == "numeric"


def target_type(arrow_type: pa.DataType, numeric: pa.DataType | None = None) -> pa.DataType:
    """The type fedquery returns for a type ADBC returns; ``numeric`` for numeric (elements)."""
    if is_numeric(arrow_type):
        return numeric or NUMERIC_FALLBACK
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        item = arrow_type.value_field
        inner = item.with_type(target_type(item.type, numeric)).remove_metadata()
        return pa.list_(inner) if pa.types.is_list(arrow_type) else pa.large_list(inner)
    if isinstance(arrow_type, pa.BaseExtensionType) and arrow_type.extension_name != "arrow.uuid":
        return arrow_type.storage_type
    return arrow_type


def target_schema(schema: pa.Schema, numeric: Mapping[str, pa.DataType]) -> pa.Schema:
    """A result schema with every column mapped; ``numeric`` gives known decimal types by name.

    Field metadata from the driver (``POSTGRESQL:type``) is dropped, as scans of other sources
    carry none.
    """
    return pa.schema([pa.field(f.name, target_type(f.type, numeric.get(f.name)), f.nullable)
                      for f in schema])


def convert_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A driver batch in the target schema (numeric text parsed, extension types unwrapped)."""
    columns = [convert_array(column, field.type) for column, field in zip(batch.columns, schema,
                                                                           strict=True)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def convert_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    """One column converted to ``target``; a value the target cannot hold raises ValueError."""
    if array.type == target:
        return array
    if is_numeric(array.type):
        return _parse_numeric(array.storage, target)
    if isinstance(array.type, pa.BaseExtensionType):
        return convert_array(array.storage, target)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values = convert_array(array.values, target.value_type)
        kind = pa.ListArray if pa.types.is_list(array.type) else pa.LargeListArray
        return kind.from_arrays(array.offsets, values, type=target, mask=array.is_null())
    return array.cast(target)


def _parse_numeric(text: pa.Array, target: pa.DataType) -> pa.Array:
    try:
        return pc.cast(text, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"a numeric value does not fit {target} (NaN or Infinity in a "
                         f"numeric(p, s) column?): {exc}") from exc


def _opaque_name(arrow_type: pa.BaseExtensionType) -> str | None:
    """The PostgreSQL type name of ADBC's ``arrow.opaque`` extension type, else None."""
    if arrow_type.extension_name != "arrow.opaque":
        return None
    return getattr(arrow_type, "type_name", None)
