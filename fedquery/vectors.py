"""Query vectors: a Python list or numpy array given as a parameter, typed as the column's
``FLOAT[n]``.

DuckDB binds a Python list as ``DOUBLE[]``, which no array distance function takes. When a
``$name`` parameter stands opposite a fixed-size array column in a distance function
(``array_cosine_distance(e.embedding, $q)``), the plan records the column's type, and each run
passes the value as a typed DuckDB value of that type; a wrong length is a ``PlanError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
from sqlglot import exp

from fedquery.errors import PlanError

DISTANCE_FUNCTIONS = {
    "array_cosine_distance", "array_distance", "array_negative_inner_product",
    "array_inner_product", "array_cosine_similarity", "array_dot_product",
    "array_negative_dot_product", "array_cross_product",
}


def array_type(arrow_type: pa.DataType) -> str | None:
    """``FLOAT[n]`` / ``DOUBLE[n]`` for a fixed-size list of floats, else None."""
    if not pa.types.is_fixed_size_list(arrow_type):
        return None
    element = {pa.float32(): "FLOAT", pa.float64(): "DOUBLE"}.get(arrow_type.value_type)
    return f"{element}[{arrow_type.list_size}]" if element else None


def vector_parameters(tree: exp.Expr, column_type: Callable[[exp.Column], str | None]
                      ) -> tuple[tuple[str, str], ...]:
    """``(parameter, FLOAT[n])`` for each ``$name`` facing an array column in a distance call."""
    found: dict[str, str] = {}
    for call in tree.find_all(exp.Anonymous):
        if call.name.lower() not in DISTANCE_FUNCTIONS or len(call.expressions) != 2:
            continue
        for mine, other in (call.expressions, reversed(call.expressions)):
            if isinstance(mine, exp.Placeholder) and mine.name and isinstance(other, exp.Column):
                sql_type = column_type(other)
                if sql_type is not None:
                    if found.get(mine.name, sql_type) != sql_type:
                        raise PlanError(f"${mine.name} stands for vectors of two types: "
                                        f"{found[mine.name]} and {sql_type}")
                    found[mine.name] = sql_type
    return tuple(sorted(found.items()))


def typed_vectors(params: Mapping[str, Any], types: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``params`` with each query vector as a DuckDB value of its column's type."""
    from duckdb import sqltype
    from duckdb.value.constant import Value

    out = dict(params)
    for name, sql_type in types:
        if name in out and out[name] is not None:
            out[name] = Value(_floats(name, out[name], sql_type), sqltype(sql_type))
    return out


def _json_array(name: str, value: Any) -> Any:
    """A string holding a JSON array (``'[0.1, 0.2]'``, as the CLI's ``--param`` passes it) as
    that list, as DuckDB casts such text to ``FLOAT[n]``; any other value unchanged."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        import json

        try:
            return json.loads(value)
        except ValueError:
            raise PlanError(f"${name}: a query vector given as text must be a JSON array of "
                            "numbers, like [0.1, 0.2]") from None
    return value


def _floats(name: str, value: Any, sql_type: str) -> list[float]:
    """The vector as a list of floats of the type's length; PlanError otherwise."""
    size = int(sql_type.rsplit("[", 1)[1].rstrip("]"))
    tolist = getattr(value, "tolist", None)
    items = tolist() if callable(tolist) else _json_array(name, value)
    if isinstance(items, str | bytes) or not hasattr(items, "__len__"):
        raise PlanError(f"${name} must be a list or 1-D array of {size} numbers for {sql_type}, "
                        f"not {type(value).__name__}")
    if len(items) != size:
        raise PlanError(f"${name} has {len(items)} values; the column it is compared with is "
                        f"{sql_type}, so it needs {size}")
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        raise PlanError(f"${name} must hold numbers only for {sql_type}") from None
