"""An S3 lake end to end: the shop's Parquet lake in a bucket of an S3 server on 127.0.0.1.

Answers equal DuckDB's over the same files read locally; a selective query reads a small part
of a file's bytes; a partition filter reads no other partition; each query lists the files
anew; failures (no bucket, access denied, unreachable endpoint, transient errors) are handled in
words; the secret from ``${VAR}`` never shows.
"""

from __future__ import annotations

import re
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery
import fedquery.connectors._s3_lake as s3_lake
from tests.conftest import unseen_catalog
from tests.services.launch import free_port
from tests.services.s3 import FlakyProxy, s3_client, upload_tree
from tests.services.s3_faults import FaultProxy

SECRET = "s3-Secret-0f9a7c!"


def lake_options(endpoint: str, **extra) -> dict:
    return {"endpoint_url": endpoint, "key": "${AWS_ACCESS_KEY_ID}",
            "secret": "${AWS_SECRET_ACCESS_KEY}", **extra}


def one_table(root: str, options: dict, path: str = "t/", **table) -> dict:
    return {"sources": {"lake": {"kind": "parquet", "root": root, "options": options}},
            "tables": {"t": {"source": "lake", "path": path, **table}}}


def rows(table: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


def source_error(catalog: dict, sql: str = "SELECT * FROM t") -> fedquery.SourceError:
    """The SourceError a query over a fresh connection raises."""
    with fedquery.connect(catalog) as con, pytest.raises(fedquery.SourceError) as info:
        con.sql(sql).fetchall()
    return info.value


def connector(con: fedquery.Connection):
    return con._session.connectors["lake"]


# ------------------------------------------------------------------ the shop lake on S3


@pytest.fixture(scope="module")
def s3_shop(unseen, unseen_root: Path, s3_endpoint: str, s3_credentials: dict):
    """The shop catalog with its lake in ``s3://shop/lake/``; the local DuckDB reference."""
    upload_tree(unseen_root / "lake", "shop", "lake", endpoint=s3_endpoint)
    catalog = unseen_catalog(unseen_root)
    catalog["sources"]["lake"] = {"kind": "parquet", "root": "s3://shop/lake/",
                                  "options": lake_options(s3_endpoint)}
    with fedquery.connect(catalog) as con:
        yield con, unseen[1]


QUERIES = {
    "group_by_partition": "SELECT region, count(*) AS n, sum(qty) AS units FROM orders GROUP BY region",
    "partition_filter": "SELECT order_id, qty, note FROM orders WHERE region = 'north' AND qty > 5",
    "partition_in_list": "SELECT region, count(*) FROM orders WHERE region IN ('east', 'west') GROUP BY 1",
    "in_list_and_between": """
        SELECT order_id, customer_id FROM orders
        WHERE order_id IN (7, 70, 700, 3999) OR ordered_at BETWEEN TIMESTAMP '2024-03-01'
                                                               AND TIMESTAMP '2024-03-02'""",
    "glob_table": "SELECT reason, count(*) FROM returns GROUP BY reason",
    "join_warehouse": """
        SELECT c.country, count(*) AS n, sum(o.qty) AS units
        FROM orders o JOIN clients c ON o.customer_id = c.customer_id
        WHERE c.segment = 'corporate' AND o.region = 'east' GROUP BY c.country""",
    "join_lake_tables": """
        SELECT r.reason, o.region, count(*) AS n
        FROM returns r JOIN orders o USING (order_id) GROUP BY ALL""",
    "join_three": """
        SELECT p.category, count(*) AS n FROM orders o
        JOIN products p ON p.product_id = o.product_id
        JOIN clients c ON c.customer_id = o.customer_id
        WHERE c.country = 'DE' AND o.qty >= 8 GROUP BY ALL""",
    "anti_join": """
        SELECT count(*) FROM orders o
        WHERE NOT EXISTS (SELECT 1 FROM returns r WHERE r.order_id = o.order_id)""",
    "top_n": "SELECT order_id, ordered_at FROM orders ORDER BY ordered_at DESC, order_id LIMIT 5",
}


@pytest.mark.parametrize("sql", QUERIES.values(), ids=QUERIES.keys())
def test_answers_equal_duckdb_on_local_files(s3_shop, sql: str) -> None:
    con, ref = s3_shop
    got, want = con.sql(sql).arrow(), ref.sql(sql).to_arrow_table()
    assert got.schema.names == want.schema.names
    assert got.schema.types == want.schema.types
    assert rows(got) == rows(want)


def test_first_queries_from_eight_threads_on_a_new_connection(s3_shop, unseen_root: Path,
                                                              s3_faults: FaultProxy) -> None:
    """Nothing is listed at connect: the first queries, from eight threads at once, list the
    lake tables they read and all answer as DuckDB does."""
    from concurrent.futures import ThreadPoolExecutor

    _, ref = s3_shop
    catalog = unseen_catalog(unseen_root)
    catalog["sources"]["lake"] = {"kind": "parquet", "root": "s3://shop/lake/",
                                  "options": lake_options(s3_faults.url)}
    names = list(QUERIES)
    with fedquery.connect(catalog) as fresh:
        assert s3_faults.log == []
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: fresh.sql(QUERIES[n]).arrow(), names * 2))
    for name, got in zip(names * 2, answers, strict=True):
        assert rows(got) == rows(ref.sql(QUERIES[name]).to_arrow_table()), name


