"""``con.profile`` on the cluster: each file measured by a Daft UDF in a worker process.

The URIs (a column of text) are dealt into partitions over the cluster; each worker measures
its batches with the local engine's ``measure_batch`` (its own blob I/O pool, one run per
batch) and returns one small row per file. The driver only finds duplicate sets over them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from fedquery.profile_measure import BATCH, MEASURED, measure_batch, with_duplicate_sets

if TYPE_CHECKING:
    from fedquery.ray.reads import Opening


def measure_on_cluster(opening: Opening, uris: pa.Array, source: str | None,
                       partitions: int) -> pa.Table:
    """A ``MEASURED`` row per URI, in the order given, with duplicate sets."""
    import daft

    if len(uris) == 0:
        return with_duplicate_sets(pa.Table.from_batches([], pa.schema(list(MEASURED))))
    positions = pa.array(range(len(uris)), pa.int64())
    df = daft.from_arrow(pa.table({"position": positions, "uri": uris.cast(pa.large_string())}))
    df = df.into_partitions(max(1, min(partitions, len(uris))))

    def run(batch: daft.Series) -> daft.Series:
        functions = opening.connection()._session.functions
        redact = opening.catalog.secrets.redact
        return daft.Series.from_arrow(measure_batch(functions, batch.to_arrow().cast(pa.string()),
                                                    source, redact), name="measured")

    measured = daft.func.batch(return_dtype=daft.DataType.from_arrow_type(MEASURED),
                               batch_size=BATCH)(lambda uri: run(uri))
    table = df.with_column("measured", measured(df["uri"])).select("position", "measured").to_arrow()
    table = table.sort_by("position")
    rows = table.column("measured").combine_chunks()
    return with_duplicate_sets(pa.Table.from_batches(
        [pa.RecordBatch.from_struct_array(rows.cast(MEASURED))]))
