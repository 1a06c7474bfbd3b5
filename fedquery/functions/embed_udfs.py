"""Embedders as vectorised Arrow UDFs: a batch of URIs (or texts) in, ``FLOAT[dim]`` out.

Images are read in the blob I/O pool a chunk at a time, so a batch holds at most ``CHUNK``
decoded files in memory; the embedder sees each chunk as one list. A missing or undecodable
file, NULL or empty text gives NULL (with ``strict``, ``SourceError``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from fedquery.errors import SourceError

if TYPE_CHECKING:
    from fedquery.functions.embedding import Embedder
    from fedquery.functions.udfs import BlobFunctions

CHUNK = 64  # images read and embedded together


def image_udf(functions: BlobFunctions, embedder: Embedder) -> Callable[[pa.Array, pa.Array], pa.Array]:
    """``(uris, sources) -> FLOAT[dim]`` reading each file whole through ``functions``."""
    def embed_images(uris: pa.Array, sources: pa.Array) -> pa.Array:
        rows: list[np.ndarray | None] = []
        for start in range(0, len(uris), CHUNK):
            names = uris.slice(start, CHUNK).to_pylist()
            read = functions.read_whole(uris.slice(start, CHUNK), sources.slice(start, CHUNK),
                                        with_source=True)
            rows += _embedded(embedder, functions, [r[1] if r else None for r in read],
                              [(name, r[0] if r else "") for name, r in zip(names, read, strict=True)])
        return vectors(rows, embedder.dim)

    return embed_images


def text_udf(functions: BlobFunctions, embedder: Embedder) -> Callable[[pa.Array], pa.Array]:
    """``texts -> FLOAT[dim]``; NULL or blank text gives NULL."""
    def embed_texts(texts: pa.Array) -> pa.Array:
        values = [t if isinstance(t, str) and t.strip() else None for t in texts.to_pylist()]
        labels = [(str(t)[:60], f"embedder {embedder.name}") for t in values]
        return vectors(_embedded(embedder, functions, values, labels), embedder.dim)

    return embed_texts


def _embedded(embedder: Embedder, functions: BlobFunctions, inputs: list,
              labels: list[tuple[str, str]]) -> list[np.ndarray | None]:
    """One vector per input (None where the input is None or the embedder gave NaN); with
    ``strict`` a NaN row is a ``SourceError`` naming the input (``labels``: what and where).
    Errors are kept in ``functions.failures``: DuckDB passes on only the text of what a UDF
    raises."""
    present = [i for i, value in enumerate(inputs) if value is not None]
    out: list[np.ndarray | None] = [None] * len(inputs)
    try:
        matrix = embedder.embed([inputs[i] for i in present]) if present else ()
        for row, i in zip(matrix, present, strict=True):
            if np.isfinite(row).all():
                out[i] = row
            elif functions.strict:
                what, source = labels[i]
                raise SourceError(f"{what!r}: the {embedder.kind} could not be embedded by "
                                  f"{embedder.name!r}", source=source)
    except SourceError as exc:
        functions.failures.append(exc)
        raise
    return out


def vectors(rows: list[np.ndarray | None], dim: int) -> pa.Array:
    """A ``FixedSizeList<float32>[dim]`` array with NULL where a row is None."""
    flat = np.zeros((len(rows), dim), dtype=np.float32)
    mask = np.array([row is None for row in rows], dtype=bool)
    for i, row in enumerate(rows):
        if row is not None:
            flat[i] = row
    values = pa.array(flat.reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(mask))
