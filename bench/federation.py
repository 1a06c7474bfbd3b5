"""Selective cross-source queries over a PostgreSQL warehouse and an S3 lake: rows and bytes moved.

TPC-H's six small tables live in PostgreSQL; ``lineitem`` and ``orders`` are Parquet objects on
an S3-compatible server. Each query runs three ways, alternately, in one process:

- fedquery: ``fedquery.connect(catalog).sql(q).arrow()``; one ``explain(analyze=True)``-style
  run counts the rows each source returned and the bytes read from S3. That run's connection
  goes through a counting HTTP proxy (``tests/services/s3_faults.FaultProxy``, no faults): the
  S3 bytes shown are the object bytes S3 sent (planning included), and the lake's own count
  (computed from the Parquet metadata) is checked against them; the timed runs go straight to
  the server, and their bytes are the lake's count;
- naive federation: every referenced table pulled whole (PostgreSQL through ADBC
  ``SELECT *``, S3 objects read whole), then the query in a fresh DuckDB over the pulled tables;
- local lower bound: DuckDB over local copies of the same files (no network).

The best of N runs of each is reported, and the three answers are checked to be equal.

    python bench/federation.py [--runs 5] [--sf 0.1] [--json FILE] [--orders-order date|custkey|key]

Peer mode (``--peers``): fedquery against DuckDB 1.5.5 with its postgres and httpfs extensions
and Daft 0.7.26 over the same PostgreSQL and S3, on the 22 TPC-H queries and the selective ones
above: best time of each, rows PostgreSQL sent and bytes S3 sent to each (one counted run
through counting proxies), every answer checked against local DuckDB's. The peers run in a venv
of their own (``~/.cache/fedquery/peer-venv``, made with pip at the first run), every system in
a worker process (``federation_peer.py``) killed past ``--timeout`` or ``--max-rss-gb``:

    python bench/federation.py --peers [--sf 0.3] [--runs 3] [--tpch 1 5 ...] [--queries ...]
        [--systems fedquery duckdb daft] [--json FILE]

Services: pgserver and ``moto_server`` are started (and stopped) here, unless
``FEDQUERY_BENCH_PG_DSN`` / ``FEDQUERY_BENCH_S3_ENDPOINT`` point at running ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import services
from overhead import compare, data_dir, ensure_data, geomean, import_fedquery, timed
from tpch_queries import ALL_ORDER_KEYS, ALL_QUERIES

from tests.services.s3_faults import FaultProxy  # services put the repository on sys.path

BENCH_DIR = Path(__file__).resolve().parent
EXPLAIN_FILE = BENCH_DIR / ".data" / "federation-explain.txt"
BUCKET, PREFIX = "tpch", "lake"
PG_SCHEMA = "tpch"
LAKE_TABLES = ("lineitem", "orders")
PG_TABLES = ("customer", "nation", "region", "part", "partsupp", "supplier")
ROW_GROUP_ROWS = 65_536
ROW_GROUPS_PER_FILE = 4
LAYOUT_MARKER = "LAYOUT_OK"
SORT_COLUMN = {"date": "o_orderdate", "custkey": "o_custkey"}  # orders' sort orders; "key": as is

# Column types as in the local DuckDB warehouse (tpchgen's): BIGINT keys, DECIMAL(15,2), DATE.
PG_COLUMNS: dict[str, str] = {
    "customer": "c_custkey bigint NOT NULL, c_name text, c_address text, c_nationkey bigint, "
                "c_phone text, c_acctbal numeric(15,2), c_mktsegment text, c_comment text",
    "nation": "n_nationkey bigint NOT NULL, n_name text, n_regionkey bigint, n_comment text",
    "region": "r_regionkey bigint NOT NULL, r_name text, r_comment text",
    "part": "p_partkey bigint NOT NULL, p_name text, p_mfgr text, p_brand text, p_type text, "
            "p_size integer, p_container text, p_retailprice numeric(15,2), p_comment text",
    "partsupp": "ps_partkey bigint NOT NULL, ps_suppkey bigint NOT NULL, ps_availqty integer, "
                "ps_supplycost numeric(15,2), ps_comment text",
    "supplier": "s_suppkey bigint NOT NULL, s_name text, s_address text, s_nationkey bigint, "
                "s_phone text, s_acctbal numeric(15,2), s_comment text",
}
PG_KEYS = {"customer": "c_custkey", "nation": "n_nationkey", "region": "r_regionkey",
           "part": "p_partkey", "partsupp": "ps_partkey, ps_suppkey", "supplier": "s_suppkey"}
# Columns the queries filter or join on, beyond the primary keys.
PG_INDEXES = {"customer": ("c_name", "c_nationkey"), "nation": ("n_regionkey",),
              "region": ("r_name",), "part": ("p_name",), "supplier": ("s_nationkey",)}


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    """A selective cross-source query, and how many S3 rows its answer depends on."""

    name: str
    title: str
    sql: str
    order_keys: tuple[str, ...]
    pg_tables: tuple[str, ...]
    s3_tables: tuple[str, ...]
    needed_s3_sql: str  # rows of orders + lineitem that take part in the answer (local SQL)


def _customer_query(name: str, customer: str) -> Query:
    where = f"c.c_name = '{customer}'"
    return Query(
        name=name,
        title=f"one customer: {customer}'s orders and their lineitem revenue",
        sql=f"""
SELECT o.o_orderkey, o.o_orderdate, o.o_totalprice, count(*) AS lines,
       sum(l.l_extendedprice * (1 - l.l_discount)) AS revenue
FROM customer AS c
JOIN orders AS o ON o.o_custkey = c.c_custkey
JOIN lineitem AS l ON l.l_orderkey = o.o_orderkey
WHERE {where}
GROUP BY o.o_orderkey, o.o_orderdate, o.o_totalprice
ORDER BY o.o_orderkey""",
        order_keys=("o_orderkey",),
        pg_tables=("customer",),
        s3_tables=("orders", "lineitem"),
        needed_s3_sql=f"""