def test_parameters_reach_the_lake(s3_shop) -> None:
    con, ref = s3_shop
    sql = "SELECT order_id FROM orders WHERE region = $region AND qty >= $qty"
    params = {"region": "south", "qty": 9}
    assert rows(con.sql(sql, params).arrow()) == rows(ref.sql(sql, params=params).to_arrow_table())


def test_explain_names_the_bucket_not_the_keys(s3_shop, s3_endpoint: str, s3_credentials: dict) -> None:
    con, _ = s3_shop
    text = con.explain("SELECT order_id FROM orders WHERE region = 'east'")
    assert "files=s3://shop/lake/orders/" in text and f"endpoint={s3_endpoint}" in text
    assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in text
    assert s3_credentials["AWS_ACCESS_KEY_ID"] not in text


def parquet_scan(con: fedquery.Connection, sql: str) -> str:
    """DuckDB's physical plan for a query over the bound lake views: its Parquet scan's block."""
    cursor = con._session.cursor(["lake.main.orders"])
    try:
        plan = cursor.sql(f"EXPLAIN {sql}").fetchall()[0][1]
    finally:
        con._session.finished(cursor)
        cursor.close()
    return plan[plan.index("READ_PARQUET"):]


def test_projection_and_filters_reach_duckdbs_parquet_reader(s3_shop) -> None:
    """DuckDB's own Parquet reader gets the columns and the filters: IN lists and BETWEEN too."""
    con, _ = s3_shop
    plan = parquet_scan(con, """SELECT order_id FROM lake.main.orders
        WHERE region = 'east' AND order_id IN (5, 10, 20) AND qty BETWEEN 2 AND 4""")
    assert re.search(r"order_id IN \(5, 10, 20\)", plan)
    assert "region = 'east'" in plan
    assert re.search(r"\(qty >= 2\) AND\s*(│\s*)?\(qty <= 4\)", plan)
    assert re.search(r"Projections: order_id\s", plan)


# ------------------------------------------------------------------ bytes read


@pytest.fixture(scope="module")
def wide_lake(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, s3_credentials: dict):
    """One file of 10 columns sorted by ``k`` (row groups of 20k rows), and hive partitions."""
    local = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(3)
    n = 200_000
    columns = {"k": np.arange(n, dtype=np.int64)}
    columns.update({f"f{i}": rng.standard_normal(n) for i in range(1, 8)})
    columns.update({f"s{i}": [f"{x:016x}" for x in rng.integers(0, 1 << 62, n)] for i in (8, 9)})
    (local / "wide").mkdir()
    pq.write_table(pa.table(columns), local / "wide" / "data.parquet", row_group_size=20_000)
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        (local / "parts" / f"day={day}").mkdir(parents=True)
        part = pa.table({k: v[:50_000] for k, v in columns.items()})
        pq.write_table(part, local / "parts" / f"day={day}" / "part-0.parquet", row_group_size=10_000)
    upload_tree(local, "wide", "", endpoint=s3_endpoint)
    catalog = {"sources": {"lake": {"kind": "parquet", "root": "s3://wide/",
                                    "options": lake_options(s3_endpoint)}},
               "tables": {"wide": {"source": "lake", "path": "wide/data.parquet"},
                          "parts": {"source": "lake", "path": "parts/", "partitioning": "hive"}}}
    with fedquery.connect(catalog) as con:
        yield con, (local / "wide" / "data.parquet").stat().st_size


