"""The local engine's answer against the Ray engine's: same column names, types and values.

``assert_same(local, ray, sql, params, ordered=...)`` runs ``sql`` on both connections and
fails with the rows that differ (``differences``): compared in order when the query orders its
rows totally (``ordered=True``), as multisets when it does not order them (``False``: each
side's rows counted, both sorted in effect), and when its ORDER BY leaves ties (``ordered=``
the names of the output columns it orders by) as the same sequence of those columns' values
with the same rows within each run of equal values. Values are compared exactly; NaN equals
NaN. No tolerance: a float computed differently is a difference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

import fedquery

SHOWN = 8  # differing rows a failure message lists


def answers(local: fedquery.Connection, ray: fedquery.Connection, sql: str,
            params: Any = None) -> tuple[pa.Table, pa.Table]:
    """``sql``'s answer from each engine, as Arrow tables."""
    return local.sql(sql, params=params).arrow(), ray.sql(sql, params=params).arrow()


def assert_same(local: fedquery.Connection, ray: fedquery.Connection, sql: str, params: Any = None,
                *, ordered: bool | Sequence[str], rows: bool = True) -> pa.Table:
    """Both engines give ``sql`` the same answer (``rows``: and it has some); returns it."""
    expected, actual = answers(local, ray, sql, params)
    problems = differences(expected, actual, ordered=ordered)
    assert not problems, "local and Ray engines differ:\n  " + "\n  ".join(problems)
    assert (expected.num_rows > 0) == rows, f"{expected.num_rows} rows: the case tests nothing"
    return expected


def differences(expected: pa.Table, actual: pa.Table, *,
                ordered: bool | Sequence[str]) -> list[str]:
    """What differs between the local answer (``expected``) and the Ray answer, in words."""
    if expected.column_names != actual.column_names:
        return [f"columns: local {expected.column_names}, ray {actual.column_names}"]
    problems = [f"column {name!r}: local {e.type}, ray {a.type}"
                for name, e, a in zip(expected.column_names, expected.schema, actual.schema, strict=True)
                if e.type != a.type]
    local_rows, ray_rows = _rows(expected), _rows(actual)
    if len(local_rows) != len(ray_rows):
        problems.append(f"{len(local_rows)} rows on the local engine, {len(ray_rows)} on Ray")
    what = "row"
    if not isinstance(ordered, bool):
        keys = [expected.column_names.index(name) for name in ordered]
        local_rows, ray_rows = _runs(local_rows, keys), _runs(ray_rows, keys)
        what = f"run of equal {', '.join(ordered)}"
    if ordered is not False:
        differing = [i for i in range(max(len(local_rows), len(ray_rows)))
                     if i >= len(local_rows) or i >= len(ray_rows) or local_rows[i] != ray_rows[i]]
        for i in differing[:SHOWN]:
            problems.append(f"{what} {i}: local {_at(local_rows, i)}, ray {_at(ray_rows, i)}")
        if len(differing) > SHOWN:
            problems.append(f"... {len(differing) - SHOWN} more differ")
        return problems
    only_local = Counter(local_rows) - Counter(ray_rows)
    only_ray = Counter(ray_rows) - Counter(local_rows)
    for side, extra in (("local", only_local), ("ray", only_ray)):
        listed = sorted(extra.elements(), key=repr)
        for row in listed[:SHOWN]:
            problems.append(f"only on {side}: {row!r}")
        if len(listed) > SHOWN:
            problems.append(f"... {len(listed) - SHOWN} more rows only on {side}")
    return problems


def _runs(rows: list[tuple], keys: list[int]) -> list[tuple]:
    """Rows grouped into runs of equal ``keys`` values: (those values, the run's rows sorted)."""
    runs: list[tuple] = []
    for row in rows:
        key = tuple(row[k] for k in keys)
        if runs and runs[-1][0] == key:
            runs[-1][1].append(row)
        else:
            runs.append((key, [row]))
    return [(key, tuple(sorted(run, key=repr))) for key, run in runs]


def _at(rows: list, i: int) -> str:
    return repr(rows[i]) if i < len(rows) else "(none)"


def _rows(table: pa.Table) -> list[tuple]:
    """The table's rows as hashable values (lists as tuples, structs and maps as item tuples)."""
    return [tuple(_hashable(v) for v in row.values()) for row in table.to_pylist()]


class _NaN:
    """A NaN that equals NaN (and hashes alike), so a NaN in both answers is no difference."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NaN)

    def __hash__(self) -> int:
        return hash("NaN")

    def __repr__(self) -> str:
        return "nan"


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return _NaN()
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    return value