SELECT (SELECT count(*) FROM customer c JOIN orders o ON o.o_custkey = c.c_custkey WHERE {where})
     + (SELECT count(*) FROM customer c JOIN orders o ON o.o_custkey = c.c_custkey
        JOIN lineitem l ON l.l_orderkey = o.o_orderkey WHERE {where})""",
    )


ORDER_DATE = "o.o_orderdate = DATE '1995-03-15'"
ASIA_1995 = ("r.r_name = 'ASIA' AND o.o_orderdate >= DATE '1995-01-01' "
             "AND o.o_orderdate < DATE '1996-01-01'")
ASIA_JOINS = """customer AS c
JOIN nation AS n ON c.c_nationkey = n.n_nationkey
JOIN region AS r ON n.n_regionkey = r.r_regionkey
JOIN orders AS o ON o.o_custkey = c.c_custkey"""
PART_NAME = "khaki blue bisque pale light"  # p_partkey 4242

QUERIES: dict[str, Query] = {
    q.name: q for q in (
        _customer_query("customer", "Customer#000000043"),
        _customer_query("customer42", "Customer#000000042"),
        Query(
            name="orderdate",
            title="one order date: lineitems and customers of the orders placed on 1995-03-15",
            sql=f"""
SELECT o.o_orderkey, c.c_name, o.o_totalprice, l.l_linenumber, l.l_quantity,
       l.l_extendedprice * (1 - l.l_discount) AS revenue
FROM orders AS o
JOIN lineitem AS l ON l.l_orderkey = o.o_orderkey
JOIN customer AS c ON c.c_custkey = o.o_custkey
WHERE {ORDER_DATE}
ORDER BY o.o_orderkey, l.l_linenumber""",
            order_keys=("o_orderkey", "l_linenumber"),
            pg_tables=("customer",),
            s3_tables=("orders", "lineitem"),
            needed_s3_sql=f"""
SELECT (SELECT count(*) FROM orders o WHERE {ORDER_DATE})
     + (SELECT count(*) FROM orders o JOIN lineitem l ON l.l_orderkey = o.o_orderkey
        WHERE {ORDER_DATE})""",
        ),
        Query(
            name="region",
            title="a region: 1995 revenue per nation of the customers in ASIA",
            sql=f"""
SELECT n.n_name, count(DISTINCT o.o_orderkey) AS orders,
       sum(l.l_extendedprice * (1 - l.l_discount)) AS revenue
FROM {ASIA_JOINS}
JOIN lineitem AS l ON l.l_orderkey = o.o_orderkey
WHERE {ASIA_1995}
GROUP BY n.n_name
ORDER BY revenue DESC""",
            order_keys=("revenue",),
            pg_tables=("customer", "nation", "region"),
            s3_tables=("orders", "lineitem"),
            needed_s3_sql=f"""
SELECT (SELECT count(*) FROM {ASIA_JOINS} WHERE {ASIA_1995})
     + (SELECT count(*) FROM {ASIA_JOINS} JOIN lineitem AS l ON l.l_orderkey = o.o_orderkey
        WHERE {ASIA_1995})""",
        ),
        Query(
            name="part",
            title=f"one part: who supplied part '{PART_NAME}', in which orders",
            sql=f"""
SELECT l.l_orderkey, l.l_linenumber, o.o_orderdate, s.s_name, l.l_quantity, l.l_extendedprice
FROM part AS p
JOIN lineitem AS l ON l.l_partkey = p.p_partkey
JOIN supplier AS s ON s.s_suppkey = l.l_suppkey
JOIN orders AS o ON o.o_orderkey = l.l_orderkey
WHERE p.p_name = '{PART_NAME}'
ORDER BY l.l_orderkey, l.l_linenumber""",
            order_keys=("l_orderkey", "l_linenumber"),
            pg_tables=("part", "supplier"),
            s3_tables=("lineitem", "orders"),
            needed_s3_sql=f"""
SELECT 2 * count(*) FROM part p JOIN lineitem l ON l.l_partkey = p.p_partkey
WHERE p.p_name = '{PART_NAME}'""",
        ),
    )
}


# --------------------------------------------------------------------------- data and setup


def layout_dir(sf: float, orders_order: str) -> Path:
    """Local copies of the lake objects as they are laid out on S3."""
    return BENCH_DIR / ".data" / f"federation-sf{sf:g}-orders-by-{orders_order}"


def ensure_layout(sf: float, orders_order: str) -> float:
    """Write the lake tables in the benchmark's layout (unless done); return seconds spent.

    ``lineitem`` keeps its natural ``l_orderkey`` order; ``orders`` is sorted by ``o_orderdate``
    (``date``) or ``o_custkey`` (``custkey``), or kept in ``o_orderkey`` order (``key``). Row
    groups of 64k rows, four a file.
    """
    out = layout_dir(sf, orders_order)
    if (out / LAYOUT_MARKER).exists():
        return 0.0
    started = time.perf_counter()
    source = data_dir(sf) / "lake"
    for table in LAKE_TABLES:
        data = pq.read_table(source / table)
        data = data.replace_schema_metadata(None)
        if table == "orders" and orders_order != "key":
            data = data.sort_by([(SORT_COLUMN[orders_order], "ascending"), ("o_orderkey", "ascending")])
        folder = out / "lake" / table
        folder.mkdir(parents=True, exist_ok=True)
        step = ROW_GROUP_ROWS * ROW_GROUPS_PER_FILE
        for i, offset in enumerate(range(0, data.num_rows, step)):
            pq.write_table(data.slice(offset, step), folder / f"part-{i}.parquet",
                           row_group_size=ROW_GROUP_ROWS)
    (out / LAYOUT_MARKER).write_text(f"sf={sf:g} orders by {orders_order}\n")
    return time.perf_counter() - started


def s3_filesystem(endpoint: str) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem on the benchmark's endpoint."""
    scheme, _, host = endpoint.partition("://")
    creds = services.S3_CREDENTIALS
    return pafs.S3FileSystem(endpoint_override=host.rstrip("/"), scheme=scheme,
                             access_key=creds["key"], secret_key=creds["secret"],
                             region=creds["region"], allow_bucket_creation=True)