def bytes_for(con: fedquery.Connection, sql: str) -> int:
    before = connector(con).bytes_read()
    con.sql(sql).fetchall()
    return connector(con).bytes_read() - before


def test_selective_query_reads_a_small_part_of_the_file(wide_lake) -> None:
    con, size = wide_lake
    read = bytes_for(con, "SELECT f3 FROM wide WHERE k BETWEEN 41000 AND 41500")
    assert 0 < read < 0.1 * size


def test_in_list_prunes_row_groups(wide_lake) -> None:
    con, size = wide_lake
    read = bytes_for(con, "SELECT f3 FROM wide WHERE k IN (41000, 41001, 41002)")
    assert 0 < read < 0.1 * size


def test_projection_reads_only_its_columns(wide_lake) -> None:
    """Two columns of ten, every row: the other eight columns' bytes are never fetched."""
    con, size = wide_lake
    read = bytes_for(con, "SELECT sum(f1), max(f2) FROM wide")
    assert 0 < read < 0.5 * size


def test_full_scan_reads_the_file_once(wide_lake) -> None:
    con, size = wide_lake
    read = bytes_for(con, "SELECT * FROM wide")
    assert 0.9 * size < read <= size


def test_footers_are_read_once_per_file(wide_lake) -> None:
    """A file's footer is kept while it is unchanged: a query that statistics rule out entirely
    reads nothing the second time."""
    con, _ = wide_lake
    sql = "SELECT count(*) FROM wide WHERE k > 1000000"
    bytes_for(con, sql)
    assert bytes_for(con, sql) == 0


@pytest.mark.parametrize("sql", [
    "SELECT f3 FROM wide WHERE k BETWEEN 41000 AND 41500",
    "SELECT f3 FROM wide WHERE k IN (41000, 41001, 41002)",
    "SELECT sum(f1), max(f2) FROM wide",
    "SELECT s8 FROM wide WHERE f1 > 3",
    "SELECT * FROM wide",
    "SELECT count(*) FROM wide WHERE k > 1000000",
    "SELECT count(*), sum(f1) FROM parts WHERE day = DATE '2024-01-02'",
    "SELECT * FROM parts WHERE k < 100",
])
def test_bytes_read_are_the_bytes_fetched(wide_lake, s3_faults: FaultProxy, sql: str) -> None:
    """The lake's count, computed from the Parquet metadata (footers when first read, then
    the column chunks of the kept row groups), equals the object bytes S3 sent: counted at a
    proxy, on a fresh connection (footers included) and again (footers kept)."""
    catalog = {"sources": {"lake": {"kind": "parquet", "root": "s3://wide/",
                                    "options": lake_options(s3_faults.url)}},
               "tables": {"wide": {"source": "lake", "path": "wide/data.parquet"},
                          "parts": {"source": "lake", "path": "parts/", "partitioning": "hive"}}}
    with fedquery.connect(catalog) as con:
        for _ in range(2):
            before, fetched = connector(con).bytes_read(), s3_faults.object_bytes()
            con.sql(sql).fetchall()
            assert connector(con).bytes_read() - before == s3_faults.object_bytes() - fetched


def test_partition_filter_reads_no_other_partition(wide_lake) -> None:
    con, _ = wide_lake
    con.schema("parts")  # listed for its columns: the first file's footer is read once
    stats = connector(con).read_stats
    before = stats.snapshot()
    got = con.sql("SELECT count(*), sum(f1) FROM parts WHERE day = DATE '2024-01-02'").fetchall()
    assert got[0][0] == 50_000
    after = stats.snapshot()
    touched = {path for path, n in after.items() if n > before.get(path, 0)}
    assert touched == {"wide/parts/day=2024-01-02/part-0.parquet"}


def test_partition_column_types_follow_duckdb(wide_lake) -> None:
    """Hive keys are typed as DuckDB's read_parquet types them: here a DATE."""
    con, _ = wide_lake
    assert con.schema("parts").field("day").type == pa.date32()


# ------------------------------------------------------------------ listings


@pytest.fixture()
def bucket(request: pytest.FixtureRequest, s3_endpoint: str, s3_credentials: dict) -> str:
    """An empty bucket of its own for one test (and each of its parameters)."""
    unique = zlib.crc32(request.node.nodeid.encode())
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{unique}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def put_parquet(endpoint: str, bucket: str, key: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())


