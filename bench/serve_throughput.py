"""Queries per second through ``fedquery serve`` against fedquery in-process.

The shop data set of the tests (a DuckDB warehouse, a local Parquet lake) is built in a
temporary folder; ``--clients`` threads each run ``--queries`` small queries (a point lookup
joined across the warehouse and the lake, a parameter bound per query), first on one shared
in-process ``fedquery.Connection``, then each over its own psycopg connection to a
``fedquery serve`` subprocess on the same catalog. Answers are checked equal.

    python bench/serve_throughput.py [--clients 16] [--queries 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

import fedquery  # noqa: E402
from tests.conftest import build_unseen  # noqa: E402
from tests.serve_process import ServeProcess  # noqa: E402

QUERY = ("SELECT c.country, count(*), sum(o.qty) FROM orders o JOIN clients c USING (customer_id) "
         "WHERE o.customer_id = {p} GROUP BY 1")


def timed(run, clients: int) -> tuple[float, list]:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(run, range(clients)))
    return time.perf_counter() - start, answers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fedquery-serve-bench-"))
    catalog = build_unseen(folder)
    total = args.clients * args.queries
    ids = [[1 + (c * args.queries + q) % 600 for q in range(args.queries)]
           for c in range(args.clients)]
    with fedquery.connect(catalog) as con:
        for p in ids[0][:3]:
            con.sql(QUERY.format(p="$1"), [p]).fetchall()  # plan cache and descriptions warm
        local_s, local = timed(lambda c: [con.sql(QUERY.format(p="$1"), [p]).fetchall()
                                          for p in ids[c]], args.clients)
    with ServeProcess(catalog, tmp=folder) as server:
        def remote(c: int) -> list:
            with psycopg.connect(server.dsn(), autocommit=True) as pg:
                return [[tuple(r) for r in pg.execute(QUERY.format(p="%s"), [p]).fetchall()]
                        for p in ids[c]]
        remote(0)  # warm the server's plan cache
        served_s, served = timed(remote, args.clients)
    assert served == local, "answers differ"
    print(f"{args.clients} clients x {args.queries} queries ({total} queries)")
    print(f"in-process (one shared Connection, {args.clients} threads): "
          f"{total / local_s:,.0f} queries/s ({local_s:.2f} s)")
    print(f"fedquery serve (psycopg, {args.clients} connections):      "
          f"{total / served_s:,.0f} queries/s ({served_s:.2f} s)")


if __name__ == "__main__":
    main()
