"""Data set, ANN index and exact ground truth for bench/vectors.py.

The data set is cached under ``~/.cache/fedquery/vector-bench/<rows>-<dim>`` so reruns skip
generation. Vectors are generated and written in chunks of ``CHUNK_ROWS`` so 1M-5M rows fit
in memory. Layout of the cache folder:

* ``lance/item_vectors.lance``        ``(item_id, vec FLOAT[dim])``: what fedquery federates;
* ``lance/item_vectors_denorm.lance`` ``(item_id, sel, vec)``: a denormalised copy carrying the
  filter column, the best a user could hand-write for LanceDB's own filtered search;
  ``--index`` builds the same IVF_PQ cosine index on both Lance tables (``ensure_index``);
* ``warehouse.duckdb``                ``items(item_id, category, price, sel)``.

Vectors are clustered: 1024 random unit centres, each row a centre plus Gaussian noise of
norm ~0.7, normalised; query vectors are fresh points drawn the same way with other seeds
(``query_vectors``; the first is the fixed ``query_vector``).
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


def query_vectors(dim: int, n: int) -> np.ndarray:
    """``n`` query vectors (rows): ``query_vector`` first, then fresh points drawn like the
    data with seeds of their own (each near a random centre, like the rows)."""
    centres = _centres(dim)
    rest = [_around(np.random.default_rng(SEED + 1000 + i), centres, 1)[0] for i in range(1, n)]
    return np.stack([query_vector(dim), *rest][:n])


# --------------------------------------------------------------------------- index


def vector_index(table: Any) -> Any | None:
    """The table's index on ``vec`` (an ``IndexConfig``) or None."""
    return next((i for i in table.list_indices() if i.columns == ["vec"]), None)


def index_settings(table: Any) -> dict[str, Any] | None:
    """The build settings of a LanceDB table's index on ``vec`` (type, distance, partitions,
    sub-vectors, indexed and unindexed rows), read from Lance's index statistics; None when
    there is no index."""
    index = vector_index(table)
    if index is None:
        return None
    stats = table.index_stats(index.name)
    segment = (table.to_lance().stats.index_stats(index.name).get("indices") or [{}])[0]
    sub_index = segment.get("sub_index") if isinstance(segment.get("sub_index"), dict) else {}
    return {"name": index.name, "type": stats.index_type, "distance": stats.distance_type,
            "partitions": segment.get("num_partitions"),
            "sub_vectors": sub_index.get("num_sub_vectors"),
            "indexed_rows": stats.num_indexed_rows, "unindexed_rows": stats.num_unindexed_rows}


def ensure_index(table: Any, partitions: int, sub_vectors: int, rebuild: bool = False
                 ) -> tuple[dict[str, Any], float]:
    """Build the IVF_PQ cosine index on ``vec`` of a LanceDB table once (again when
    ``rebuild``, replacing the old one); return its settings and the seconds spent."""
    found = index_settings(table)
    if found is not None and not rebuild:
        return found, 0.0
    start = time.perf_counter()
    table.create_index("vec", config=IvfPq(distance_type="cosine", num_partitions=partitions,
                                           num_sub_vectors=sub_vectors), replace=True)
    seconds = time.perf_counter() - start
    return index_settings(table), seconds


# --------------------------------------------------------------------------- ground truth


class Truth:
    """Exact cosine distances of every vector to each query vector (numpy brute force in
    float64, one streaming pass over the denormalised copy: the vectors are never all in
    memory, only ``rows x queries`` distances) and each row's ``sel``."""

    def __init__(self, root: Path, queries: np.ndarray) -> None:
        qs = np.atleast_2d(np.asarray(queries, dtype=np.float64))
        qs = qs / np.linalg.norm(qs, axis=1, keepdims=True)
        ds = lance.dataset(str(root / "lance" / f"{DENORM}.lance"))
        dist, ids, sel = [], [], []
        for batch in ds.to_batches(columns=["item_id", "sel", "vec"], batch_size=CHUNK_ROWS):
            vec = batch.column("vec")
            mat = vec.values.to_numpy().reshape(len(vec), -1).astype(np.float64)
            norms = np.linalg.norm(mat, axis=1)
            dist.append(1.0 - (mat @ qs.T) / norms[:, None])
            ids.append(batch.column("item_id").to_numpy())
            sel.append(batch.column("sel").to_numpy())
        self.dist = np.concatenate(dist)  # rows x queries
        self.ids, self.sel = np.concatenate(ids), np.concatenate(sel)
        self._order = np.argsort(self.ids, kind="stable")
        self._nearest: dict[tuple[int | None, int, int], tuple[list[int], int]] = {}
        self._qualifies: dict[int | None, np.ndarray] = {}

    def rows_of(self, ids: list[int]) -> np.ndarray:
        """Row positions of item ids (-1 for an id that is not in the data)."""
        wanted = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, wanted, sorter=self._order)
        pos = np.minimum(pos, len(self.ids) - 1)
        rows = self._order[pos]
        return np.where(self.ids[rows] == wanted, rows, -1)

    def qualifies(self, threshold: int | None) -> np.ndarray:
        if threshold not in self._qualifies:
            self._qualifies[threshold] = (np.ones(len(self.ids), bool) if threshold is None
                                          else self.sel < threshold)
        return self._qualifies[threshold]

    def nearest(self, threshold: int | None, k: int, query: int = 0) -> tuple[list[int], int]:
        """Exact top-k ids among rows with ``sel < threshold`` (all when None) for query
        vector ``query``, and the count of qualifying rows (computed once, then cached)."""
        key = (threshold, k, query)
        if key not in self._nearest:
            self._nearest[key] = self._compute_nearest(threshold, k, query)
        return self._nearest[key]

    def _compute_nearest(self, threshold: int | None, k: int, query: int
                         ) -> tuple[list[int], int]:
        dist = self.dist[:, query]
        idx = np.arange(len(self.ids)) if threshold is None else np.flatnonzero(self.sel < threshold)
        qualifying = len(idx)
        if len(idx) > k:
            idx = idx[np.argpartition(dist[idx], k)[:k]]
        idx = idx[np.argsort(dist[idx], kind="stable")]
        return self.ids[idx].tolist(), qualifying

    def check(self, threshold: int | None, k: int, query: int, got: list[int]
              ) -> tuple[float, float, list[str]]:
        """Score an answer: recall@k by ids, recall counting as found any returned row whose
        exact distance ties the k-th (within 1e-6: float32 rounding may order ties either
        way), and what is wrong with it (wrong row count, duplicates, rows failing the
        filter or not in the data)."""
        exact, qualifying = self.nearest(threshold, k, query)
        problems = []
        if len(got) != min(k, qualifying):
            problems.append(f"{len(got)} rows, expected {min(k, qualifying)}")
        if len(set(got)) != len(got):
            problems.append("duplicate ids")
        rows = self.rows_of(got)
        if (rows < 0).any():
            problems.append("ids not in the data")
        rows = rows[rows >= 0]
        passing = self.qualifies(threshold)[rows]
        if not passing.all():
            problems.append("rows failing the filter")
        rows = np.unique(rows[passing])
        if not exact:
            return float(not got), float(not got), problems
        kth = self.dist[self.rows_of(exact[-1:]), query][0]
        close = int((self.dist[rows, query] <= kth + 1e-6).sum())
        return recall(exact, got), min(close, len(exact)) / len(exact), problems


def recall(truth: list[int], got: list[int]) -> float:
    """Share of the exact top-k found (1.0 when nothing qualifies and nothing is returned)."""
    return len(set(truth) & set(got)) / len(truth) if truth else float(not got)
