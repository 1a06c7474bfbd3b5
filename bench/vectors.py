"""Measure fedquery's vector top-k under filters against DuckDB and LanceDB (exact and ANN).

N clustered unit vectors (float32, seeded) live in a LanceDB table ``item_vectors(item_id,
vec FLOAT[dim])``; their metadata ``items(item_id, category, price, sel)`` lives in a DuckDB
warehouse file (``sel`` uniform in 0..999). Each query is the nearest 10 by cosine distance to
a query vector among the items passing a filter keeping 100%, 10%, 1% or 0.1%:

    SELECT m.item_id, m.category, array_cosine_distance(v.vec, $q) AS d
    FROM item_vectors v JOIN items m ON m.item_id = v.item_id
    WHERE m.sel < 100 ORDER BY d LIMIT 10

Run (1M rows: ~4 minutes on 2 cores with the defaults, 2.3 GB peak resident memory; the
ground truth keeps rows x probes float64 distances, 400 MB at 5M rows and 10 probes)::

    python bench/vectors.py [--rows 1000000] [--dim 128] [--index] [--runs 3] [--probes 10]
        [--nprobes 10 20 40 60] [--refine 10 20 50] [--partitions 256] [--sub-vectors 32]
        [--rebuild-index] [--target-recall 0.95] [--queries 10% 1%] [--json FILE]

To measure fedquery from another checkout (e.g. this file in a worktree, fedquery from the
main one), put that checkout first: ``PYTHONPATH=/work/main python bench/vectors.py ...``;
entries of PYTHONPATH come before this file's checkout, which comes before installed
packages; the fedquery imported is printed.

The data set (bench/vectors_data.py) is generated in chunks and cached under
``~/.cache/fedquery/vector-bench/<rows>-<dim>``, with a denormalised Lance copy
``item_vectors_denorm(item_id, sel, vec)`` for LanceDB's own filtered search. ``--index``
builds, where missing, an IVF_PQ cosine index on both Lance tables with the same settings:
those of the table already indexed if one is, else ``--partitions`` and ``--sub-vectors``
(``--rebuild-index`` replaces both with the options'); the settings found are printed, and a
difference between the two tables is reported. (The cached 5M copy's index has 512
partitions: ``--rows 5000000 --index`` gives item_vectors 512 too.) The ways, all in one process:

* ``fedquery``       ``con.sql(sql, params={"q": q}).arrow()``; the planner's choice (Lance's
  ANN index of item_vectors when it has one and many rows qualify, an exact pass otherwise);
* ``fedquery_exact`` a second fedquery connection whose catalog sets
  ``vector_search: {exact: true}`` on item_vectors: every qualifying distance, no index;
* ``duckdb``         plain DuckDB, warehouse attached, the Lance dataset registered as a pyarrow
  dataset, the same join SQL (every distance; external file cache off);
* ``duckdb_dn``      plain DuckDB over the denormalised Lance dataset, no join
  (``WHERE sel < t ORDER BY array_cosine_distance(vec, $q) LIMIT 10``);
* ``lance_exact``    LanceDB on the denormalised copy, ``where("sel < t", prefilter=True)``,
  ``bypass_vector_index()``;
* ``scan_npN_rfR``   the same search through pylance's ``dataset.scanner(nearest=...,
  filter=..., prefilter=True)`` (the layer under LanceDB's query builder, which fedquery calls);
* ``ann_npN_rfR``    (when the denormalised copy has an index) LanceDB's filtered ANN search
  on the denormalised copy, the best a user could hand-write: ``where(..., prefilter=True)
  .minimum_nprobes(N).maximum_nprobes(0).refine_factor(R)``, one way per (``--nprobes``,
  ``--refine``) pair. The open maximum (``nprobes(N)`` would cap it at N; LanceDB's default
  cap is 20) lets Lance search further partitions when its prefilter leaves fewer than k
  rows, as fedquery does.

Method. ``--probes`` query vectors per filter: the fixed ``query_vector`` and fresh points
drawn like the data with other seeds. Ground truth per query vector is a float64 numpy brute
force over all vectors (one streaming pass; rows x probes distances kept). Per filter, one
untimed warm-up call per way (its time is reported as ``first ms``: it includes opening
datasets and building caches), then ``--runs`` runs; in each run every query vector goes
through every way, the order of the ways rotated at each query vector. A way's latency is
the **median over runs of the mean over query vectors** (``best ms``: the best run's mean).
Recall@10 is the mean over every answer (``min rec``: the worst query vector); every answer
must have exactly min(10, qualifying) distinct rows, all passing the filter. An exact way
below recall 1 is reported unless the rows it swapped tie the 10th distance within 1e-6
(float32 rounding). After the timed runs one more call of each way (first query vector)
samples its peak resident memory above the level at the start of the call (a thread reading
/proc/self/statm every 2 ms; Linux only; allocator caches make later calls look smaller).

The summary gives per filter: fedquery's latency and recall; "LanceDB ANN at recall >= 0.95",
the grid setting with the lowest latency among those whose mean recall is at least
``--target-recall`` and whose answers all have the right rows (none when no setting gets
there); the ratio fedquery / that ANN (issue 10: at most 1.5); the ratio fedquery_exact /
duckdb (issue 10: at most 1.0); and, as a cross-check, the fastest LanceDB way at the target
recall counting ``lance_exact`` too.

LanceDB 0.40 / pylance 14 search API (read from the installed package source, used below):

* Search: ``table.search(q)`` (q a numpy/list vector; the column is inferred when the table has
  one vector column, else ``vector_column_name=``) returns a ``LanceVectorQueryBuilder``;
  chain ``.distance_type("cosine" | "l2" | "dot")`` (the old ``.metric()`` is deprecated),
  ``.where("sql predicate", prefilter=True)`` (prefilter=True filters *before* the ANN search
  so k rows come back under any selectivity; False post-filters the k found and can return
  fewer), ``.nprobes(n)`` (sets both ``minimum_nprobes`` and ``maximum_nprobes``;
  ``.minimum_nprobes(n).maximum_nprobes(0)`` leaves the maximum open, so a narrow filter
  searches more partitions until k found; minimum_nprobes above 20 alone fails: LanceDB's
  default maximum is 20), ``.refine_factor(r)`` (re-ranks r*k candidates with the exact
  vectors, so returned ``_distance`` values are exact), ``.ef(n)`` (HNSW-type indexes only),
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
  index_type, distance_type, num_indices)`` or None; partitions and sub-vectors come from
  pylance's ``dataset.stats.index_stats(name)["indices"][0]`` (``num_partitions``,
  ``sub_index.num_sub_vectors``). Rows appended after the build are unindexed and are
  searched flat by LanceDB itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # index stats: no warning

import duckdb  # noqa: E402
import lance  # noqa: E402
import lancedb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent


def _import_paths() -> None:
    """``vectors_data`` from this file's folder, always; ``fedquery`` from a PYTHONPATH entry
    first, then from this file's checkout, then an installed one."""
    env = {str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    after_env = max((i + 1 for i, p in enumerate(sys.path) if p and str(Path(p).resolve()) in env),
                    default=1)
    sys.path.insert(after_env, str(BENCH_DIR.parent))
    sys.path.insert(0, str(BENCH_DIR))


_import_paths()
from vectors_data import (  # noqa: E402
    DENORM,
    TABLE,
    Truth,
    ensure_data,
    ensure_index,
    index_settings,
    query_vectors,
)

import fedquery  # noqa: E402

K = 10
SELECT = (f"SELECT m.item_id, m.category, array_cosine_distance(v.vec, {{q}}) AS d\n"
          f"FROM {TABLE} v JOIN items m ON m.item_id = v.item_id")
TAIL = f"ORDER BY d LIMIT {K}"
EXACT_WAYS = ("fedquery_exact", "duckdb", "duckdb_dn", "lance_exact")
TIE = 1e-6


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


def catalog(root: Path, exact: bool = False) -> dict[str, Any]:
    vectors: dict[str, Any] = {"source": "vectors", "table": TABLE}
    if exact:
        vectors["vector_search"] = {"exact": True}
    return {
        "sources": {
            "warehouse": {"kind": "duckdb", "path": str(root / "warehouse.duckdb")},
            "vectors": {"kind": "lancedb", "uri": str(root / "lance")},
        },
        "tables": {"items": {"source": "warehouse", "table": "items"}, TABLE: vectors},
    }


def duckdb_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB: the warehouse attached read-only, both Lance datasets registered lazily."""
    con = duckdb.connect()
    with contextlib.suppress(duckdb.Error):  # caches remote files only; off for fairness
        con.execute("SET enable_external_file_cache = false")
    con.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    con.execute("CREATE VIEW items AS SELECT * FROM wh.items")
    for name in (TABLE, DENORM):
        con.register(name, lance.dataset(str(root / "lance" / f"{name}.lance")))
    return con


def ids_of(table: pa.Table) -> list[int]:
    return table.column("item_id").to_pylist()


Way = Callable[[np.ndarray], list[int]]


def ann_name(nprobes: int, refine: int) -> str:
    return f"ann_np{nprobes}_rf{refine}"


def make_ways(query: Query, fed: Any, fed_exact: Any, base: duckdb.DuckDBPyConnection,
              denorm: Any, grid: Sequence[tuple[int, int]], dim: int) -> dict[str, Way]:
    """The ways to answer ``query``; each takes a query vector and returns the ids of its
    top-k in order."""
    cast = f"$q::FLOAT[{dim}]"
    where = None if query.threshold is None else f"sel < {query.threshold}"
    fed_sql, join_sql, dn_sql = query.sql("$q"), query.sql(cast), query.denorm_sql(cast)

    def lance_search(q: np.ndarray, nprobes: int | None = None, refine: int = 0) -> list[int]:
        s = denorm.search(q).distance_type("cosine").select(["item_id", "_distance"]).limit(K)
        if where:
            s = s.where(where, prefilter=True)
        s = (s.bypass_vector_index() if nprobes is None
             else s.minimum_nprobes(nprobes).maximum_nprobes(0).refine_factor(refine))
        return ids_of(s.to_arrow())

    ways: dict[str, Way] = {
        "fedquery": lambda q: ids_of(fed.sql(fed_sql, params={"q": q}).arrow()),
        "fedquery_exact": lambda q: ids_of(fed_exact.sql(fed_sql, params={"q": q}).arrow()),
        "duckdb": lambda q: ids_of(
            base.sql(join_sql, params={"q": q.tolist()}).to_arrow_table()),
        "duckdb_dn": lambda q: ids_of(
            base.sql(dn_sql, params={"q": q.tolist()}).to_arrow_table()),
        "lance_exact": lambda q: lance_search(q),
    }
    for n, r in grid:
        ways[ann_name(n, r)] = lambda q, n=n, r=r: lance_search(q, n, r)
    dataset = denorm.to_lance()  # pylance's scanner under LanceDB: no query-builder layer

    def lance_scan(q: np.ndarray, nprobes: int, refine: int) -> list[int]:
        nearest = {"column": "vec", "q": q, "k": K, "metric": "cosine",
                   "minimum_nprobes": nprobes, "refine_factor": refine}
        return ids_of(dataset.scanner(columns=["item_id", "_distance"], nearest=nearest,
                                      filter=where, prefilter=True).to_table())

    for n, r in grid:
        ways[scan_name(n, r)] = lambda q, n=n, r=r: lance_scan(q, n, r)
    return ways


def scan_name(nprobes: int, refine: int) -> str:
    return f"scan_np{nprobes}_rf{refine}"


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
class WayStats:
    ms: float  # median over runs of the mean over query vectors
    best_ms: float  # the best run's mean
    first_ms: float  # the untimed warm-up call (first query vector)
    run_ms: list[float]
    recall: float  # mean over every answer
    min_recall: float  # the worst query vector's (mean over runs)
    tie_recall: float  # mean, counting rows tying the k-th distance as found
    recall_per_probe: list[float]
    rows: list[int]  # distinct row counts returned
    bad_answers: int  # answers with a problem (row count, duplicates, filter)
    peak_mib: float = 0.0


@dataclass
class Result:
    query: str
    qualifying: int
    expected_rows: int
    ways: dict[str, WayStats] = field(default_factory=dict)
    ann: str | None = None  # fastest grid setting at the target recall
    best_lance: str | None = None  # the same counting lance_exact
    scan: str | None = None  # fastest pylance scanner setting at the target recall
    problems: list[str] = field(default_factory=list)


def bench_query(query: Query, ways: dict[str, Way], truth: Truth, qs: np.ndarray,
                runs: int) -> Result:
    """Time the ways over the query vectors, alternating; score every answer."""
    names = list(ways)
    probes = len(qs)
    qualifying = truth.nearest(query.threshold, K, 0)[1]
    result = Result(query.name, qualifying, min(K, qualifying))
    first: dict[str, float] = {}
    for name in names:  # warm-up
        start = time.perf_counter()
        ways[name](qs[0])
        first[name] = (time.perf_counter() - start) * 1000
    times = {n: np.zeros((runs, probes)) for n in names}
    recalls = {n: np.zeros((runs, probes)) for n in names}
    ties = {n: np.zeros((runs, probes)) for n in names}
    rows: dict[str, set[int]] = {n: set() for n in names}
    bad: dict[str, dict[str, int]] = {n: {} for n in names}
    bad_answers = dict.fromkeys(names, 0)
    for run in range(runs):
        for p in range(probes):
            turn = (run * probes + p) % len(names)
            for name in names[turn:] + names[:turn]:
                start = time.perf_counter()
                got = ways[name](qs[p])
                times[name][run, p] = (time.perf_counter() - start) * 1000
                recalls[name][run, p], ties[name][run, p], problems = truth.check(
                    query.threshold, K, p, got)
                rows[name].add(len(got))
                bad_answers[name] += bool(problems)
                for problem in problems:
                    bad[name][problem] = bad[name].get(problem, 0) + 1
    for name in names:
        run_ms = times[name].mean(axis=1)
        per_probe = recalls[name].mean(axis=0)
        result.ways[name] = WayStats(
            ms=float(statistics.median(run_ms)), best_ms=float(run_ms.min()),
            first_ms=first[name], run_ms=[float(x) for x in run_ms],
            recall=float(recalls[name].mean()), min_recall=float(per_probe.min()),
            tie_recall=float(ties[name].mean()), recall_per_probe=[float(x) for x in per_probe],
            rows=sorted(rows[name]), bad_answers=bad_answers[name])
        for problem, count in bad[name].items():
            result.problems.append(f"{name}: {count} of {runs * probes} answers: {problem}")
        if name in EXACT_WAYS and result.ways[name].tie_recall < 1.0:
            result.problems.append(f"{name} (exact) recall {result.ways[name].recall:.3f} < 1")
    for name in names:  # memory, after the timed runs
        with PeakRss() as mem:
            ways[name](qs[0])
        result.ways[name].peak_mib = mem.mib
    return result


def choose_references(result: Result, target: float) -> None:
    """The fastest LanceDB ANN grid setting at the target recall with right answers, and the
    fastest LanceDB way counting lance_exact too."""
    def fastest(names: list[str]) -> str | None:
        good = [n for n in names if result.ways[n].recall >= target
                and result.ways[n].bad_answers == 0]
        return min(good, key=lambda n: result.ways[n].ms, default=None)

    grid = [n for n in result.ways if n.startswith("ann_")]
    result.ann = fastest(grid)
    result.best_lance = fastest([*grid, "lance_exact"])
    result.scan = fastest([n for n in result.ways if n.startswith("scan_")])


# --------------------------------------------------------------------------- report


def print_filter(r: Result) -> None:
    print(f"\nfilter {r.query}: {r.qualifying:,} qualifying, {r.expected_rows} rows expected")
    print(f"{'way':>16} {'median ms':>10} {'best ms':>9} {'first ms':>9} {'recall':>7} "
          f"{'min rec':>8} {'rows':>6} {'bad':>4} {'peak MiB':>9}")
    for name, w in r.ways.items():
        rows = "/".join(str(x) for x in w.rows)
        print(f"{name:>16} {w.ms:>10.1f} {w.best_ms:>9.1f} {w.first_ms:>9.1f} {w.recall:>7.3f} "
              f"{w.min_recall:>8.2f} {rows:>6} {w.bad_answers:>4} {w.peak_mib:>9.0f}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def print_summary(results: Sequence[Result], target: float) -> None:
    print(f"\nsummary (latency: median over runs of the mean over query vectors; LanceDB ANN "
          f"at recall >= {target}: the fastest grid setting reaching it)")
    header = (f"{'filter':>6} {'fedquery ms':>11} {'recall':>6} {'LanceDB ANN >= ' + str(target):>26}"
              f" {'fed/ann':>7} {'fed_exact ms':>12} {'duckdb ms':>9} {'exact/duckdb':>12}"
              f"   {'best LanceDB way':>26} {'fed/best':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        fed, fx, dd = r.ways["fedquery"], r.ways["fedquery_exact"], r.ways["duckdb"]
        if r.ann:
            a = r.ways[r.ann]
            ann = f"{r.ann} {a.ms:.1f} ({a.recall:.2f})"
            fed_ann = f"{ratio(fed.ms, a.ms)}{' ok' if fed.ms <= 1.5 * a.ms else ' >1.5'}"
        else:
            ann, fed_ann = "none", "-"
        best = "none"
        fed_best = "-"
        if r.best_lance:
            b = r.ways[r.best_lance]
            best, fed_best = f"{r.best_lance} {b.ms:.1f} ({b.recall:.2f})", ratio(fed.ms, b.ms)
        exact = f"{ratio(fx.ms, dd.ms)}{' ok' if fx.ms <= dd.ms else ' >1.0'}"
        print(f"{r.query:>6} {fed.ms:>11.1f} {fed.recall:>6.3f} {ann:>26} {fed_ann:>7}"
              f" {fx.ms:>12.1f} {dd.ms:>9.1f} {exact:>12}   {best:>26} {fed_best:>8}")
    print("\nthe same ANN search through pylance's scanner (the layer under LanceDB's query "
          "builder; what fedquery itself calls):")
    for r in results:
        fed = r.ways["fedquery"]
        if r.scan:
            a = r.ways[r.scan]
            print(f"{r.query:>6} {r.scan} {a.ms:.1f} ms ({a.recall:.2f}); fedquery / it "
                  f"{ratio(fed.ms, a.ms)}")
        else:
            print(f"{r.query:>6} no scanner setting reaches the target recall")
    for r in results:
        for problem in r.problems:
            print(f"WARNING {r.query}: {problem}")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="vectors (and items)")
    p.add_argument("--dim", type=int, default=128, help="vector dimension")
    p.add_argument("--runs", type=int, default=3,
                   help="runs per way per filter (median of the runs' means reported)")
    p.add_argument("--probes", type=int, default=10, help="query vectors per filter")
    p.add_argument("--index", action="store_true",
                   help="build the IVF_PQ cosine index on both Lance tables where missing")
    p.add_argument("--rebuild-index", action="store_true",
                   help="with --index: replace existing indexes (after changing the settings)")
    p.add_argument("--partitions", type=int, default=256, help="IVF partitions of the index")
    p.add_argument("--sub-vectors", type=int, default=32, help="PQ sub-vectors of the index")
    p.add_argument("--nprobes", type=int, nargs="+", default=[10, 20, 40, 60],
                   help="minimum_nprobes values of the LanceDB ANN grid")
    p.add_argument("--refine", type=int, nargs="+", default=[10, 20, 50],
                   help="refine_factor values of the LanceDB ANN grid")
    p.add_argument("--target-recall", type=float, default=0.95,
                   help="recall@10 the LanceDB ANN reference must reach")
    p.add_argument("--json", type=Path, help="also write everything to this file")
    p.add_argument("--queries", nargs="+", choices=[x.name for x in QUERIES],
                   help="subset of filters to run")
    return p.parse_args(argv)


def prepare_indexes(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build (``--index``) or find the indexes of both Lance tables; report their settings."""
    db = lancedb.connect(str(root / "lance"))
    tables = {name: db.open_table(name) for name in (TABLE, DENORM)}
    found: dict[str, Any] = {name: index_settings(t) for name, t in tables.items()}
    if args.index:
        # one table indexed already: the other gets the same settings, whatever the options
        model = None if args.rebuild_index else found[TABLE] or found[DENORM]
        partitions = model["partitions"] if model else args.partitions
        sub_vectors = model["sub_vectors"] if model else args.sub_vectors
        for name, table in tables.items():
            settings, seconds = ensure_index(table, partitions, sub_vectors, args.rebuild_index)
            found[name] = {**settings, "build_seconds": round(seconds, 1)}
    for name, settings in found.items():
        print(f"index of {name}: {settings or 'none (run with --index to build it)'}")
    keys = ("type", "distance", "partitions", "sub_vectors")
    a, b = found[TABLE], found[DENORM]
    if a and b and any(a[k] != b[k] for k in keys):
        print("WARNING the two indexes differ: "
              + ", ".join(f"{k} {a[k]} vs {b[k]}" for k in keys if a[k] != b[k])
              + " (--index --rebuild-index builds both alike)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    root, build_s = ensure_data(args.rows, args.dim)
    print(f"data: {root} ({f'built in {build_s:.1f} s' if build_s else 'cached'})")
    print(f"fedquery: {Path(fedquery.__file__).parent}")
    indexes = prepare_indexes(root, args)
    denorm = lancedb.connect(str(root / "lance")).open_table(DENORM)
    grid = [(n, r) for n in args.nprobes for r in args.refine] if indexes[DENORM] else []
    qs = query_vectors(args.dim, args.probes)
    start = time.perf_counter()
    truth = Truth(root, qs)
    print(f"brute force distances for {args.probes} query vectors in "
          f"{time.perf_counter() - start:.1f} s")
    base = duckdb_connection(root)
    chosen = [x for x in QUERIES if not args.queries or x.name in args.queries]
    results = []
    bench_start = time.perf_counter()
    with fedquery.connect(catalog(root)) as fed, \
            fedquery.connect(catalog(root, exact=True)) as fed_exact:
        for query in chosen:
            ways = make_ways(query, fed, fed_exact, base, denorm, grid, args.dim)
            result = bench_query(query, ways, truth, qs, args.runs)
            choose_references(result, args.target_recall)
            results.append(result)
            print_filter(result)
    seconds = time.perf_counter() - bench_start
    threads = base.execute("SELECT current_setting('threads')").fetchall()[0][0]
    load_end = os.getloadavg()
    peak_process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{args.rows:,} vectors of {args.dim} floats, {args.probes} query vectors x "
          f"{args.runs} runs per filter, {seconds:.0f} s; duckdb {duckdb.__version__}, "
          f"lancedb {lancedb.__version__}, pylance {lance.__version__}, duckdb threads "
          f"{threads}, {os.cpu_count()} cpus, load average {load_start[0]:.2f} at the start, "
          f"{load_end[0]:.2f} at the end; process peak RSS {peak_process:,.0f} MiB")
    print_summary(results, args.target_recall)
    if args.json:
        meta = {"rows": args.rows, "dim": args.dim, "k": K, "runs": args.runs,
                "probes": args.probes, "latency": "median over runs of the mean over probes",
                "target_recall": args.target_recall, "build_seconds": build_s,
                "bench_seconds": seconds, "cpus": os.cpu_count(), "threads": threads,
                "load_average": {"start": load_start, "end": load_end},
                "process_peak_rss_mib": peak_process, "indexes": indexes,
                "nprobes": args.nprobes, "refine": args.refine,
                "fedquery": str(Path(fedquery.__file__).parent),
                "duckdb": duckdb.__version__, "lancedb": lancedb.__version__,
                "pylance": lance.__version__}
        doc = {"meta": meta, "queries": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    fed_problems = [p for r in results for p in r.problems if not p.startswith(("ann_", "scan_"))]
    return 1 if fed_problems else 0


if __name__ == "__main__":
    sys.exit(main())
