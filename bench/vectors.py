"""Measure fedquery's prefiltered vector top-k against DuckDB alone and LanceDB's own search.

N random unit vectors (float32, seeded) live in a LanceDB table ``item_vectors(item_id,
vec FLOAT[dim])``; their metadata ``items(item_id, category, price)`` (100 categories) lives
in a DuckDB warehouse file. Each query is the nearest 10 by cosine distance to a fixed random
vector among the items passing a metadata filter that keeps 1%, 10%, 50% or 100% of them:

    SELECT m.item_id, m.category, array_cosine_distance(v.vec, $q) AS d
    FROM item_vectors v JOIN items m ON m.item_id = v.item_id
    WHERE <filter> ORDER BY d LIMIT 10

Three ways run alternately in one process, best of N runs each:

* fedquery:   ``con.sql(sql, params={"q": q}).arrow()``; its keys plan runs first and the
  Lance scan gets ``item_id IN (keys)`` with the ORDER BY and LIMIT;
* DuckDB:     a plain DuckDB connection with the warehouse attached and the Lance dataset
  registered (scanned lazily), running the same SQL with ``$q::FLOAT[dim]`` (every distance);
* LanceDB:    "two programs": the keys from DuckDB, then ``table.search(q)`` with
  ``distance_type("cosine")``, ``where("item_id IN (...)", prefilter=True)``, exact (no
  index), ``limit(10)``, then the metadata joined to the ten rows in DuckDB.

Printed per query: times, the ratios fedquery/DuckDB and fedquery/LanceDB, the rows fedquery
moved from the Lance table (``explain(analyze=True)``), the number of keys, and whether the
three answers agree (same item_ids in the same order, distances within 1e-5).

    python bench/vectors.py [--rows 200000] [--dim 128] [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
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

SEED = 20260214
CATEGORIES = 100
K = 10
DIST_TOL = 1e-5
BUILD_MARKER = "BUILD_OK"
CHUNK_ROWS = 50_000
TABLE = "item_vectors"

SELECT = (f"SELECT m.item_id, m.category, array_cosine_distance(v.vec, {{q}}) AS d\n"
          f"FROM {TABLE} v JOIN items m ON m.item_id = v.item_id")
TAIL = f"ORDER BY d LIMIT {K}"


def category(i: int) -> str:
    return f"cat{i:02d}"


# --------------------------------------------------------------------------- data


def data_dir(rows: int, dim: int) -> Path:
    return BENCH_DIR / ".data" / "vectors" / f"n{rows}-d{dim}-seed{SEED}"


def ensure_data(rows: int, dim: int) -> tuple[Path, float]:
    """Build the Lance table and the warehouse unless already built; return folder, seconds."""
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


def _vector_chunks(rows: int, dim: int) -> Any:
    """Record batches of ``item_vectors``: ids 1..rows, L2-normalised float32 vectors."""
    rng = np.random.default_rng(SEED)
    for first in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - first)
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids = pa.array(np.arange(first + 1, first + n + 1, dtype=np.int64))
        vec = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim)
        yield pa.record_batch([ids, vec], names=["item_id", "vec"])


def _build_into(out: Path, rows: int, dim: int) -> None:
    schema = pa.schema([("item_id", pa.int64()), ("vec", pa.list_(pa.float32(), dim))])
    db = lancedb.connect(str(out / "lance"))
    db.create_table(TABLE, data=pa.RecordBatchReader.from_batches(schema, _vector_chunks(rows, dim)))
    rng = np.random.default_rng(SEED + 1)
    items = pa.table({
        "item_id": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
        "category": pa.array([category(c) for c in rng.integers(0, CATEGORIES, rows)]),
        "price": pa.array(np.round(rng.uniform(1, 1000, rows), 2)),
    })
    with duckdb.connect(str(out / "warehouse.duckdb")) as con:
        con.register("items_src", items)
        con.execute("CREATE TABLE items AS SELECT * FROM items_src ORDER BY item_id")
        con.execute("CHECKPOINT")
    (out / BUILD_MARKER).write_text(f"rows={rows} dim={dim} seed={SEED}\n")


def query_vector(dim: int) -> np.ndarray:
    q = np.random.default_rng(SEED + 2).standard_normal(dim).astype(np.float32)
    return q / np.linalg.norm(q)


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    name: str
    where: str | None  # on the metadata table ``items``, written with alias ``m``

    def sql(self, q: str) -> str:
        where = f"\nWHERE {self.where}" if self.where else ""
        return f"{SELECT.format(q=q)}{where}\n{TAIL}"

    def keys_sql(self) -> str:
        where = f" WHERE {self.where}" if self.where else ""
        return f"SELECT m.item_id FROM items m{where}"


def queries(median_price: float) -> list[Query]:
    ten = ", ".join(f"'{category(c)}'" for c in range(0, CATEGORIES, CATEGORIES // 10))
    return [
        Query("1%", f"m.category = '{category(7)}'"),
        Query("10%", f"m.category IN ({ten})"),
        Query("50%", f"m.price < {median_price!r}"),
        Query("100%", None),
    ]


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
    """Plain DuckDB: the warehouse attached read-only, the Lance dataset registered lazily."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    con.execute("CREATE VIEW items AS SELECT * FROM wh.items")
    con.register(TABLE, lance.dataset(str(root / "lance" / f"{TABLE}.lance")))
    return con


