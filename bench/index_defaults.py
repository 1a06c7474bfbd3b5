"""Measure the defaults of ``fedquery index``: build time, recall@10 and query time by
IVF partitions and PQ sub-vectors, on bench/vectors.py's clustered data set.

The data set (1M clustered unit vectors of 128 floats, cached by bench/vectors_data.py) is
copied to a temporary LanceDB folder; each configuration is built there with
``fedquery.vector_index.create_index`` (``replace=True``), then ``--queries`` fresh query
vectors drawn like the data are searched with LanceDB at each ``--nprobes`` and ``--refine``
(cosine, k=10) and scored against a numpy brute force. Times are medians over the queries.

    python bench/index_defaults.py [--rows 1000000] [--dim 128] [--kind IVF_PQ]
        [--partitions 256 512 1024] [--sub-vectors 32] [--nprobes 20 40 80] [--refine 0 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import lance
import lancedb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vectors_data import CHUNK_ROWS, SEED, TABLE, _around, _centres, ensure_data  # noqa: E402

from fedquery.vector_index import create_index, default_partitions  # noqa: E402

K = 10


def load_matrix(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every vector (float32 matrix) and its ``item_id``."""
    ds = lance.dataset(str(path))
    mats, ids = [], []
    for batch in ds.to_batches(columns=["item_id", "vec"], batch_size=CHUNK_ROWS):
        vec = batch.column("vec")
        mats.append(vec.values.to_numpy().reshape(len(vec), -1))
        ids.append(batch.column("item_id").to_numpy())
    return np.concatenate(mats), np.concatenate(ids)


def truths(mat: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    """The exact cosine top-k ids of each query (the vectors are unit length)."""
    out = []
    for q in queries:
        dist = 1.0 - mat @ q
        top = np.argpartition(dist, K)[:K]
        out.append(set(ids[top].tolist()))
    return out


def search(table, q: np.ndarray, nprobes: int, refine: int) -> tuple[set[int], float]:
    builder = (table.search(q).distance_type("cosine").nprobes(nprobes).limit(K)
               .select(["item_id", "_distance"]))
    if refine:
        builder = builder.refine_factor(refine)
    start = time.perf_counter()
    got = builder.to_arrow().column("item_id").to_pylist()
    return set(got), time.perf_counter() - start


def measure(table, queries: np.ndarray, truth: list[set[int]], nprobes: int, refine: int
            ) -> dict[str, float]:
    search(table, queries[0], nprobes, refine)  # warm the index cache
    recalls, times = [], []
    for q, want in zip(queries, truth, strict=True):
        got, seconds = search(table, q, nprobes, refine)
        recalls.append(len(got & want) / K)
        times.append(seconds)
    return {"nprobes": nprobes, "refine": refine, "recall": statistics.fmean(recalls),
            "min_recall": min(recalls), "ms": 1000 * statistics.median(times)}


def index_bytes(path: Path) -> int:
    """The size of the current index (a replaced one's files stay until old versions are
    cleaned up, so the ``_indices`` folder only grows)."""
    return sum(d.total_size_bytes for d in lance.dataset(str(path)).describe_indices())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--kind", default="IVF_PQ")
    p.add_argument("--partitions", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--sub-vectors", type=int, nargs="+", default=[32])
    p.add_argument("--nprobes", type=int, nargs="+", default=[20, 40, 80])
    p.add_argument("--refine", type=int, nargs="+", default=[0, 10])
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--json", help="also write the results to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root, _ = ensure_data(args.rows, args.dim)
    queries = _around(np.random.default_rng(SEED + 100), _centres(args.dim), args.queries)
    mat, ids = load_matrix(root / "lance" / f"{TABLE}.lance")
    truth = truths(mat, ids, queries)
    del mat
    print(f"{args.rows:,} rows x {args.dim}, {args.kind}, {args.queries} queries, k={K}; "
          f"default partitions {default_partitions(args.rows)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="fedquery-index-bench-") as tmp:
        shutil.copytree(root / "lance" / f"{TABLE}.lance", Path(tmp) / f"{TABLE}.lance")
        catalog = {"sources": {"v": {"kind": "lancedb", "uri": tmp}},
                   "tables": {TABLE: {"source": "v"}}}
        table = lancedb.connect(tmp).open_table(TABLE)
        pq = args.kind.upper() in ("IVF_PQ", "IVF_HNSW_PQ")
        for partitions in args.partitions:
            for sub_vectors in args.sub_vectors if pq else [None]:
                extra = {"num_sub_vectors": sub_vectors} if pq else {}
                info = create_index(catalog, TABLE, "vec", kind=args.kind, replace=True,
                                    num_partitions=partitions, **extra)
                table.checkout_latest()
                size = index_bytes(Path(tmp) / f"{TABLE}.lance")
                print(f"\npartitions={partitions} sub_vectors={sub_vectors}: built in "
                      f"{info.seconds:.1f}s, {size / 2**20:.0f} MiB")
                print("  nprobes refine  recall  min   median ms")
                for nprobes in args.nprobes:
                    for refine in args.refine:
                        row = measure(table, queries, truth, nprobes, refine)
                        print(f"  {nprobes:7d} {refine:6d}  {row['recall']:.3f}  "
                              f"{row['min_recall']:.1f}  {row['ms']:8.2f}")
                        results.append({"partitions": partitions, "sub_vectors": sub_vectors,
                                        "build_s": info.seconds, "index_mib": size / 2**20, **row})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
