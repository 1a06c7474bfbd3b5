"""An error met on the cluster reaches the user as the fedquery error it was.

DuckDB raises an error it meets after the first batch of a stream through Arrow (an
``OSError``), not as a ``duckdb.Error``: the residual's task on a worker must translate both,
as the local engine does, or the user sees the cluster's "a task failed" instead. A fragment's
error in a Daft task travels in the task's message, pickled: it must unpickle (a
``SourceError`` did not).
"""

from __future__ import annotations

import pytest

import fedquery

# 360,000 rows numbered in order; only rows past the first batches overflow
LATE_OVERFLOW = ("SELECT CASE WHEN rn > 300000 THEN i64 * 4 ELSE 0 END AS x FROM (SELECT "
                 "row_number() OVER (ORDER BY a.id, b.id) AS rn, a.i64 FROM ta AS a, tc AS b) AS t")


def test_an_error_after_the_first_batch_is_the_local_engines(lake_engines) -> None:
    local, ray = lake_engines
    with pytest.raises(fedquery.PlanError, match="Overflow in multiplication of INT64") as want:
        local.sql(LATE_OVERFLOW).arrow()
    with pytest.raises(fedquery.PlanError, match="Overflow in multiplication of INT64") as got:
        ray.sql(LATE_OVERFLOW).arrow()
    assert type(got.value) is type(want.value)
    assert ray._session.engine.last_residual == "duckdb"


def test_a_fragments_error_in_a_daft_task_names_its_source(lake_engines) -> None:
    _, ray = lake_engines
    with pytest.raises(fedquery.SourceError, match="date field value out of range") as got:
        ray.sql("SELECT a.ts AS c0 FROM tc AS a WHERE a.dt <> '2021-02-29'").arrow()
    assert got.value.source == "lake"
    assert "a task failed" not in str(got.value)