def test_a_new_file_is_seen_by_the_next_query(bucket: str, s3_endpoint: str) -> None:
    put_parquet(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": [1, 2]}))
    with fedquery.connect(one_table(f"s3://{bucket}/", lake_options(s3_endpoint))) as con:
        sql = "SELECT count(*), sum(x) FROM t"
        assert con.sql(sql).fetchall() == [(2, 3)]
        put_parquet(s3_endpoint, bucket, "t/b.parquet", pa.table({"x": [10]}))
        assert con.sql(sql).fetchall() == [(3, 13)]  # the same (cached) plan lists anew


@pytest.mark.parametrize("settled", [False, True], ids=["young", "settled"])
def test_listing_once_per_query_not_per_file(bucket: str, s3_endpoint: str, s3_faults: FaultProxy,
                                             monkeypatch: pytest.MonkeyPatch, settled: bool) -> None:
    """A query over many files lists them once and checks them unchanged afterwards (a second
    listing for settled objects, a HEAD before and after for objects written in the last 15
    minutes); files no larger than the tail kept with their footers (64 KiB) are served from
    it: the second query sends no GET of an object at all."""
    for i in range(12):
        put_parquet(s3_endpoint, bucket, f"t/part-{i:02}.parquet", pa.table({"x": [i]}))
    if settled:
        monkeypatch.setattr(s3_lake, "SETTLED_AFTER", 1.0)
        time.sleep(2.1)
    with fedquery.connect(one_table(f"s3://{bucket}/", lake_options(s3_faults.url))) as con:
        assert con.sql("SELECT sum(x) FROM t").fetchall() == [(66,)]
        s3_faults.wait_idle()
        first = [r for r in s3_faults.log if r.method == "GET" and not r.is_listing]
        s3_faults.reset_counts()
        assert con.sql("SELECT sum(x) FROM t").fetchall() == [(66,)]
        s3_faults.wait_idle()
    assert len(first) == 12 and {r.path for r in first} == {f"/{bucket}/t/part-{i:02}.parquet"
                                                             for i in range(12)}
    log = s3_faults.log
    listings = [r for r in log if r.is_listing]
    reads = [r for r in log if r.method == "GET" and not r.is_listing]
    heads = [r for r in log if r.method == "HEAD"]
    assert reads == []
    assert (len(listings), len(heads)) == ((2, 0) if settled else (1, 24))


def test_files_deleted_after_connect_fail_the_query_in_words(bucket: str, s3_endpoint: str) -> None:
    put_parquet(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": [1]}))
    with fedquery.connect(one_table(f"s3://{bucket}/", lake_options(s3_endpoint))) as con:
        s3_client(s3_endpoint).delete_object(Bucket=bucket, Key="t/a.parquet")
        with pytest.raises(fedquery.SourceError) as info:
            con.sql("SELECT sum(x) FROM t").fetchall()
        assert info.value.source == "lake"
        assert f"no Parquet files match s3://{bucket}/t/" in str(info.value)


# ------------------------------------------------------------------ partition folders that change

# (partitioning, files at connect, the change: +key adds a file, -key deletes one, what it says)
DRIFTS = {
    "value_of_another_type": ("hive", ["k=1/a", "k=2/b"], "+k=abc/c",
                              "partition column 'k' was BIGINT when the connection first listed "
                              "the table, but the folder s3://{bucket}/t/k=abc/ makes it VARCHAR"),
    "values_all_integers_now": (None, ["k=1/a", "k=abc/b"], "-k=abc/b",
                                "partition column 'k' was VARCHAR when the connection first "
                                "listed the table, but the values of its folders now make it BIGINT"),
    "file_outside_the_folders": (None, ["k=1/a", "k=2/b"], "+top",
                                 "s3://{bucket}/t/top.parquet is not under folders of the table's "
                                 "partition keys (k) as its other files are"),
    "another_key": (None, ["k=1/a", "k=2/b"], "+j=1/c",
                    "s3://{bucket}/t/j=1/c.parquet is not under folders of the table's "
                    "partition keys (k)"),
    "another_key_declared_hive": ("hive", ["k=1/a", "k=2/b"], "+j=1/c",
                                  "hive partitions do not match: s3://{bucket}/t/k=1/a.parquet "
                                  "has no folder for the partition key 'j', which "
                                  "s3://{bucket}/t/j=1/c.parquet has"),
}


def duckdb_answer(folder: Path, mode: str | None, sql: str):
    """DuckDB's own read_parquet over a local copy: the Arrow table, or the error it raises."""
    import duckdb

    hive = {"hive": ", hive_partitioning = true"}.get(mode or "", "")
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{folder}/**/*.parquet'{hive})")
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        return exc


@pytest.mark.parametrize("drift", DRIFTS)
def test_partition_folders_that_would_change_the_table_fail_in_words(
        bucket: str, s3_endpoint: str, tmp_path: Path, drift: str) -> None:
    """A folder added or removed after the connection first listed the table would give it
    other partition columns (DuckDB types keys from every folder): the query fails saying
    which column or file, and a new connection reads the files as DuckDB does now."""
    mode, files, change, message = DRIFTS[drift]

    def write(name: str, x: int) -> None:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"x": [x]}), tmp_path / f"{name}.parquet")
        put_parquet(s3_endpoint, bucket, f"t/{name}.parquet", pa.table({"x": [x]}))

    for i, name in enumerate(files):
        write(name, i)
    catalog = one_table(f"s3://{bucket}/", lake_options(s3_endpoint),
                        **({"partitioning": mode} if mode else {}))
    sql = "SELECT * FROM t ORDER BY x"
    with fedquery.connect(catalog) as con:
        assert con.sql(sql).arrow() == duckdb_answer(tmp_path, mode, sql)
        if change.startswith("+"):
            write(change[1:], 9)
        else:
            (tmp_path / f"{change[1:]}.parquet").unlink()
            s3_client(s3_endpoint).delete_object(Bucket=bucket, Key=f"t/{change[1:]}.parquet")
        for run in (lambda: con.sql(sql).fetchall(), lambda: con.explain(sql, analyze=True)):
            with pytest.raises(fedquery.SourceError) as info:
                run()
            assert info.value.source == "lake"
            assert f"table 't': {message.format(bucket=bucket)}" in str(info.value)
    if "declared_hive" not in drift:
        assert "reconnect to read the table's new schema" in str(info.value)
    want = duckdb_answer(tmp_path, mode, sql)
    with fedquery.connect(catalog) as fresh:
        if isinstance(want, Exception):  # DuckDB refuses these files: so does fedquery
            with pytest.raises(fedquery.SourceError, match="hive partitions do not match"):
                fresh.sql(sql).fetchall()
        else:
            got = fresh.sql(sql).arrow()
            assert got.schema == want.schema and got == want