def upload_lake(fs: pafs.S3FileSystem, layout: Path) -> int:
    """Copy the local lake copies to ``s3://tpch/lake/``; return the bytes uploaded."""
    fs.create_dir(BUCKET)
    fs.delete_dir_contents(f"{BUCKET}/{PREFIX}", missing_dir_ok=True)
    total = 0
    for path in sorted((layout / "lake").rglob("*.parquet")):
        key = f"{BUCKET}/{PREFIX}/{path.relative_to(layout / 'lake').as_posix()}"
        data = path.read_bytes()
        with fs.open_output_stream(key) as out:
            out.write(data)
        total += len(data)
    return total


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with string_view columns as plain strings and no metadata."""
    fields = [pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable)
              for f in table.schema]
    return table.cast(pa.schema(fields))


def load_postgres(dsn: str, warehouse: Path) -> dict[str, int]:
    """Load the six tables into schema ``tpch`` with keys, indexes and statistics."""
    import adbc_driver_postgresql.dbapi as adbc

    counts = {}
    with duckdb.connect(str(warehouse), read_only=True) as src, \
            adbc.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
        cur.execute(f"CREATE SCHEMA {PG_SCHEMA}")
        for table in PG_TABLES:
            data = _plain(src.sql(f"SELECT * FROM {table}").to_arrow_table())
            cur.execute(f"CREATE TABLE {PG_SCHEMA}.{table} ({PG_COLUMNS[table]})")
            cur.adbc_ingest(table, data, mode="append", db_schema_name=PG_SCHEMA)
            cur.execute(f"ALTER TABLE {PG_SCHEMA}.{table} ADD PRIMARY KEY ({PG_KEYS[table]})")
            for column in PG_INDEXES.get(table, ()):
                cur.execute(f"CREATE INDEX ON {PG_SCHEMA}.{table} ({column})")
            counts[table] = data.num_rows
        cur.execute("ANALYZE")
    return counts


def check_postgres_round_trip(dsn: str, warehouse: Path) -> list[str]:
    """Problems with what PostgreSQL returns against the local tables (types and values)."""
    problems = []
    with duckdb.connect(str(warehouse), read_only=True) as src:
        for table in PG_TABLES:
            keys = PG_KEYS[table]
            local = _plain(src.sql(f"SELECT * FROM {table} ORDER BY {keys}").to_arrow_table())
            pulled = pull_postgres_table(dsn, table, order_by=keys)
            if pulled.schema != local.schema:
                problems.append(f"{table}: PostgreSQL gives {pulled.schema}, local {local.schema}")
            elif not pulled.equals(local):
                problems.append(f"{table}: values differ after the round trip")
    return problems


def catalog(dsn: str, endpoint: str) -> dict[str, Any]:
    """The fedquery catalog: tables in PostgreSQL's ``tpch`` schema and on S3."""
    creds = services.S3_CREDENTIALS
    tables: dict[str, dict[str, str]] = {t: {"source": "pg", "table": f"{PG_SCHEMA}.{t}"}
                                         for t in PG_TABLES}
    tables |= {t: {"source": "lake", "path": f"{t}/"} for t in LAKE_TABLES}
    return {
        "sources": {
            "pg": {"kind": "postgres", "dsn": dsn, "connect_timeout": 10,
                   "statement_timeout": "120s"},
            "lake": {"kind": "parquet", "root": f"s3://{BUCKET}/{PREFIX}/",
                     "options": {"endpoint_url": endpoint, "key": creds["key"],
                                 "secret": creds["secret"], "region": creds["region"]}},
        },
        "tables": tables,
    }


# --------------------------------------------------------------------------- the three ways


