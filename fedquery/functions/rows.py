"""Per-row results as one Arrow array: a row whose values do not fit its type is an error row.

The format readers check what they report (a point count within a BIGINT, a width within an
INTEGER), so this is the last guard: one row of a crafted file must never fail the whole batch
(``pa.array`` of a list of dicts fails as a whole on a single value out of range).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_DOES_NOT_FIT = (pa.ArrowException, OverflowError, TypeError, ValueError)


def struct_array(rows: list[dict[str, Any] | None], type: pa.StructType) -> pa.StructArray:
    """``rows`` as a struct array of ``type`` (None: a NULL struct); a row that does not fit
    keeps only an ``error`` saying which value did not."""
    try:
        return pa.array(rows, type=type)
    except _DOES_NOT_FIT:
        return pa.array([_fitting(row, type) for row in rows], type=type)


def _fitting(row: dict[str, Any] | None, type: pa.StructType) -> dict[str, Any] | None:
    try:
        pa.array([row], type=type)
    except _DOES_NOT_FIT:
        field = next((f.name for f in type if not _fits(row.get(f.name), f.type)), "a value")
        return {"error": f"corrupt: {field} {str(row.get(field))[:40]} is out of range"}
    return row


def _fits(value: Any, type: pa.DataType) -> bool:
    try:
        pa.array([value], type=type)
    except _DOES_NOT_FIT:
        return False
    return True
