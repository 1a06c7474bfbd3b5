"""Embedders as vectorised Arrow UDFs: a batch of URIs (or texts) in, ``FLOAT[dim]`` out.

Each distinct input is embedded once per run: values repeated in a batch (a constant query
text arrives as a whole batch of the same string) are embedded together, and image vectors are
kept in the run's cache (``runs``), never seen by another query: a file may change between
queries. A text's vector depends on nothing but the text and the embedder's registration, so
text vectors are kept for every run alike (``TEXTS``): a query text that a connector's own
cursor evaluates (a Lance top-k scan ordering by ``embed_text('...')``) and the residual then
share one call of the model. Images are read in the blob I/O pool ``CHUNK`` distinct files at
a time, up to ``EMBED_THREADS`` chunks of one call at once, and a file over the source's
``limits.embed_image`` is not read at all, so a batch holds a bounded number of bytes. A missing, oversized or
undecodable file, NULL or blank text gives NULL (with ``strict``, ``SourceError``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from fedquery.errors import SourceError

if TYPE_CHECKING:
    from fedquery.functions.embedding import Embedder
    from fedquery.functions.udfs import BlobFunctions

CHUNK = 32  # distinct images read and embedded together
EMBED_THREADS = min(4, os.cpu_count() or 1)  # chunks of one call embedded at once
_POOL = ThreadPoolExecutor(EMBED_THREADS, thread_name_prefix="fedquery-embed")
TEXTS = "texts"  # the cache scope of text vectors: every run's


def image_udf(functions: BlobFunctions, embedder: Embedder) -> Callable[[pa.Array, pa.Array], pa.Array]:
    """``(uris, sources, runs) -> FLOAT[dim]`` reading each distinct file whole through
    ``functions``."""
    def embed_images(uris: pa.Array, sources: pa.Array, runs: pa.Array | None = None) -> pa.Array:
        keys = [(s, u) if u is not None else None
                for s, u in zip(sources.to_pylist(), uris.to_pylist(), strict=True)]

        def embed_chunk(chunk: list[tuple], run: str) -> list[np.ndarray | None]:
            functions.runs.check(run)  # a stopped query embeds no further chunk
            read = functions.read_whole(pa.array([u for _, u in chunk], pa.string()),
                                        pa.array([s for s, _ in chunk], pa.string()), run,
                                        limit="embed_image", with_source=True)
            labels = [(uri, r[0] if r else "") for (_, uri), r in zip(chunk, read, strict=True)]
            return _embedded(embedder, functions, [r[1] if r else None for r in read], labels)

        def compute(missing: list[tuple], run: str) -> list[np.ndarray | None]:
            chunks = [missing[i:i + CHUNK] for i in range(0, len(missing), CHUNK)]
            if len(chunks) == 1:
                return embed_chunk(chunks[0], run)
            # chunks at once: decoding and most models leave the GIL (DuckDB calls a UDF from
            # several threads too, so an embedder is called concurrently anyway)
            done = list(_POOL.map(lambda chunk: embed_chunk(chunk, run), chunks))
            return [vector for part in done for vector in part]

        with functions.run_of(runs) as run:
            found = _deduplicated(embedder, functions, keys, compute, run)
        return vectors(found, embedder.dim)

    return embed_images


def text_udf(functions: BlobFunctions, embedder: Embedder) -> Callable[[pa.Array], pa.Array]:
    """``texts -> FLOAT[dim]``; NULL or blank text gives NULL. Calls are serialised, so
    parallel batches of one constant text embed it once (text models parallelise inside)."""
    lock = threading.Lock()

    def embed_texts(texts: pa.Array, runs: pa.Array | None = None) -> pa.Array:
        keys = [t if isinstance(t, str) and t.strip() else None for t in texts.to_pylist()]

        def compute(missing: list[str], run: str) -> list[np.ndarray | None]:
            labels = [(t[:60], f"embedder {embedder.name}") for t in missing]
            return _embedded(embedder, functions, missing, labels)

        with lock:
            return vectors(_deduplicated(embedder, functions, keys, compute, TEXTS), embedder.dim)

    return embed_texts


def _deduplicated(embedder: Embedder, functions: BlobFunctions, keys: list[Hashable | None],
                  compute: Callable[[list, str], list[np.ndarray | None]],
                  run: str) -> list[np.ndarray | None]:
    """A vector per key: None keys give None, keys the run has embedded their vector, the
    other distinct keys one call of ``compute``."""
    cache = functions.runs.vectors
    found: dict[Hashable, np.ndarray | None] = {}
    missing = []
    for key in dict.fromkeys(k for k in keys if k is not None):
        hit, vector = cache.get((run, embedder.serial, key))
        if hit:
            found[key] = vector
        else:
            missing.append(key)
    for key, vector in zip(missing, compute(missing, run) if missing else [], strict=True):
        found[key] = vector
        cache.put((run, embedder.serial, key), vector)
    return [found.get(k) for k in keys]


def _embedded(embedder: Embedder, functions: BlobFunctions, inputs: list,
              labels: list[tuple[str, str]]) -> list[np.ndarray | None]:
    """One vector per input (None where the input is None or the embedder gave NaN); with
    ``strict`` a NaN row is a ``SourceError`` naming the input (``labels``: what and where)."""
    present = [i for i, value in enumerate(inputs) if value is not None]
    out: list[np.ndarray | None] = [None] * len(inputs)
    matrix = embedder.embed([inputs[i] for i in present]) if present else ()
    for row, i in zip(matrix, present, strict=True):
        if np.isfinite(row).all():
            out[i] = row
        elif functions.strict:
            what, source = labels[i]
            raise SourceError(f"{what!r}: the {embedder.kind} could not be embedded by "
                              f"{embedder.name!r}", source=source)
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
