"""``con.profile`` on the cluster: each file measured by a Daft UDF in a worker process.

The URIs (a column of text) are dealt into partitions over the cluster; each worker measures
its batches with the local engine's ``measure_batch`` (its own blob I/O pool, one run per
batch) and returns one small row per file. The driver only finds duplicate sets over them.
The report's thumbnails and embeddings are made on the workers the same way (``map_uris``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from fedquery.profile_measure import BATCH, MEASURED, measure_batch, with_duplicate_sets

if TYPE_CHECKING:
    from fedquery.functions.udfs import BlobFunctions
    from fedquery.ray.reads import Opening


def measure_on_cluster(opening: Opening, uris: pa.Array, source: str | None,
                       partitions: int) -> pa.Table:
    """A ``MEASURED`` row per URI, in the order given, with duplicate sets."""
    redact = opening.catalog.secrets.redact

    def work(functions: BlobFunctions, batch: pa.Array) -> pa.Array:
        return measure_batch(functions, batch, source, redact)

    rows = map_uris(opening, uris, work, MEASURED, partitions)
    return with_duplicate_sets(pa.Table.from_batches([pa.RecordBatch.from_struct_array(rows)]))


def map_uris(opening: Opening, uris: pa.Array, work: Callable[[BlobFunctions, pa.Array], pa.Array],
             type_: pa.DataType, partitions: int) -> pa.Array:
    """``work(functions, batch)`` over ``uris`` in batches on the workers: one value per URI,
    in the order given."""
    import daft

    if len(uris) == 0:
        return pa.array([], type_)
    positions = pa.array(range(len(uris)), pa.int64())
    df = daft.from_arrow(pa.table({"position": positions, "uri": uris.cast(pa.large_string())}))
    df = df.into_partitions(max(1, min(partitions, len(uris))))

    def run(batch: daft.Series) -> daft.Series:
        from fedquery.functions.udfs import BlobFunctions

        # as the local profile: a file's problem is counted, never raised (strict or not)
        functions = BlobFunctions(opening.connection()._session.functions.blobs, strict=False)
        return daft.Series.from_arrow(work(functions, batch.to_arrow().cast(pa.string())), name="value")

    udf = daft.func.batch(return_dtype=daft.DataType.from_arrow_type(type_), batch_size=BATCH)(
        lambda uri: run(uri))
    table = df.with_column("value", udf(df["uri"])).select("position", "value").to_arrow()
    return table.sort_by("position").column("value").combine_chunks().cast(type_)


def thumbnails(opening: Opening, uris: list[str], source: str | None,
               partitions: int) -> dict[str, bytes]:
    """The profile report's thumbnails (``profile_media.thumbnails``), made on the workers."""
    from fedquery import profile_media

    def work(functions: BlobFunctions, batch: pa.Array) -> pa.Array:
        made = profile_media.thumbnails(functions, batch.to_pylist(), source)
        return pa.array([made.get(uri) for uri in batch.to_pylist()], pa.binary())

    jpegs = map_uris(opening, pa.array(uris, pa.string()), work, pa.binary(), partitions)
    return {uri: jpeg for uri, jpeg in zip(uris, jpegs.to_pylist(), strict=True) if jpeg is not None}


def embedded(opening: Opening, uris: list[str], source: str | None,
             partitions: int) -> pa.Table | None:
    """The profile report's embeddings (``profile_media._embedded``), made on the workers by
    the driver's default image embedder."""
    from fedquery.errors import PlanError
    from fedquery.functions import embed_udfs
    from fedquery.functions.embedding import REGISTRY

    try:
        embedder = REGISTRY.get("image")
    except PlanError:
        return None

    def work(functions: BlobFunctions, batch: pa.Array) -> pa.Array:
        return embed_udfs.image_udf(functions, embedder)(batch, pa.array([source] * len(batch), pa.string()))

    type_ = pa.list_(pa.float32(), embedder.dim)
    vectors = map_uris(opening, pa.array(uris, pa.string()), work, type_, partitions)
    table = pa.table({"uri": pa.array(uris, pa.string()), "value": vectors})
    return table.filter(vectors.is_valid())