def plain_duckdb(database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection without the external file cache (it would hide re-reads)."""
    con = duckdb.connect(database, read_only=read_only)
    with contextlib.suppress(duckdb.Error):
        con.execute("SET enable_external_file_cache = false")
    return con


def local_connection(warehouse: Path, layout: Path) -> duckdb.DuckDBPyConnection:
    """The lower bound: DuckDB over the local copies (the warehouse file and the Parquet files)."""
    con = plain_duckdb()
    con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
    for table in PG_TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM wh.{table}")
    for table in LAKE_TABLES:
        files = layout / "lake" / table / "*.parquet"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{files}')")
    return con


def _numeric_type(field: pa.Field) -> pa.DataType | None:
    """The decimal type of an ADBC ``numeric`` column (opaque string), from its typmod."""
    meta = field.metadata or {}
    if meta.get(b"POSTGRESQL:type") != b"numeric":
        return None
    typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
    if typmod < 4:
        return pa.float64()
    return pa.decimal128(((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF)


def pull_postgres_table(dsn_or_conn: Any, table: str, order_by: str | None = None) -> pa.Table:
    """``SELECT * FROM tpch.<table>`` through ADBC, numeric columns as decimals."""
    import adbc_driver_postgresql.dbapi as adbc

    owned = isinstance(dsn_or_conn, str)
    conn = adbc.connect(dsn_or_conn, autocommit=True) if owned else dsn_or_conn
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {PG_SCHEMA}.{table}" + (f" ORDER BY {order_by}" if order_by else ""))
            raw = cur.fetch_arrow_table()
    finally:
        if owned:
            conn.close()
    columns, fields = [], []
    for column, f in zip(raw.columns, raw.schema, strict=True):
        target = _numeric_type(f)
        if target is not None:
            column = column.cast(column.type.storage_type) if isinstance(
                column.type, pa.BaseExtensionType) else column
            column = column.cast(target)
        columns.append(column)
        fields.append(pa.field(f.name, column.type, f.nullable))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


@dataclass
class Pulled:
    """What the naive way moved in one run."""

    pg_rows: int = 0
    s3_rows: int = 0
    s3_bytes: int = 0


def pull_s3_table(fs: pafs.S3FileSystem, table: str) -> tuple[pa.Table, int]:
    """Every object of a lake table read whole; the table and the bytes read."""
    selector = pafs.FileSelector(f"{BUCKET}/{PREFIX}/{table}", recursive=True)
    infos = sorted((i for i in fs.get_file_info(selector) if i.is_file), key=lambda i: i.path)
    parts, total = [], 0
    for info in infos:
        with fs.open_input_stream(info.path) as stream:
            data = stream.read()
        total += len(data)
        parts.append(pq.read_table(pa.BufferReader(data)))
    return pa.concat_tables(parts), total


def run_naive(query: Query, pg_conn: Any, fs: pafs.S3FileSystem) -> tuple[pa.Table, Pulled]:
    """Pull each referenced table whole (S3 tables in parallel with PostgreSQL's), join locally."""
    moved = Pulled()
    tables: dict[str, pa.Table] = {}
    with ThreadPoolExecutor(len(query.s3_tables)) as pool:
        futures = {t: pool.submit(pull_s3_table, fs, t) for t in query.s3_tables}
        for table in query.pg_tables:
            tables[table] = pull_postgres_table(pg_conn, table)
            moved.pg_rows += tables[table].num_rows
        for table, future in futures.items():
            tables[table], size = future.result()
            moved.s3_rows += tables[table].num_rows
            moved.s3_bytes += size
    con = plain_duckdb()
    try:
        for name, data in tables.items():
            con.register(name, data)
        return con.sql(query.sql).to_arrow_table(), moved
    finally:
        con.close()


@dataclass
class FedStats:
    """fedquery's movement in one analyzed run: rows per source, bytes read from S3."""

    pg_rows: int = 0
    s3_rows: int = 0
    s3_bytes: int = 0  # object bytes S3 sent over the run (planning included), at the proxy
    s3_bytes_counted: int = 0  # the lake's own counter before and after the run
    s3_bytes_fragment_sum: int = 0  # sum of FragmentStats.bytes_read
    fragments: list[dict[str, Any]] = field(default_factory=list)


def analyze_fedquery(con: Any, sql: str, proxy: FaultProxy) -> tuple[pa.Table, FedStats]:
    """One run with every fragment fetched through its connector and counted (``con`` reads
    S3 through ``proxy``, which counts the object bytes sent)."""
    before, sent = lake_bytes(con), proxy.object_bytes()
    plan = con._planner.cached_plan(sql)
    execution = con._session.run(plan, None, analyze=True)
    table = execution.table()
    stats = FedStats(s3_bytes=proxy.object_bytes() - sent, s3_bytes_counted=lake_bytes(con) - before)
    kinds = {name: c.kind for name, c in con._session.connectors.items()}
    for s in execution.stats:
        if kinds[s.source] == "postgres":
            stats.pg_rows += s.rows
        else:
            stats.s3_rows += s.rows
        stats.s3_bytes_fragment_sum += s.bytes_read or 0
        # Shallow: ``asdict`` would deep-copy ``cancel`` (a bound method holding the source's
        # connection, which cannot be copied).
        stats.fragments.append({f.name: getattr(s, f.name) for f in fields(s)
                                if f.name not in ("error", "cancel")})
    return table, stats


def lake_bytes(con: Any) -> int:
    """The S3 lake's monotonic bytes-read counter (computed from the Parquet metadata)."""
    return con._session.connectors["lake"].bytes_read() or 0


# --------------------------------------------------------------------------- one query


@dataclass
class QueryResult:
    """Every figure for one query; times in ms (best of the runs)."""

    name: str
    title: str
    sql: str
    rows: int = 0
    needed_s3_rows: int = 0
    local_ms: float = math.inf
    naive_ms: float = math.inf
    naive_pg_rows: int = 0
    naive_s3_rows: int = 0
    naive_s3_bytes: int = 0
    fedquery_ms: float | None = None
    fedquery_pg_rows: int | None = None
    fedquery_s3_rows: int | None = None
    fedquery_s3_bytes: int | None = None  # the analyzed run, first on a fresh connection (proxy)
    fedquery_s3_bytes_counted: int | None = None  # the lake's own count over that run
    fedquery_s3_bytes_fragment_sum: int | None = None  # what FragmentStats.bytes_read adds up to
    fedquery_timed_s3_bytes: list[int] = field(default_factory=list)  # per timed run
    fedquery_fragments: list[dict[str, Any]] = field(default_factory=list)
    ratios: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _check(result: QueryResult, who: str, expected: pa.Table, actual: pa.Table,
           keys: Sequence[str]) -> None:
    for problem in compare(expected, actual, keys):
        target = result.notes if problem.startswith("types differ") else result.problems
        message = f"{who} vs local: {problem}"
        if message not in target:
            target.append(message)


def _guarded(result: QueryResult, who: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; on error record it (the exact error) and return None."""
    try:
        return fn()
    except Exception as exc:  # reported, not raised
        result.problems.append(f"{who} error: {type(exc).__name__}: {exc}")
        return None


def bench_query(query: Query, fq: Any, cat: dict[str, Any], local: duckdb.DuckDBPyConnection,
                pg_conn: Any, fs: pafs.S3FileSystem, runs: int, explain_out: list[str],
                proxy: FaultProxy) -> QueryResult:
    """Run one query the three ways, alternately, ``runs`` times each (the analyzed fedquery
    run through ``proxy``, which counts the bytes S3 sends)."""
    result = QueryResult(query.name, query.title, query.sql.strip())
    result.needed_s3_rows = local.execute(query.needed_s3_sql).fetchall()[0][0]
    expected = local.sql(query.sql).to_arrow_table()
    result.rows = expected.num_rows
    proxied = proxied_catalog(cat, proxy.url)
    fed = _guarded(result, "fedquery.connect", lambda: fq.connect(proxied)) if fq else None
    timed_con = _guarded(result, "fedquery.connect", lambda: fq.connect(cat)) if fed else None
    if fed is not None:
        _fedquery_analyze(result, query, fed, expected, explain_out, proxy)
    fed_times, naive_times, local_times = [], [], []
    for _ in range(runs):
        if timed_con is not None and not any(p.startswith("fedquery error") for p in result.problems):
            before = lake_bytes(timed_con)
            out = _guarded(result, "fedquery", lambda: timed(lambda: timed_con.sql(query.sql).arrow()))
            if out is not None:
                fed_times.append(out[0])
                result.fedquery_timed_s3_bytes.append(lake_bytes(timed_con) - before)
                _check(result, "fedquery", expected, out[1], query.order_keys)
        ms, (answer, moved) = timed(lambda: run_naive(query, pg_conn, fs))
        naive_times.append(ms)
        _check(result, "naive", expected, answer, query.order_keys)
        result.naive_pg_rows, result.naive_s3_rows = moved.pg_rows, moved.s3_rows
        result.naive_s3_bytes = moved.s3_bytes
        local_times.append(timed(lambda: local.sql(query.sql).to_arrow_table())[0])
    for con in (fed, timed_con):
        if con is not None:
            con.close()
    result.local_ms, result.naive_ms = min(local_times), min(naive_times)
    result.fedquery_ms = min(fed_times) if fed_times else None
    result.ratios = _ratios(result)
    return result


def _fedquery_analyze(result: QueryResult, query: Query, fed: Any, expected: pa.Table,
                      explain_out: list[str], proxy: FaultProxy) -> None:
    """The counted run (first on its connection: footers included), then the explain texts."""
    out = _guarded(result, "fedquery (analyze)", lambda: analyze_fedquery(fed, query.sql, proxy))
    if out is not None:
        answer, stats = out
        _check(result, "fedquery (analyze)", expected, answer, query.order_keys)
        result.fedquery_pg_rows, result.fedquery_s3_rows = stats.pg_rows, stats.s3_rows
        result.fedquery_s3_bytes, result.fedquery_fragments = stats.s3_bytes, stats.fragments
        result.fedquery_s3_bytes_counted = stats.s3_bytes_counted
        result.fedquery_s3_bytes_fragment_sum = stats.s3_bytes_fragment_sum
        _note_counts(result, stats)
    explain_out.append(f"===== {query.name}: {query.title}\n{query.sql.strip()}\n")
    for analyze in (False, True):
        text = _guarded(result, f"fedquery explain(analyze={analyze})",
                        lambda a=analyze: fed.explain(query.sql, analyze=a))
        explain_out.append(f"--- explain(analyze={analyze})\n{text}\n")


def _note_counts(result: QueryResult, stats: FedStats) -> None:
    """Say so when the lake's own counts differ from the bytes S3 sent (the table shows those)."""
    if stats.s3_bytes_counted != stats.s3_bytes:
        result.notes.append(f"the lake counted {stats.s3_bytes_counted:,} bytes over the run but "
                            f"S3 sent {stats.s3_bytes:,} (the table shows the latter)")
    if stats.s3_bytes_fragment_sum != stats.s3_bytes_counted:
        result.notes.append(f"FragmentStats.bytes_read adds up to {stats.s3_bytes_fragment_sum:,}; "
                            f"the lake counted {stats.s3_bytes_counted:,} over the run (planning "
                            "included)")


def proxied_catalog(cat: dict[str, Any], url: str) -> dict[str, Any]:
    """The catalog with the lake's endpoint replaced by the counting proxy's."""
    lake = cat["sources"]["lake"]
    options = {**lake["options"], "endpoint_url": url}
    return {**cat, "sources": {**cat["sources"], "lake": {**lake, "options": options}}}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _ratios(r: QueryResult) -> dict[str, float | None]:
    fed_rows = None if r.fedquery_s3_rows is None else r.fedquery_s3_rows + (r.fedquery_pg_rows or 0)
    return {
        "rows_fedquery_over_naive": _ratio(fed_rows, r.naive_s3_rows + r.naive_pg_rows),
        "s3_rows_fedquery_over_naive": _ratio(r.fedquery_s3_rows, r.naive_s3_rows),
        "pg_rows_fedquery_over_naive": _ratio(r.fedquery_pg_rows, r.naive_pg_rows),
        "s3_bytes_fedquery_over_naive": _ratio(r.fedquery_s3_bytes, r.naive_s3_bytes),
        "time_fedquery_over_naive": _ratio(r.fedquery_ms, r.naive_ms),
        "time_fedquery_over_local": _ratio(r.fedquery_ms, r.local_ms),
        "s3_rows_fedquery_over_needed": _ratio(r.fedquery_s3_rows, r.needed_s3_rows),
    }


# --------------------------------------------------------------------------- report


def _n(value: float | None, spec: str = ",") -> str:
    return "-" if value is None else format(value, spec)


def print_query(r: QueryResult) -> None:
    """One table: rows and bytes moved and time, fedquery vs naive vs local, and the ratios."""
    print(f"\n[{r.name}] {r.title}")
    print(f"  answer: {r.rows:,} rows; S3 rows the answer depends on: {r.needed_s3_rows:,}")
    head = f"  {'':<18} {'rows from PG':>13} {'rows from S3':>13} {'S3 bytes read':>14} {'time ms':>10}"
    print(head)
    print(f"  {'fedquery':<18} {_n(r.fedquery_pg_rows):>13} {_n(r.fedquery_s3_rows):>13} "
          f"{_n(r.fedquery_s3_bytes):>14} {_n(r.fedquery_ms, ',.1f'):>10}")
    print(f"  {'naive federation':<18} {r.naive_pg_rows:>13,} {r.naive_s3_rows:>13,} "
          f"{r.naive_s3_bytes:>14,} {r.naive_ms:>10,.1f}")
    print(f"  {'local DuckDB':<18} {'-':>13} {'-':>13} {'-':>14} {r.local_ms:>10,.1f}")
    q = r.ratios
    print(f"  {'fedquery/naive':<18} {_n(q['pg_rows_fedquery_over_naive'], '.4f'):>13} "
          f"{_n(q['s3_rows_fedquery_over_naive'], '.4f'):>13} "
          f"{_n(q['s3_bytes_fedquery_over_naive'], '.4f'):>14} "
          f"{_n(q['time_fedquery_over_naive'], '.3f'):>10}")
    print(f"  {'fedquery/local':<18} {'':>13} {'':>13} {'':>14} "
          f"{_n(q['time_fedquery_over_local'], '.2f'):>10}")
    if r.fedquery_timed_s3_bytes:
        b = r.fedquery_timed_s3_bytes
        print(f"  fedquery S3 rows / rows needed: {_n(q['s3_rows_fedquery_over_needed'], '.2f')}; "
              f"S3 bytes of the timed runs: first {b[0]:,}, then {min(b[1:] or b):,}")
    for f in r.fedquery_fragments:
        keys = f"; keys sent: {f['key_filter']}" if f.get("key_filter") else ""
        print(f"  fedquery fragment {f['name']} ({f['source']}): {f['rows']:,} rows{keys}")
    for note in r.notes:
        print(f"  note: {note}")
    for problem in r.problems:
        print(f"  PROBLEM: {problem}")


# --------------------------------------------------------------------------- peer mode
#
# ``--peers``: fedquery against what a user would pick instead of it over the same PostgreSQL and
# S3: DuckDB 1.5.5 with its postgres and httpfs extensions, and Daft. Every system runs in a
# long-lived worker process (``federation_peer.py``; the peers in their own venv, since Daft pins
# an older pyarrow and sqlglot than fedquery's) driven over JSON lines, so the systems alternate
# in one loop and a run that hangs or grows past a memory cap is killed without taking the bench
# down. Per query and system: one counted run on a fresh connection through two counting proxies
# (rows PostgreSQL sent, at ``pg_rows.RowCountingProxy``; object bytes S3 sent, at
# ``FaultProxy``), then ``runs`` timed runs on a kept connection straight to the servers, best
# kept. Every answer is checked against local DuckDB's over the same data.

PEER_SYSTEMS = ("fedquery", "duckdb", "daft")
PEER_VENV = Path.home() / ".cache" / "fedquery" / "peer-venv"
PEER_EXT_DIR = Path.home() / ".cache" / "fedquery" / "peer-ext"
PEER_REQUIREMENTS = ("duckdb==1.5.5", "duckdb-extension-postgres==1.5.5",
                     "duckdb-extension-httpfs==1.5.5", "daft[sql]==0.7.26", "connectorx==0.4.6")
PEER_WORKER = BENCH_DIR / "federation_peer.py"
# Daft parses no ``substring(x FROM a FOR b)``; the same function in the form it reads.
DAFT_REWRITES = {"q22": (("substring(c_phone FROM 1 FOR 2)", "substring(c_phone, 1, 2)"),)}


def ensure_peer_venv(venv: Path = PEER_VENV) -> Path:
    """The peers' venv with ``PEER_REQUIREMENTS`` (made with pip from the package index unless
    already there); returns its python."""
    python = venv / "bin" / "python"
    marker = venv / "fedquery-peer-requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return python


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeerWorker:
    """One system's worker process: ``ask`` sends a request and waits for the answer, killing
    the process (and starting it again at the next request) past ``timeout`` seconds or
    ``max_rss`` bytes of resident memory."""

    def __init__(self, system: str, python: Path, setup: dict[str, Any], log: Path,
                 max_rss: int) -> None:
        self.system, self.python, self.setup = system, python, setup
        self.log_path, self.max_rss = log, max_rss
        self.process: subprocess.Popen | None = None
        self.versions: dict[str, str] = {}
        self.peak_rss = 0

    def _start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen([str(self.python), str(PEER_WORKER), self.system],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                        text=True, cwd=str(BENCH_DIR.parent))
        log.close()
        answer = self._exchange({"op": "setup", **self.setup}, timeout=600)
        if "error" in answer:
            self.stop()
            raise RuntimeError(f"{self.system} worker setup failed: {answer['error']}")
        if not self.versions:
            self.versions = self._exchange({"op": "versions"}, timeout=60).get("versions", {})

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self._start()
        return self._exchange(request, timeout)

    def _exchange(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        import select

        process = self.process
        assert process is not None and process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except OSError as exc:
            self.stop()
            return {"error": f"worker gone: {exc}"}
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                line = process.stdout.readline()
                if not line:
                    code = process.wait()
                    self.process = None
                    return {"error": f"worker exited ({code}); see {self.log_path}"}
                return json.loads(line)
            rss = _rss_bytes(process.pid)
            self.peak_rss = max(self.peak_rss, rss)
            if rss > self.max_rss:
                self.stop()
                return {"error": f"killed: resident memory {rss / 2**30:.1f} GiB over the cap",
                        "killed": "memory"}
            if time.monotonic() > deadline:
                self.stop()
                return {"error": f"killed: no answer in {timeout:g} s", "killed": "timeout"}

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        self.stop()


@dataclass(frozen=True)
class PeerQuery:
    """One query of the peer mode: a TPC-H query or one of the selective ``QUERIES``."""

    name: str
    title: str
    sql: str
    order_keys: tuple[str, ...]


def peer_queries(tpch: Sequence[int], selective: Sequence[str]) -> list[PeerQuery]:
    out = [PeerQuery(f"q{n}", f"TPC-H Q{n}", ALL_QUERIES[n].strip(), tuple(ALL_ORDER_KEYS[n]))
           for n in tpch]
    out += [PeerQuery(QUERIES[s].name, QUERIES[s].title, QUERIES[s].sql.strip(),
                      QUERIES[s].order_keys) for s in selective]
    return out


@dataclass
class PeerResult:
    """Every figure for one query in the peer mode; times in ms (best of the runs)."""

    name: str
    title: str
    sql: str
    rows: int = 0
    local_ms: float = math.inf
    ms: dict[str, float | None] = field(default_factory=dict)
    pg_rows: dict[str, int | None] = field(default_factory=dict)  # COPY rows at the proxy
    pg_other_rows: dict[str, int | None] = field(default_factory=dict)  # DataRows (catalog etc.)
    s3_bytes: dict[str, int | None] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)  # ok, wrong, unsupported, killed, error
    errors: dict[str, str] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _peer_sql(system: str, query: PeerQuery, result: PeerResult) -> str:
    sql = query.sql
    if system == "daft":
        for old, new in DAFT_REWRITES.get(query.name, ()):
            if old in sql:
                sql = sql.replace(old, new)
                note = f"daft ran it with {old!r} written {new!r}"
                if note not in result.notes:
                    result.notes.append(note)
    return sql


def _classify(error: str) -> str:
    if error.startswith("killed"):
        return "killed"
    unsupported = ("InvalidSQLException", "Unsupported SQL", "not supported", "NotImplemented",
                   "Not implemented", "Unable to create logical plan")
    return "unsupported" if any(u in error for u in unsupported) else "error"


def _peer_answer(result: PeerResult, system: str, answer: dict[str, Any], out: Path,
                 expected: pa.Table, keys: Sequence[str]) -> bool:
    """Record an error or check the answer; True when it is right."""
    if "error" in answer:
        result.status[system] = _classify(answer["error"])
        result.errors[system] = answer["error"]
        return False
    if answer.get("note") and answer["note"] not in result.notes:
        result.notes.append(answer["note"])
    with pa.memory_map(str(out)) as source:
        table = pa.ipc.open_file(source).read_all()
    if table.column_names != expected.column_names and table.num_columns == expected.num_columns:
        # An unaliased expression's name is each system's own (Daft calls sum(l_quantity)
        # l_quantity): noted, and the values checked by position.
        note = f"{system}: columns named {table.column_names}, local {expected.column_names}"
        if note not in result.notes:
            result.notes.append(note)
        table = table.rename_columns(expected.column_names)
    wrong = False
    for problem in compare(expected, table, keys):
        if problem.startswith("types differ"):
            differ = [f"{e.name} {a.type} (local {e.type})"
                      for e, a in zip(expected.schema, table.schema, strict=True) if e.type != a.type]
            note = f"{system}: types differ: {', '.join(differ)}"
            if not any(n.startswith(f"{system}: types differ") for n in result.notes):
                result.notes.append(note)
        else:
            wrong = True
            message = f"{system} vs local: {problem}"
            if message not in result.problems:
                result.problems.append(message)
    if wrong:
        result.status[system] = "wrong"
    return not wrong


def bench_peer_query(query: PeerQuery, workers: dict[str, PeerWorker],
                     local: duckdb.DuckDBPyConnection, runs: int, timeout: float,
                     s3_proxy: FaultProxy, pg_proxy: Any, scratch: Path) -> PeerResult:
    """One query: counted runs of each system, then ``runs`` rounds of timed runs."""
    result = PeerResult(query.name, query.title, query.sql)
    expected = local.sql(query.sql).to_arrow_table()
    result.rows = expected.num_rows
    live = []
    for system, worker in workers.items():
        out = scratch / f"{system}.arrow"
        s3_before, pg_before = s3_proxy.object_bytes(), pg_proxy.counts()
        answer = worker.ask({"op": "run", "sql": _peer_sql(system, query, result), "counted": True,
                             "out": str(out)}, timeout)
        pg_after = pg_proxy.counts()
        result.s3_bytes[system] = s3_proxy.object_bytes() - s3_before
        result.pg_rows[system] = pg_after["copy_rows"] - pg_before["copy_rows"]
        result.pg_other_rows[system] = pg_after["data_rows"] - pg_before["data_rows"]
        result.ms[system] = None
        if _peer_answer(result, system, answer, out, expected, query.order_keys):
            result.status[system] = "ok"
            live.append(system)
    times: dict[str, list[float]] = {s: [] for s in workers}
    local_times = []
    for _ in range(runs):
        for system in list(live):
            out = scratch / f"{system}.arrow"
            answer = workers[system].ask({"op": "run", "sql": _peer_sql(system, query, result),
                                          "out": str(out)}, timeout)
            if not _peer_answer(result, system, answer, out, expected, query.order_keys):
                live.remove(system)
                continue
            times[system].append(answer["ms"])
        local_times.append(timed(lambda: local.sql(query.sql).to_arrow_table())[0])
    result.local_ms = min(local_times) if local_times else math.inf
    for system, values in times.items():
        if values and result.status.get(system) == "ok":
            result.ms[system] = min(values)
    result.ratios = {f"fedquery/{peer}": _ratio(result.ms.get("fedquery"), result.ms.get(peer))
                     for peer in workers if peer != "fedquery"}
    result.ratios |= {f"{s}/local": _ratio(result.ms.get(s), result.local_ms) for s in workers}
    return result


def _cell(result: PeerResult, system: str) -> str:
    """A system's best time, or what happened instead."""
    if result.status.get(system) == "ok":
        return _n(result.ms.get(system), ".1f")
    return result.status.get(system, "-")


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def peer_summary(results: Sequence[PeerResult], systems: Sequence[str]) -> dict[str, Any]:
    """Geometric means of the time ratios (over the queries both systems answered right), the
    largest ratio, and per system how many queries it answered right."""
    summary: dict[str, Any] = {"answered_right": {s: sum(r.status.get(s) == "ok" for r in results)
                                                  for s in systems}}
    groups = {"tpch": [r for r in results if r.name.startswith("q") and r.name[1:].isdigit()],
              "selective": [r for r in results if not (r.name.startswith("q") and r.name[1:].isdigit())]}
    groups["all"] = list(results)
    for group, rows in groups.items():
        for key in [f"fedquery/{p}" for p in systems if p != "fedquery"] + [f"{s}/local" for s in systems]:
            values = [r.ratios.get(key) for r in rows]
            values = [v for v in values if v]
            summary[f"{group} {key}"] = {"geomean": geomean(values), "max": max(values, default=None),
                                         "queries": len(values)}
    return summary


def print_peer_results(results: Sequence[PeerResult], systems: Sequence[str]) -> dict[str, Any]:
    peers = [s for s in systems if s != "fedquery"]
    head = f"{'query':<11}{'rows':>6} {'local':>8}" + "".join(f" {s[:8]:>8}" for s in systems)
    head += "".join(f" {'fq/' + p[:6]:>9}" for p in peers if "fedquery" in systems)
    head += "".join(f" {'PGrows ' + s[:4]:>12}" for s in systems)
    head += "".join(f" {'S3 MB ' + s[:4]:>10}" for s in systems)
    print("\ntimes in ms (best of the timed runs); PG rows: rows PostgreSQL sent (COPY), at the "
          "proxy; S3 MB: object bytes S3 sent; both from one counted run on a fresh connection")
    print(head)
    for r in results:
        line = f"{r.name:<11}{r.rows:>6} {r.local_ms:>8.1f}"
        line += "".join(f" {_cell(r, s):>8}" for s in systems)
        if "fedquery" in systems:
            line += "".join(f" {_n(r.ratios.get(f'fedquery/{p}'), '.2f'):>9}" for p in peers)
        line += "".join(f" {_n(r.pg_rows.get(s)):>12}" for s in systems)
        line += "".join(f" {_mb(r.s3_bytes.get(s)):>10}" for s in systems)
        print(line)
    summary = peer_summary(results, systems)
    print()
    for key, value in summary.items():
        if key == "answered_right":
            print(f"answered right: {value} of {len(results)}")
        elif value["queries"]:
            print(f"{key}: geomean {value['geomean']:.3f}, max {value['max']:.2f} "
                  f"over {value['queries']} queries")
    for r in results:
        for system, error in r.errors.items():
            print(f"{r.name} {system} {r.status[system]}: {error[:300]}")
        for problem in r.problems:
            print(f"{r.name} PROBLEM: {problem}")
        for note in r.notes:
            print(f"{r.name} note: {note}")
    return summary


def run_peers(args: argparse.Namespace, dsn: str, endpoint: str, local: duckdb.DuckDBPyConnection,
              stack: contextlib.ExitStack) -> tuple[list[PeerResult], dict[str, Any]]:
    """The peer mode over running services; returns the results and the systems' versions."""
    import tempfile

    from pg_rows import RowCountingProxy, proxied_dsn, upstream_of

    peer_python = ensure_peer_venv() if set(args.systems) - {"fedquery"} else None
    s3_proxy = stack.enter_context(FaultProxy(endpoint))
    pg_proxy = stack.enter_context(RowCountingProxy(upstream_of(dsn)))
    counted_dsn = proxied_dsn(dsn, pg_proxy.port)
    cat = catalog(dsn, endpoint)
    counted_cat = proxied_catalog(cat, s3_proxy.url)
    counted_cat["sources"]["pg"] = {**counted_cat["sources"]["pg"], "dsn": counted_dsn}
    setup = {"timed": {"pg_dsn": dsn, "s3_endpoint": endpoint, "catalog": cat},
             "counted": {"pg_dsn": counted_dsn, "s3_endpoint": s3_proxy.url,
                         "catalog": counted_cat},
             "pg_schema": PG_SCHEMA, "pg_tables": list(PG_TABLES),
             "lake_tables": list(LAKE_TABLES), "bucket": BUCKET, "prefix": PREFIX,
             "creds": services.S3_CREDENTIALS, "ext_dir": str(PEER_EXT_DIR)}
    workers = {}
    for system in args.systems:
        python = Path(sys.executable) if system == "fedquery" else peer_python
        log = BENCH_DIR / ".data" / f"federation-peer-{system}.log"
        log.write_text("")
        workers[system] = PeerWorker(system, python, setup, log, int(args.max_rss_gb * 2**30))
        stack.callback(workers[system].close)
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedquery-peers-")))
    results = []
    for query in peer_queries(args.tpch, args.queries):
        started = time.perf_counter()
        result = bench_peer_query(query, workers, local, args.runs, args.timeout, s3_proxy,
                                  pg_proxy, scratch)
        results.append(result)
        cells = ", ".join(f"{s} {_cell(result, s)}" for s in args.systems)
        print(f"{query.name}: {cells}; local {result.local_ms:.1f} ms "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    versions = {s: w.versions for s, w in workers.items()}
    versions |= {s: {**v, "peak_rss_gib": round(workers[s].peak_rss / 2**30, 2)}
                 for s, v in versions.items()}
    return results, versions



# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs per way per query (best kept)")
    p.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument("--orders-order", choices=("date", "custkey", "key"), default="date",
                   help="sort the orders objects by o_orderdate (default) or o_custkey, or keep "
                        "their o_orderkey order")
    p.add_argument("--queries", nargs="*", choices=sorted(QUERIES), default=list(QUERIES),
                   help="the selective queries to run (none: just --queries)")
    p.add_argument("--peers", action="store_true",
                   help="peer mode: fedquery against DuckDB with its postgres and httpfs "
                        "extensions and Daft, on the 22 TPC-H queries and the selective ones")
    p.add_argument("--tpch", type=int, nargs="*", choices=sorted(ALL_QUERIES),
                   default=sorted(ALL_QUERIES), help="peer mode: the TPC-H queries to run")
    p.add_argument("--systems", nargs="+", choices=PEER_SYSTEMS, default=list(PEER_SYSTEMS),
                   help="peer mode: the systems to run")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="peer mode: seconds a run may take before its worker is killed")
    p.add_argument("--max-rss-gb", type=float, default=8.0,
                   help="peer mode: resident memory past which a worker is killed")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup: dict[str, float] = {}
    started = time.perf_counter()
    setup["tpch_generate_s"] = ensure_data(args.sf)
    setup["lake_layout_s"] = ensure_layout(args.sf, args.orders_order)
    warehouse, layout = data_dir(args.sf) / "warehouse.duckdb", layout_dir(args.sf, args.orders_order)
    fq = None if args.peers else import_fedquery()
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        dsn = stack.enter_context(services.postgres())
        endpoint = stack.enter_context(services.s3())
        setup["services_start_s"] = time.perf_counter() - t0
        fs = s3_filesystem(endpoint)
        t0 = time.perf_counter()
        uploaded = upload_lake(fs, layout)
        setup["s3_upload_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pg_counts = load_postgres(dsn, warehouse)
        setup["pg_load_s"] = time.perf_counter() - t0
        round_trip = check_postgres_round_trip(dsn, warehouse)
        setup["setup_total_s"] = time.perf_counter() - started
        print(f"data: {layout} (orders by {args.orders_order}); {uploaded:,} bytes on "
              f"s3://{BUCKET}/{PREFIX}/; PostgreSQL rows {pg_counts}")
        print("setup seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in setup.items()))
        for problem in round_trip:
            print(f"PROBLEM (PostgreSQL round trip): {problem}")
        local = local_connection(warehouse, layout)
        stack.callback(local.close)
        if args.peers:
            results, versions = run_peers(args, dsn, endpoint, local, stack)
            return report_peers(args, results, versions, setup, uploaded, round_trip)
        import adbc_driver_postgresql.dbapi as adbc

        pg_conn = stack.enter_context(adbc.connect(dsn, autocommit=True))
        cat = catalog(dsn, endpoint)
        explain_out: list[str] = []
        proxy = stack.enter_context(FaultProxy(endpoint))
        results = [bench_query(QUERIES[name], fq, cat, local, pg_conn, fs, args.runs, explain_out,
                               proxy) for name in args.queries]
        EXPLAIN_FILE.write_text("\n".join(explain_out))
    print(f"\nruns per way: {args.runs} (best kept); duckdb {duckdb.__version__}, pyarrow "
          f"{pa.__version__}; explain texts: {EXPLAIN_FILE}")
    for r in results:
        print_query(r)
    if args.json:
        doc = {"sf": args.sf, "runs": args.runs, "orders_order": args.orders_order,
               "row_group_rows": ROW_GROUP_ROWS, "setup_seconds": setup, "uploaded_bytes": uploaded,
               "pg_round_trip_problems": round_trip, "explain_file": str(EXPLAIN_FILE),
               "duckdb": duckdb.__version__, "pyarrow": pa.__version__,
               "queries": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


def report_peers(args: argparse.Namespace, results: Sequence[PeerResult],
                 versions: dict[str, Any], setup: dict[str, float], uploaded: int,
                 round_trip: list[str]) -> int:
    """Print the peer mode's table and summary; write ``--json``."""
    print(f"\nruns per system: {args.runs} (best kept); sf {args.sf:g}; versions {versions}")
    summary = print_peer_results(results, args.systems)
    if args.json:
        doc = {"mode": "peers", "sf": args.sf, "runs": args.runs, "orders_order": args.orders_order,
               "systems": args.systems, "timeout_s": args.timeout, "max_rss_gb": args.max_rss_gb,
               "setup_seconds": setup, "uploaded_bytes": uploaded,
               "pg_round_trip_problems": round_trip, "versions": versions, "summary": summary,
               "queries": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