def run_fedquery(con: Any, query: Query, q: np.ndarray) -> pa.Table:
    return con.sql(query.sql("$q"), params={"q": q}).arrow()


def run_duckdb(con: duckdb.DuckDBPyConnection, query: Query, q: np.ndarray) -> pa.Table:
    sql = query.sql(f"$q::FLOAT[{len(q)}]")
    return con.sql(sql, params={"q": q.tolist()}).to_arrow_table()


def run_lancedb(meta: duckdb.DuckDBPyConnection, table: Any, query: Query, q: np.ndarray
                ) -> tuple[pa.Table, int]:
    """Keys from DuckDB, LanceDB's exact prefiltered search, metadata joined in DuckDB."""
    search = table.search(q).distance_type("cosine").bypass_vector_index().limit(K)
    keys = None
    if query.where is not None:
        keys = meta.execute(query.keys_sql()).fetchnumpy()["item_id"]
        if len(keys) == 0:
            return pa.table({"item_id": [], "category": [], "d": []}), 0
        search = search.where(f"item_id IN ({','.join(map(str, keys.tolist()))})", prefilter=True)
    nearest = search.to_arrow()
    cur = meta.cursor()
    cur.register("nearest", nearest)
    joined = cur.sql(
        "SELECT n.item_id, m.category, n._distance AS d FROM nearest n "
        "JOIN items m ON m.item_id = n.item_id ORDER BY d, n.item_id").to_arrow_table()
    cur.close()
    return joined, len(keys) if keys is not None else table.count_rows()


# --------------------------------------------------------------------------- checking


def differs(expected: pa.Table, actual: pa.Table) -> str | None:
    """How ``actual`` differs from ``expected``: item_ids in order, distances within DIST_TOL."""
    e_ids, a_ids = expected.column("item_id").to_pylist(), actual.column("item_id").to_pylist()
    if e_ids != a_ids:
        return f"item_ids {a_ids}, expected {e_ids}"
    e_cat, a_cat = expected.column("category").to_pylist(), actual.column("category").to_pylist()
    if e_cat != a_cat:
        return f"categories {a_cat}, expected {e_cat}"
    e_d = np.asarray(expected.column("d").to_pylist(), dtype=np.float64)
    a_d = np.asarray(actual.column("d").to_pylist(), dtype=np.float64)
    worst = float(np.max(np.abs(e_d - a_d))) if len(e_d) else 0.0
    if worst > DIST_TOL:
        return f"distances differ by up to {worst:.2e}"
    return None


def lance_rows(analyzed: str, source: str = "vectors") -> int | None:
    """Rows the fragment of ``source`` gave, from ``explain(analyze=True)``."""
    for block in re.split(r"\n(?=\[__f\d+\] )", analyzed):
        if block.startswith("[__f") and f"] {source} (" in block.splitlines()[0]:
            found = re.findall(r"analyze: ([\d,]+) rows", block)
            return int(found[-1].replace(",", "")) if found else None
    return None


def keys_note(analyzed: str) -> str | None:
    """What the top-k's keys filter became, from ``explain(analyze=True)``."""
    found = re.findall(r"keys sent: (.*)", analyzed)
    return found[-1].strip() if found else None


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    query: str
    keys: int
    fedquery_ms: float = math.inf
    duckdb_ms: float = math.inf
    lancedb_ms: float = math.inf
    fed_over_duckdb: float | None = None
    fed_over_lancedb: float | None = None
    lance_rows_moved: int | None = None
    keys_sent: str | None = None
    agree: bool = True
    problems: list[str] = field(default_factory=list)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


