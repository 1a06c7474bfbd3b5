"""Measure fedquery's vector top-k under filters against DuckDB and LanceDB (exact and ANN).

N clustered unit vectors (float32, seeded) live in a LanceDB table ``item_vectors(item_id,
vec FLOAT[dim])``; their metadata ``items(item_id, category, price, sel)`` lives in a DuckDB
warehouse file (``sel`` uniform in 0..999). Each query is the nearest 10 by cosine distance to a
fixed random vector among the items passing a filter keeping 100%, 10%, 1% or 0.1%:

    SELECT m.item_id, m.category, array_cosine_distance(v.vec, $q) AS d
    FROM item_vectors v JOIN items m ON m.item_id = v.item_id
    WHERE m.sel < 100 ORDER BY d LIMIT 10

The data set (bench/vectors_data.py) is generated in chunks and cached under
``~/.cache/fedquery/vector-bench/<rows>-<dim>``, with a denormalised Lance copy
``item_vectors_denorm(item_id, sel, vec)`` for LanceDB's own filtered search. Ways, run
alternately in one process, best of N each:

* ``fedquery``   ``con.sql(sql, params={"q": q}).arrow()`` (today's exact path);
* ``duckdb``     plain DuckDB, warehouse attached, the Lance dataset registered as a pyarrow
  dataset, the same join SQL (every distance);
* ``duckdb_dn``  plain DuckDB over the denormalised Lance dataset, no join
  (``WHERE sel < t ORDER BY array_cosine_distance(vec, $q) LIMIT 10``);
* ``lance_exact`` LanceDB on the denormalised copy, ``where("sel < t", prefilter=True)``,
  ``bypass_vector_index()``;
* ``ann_npN``    (``--index``, one per ``--nprobes`` value) LanceDB on the denormalised
  copy with its IVF_PQ cosine index, ``where(..., prefilter=True).nprobes(n).refine_factor(r)``.

Each answer's ids are scored as recall@10 against a numpy brute force over all vectors; rows
returned must be min(10, qualifying). After the timed runs one more run of each way samples its
peak resident memory above the level at the start of the call (a thread reading
/proc/self/statm every 2 ms; Linux only; allocator caches make later calls look smaller).

LanceDB 0.40 / pylance 14 search API (read from the installed package source, used below):

* Search: ``table.search(q)`` (q a numpy/list vector; the column is inferred when the table has
  one vector column, else ``vector_column_name=``) returns a ``LanceVectorQueryBuilder``;
  chain ``.distance_type("cosine" | "l2" | "dot")`` (the old ``.metric()`` is deprecated),
  ``.where("sql predicate", prefilter=True)`` (prefilter=True filters *before* the ANN search
  so k rows come back under any selectivity; False post-filters the k found and can return
  fewer), ``.nprobes(n)`` (sets both ``minimum_nprobes`` and ``maximum_nprobes``;
  ``.maximum_nprobes(0)`` lets a narrow filter search every partition until k found),
  ``.refine_factor(r)`` (re-ranks r*k candidates with the exact vectors, so returned
  ``_distance`` values are exact), ``.ef(n)`` (HNSW-type indexes only),
  ``.bypass_vector_index()`` (exact flat scan even when an index exists), ``.limit(k)``,
  ``.select([...])``, then ``.to_arrow()``; the distance comes back in column ``_distance``.
  Cosine ``_distance`` is 1 - cos, the same as DuckDB's ``array_cosine_distance``.
* Index build: ``table.create_index("vec", config=lancedb.index.IvfPq(distance_type="cosine",
  num_partitions=P, num_sub_vectors=S))`` (the legacy ``create_index(metric="cosine",
  vector_column_name=..., num_partitions=, num_sub_vectors=, index_type="IVF_PQ")`` still
  works but warns DeprecationWarning; other configs: IvfFlat, IvfSq, IvfRq, HnswPq, HnswSq).
  An index answers only the distance type it was built with.
* Detecting an index: ``table.list_indices()`` returns ``IndexConfig`` objects with ``name``
  (default ``vec_idx``), ``index_type`` (e.g. "IvfPq"), ``columns`` (["vec"]); then
  ``table.index_stats(name)`` gives ``IndexStatistics(num_indexed_rows, num_unindexed_rows,
  index_type, distance_type, num_indices)`` or None. Rows appended after the build are
  unindexed and are searched flat by LanceDB itself. pylance: ``lance.dataset(uri)
  .list_indices()`` gives the same without lancedb.

    python bench/vectors.py [--rows 1000000] [--dim 128] [--runs 3] [--index]
        [--partitions 256] [--sub-vectors 16] [--nprobes 20 60] [--refine 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import lance
import lancedb
import numpy as np
import pyarrow as pa

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
import fedquery  # noqa: E402
from bench.vectors_data import (  # noqa: E402
    DENORM,
    TABLE,
    Truth,
    ensure_data,
    ensure_index,
    query_vector,
    recall,
)

K = 10
SELECT = (f"SELECT m.item_id, m.category, array_cosine_distance(v.vec, {{q}}) AS d\n"
          f"FROM {TABLE} v JOIN items m ON m.item_id = v.item_id")
TAIL = f"ORDER BY d LIMIT {K}"


@dataclass(frozen=True)
class Query:
    name: str
    threshold: int | None  # keeps rows with ``sel < threshold``; None keeps all

    def where(self, prefix: str) -> str:
        return "" if self.threshold is None else f"\nWHERE {prefix}sel < {self.threshold}"

    def sql(self, q: str) -> str:
        return f"{SELECT.format(q=q)}{self.where('m.')}\n{TAIL}"

    def denorm_sql(self, q: str) -> str:
        return (f"SELECT item_id, array_cosine_distance(vec, {q}) AS d FROM {DENORM}"
                f"{self.where('')}\n{TAIL}")


QUERIES = [Query("100%", None), Query("10%", 100), Query("1%", 10), Query("0.1%", 1)]


# --------------------------------------------------------------------------- the ways


def catalog(root: Path) -> dict[str, Any]:
    return {
        "sources": {
            "warehouse": {"kind": "duckdb", "path": str(root / "warehouse.duckdb")},
            "vectors": {"kind": "lancedb", "uri": str(root / "lance")},
        },
        "tables": {
            "items": {"source": "warehouse", "table": "items"},
            TABLE: {"source": "vectors", "table": TABLE},
        },
    }


def duckdb_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB: the warehouse attached read-only, both Lance datasets registered lazily."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    con.execute("CREATE VIEW items AS SELECT * FROM wh.items")
    for name in (TABLE, DENORM):
        con.register(name, lance.dataset(str(root / "lance" / f"{name}.lance")))
    return con


def ids_of(table: pa.Table) -> list[int]:
    return table.column("item_id").to_pylist()


def make_ways(query: Query, q: np.ndarray, fed: Any, base: duckdb.DuckDBPyConnection,
              denorm: Any, args: argparse.Namespace) -> dict[str, Callable[[], list[int]]]:
    """The ways to answer ``query``; each returns the ids of its top-k in order."""
    cast = f"$q::FLOAT[{len(q)}]"
    qlist = q.tolist()
    where = None if query.threshold is None else f"sel < {query.threshold}"

    def lance_search(exact: bool, nprobes: int = 0) -> list[int]:
        s = denorm.search(q).distance_type("cosine").select(["item_id", "_distance"]).limit(K)
        if where:
            s = s.where(where, prefilter=True)
        s = s.bypass_vector_index() if exact else s.nprobes(nprobes).refine_factor(args.refine)
        return ids_of(s.to_arrow())

    ways: dict[str, Callable[[], list[int]]] = {
        "fedquery": lambda: ids_of(fed.sql(query.sql("$q"), params={"q": q}).arrow()),
        "duckdb": lambda: ids_of(base.sql(query.sql(cast), params={"q": qlist}).to_arrow_table()),
        "duckdb_dn": lambda: ids_of(
            base.sql(query.denorm_sql(cast), params={"q": qlist}).to_arrow_table()),
        "lance_exact": lambda: lance_search(True),
    }
    for n in args.nprobes if args.index else ():
        ways[f"ann_np{n}"] = lambda n=n: lance_search(False, n)
    return ways


# --------------------------------------------------------------------------- timing

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Peak resident memory above the starting level while the block runs, sampled every
    2 ms from /proc/self/statm (Linux; short spikes between samples are missed)."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


@dataclass
class Result:
    query: str
    qualifying: int
    ms: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    peak_mib: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def bench_query(query: Query, ways: dict[str, Callable[[], list[int]]], truth: Truth,
                runs: int) -> Result:
    """Time the ways alternately, best of ``runs``; score each answer against brute force."""
    exact, qualifying = truth.nearest(query.threshold, K)
    result = Result(query.name, qualifying, {name: math.inf for name in ways})
    for run in range(runs + 1):  # the last, untimed run measures memory
        for name, way in ways.items():
            if run == runs:
                with PeakRss() as mem:
                    way()
                result.peak_mib[name] = mem.mib
                continue
            start = time.perf_counter()
            got = way()
            result.ms[name] = min(result.ms[name], (time.perf_counter() - start) * 1000)
            result.recall[name] = recall(exact, got)
            result.rows[name] = len(got)
    for name in ways:
        if result.rows[name] != min(K, qualifying):
            result.problems.append(f"{name} returned {result.rows[name]} rows, "
                                   f"expected {min(K, qualifying)}")
        if not name.startswith("ann_") and result.recall[name] < 1.0:
            result.problems.append(f"{name} (exact) recall {result.recall[name]:.2f} < 1")
    return result


# --------------------------------------------------------------------------- report


def print_table(results: Sequence[Result], names: Sequence[str], runs: int) -> None:
    print(f"\nnearest {K} by cosine distance, best of {runs} runs: ms (recall@10, rows)")
    header = f"{'filter':>6} {'qualifying':>10} " + " ".join(f"{n:>20}" for n in names)
    print(header)
    print("-" * len(header))
    for r in results:
        cells = " ".join(f"{r.ms[n]:>8.1f} ({r.recall[n]:.2f}, {r.rows[n]:>2})" for n in names)
        print(f"{r.query:>6} {r.qualifying:>10,} {cells}")
    others = [n for n in names if n != "fedquery"]
    print("\npeak resident memory above the start of the call (MiB, sampled every 2 ms)")
    print(f"{'filter':>6} " + " ".join(f"{n:>12}" for n in names))
    for r in results:
        print(f"{r.query:>6} " + " ".join(f"{r.peak_mib[n]:>12.0f}" for n in names))
    print("\nfedquery / other (latency ratio)")
    print(f"{'filter':>6} " + " ".join(f"{n:>12}" for n in others))
    for r in results:
        print(f"{r.query:>6} " + " ".join(f"{r.ms['fedquery'] / r.ms[n]:>12.2f}" for n in others))
    for r in results:
        for problem in r.problems:
            print(f"WARNING {r.query}: {problem}")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000, help="vectors (and items) to generate")
    p.add_argument("--dim", type=int, default=128, help="vector dimension")
    p.add_argument("--runs", type=int, default=3, help="runs per way per query (best kept)")
    p.add_argument("--index", action="store_true",
                   help="build (once) an IVF_PQ index on the denormalised copy; time LanceDB ANN")
    p.add_argument("--rebuild-index", action="store_true",
                   help="replace an existing index (after changing --partitions/--sub-vectors)")
    p.add_argument("--partitions", type=int, default=256, help="IVF partitions of the index")
    p.add_argument("--sub-vectors", type=int, default=16, help="PQ sub-vectors of the index")
    p.add_argument("--nprobes", type=int, nargs="+", default=[20, 60],
                   help="partitions searched by LanceDB ANN (one column per value)")
    p.add_argument("--refine", type=int, default=20, help="refine_factor of LanceDB ANN")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--queries", nargs="+", choices=[x.name for x in QUERIES],
                   help="subset of filters to run")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root, build_s = ensure_data(args.rows, args.dim)
    print(f"data: {root} ({f'built in {build_s:.1f} s' if build_s else 'cached'})")
    denorm = lancedb.connect(str(root / "lance")).open_table(DENORM)
    index_doc = None
    if args.index:
        index, index_s = ensure_index(denorm, args.partitions, args.sub_vectors,
                                       args.rebuild_index)
        stats = denorm.index_stats(index.name)
        index_doc = {"name": index.name, "type": index.index_type, "seconds": index_s,
                     "indexed_rows": stats.num_indexed_rows, "distance": stats.distance_type}
        print(f"index: {index_doc} nprobes={args.nprobes} refine={args.refine}")
    q = query_vector(args.dim)
    start = time.perf_counter()
    truth = Truth(root, q)
    print(f"brute force distances in {time.perf_counter() - start:.1f} s")
    base = duckdb_connection(root)
    chosen = [x for x in QUERIES if not args.queries or x.name in args.queries]
    results = []
    with fedquery.connect(catalog(root)) as fed:
        for query in chosen:
            ways = make_ways(query, q, fed, base, denorm, args)
            results.append(bench_query(query, ways, truth, args.runs))
    threads = base.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"{args.rows:,} vectors of {args.dim} floats; duckdb {duckdb.__version__}, "
          f"lancedb {lancedb.__version__}, pylance {lance.__version__}, threads {threads}")
    print_table(results, list(ways), args.runs)
    if args.json:
        meta = {"rows": args.rows, "dim": args.dim, "k": K, "runs": args.runs,
                "build_seconds": build_s, "cpus": os.cpu_count(), "threads": threads,
                "index": index_doc, "nprobes": args.nprobes, "refine": args.refine,
                "duckdb": duckdb.__version__, "lancedb": lancedb.__version__,
                "pylance": lance.__version__}
        doc = {"meta": meta, "queries": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if not any(r.problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
