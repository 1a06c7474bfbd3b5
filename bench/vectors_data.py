"""Data set, ANN index and exact ground truth for bench/vectors.py.

The data set is cached under ``~/.cache/fedquery/vector-bench/<rows>-<dim>`` so reruns skip
generation. Vectors are generated and written in chunks of ``CHUNK_ROWS`` so 1M-5M rows fit
in memory. Layout of the cache folder:

* ``lance/item_vectors.lance``        ``(item_id, vec FLOAT[dim])``: what fedquery federates;
* ``lance/item_vectors_denorm.lance`` ``(item_id, sel, vec)``: a denormalised copy carrying the
  filter column, the best a user could hand-write for LanceDB's own filtered search; the
  IVF_PQ index (``--index``) is built on this copy only;
* ``warehouse.duckdb``                ``items(item_id, category, price, sel)``.

Vectors are clustered: 1024 random unit centres, each row a centre plus Gaussian noise of
norm ~0.7, normalised; the query vector is a fresh point drawn the same way.
``sel`` is a uniform integer in 0..999 drawn independently of the vectors, so ``sel < 100``
keeps 10%, ``sel < 10`` 1%, ``sel < 1`` 0.1%.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import lance
import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import IvfPq

SEED = 20260214
CATEGORIES = 100
SEL_BUCKETS = 1000
CLUSTERS = 1024
NOISE = 0.7
BUILD_MARKER = "BUILD_OK"
CHUNK_ROWS = 50_000
TABLE = "item_vectors"
DENORM = "item_vectors_denorm"
CACHE = Path.home() / ".cache" / "fedquery" / "vector-bench"


def category(i: int) -> str:
    return f"cat{i:02d}"


def data_dir(rows: int, dim: int) -> Path:
    return CACHE / f"{rows}-{dim}"


def ensure_data(rows: int, dim: int) -> tuple[Path, float]:
    """Build the Lance tables and the warehouse unless cached; return folder, seconds."""
    root = data_dir(rows, dim)
    if (root / BUILD_MARKER).exists():
        return root, 0.0
    start = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    try:
        _build_into(staging, rows, dim)
        shutil.rmtree(root, ignore_errors=True)  # a half-built folder from a crash
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root, time.perf_counter() - start


def _metadata(rows: int) -> pa.Table:
    rng = np.random.default_rng(SEED + 1)
    cats = np.array([category(c) for c in range(CATEGORIES)])
    return pa.table({
        "item_id": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
        "category": pa.array(cats[rng.integers(0, CATEGORIES, rows)]),
        "price": pa.array(np.round(rng.uniform(1, 1000, rows), 2)),
        "sel": pa.array(rng.integers(0, SEL_BUCKETS, rows).astype(np.int32)),
    })


def _vector_chunks(rows: int, dim: int, sel: np.ndarray | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches: ids 1..rows, L2-normalised float32 vectors (and ``sel`` when given)."""
    centres = _centres(dim)
    rng = np.random.default_rng(SEED)
    for first in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - first)
        vecs = _around(rng, centres, n)
        ids = pa.array(np.arange(first + 1, first + n + 1, dtype=np.int64))
        vec = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim)
        if sel is None:
            yield pa.record_batch([ids, vec], names=["item_id", "vec"])
        else:
            cols = [ids, pa.array(sel[first:first + n]), vec]
            yield pa.record_batch(cols, names=["item_id", "sel", "vec"])


