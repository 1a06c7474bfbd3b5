"""Rows and DataFrames of Arrow data, converted by DuckDB's own Python client.

``fetchall()`` and ``df()`` must give what ``duckdb.sql(q).fetchall()`` / ``.df()`` give for
the same query: a ``sum()`` of integers (HUGEINT) as an ``int`` and a ``float64`` column, a
DECIMAL as ``Decimal`` and ``float64``, a UUID as ``uuid.UUID``, an INTERVAL as ``timedelta``,
a MAP as a ``dict``, a date or timestamp outside Python's range as DuckDB's text of it.
Arrow's own conversion differs on each of these, so the converting is left to DuckDB: the
table is scanned by a private in-memory DuckDB (no catalog, no files) and each column whose
DuckDB type is lost on the way through Arrow (HUGEINT and UHUGEINT arrive as DECIMAL(38,0),
UUID as VARCHAR, ENUM as VARCHAR) is cast back to the type the plan gave it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from fedquery.errors import PlanError

if TYPE_CHECKING:
    import pandas

# Types Arrow cannot carry from DuckDB and back, which a cast restores exactly. (BIT arrives
# as BLOB, whose cast to BIT reads the bytes as bits: it is left as bytes.)
_RESTORED = ("HUGEINT", "UUID", "ENUM(")
_lock = threading.Lock()
_converter: duckdb.DuckDBPyConnection | None = None


def python_rows(data: pa.Table | pa.RecordBatch, types: Sequence[str] = ()) -> list[tuple]:
    """Every row of ``data`` as a tuple of the Python values DuckDB's client gives; ``types``:
    the DuckDB type of each column (``Plan.types``), where known."""
    if data.num_columns == 0:
        return [()] * data.num_rows
    with _Converting(data) as cursor:
        return _relation(cursor, data, types).fetchall()


def pandas_frame(data: pa.Table, types: Sequence[str] = ()) -> pandas.DataFrame:
    """``data`` as the pandas DataFrame DuckDB's client gives (dtypes included)."""
    with _Converting(data) as cursor:
        try:
            return _relation(cursor, data, types).df()
        except duckdb.ConversionException as exc:
            raise PlanError(f"a date or timestamp of the result is outside the range pandas can "
                            f"hold ({str(exc).splitlines()[0]}); cast it to VARCHAR in the "
                            "query, or use arrow() or fetchall()") from exc
        except duckdb.NotImplementedException as exc:  # UHUGEINT, BIGNUM: DuckDB's df() fails too
            raise PlanError(f"pandas cannot hold a column of the result "
                            f"({str(exc).splitlines()[0]}); cast it in the query (to DOUBLE or "
                            "VARCHAR), or use arrow() or fetchall()") from exc


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


class _Converting:
    """A cursor of the private converting DuckDB, in the time zone of the data's first
    timestamp with one (DuckDB's client renders TIMESTAMPTZ in its session's zone)."""

    def __init__(self, data: pa.Table | pa.RecordBatch) -> None:
        self._zone = next((z for z in map(_zone, data.schema.types) if z), None)

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        global _converter
        with _lock:
            if _converter is None:
                _converter = duckdb.connect(":memory:", config={"enable_external_access": False})
            self._cursor = _converter.cursor()
        if self._zone:
            self._cursor.execute("SET TimeZone = ?", [self._zone])
        return self._cursor

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()


def _relation(cursor: duckdb.DuckDBPyConnection, data: pa.Table | pa.RecordBatch,
              types: Sequence[str]) -> duckdb.DuckDBPyRelation:
    """``data`` as a relation with the output names and, where Arrow lost them, DuckDB types."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    names = data.column_names
    scanned = cursor.from_arrow(data.rename_columns([f"c{i}" for i in range(len(names))]))
    wanted = list(types) if len(types) == len(names) else [""] * len(names)
    columns = []
    for i, (got, want) in enumerate(zip(scanned.types, wanted, strict=True)):
        column = duckdb.ColumnExpression(f"c{i}")
        if want and str(got) != want and any(k in want for k in _RESTORED):
            column = _cast(cursor, column, want)
        columns.append(column.alias(names[i]))
    return scanned.project(*columns)


def _cast(cursor: duckdb.DuckDBPyConnection, column: duckdb.Expression,
          sql_type: str) -> duckdb.Expression:
    try:
        return column.cast(cursor.type(sql_type))
    except duckdb.Error:  # a type name DuckDB does not parse back: the column as it came
        return column


def _zone(kind: pa.DataType) -> str | None:
    """The time zone of the first timestamp type with one in ``kind`` (None: naive)."""
    if pa.types.is_timestamp(kind):
        return kind.tz
    children = [kind.field(i).type for i in range(kind.num_fields)] if pa.types.is_struct(kind) \
        else [kind.value_type] if hasattr(kind, "value_type") else []
    return next((z for z in map(_zone, children) if z), None)