def test_partition_keys_are_typed_and_ordered_as_duckdb_does(bucket: str, s3_endpoint: str,
                                                             tmp_path: Path) -> None:
    """Keys in name order; 007 and an impossible date stay text, a folder of a key given
    twice and a folder that is not a key are read as DuckDB reads them."""
    files = ["z=007/d=2024-02-30/n=-05/a", "z=1/d=2024-01-01/n=9223372036854775807/b",
             "z=2/d=2024-01-02/n=0/other/c"]
    for i, name in enumerate(files):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"x": [i]}), tmp_path / f"{name}.parquet")
        put_parquet(s3_endpoint, bucket, f"t/{name}.parquet", pa.table({"x": [i]}))
    sql = "SELECT * FROM t ORDER BY x"
    with fedquery.connect(one_table(f"s3://{bucket}/", lake_options(s3_endpoint))) as con:
        got, want = con.sql(sql).arrow(), duckdb_answer(tmp_path, None, sql)
    assert got.schema.names == ["x", "d", "n", "z"]
    assert got.schema == want.schema and got == want


# ------------------------------------------------------------------ failures


def test_no_such_bucket(s3_endpoint: str, s3_credentials: dict) -> None:
    error = source_error(one_table("s3://no-such-bucket/lake/", lake_options(s3_endpoint)))
    assert error.source == "lake"
    assert "bucket 'no-such-bucket' does not exist" in str(error)


def test_no_files_under_the_path(bucket: str, s3_endpoint: str) -> None:
    with fedquery.connect(one_table(f"s3://{bucket}/", lake_options(s3_endpoint))) as con:
        with pytest.raises(fedquery.SourceError, match=rf"table 't'.*no Parquet files match s3://{bucket}/t/"):
            con.sql("SELECT * FROM t")
        assert con.sql("SELECT 1 AS one").fetchall() == [(1,)]