def _build_into(out: Path, rows: int, dim: int) -> None:
    vec_t = pa.list_(pa.float32(), dim)
    db = lancedb.connect(str(out / "lance"))
    plain = pa.schema([("item_id", pa.int64()), ("vec", vec_t)])
    db.create_table(TABLE, data=pa.RecordBatchReader.from_batches(plain, _vector_chunks(rows, dim)))
    items = _metadata(rows)
    sel = items.column("sel").to_numpy()
    denorm = pa.schema([("item_id", pa.int64()), ("sel", pa.int32()), ("vec", vec_t)])
    db.create_table(DENORM, data=pa.RecordBatchReader.from_batches(
        denorm, _vector_chunks(rows, dim, sel)))
    with duckdb.connect(str(out / "warehouse.duckdb")) as con:
        con.register("items_src", items)
        con.execute("CREATE TABLE items AS SELECT * FROM items_src ORDER BY item_id")
        con.execute("CHECKPOINT")
    (out / BUILD_MARKER).write_text(f"rows={rows} dim={dim} seed={SEED}\n")


def _centres(dim: int) -> np.ndarray:
    c = np.random.default_rng(SEED + 3).standard_normal((CLUSTERS, dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _around(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """``n`` unit vectors, each a random centre plus noise of norm ~NOISE (clustered, like
    real embeddings; uniform random vectors have no neighbourhoods for an ANN index to find)."""
    dim = centres.shape[1]
    vecs = centres[rng.integers(0, len(centres), n)]
    vecs = vecs + rng.standard_normal((n, dim), dtype=np.float32) * np.float32(NOISE / dim ** 0.5)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def query_vector(dim: int) -> np.ndarray:
    """A fresh point drawn like the data (not one of its rows)."""
    return _around(np.random.default_rng(SEED + 2), _centres(dim), 1)[0]


# --------------------------------------------------------------------------- index


def vector_index(table: Any) -> Any | None:
    """The table's index on ``vec`` (an ``IndexConfig``) or None."""
    return next((i for i in table.list_indices() if i.columns == ["vec"]), None)


def ensure_index(table: Any, partitions: int, sub_vectors: int, rebuild: bool = False
                 ) -> tuple[Any, float]:
    """Build the IVF_PQ cosine index on the denormalised copy once (again when ``rebuild``,
    replacing the old one); return it and the seconds spent."""
    found = vector_index(table)
    if found is not None and not rebuild:
        return found, 0.0
    start = time.perf_counter()
    table.create_index("vec", config=IvfPq(distance_type="cosine", num_partitions=partitions,
                                           num_sub_vectors=sub_vectors))
    return vector_index(table), time.perf_counter() - start


# --------------------------------------------------------------------------- ground truth


class Truth:
    """Exact cosine distances of every vector to ``q`` (numpy brute force) and the ``sel``."""

    def __init__(self, root: Path, q: np.ndarray) -> None:
        ds = lance.dataset(str(root / "lance" / f"{DENORM}.lance"))
        n, dist, ids, sel = 0, [], [], []
        for batch in ds.to_batches(columns=["item_id", "sel", "vec"], batch_size=CHUNK_ROWS):
            vec = batch.column("vec")
            mat = vec.values.to_numpy().reshape(len(vec), -1)
            dist.append(1.0 - mat.astype(np.float64) @ q.astype(np.float64))
            ids.append(batch.column("item_id").to_numpy())
            sel.append(batch.column("sel").to_numpy())
            n += len(vec)
        self.dist, self.ids, self.sel = np.concatenate(dist), np.concatenate(ids), np.concatenate(sel)

    def nearest(self, threshold: int | None, k: int) -> tuple[list[int], int]:
        """Exact top-k ids among rows with ``sel < threshold`` (all when None) and their count."""
        idx = np.arange(len(self.ids)) if threshold is None else np.flatnonzero(self.sel < threshold)
        if len(idx) > k:
            idx = idx[np.argpartition(self.dist[idx], k)[:k]]
        idx = idx[np.argsort(self.dist[idx], kind="stable")]
        qualifying = len(self.ids) if threshold is None else int((self.sel < threshold).sum())
        return self.ids[idx].tolist(), qualifying


def recall(truth: list[int], got: list[int]) -> float:
    """Share of the exact top-k found (1.0 when nothing qualifies and nothing is returned)."""
    return len(set(truth) & set(got)) / len(truth) if truth else float(not got)