def bench_query(query: Query, q: np.ndarray, fed: Any, base: duckdb.DuckDBPyConnection,
                meta: duckdb.DuckDBPyConnection, table: Any, runs: int) -> Result:
    """Time the three ways alternately, best of ``runs``; check the answers agree."""
    answers: dict[str, pa.Table] = {}
    best = {"fedquery": math.inf, "duckdb": math.inf, "lancedb": math.inf}
    keys = 0
    ways: dict[str, Callable[[], Any]] = {
        "fedquery": lambda: run_fedquery(fed, query, q),
        "duckdb": lambda: run_duckdb(base, query, q),
        "lancedb": lambda: run_lancedb(meta, table, query, q),
    }
    for _ in range(runs):
        for name, way in ways.items():
            ms, out = timed(way)
            if name == "lancedb":
                out, keys = out
            answers[name] = out
            best[name] = min(best[name], ms)
    result = Result(query.name, keys, best["fedquery"], best["duckdb"], best["lancedb"])
    result.fed_over_duckdb = result.fedquery_ms / result.duckdb_ms
    result.fed_over_lancedb = result.fedquery_ms / result.lancedb_ms
    if answers["duckdb"].num_rows != min(K, keys):
        result.problems.append(f"DuckDB gave {answers['duckdb'].num_rows} rows")
    for name in ("fedquery", "lancedb"):
        diff = differs(answers["duckdb"], answers[name])
        if diff:
            result.problems.append(f"{name} vs DuckDB: {diff}")
    result.agree = not result.problems
    analyzed = fed.explain(query.sql("$q"), params={"q": q}, analyze=True)
    result.lance_rows_moved = lance_rows(analyzed)
    result.keys_sent = keys_note(analyzed)
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: Sequence[Result], runs: int) -> None:
    print(f"\nnearest {K} by cosine distance, best of {runs} (ms); ratio = fedquery / other")
    header = (f"{'filter':>6} {'keys':>8} {'fedquery':>9} {'duckdb':>9} {'lancedb':>9} "
              f"{'fq/duckdb':>10} {'fq/lancedb':>11} {'lance rows':>11} {'agree':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.query:>6} {r.keys:>8,} {r.fedquery_ms:>9.1f} {r.duckdb_ms:>9.1f} "
              f"{r.lancedb_ms:>9.1f} {_fmt(r.fed_over_duckdb, '10.2f'):>10} "
              f"{_fmt(r.fed_over_lancedb, '11.2f'):>11} {_fmt(r.lance_rows_moved, ',d'):>11} "
              f"{'yes' if r.agree else 'NO':>6}")
    for r in results:
        if r.keys_sent:
            print(f"  {r.query}: fedquery's Lance scan got: {r.keys_sent}")
    for r in results:
        for problem in r.problems:
            print(f"WARNING {r.query}: {problem}")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000, help="vectors (and items) to generate")
    p.add_argument("--dim", type=int, default=128, help="vector dimension")
    p.add_argument("--runs", type=int, default=5, help="runs per way per query (best kept)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--queries", nargs="+", choices=["1%", "10%", "50%", "100%"],
                   help="subset of filters to run")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root, build_s = ensure_data(args.rows, args.dim)
    print(f"data: {root} ({f'built in {build_s:.1f} s' if build_s else 'already built'})")
    q = query_vector(args.dim)
    base = duckdb_connection(root)
    meta = duckdb.connect()
    meta.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    meta.execute("CREATE VIEW items AS SELECT * FROM wh.items")
    median = meta.execute("SELECT median(price) FROM items").fetchall()[0][0]
    table = lancedb.connect(str(root / "lance")).open_table(TABLE)
    chosen = [x for x in queries(median) if not args.queries or x.name in args.queries]
    results = []
    with fedquery.connect(catalog(root)) as fed:
        for query in chosen:
            results.append(bench_query(query, q, fed, base, meta, table, args.runs))
    threads = base.execute("SELECT current_setting('threads')").fetchall()[0][0]
    print(f"{args.rows:,} vectors of {args.dim} floats; duckdb {duckdb.__version__}, "
          f"lancedb {lancedb.__version__}, pylance {lance.__version__}, threads {threads}")
    print_table(results, args.runs)
    if args.json:
        meta_doc = {"rows": args.rows, "dim": args.dim, "k": K, "runs": args.runs, "seed": SEED,
                    "build_seconds": build_s, "cpus": os.cpu_count(), "threads": threads,
                    "duckdb": duckdb.__version__, "lancedb": lancedb.__version__,
                    "pylance": lance.__version__, "median_price": median}
        doc = {"meta": meta_doc, "queries": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if all(r.agree for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
