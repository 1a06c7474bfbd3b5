"""Answers typed exactly as DuckDB types the user's query.

The planner describes the user's SQL with DuckDB's binder (``Plan.types``). A column computed
inside another source can arrive with another type: PostgreSQL sums integers into BIGINT where
DuckDB makes a HUGEINT, averages DECIMALs into NUMERIC. The executor casts such columns back, so
the Arrow schema of an answer is the schema DuckDB would give for the same query.
"""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa


class ArrowTypes:
    """The Arrow type DuckDB exports for each SQL type name (asked once per name)."""

    def __init__(self) -> None:
        self._known: dict[str, pa.DataType | None] = {}
        self._lock = threading.Lock()
        self._con = duckdb.connect(":memory:")

    def of(self, sql_type: str) -> pa.DataType | None:
        with self._lock:
            if sql_type not in self._known:
                self._known[sql_type] = self._ask(sql_type)
            return self._known[sql_type]

    def _ask(self, sql_type: str) -> pa.DataType | None:
        try:
            table = self._con.sql(f"SELECT CAST(NULL AS {sql_type}) AS v LIMIT 0").to_arrow_table()
        except (duckdb.Error, pa.ArrowException):
            return None  # a type DuckDB cannot cast to or Arrow cannot hold: left as it comes
        return table.schema.field(0).type

    def close(self) -> None:
        self._con.close()


def expected(types: tuple[str, ...], arrow_types: ArrowTypes) -> list[pa.DataType | None]:
    return [arrow_types.of(t) if t else None for t in types]


def conform(data: pa.Table | pa.RecordBatch, wanted: list[pa.DataType | None],
            names: tuple[str, ...] = ()):
    """``data`` with DuckDB's output ``names`` (a query run whole in PostgreSQL comes back with
    ``id, id_1`` for DuckDB's ``id, id``, and names cut at 63 bytes) and every column whose type
    differs from the wanted one cast to it (columns that cannot be cast keep their type)."""
    if len(wanted) != data.num_columns:
        return data
    columns = list(data.columns)
    changed = bool(names) and list(names) != data.column_names
    for i, (column, kind) in enumerate(zip(columns, wanted, strict=True)):
        if kind is None or column.type == kind:
            continue
        try:
            columns[i] = column.cast(kind)
            changed = True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    if not changed:
        return data
    labels = list(names) if len(names) == len(columns) else data.column_names
    schema = pa.schema([pa.field(n, c.type) for n, c in zip(labels, columns, strict=True)])
    kind = pa.Table if isinstance(data, pa.Table) else pa.RecordBatch
    return kind.from_arrays(columns, schema=schema)
