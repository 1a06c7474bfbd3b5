"""Rows of Arrow data as Python tuples, as DuckDB's own Python client gives them.

Arrow converts a column with ``to_pylist``; a date or timestamp that Python's ``datetime``
cannot hold (year 294247, ``'infinity'::TIMESTAMP``, ``'-5877641-06-25'::DATE``) makes it
raise. DuckDB's client gives such a value as its text (``'294247-01-10 00:00:00'``) and an
infinite one as ``datetime.max`` / ``datetime.min`` (``date.max`` / ``date.min``), so a column
that Arrow cannot convert is converted by DuckDB's client itself, and fedquery's rows equal
DuckDB's. Timestamps with a time zone are rendered in the column's own zone.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from fedquery.errors import PlanError


def python_rows(data: pa.Table | pa.RecordBatch) -> list[tuple]:
    """Every row of ``data`` as a tuple of Python values."""
    columns = [column_values(column, name)
               for column, name in zip(data.columns, data.schema.names, strict=True)]
    return list(zip(*columns, strict=True)) if columns else []


def column_values(column: pa.Array | pa.ChunkedArray, name: str = "column") -> list[Any]:
    """The column's values as Python values; one holding a date or timestamp outside Python's
    range is converted as DuckDB's client converts it."""
    try:
        return column.to_pylist()
    except (OverflowError, ValueError) as exc:
        if not has_temporal(column.type):
            raise
        return _duckdb_values(column, name, exc)


def has_temporal(kind: pa.DataType) -> bool:
    """True if ``kind`` is a date or timestamp, or nests one (a list, struct or map of them)."""
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return True
    if pa.types.is_struct(kind):
        return any(has_temporal(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return has_temporal(kind.key_type) or has_temporal(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return has_temporal(kind.value_type)
    return False


def _duckdb_values(column: pa.Array | pa.ChunkedArray, name: str, cause: Exception) -> list[Any]:
    import duckdb

    con = duckdb.connect()
    try:
        zone = _zone(column.type)
        if zone:
            con.execute("SET TimeZone = ?", [zone])
        con.register("converted", pa.table({"v": column}))
        return [row[0] for row in con.execute("SELECT v FROM converted").fetchall()]
    except duckdb.Error as exc:
        raise PlanError(f"column {name!r} holds a {column.type} value Python cannot represent "
                        f"({cause}); cast it to VARCHAR in the query") from exc
    finally:
        con.close()


def _zone(kind: pa.DataType) -> str | None:
    """The time zone of the first timestamp type with one in ``kind`` (None: naive)."""
    if pa.types.is_timestamp(kind):
        return kind.tz
    children = [kind.field(i).type for i in range(kind.num_fields)] if pa.types.is_struct(kind) \
        else [kind.value_type] if hasattr(kind, "value_type") else []
    return next((z for z in map(_zone, children) if z), None)
