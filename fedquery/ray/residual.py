"""The residual query on the cluster: DuckDB in one Ray task, over the fragments' partitions.

The task is placed on a worker (never the driver); it fetches the partitions Daft left in the
object store, registers each fragment under its plan name and runs the residual SQL with the
local engine's functions, streaming Arrow batches back (a Ray streaming generator). A
DuckDB error (also one met after the first batch, which DuckDB raises through its Arrow stream
as an ``OSError``) becomes the local engine's ``FedQueryError`` there, and is raised as such
here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.ray import worker

if TYPE_CHECKING:
    from fedquery.plan import Plan
    from fedquery.ray.reads import Opening

BATCH_ROWS = 65_536


def run_residual(opening: Opening, plan: Plan, sql: str, params: Any,
                 inputs: dict[str, list]) -> Iterator[pa.RecordBatch]:
    """Batches of ``sql`` over ``inputs`` (fragment name -> its
    schema and Daft partition refs), run in the
    calling worker process."""
    import duckdb
    import ray

    con = opening.connection()
    session = con._session
    cursor = session.cursor()
    try:
        with session.functions.run_on(cursor):
            for name, (schema, refs) in inputs.items():
                parts = [p.to_arrow() for p in ray.get(refs)]
                cursor.register(name, pa.concat_tables(parts) if parts else schema.empty_table())
            try:
                reader = cursor.sql(sql, params=worker.from_wire(params)).to_arrow_reader(BATCH_ROWS)
                empty = True
                for batch in reader:
                    empty = False
                    yield batch
                if empty:  # the driver learns the columns' types from a first batch
                    yield pa.RecordBatch.from_pylist([], schema=reader.schema)
            except (duckdb.Error, OSError) as exc:  # OSError: DuckDB's error through its Arrow stream
                raise session.translate(exc, plan) from None
    finally:
        session.finished(cursor)
        cursor.close()


def remote_residual():
    """``run_residual`` as a Ray streaming task on a node with a CPU for it."""
    import ray

    return ray.remote(num_cpus=1, num_returns="streaming", max_retries=0)(_residual_task)


def _residual_task(opening, plan, sql, params, inputs):
    yield from run_residual(opening, plan, sql, params, inputs)