def test_access_denied(s3_strict_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FQ_S3_SECRET", SECRET)
    options = {"endpoint_url": s3_strict_endpoint, "key": "AKIAUNKNOWN", "secret": "${FQ_S3_SECRET}"}
    error = source_error(one_table("s3://private/", options))
    assert error.source == "lake" and "access denied" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_unreachable_endpoint_fails_after_retries(s3_credentials: dict) -> None:
    """Nothing listens: a SourceError naming the endpoint once the retries are spent.

    The time bound only checks that retries are bounded (no hang), not how fast they are.
    """
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    error = source_error(one_table("s3://lake/", lake_options(endpoint, max_attempts=3)))
    assert time.monotonic() - started < 60
    assert error.source == "lake"
    assert f"cannot reach the S3 endpoint {endpoint}" in str(error)
    assert "after 3 attempts" in str(error)


def test_transient_errors_are_retried(bucket: str, s3_endpoint: str) -> None:
    """503 Slow Down on a listing and on data reads: retried with backoff, the answer is whole."""
    put_parquet(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": list(range(100))}))
    proxy = FlakyProxy(s3_endpoint, failures=2)
    try:
        with fedquery.connect(one_table(f"s3://{bucket}/", lake_options(proxy.url))) as con:
            assert proxy.injected == 0  # connect sends nothing
            sql = "SELECT sum(x) FROM t"
            assert con.sql(sql).fetchall() == [(4950,)]
            assert proxy.injected == 2  # the first listing failed twice, then went through
            proxy.fail_next(3, only="/t/a.parquet")  # the file's open and reads, not the listing
            assert con.sql(sql).fetchall() == [(4950,)]
            assert proxy.injected == 5
    finally:
        proxy.close()


def test_persistent_errors_give_up(bucket: str, s3_endpoint: str) -> None:
    """Two attempts per request, no more: the listing at the first query, then again at the
    next."""
    put_parquet(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": [1]}))
    proxy = FlakyProxy(s3_endpoint, failures=1000)
    try:
        options = lake_options(proxy.url, max_attempts=2)
        with fedquery.connect(one_table(f"s3://{bucket}/", options)) as con:
            assert proxy.injected == 0
            for tries in (1, 2):
                with pytest.raises(fedquery.SourceError) as info:
                    con.sql("SELECT * FROM t").fetchall()
                assert proxy.injected == 2 * tries
        assert info.value.source == "lake"
        assert "kept failing with a transient error (gave up after 2 attempts" in str(info.value)
    finally:
        proxy.close()


def test_unknown_option_is_named(s3_endpoint: str) -> None:
    """A catalog mistake: the key path, what was expected, and the likely intended key."""
    with pytest.raises(fedquery.CatalogError,
                       match=r"sources\.lake\.options\.secret_key: unknown S3 option.*"
                             r"did you mean 'secret'"):
        fedquery.connect(one_table("s3://x/", {"endpoint_url": s3_endpoint, "secret_key": "k"}))


def test_key_without_secret_is_a_catalog_error(s3_endpoint: str) -> None:
    with pytest.raises(fedquery.CatalogError, match=r"sources\.lake\.options: give both key"):
        fedquery.connect(one_table("s3://x/", {"endpoint_url": s3_endpoint, "key": "k"}))


# ------------------------------------------------------------------ secrets


def test_secret_never_shows(bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                            tmp_path: Path) -> None:
    """The secret from ${VAR} is in no repr, explain, describe or error, whatever fails."""
    monkeypatch.setenv("FQ_S3_SECRET", SECRET)
    put_parquet(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": [1]}))
    options = {"endpoint_url": s3_endpoint, "key": "fedquery-test-key", "secret": "${FQ_S3_SECRET}"}
    catalog = one_table(f"s3://{bucket}/", options)
    catalog["tables"]["gone"] = {"source": "lake", "path": "gone/"}
    shown = []
    with fedquery.connect(catalog) as con:
        assert con.catalog.sources["lake"].settings["options"]["secret"] == SECRET  # it was read
        assert con.sql("SELECT x FROM t").fetchall() == [(1,)]
        shown += [repr(con), repr(con.catalog), repr(con.catalog.sources), repr(connector(con).__dict__)]
        shown.append(con.explain("SELECT x FROM t WHERE x > 0"))
        shown.append(repr(connector(con).describe(con._planner.index.lookup("t").ref)))
        with pytest.raises(fedquery.SourceError) as info:
            con.sql("SELECT * FROM gone")
        shown += [str(info.value), repr(info.value)]
        with pytest.raises(fedquery.PlanError) as plan_error:
            con.sql(f"SELECT CAST('{SECRET}' AS INTEGER) FROM t").fetchall()
        shown.append(str(plan_error.value))
    for text in shown:
        assert SECRET not in text
