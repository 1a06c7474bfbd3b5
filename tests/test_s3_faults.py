"""Faults between fedquery and an S3 lake: a right answer, or a SourceError in time, never a hang.

The shop's lake sits in a bucket behind ``tests/services/s3_faults.FaultProxy``, its warehouse
in DuckDB beside it. Federated queries (filtered scans, joins with the warehouse, dynamic
filters, aggregates) run under 503 storms, stalls, resets, cut bodies, objects replaced (also
with the same size in the same second), and an outage during ``connect``. Every answer must
equal DuckDB's over local copies of the files, or the query must fail with a ``SourceError``
naming the lake. Each query runs in a worker thread joined with a deadline derived from the
catalog's timeouts: a hang fails the test with every thread's stack, and a watchdog below
Python (``faulthandler``) ends a frozen process with the stacks, which no thread could report.
"""

from __future__ import annotations

import faulthandler
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import fedquery
import fedquery.connectors._s3_lake as s3_lake
from fedquery.connectors._lake_deadline import SPARE_IO
from tests.conftest import unseen_catalog
from tests.services.s3 import s3_client, upload_tree
from tests.services.s3_faults import FaultProxy

BUCKET = "shop-faults"
# Small timeouts keep the suite short; a query's deadline follows from them (``deadline``).
FAST = {"max_attempts": 6, "connect_timeout": 1, "request_timeout": 1}
TRICKLE = {"chunk": 8, "pause": 0.2}  # 40 bytes/s, never silent: a 12 KB object takes 5 minutes

QUERIES = {
    "scan_filter": "SELECT order_id, qty, note FROM orders WHERE region = 'north' AND qty > 5",
    "aggregate": "SELECT region, count(*) AS n, sum(qty) AS units FROM orders GROUP BY region",
    "join_warehouse": """
        SELECT c.country, count(*) AS n, sum(o.qty) AS units
        FROM orders o JOIN clients c ON o.customer_id = c.customer_id
        WHERE c.segment = 'corporate' AND o.region = 'east' GROUP BY c.country""",
    "dynamic_filter": """
        SELECT o.order_id, o.qty, c.name FROM orders o JOIN clients c ON o.customer_id = c.customer_id
        WHERE c.country = 'JP' AND c.segment = 'home_office'""",
    "lake_join": """
        SELECT r.reason, o.region, count(*) AS n
        FROM returns r JOIN orders o USING (order_id) GROUP BY ALL""",
}


def options(endpoint: str, **extra) -> dict:
    return {"endpoint_url": endpoint, "key": "${AWS_ACCESS_KEY_ID}",
            "secret": "${AWS_SECRET_ACCESS_KEY}", **FAST, **extra}


def deadline(opts: dict, *, stalls: bool = False, phases: int = 6) -> float:
    """Seconds a query may take before it counts as hung: every request of each sequential
    phase (listing, HEADs, footers, data, checks) spending all its attempts, plus the backoff
    between them (AWS's default strategy: 25 ms * 2^n), plus room for a slow machine. A
    stalled attempt ends after connect_timeout, or request_timeout plus the ~6 s over which
    curl averages the speed of a response that stopped mid-body."""
    attempts = opts["max_attempts"]
    backoff = sum(0.025 * 2 ** n for n in range(1, attempts))
    attempt = opts["connect_timeout"] + opts["request_timeout"] + 6 if stalls else 1.0
    return phases * (attempts * attempt + backoff) + 30


_STACKS: dict = {"file": sys.stderr}


@pytest.fixture(autouse=True)
def _stacks_reach_the_terminal(request: pytest.FixtureRequest) -> None:
    """The watchdog writes to pytest's copy of the real stderr: output capture would swallow
    what a process that ends in the middle of a test wrote."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        _STACKS["file"] = request.config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):  # pytest without its faulthandler plugin
        _STACKS["file"] = sys.stderr


class Background:
    """``work()`` in a worker thread; ``result(seconds)`` joins it with a deadline, and a hang
    fails the test with every thread's stack."""

    def __init__(self, work) -> None:
        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                        name="query-under-faults")
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self._outcome["value"] = work()
        except BaseException as exc:  # handed back to the test thread
            self._outcome["error"] = exc

    def result(self, seconds: float):
        # a frozen process: no Python thread could report it, so a C watchdog ends it
        faulthandler.dump_traceback_later(seconds + 60, exit=True, file=_STACKS["file"])
        try:
            self._thread.join(seconds)
        finally:
            faulthandler.cancel_dump_traceback_later()
        if self._thread.is_alive():
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"the query was still running after {seconds:.0f} s (every stack above)")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


def bounded(work, seconds: float):
    """``work()`` run in a worker thread, joined with a deadline (``Background``)."""
    return Background(work).result(seconds)


def rows(table: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


def right_or_source_error(con: fedquery.Connection, ref, sql: str, opts: dict, *,
                          stalls: bool = False) -> bool:
    """True for an answer equal to DuckDB's, False for a SourceError naming the lake; anything
    else (a wrong answer, another error, a hang) fails the test."""
    try:
        got = bounded(lambda: con.sql(sql).arrow(), deadline(opts, stalls=stalls))
    except fedquery.SourceError as exc:
        assert exc.source == "lake", exc
        assert "s3://" in str(exc) or "S3" in str(exc), exc
        return False
    assert rows(got) == rows(ref.sql(sql).to_arrow_table())
    return True


# ------------------------------------------------------------------ the shop behind the proxy


@pytest.fixture(scope="module")
def shop_bucket(unseen_root: Path, s3_endpoint: str, s3_credentials: dict) -> str:
    upload_tree(unseen_root / "lake", BUCKET, "lake", endpoint=s3_endpoint)
    return BUCKET


@pytest.fixture()
def shop(unseen, unseen_root: Path, shop_bucket: str, s3_faults: FaultProxy):
    """(catalog through the proxy, DuckDB reference, proxy): lake on S3, warehouse in DuckDB."""
    catalog = unseen_catalog(unseen_root)
    del catalog["sources"]["vec"], catalog["tables"]["product_vectors"]
    catalog["sources"]["lake"] = {"kind": "parquet", "root": f"s3://{shop_bucket}/lake/",
                                  "options": options(s3_faults.url)}
    return catalog, unseen[1], s3_faults


def with_options(catalog: dict, **extra) -> dict:
    lake = catalog["sources"]["lake"]
    return {**catalog, "sources": {**catalog["sources"],
                                   "lake": {**lake, "options": {**lake["options"], **extra}}}}


def test_lake_reads_are_duckdbs_over_pyarrows_native_s3(shop) -> None:
    """DuckDB's own Parquet reader reads the lake (a view over ``read_parquet``); the bytes it
    asks for come from pyarrow's native S3 filesystem, whose C++ threads never call back into
    Python (a Python filesystem under pyarrow's threads froze the process under 503s)."""
    catalog, _, _ = shop
    with fedquery.connect(catalog) as con:
        lake = con._session.connectors["lake"]
        view = next(iter(lake.relations(["orders"]).values()))
        try:
            assert view.sql.startswith("SELECT * FROM read_parquet(")
            assert type(lake._remote.filesystem) is pafs.S3FileSystem
        finally:
            view.release()


def test_dynamic_filter_reaches_the_lake(shop) -> None:
    """The dynamic-filter query does push the warehouse's keys into the lake scan."""
    catalog, _, _ = shop
    with fedquery.connect(catalog) as con:
        text = con.explain(QUERIES["dynamic_filter"], analyze=True)
    assert "customer_id IN (" in text


@pytest.mark.parametrize("methods", [("GET", "HEAD"), None], ids=["reads", "everything"])
def test_half_the_requests_answered_503(shop, methods) -> None:
    """A 503 storm on half the requests: retried with backoff; every answer right or a
    SourceError, several queries in a row on one connection (this froze the process before)."""
    catalog, ref, proxy = shop
    catalog = with_options(catalog, max_attempts=10)
    right = 0
    with fedquery.connect(catalog) as con:
        proxy.inject("503", rate=0.5, methods=methods)
        for _ in range(2 if methods else 1):
            for sql in QUERIES.values():
                right += right_or_source_error(con, ref, sql, FAST | {"max_attempts": 10})
    assert proxy.injected["503"] > 20
    assert right >= 3  # retries get through: P(a query fails) is about 5% here


def test_everything_answered_503_for_a_while(shop) -> None:
    """S3 answers nothing but 503 for a second: the retries' backoff outlasts it, the answer
    is whole."""
    catalog, ref, proxy = shop
    opts = FAST | {"max_attempts": 9}  # retries over 6.4 s
    with fedquery.connect(with_options(catalog, **opts)) as con:
        proxy.inject("503")
        threading.Timer(1.0, proxy.clear).start()
        assert right_or_source_error(con, ref, QUERIES["join_warehouse"], opts)
    assert proxy.injected["503"] > 0


def test_503_that_persists_names_the_source_and_object(shop) -> None:
    catalog, _, proxy = shop
    sql = "SELECT sum(qty) FROM orders WHERE region = 'east'"
    failed = f"table 'orders': cannot read s3://{BUCKET}/lake/orders/region=east/part-0.parquet: "
    with fedquery.connect(catalog) as con:
        proxy.inject("503", methods=("GET",), match=r"region=east/part-0\.parquet$")
        for run in (lambda: con.sql(sql).fetchall(), lambda: con.explain(sql, analyze=True)):
            with pytest.raises(fedquery.SourceError) as info:
                bounded(run, deadline(FAST))
            assert info.value.source == "lake"
            assert failed in str(info.value)
            assert "kept failing with a transient error (gave up after 6 attempts" in str(info.value)
        # fetched through the connector (analyze), the lake's own error comes out as it is
        assert str(info.value).startswith(f"source 'lake': {failed}")


@pytest.mark.parametrize("fault", ["stall", "stall_body"])
def test_stalled_responses_time_out_and_are_retried(shop, fault: str) -> None:
    """A third of the reads stall (no answer, or half a body and then silence), three at most:
    each stalled attempt gives up after request_timeout and is retried."""
    catalog, ref, proxy = shop
    with fedquery.connect(catalog) as con:
        proxy.inject(fault, rate=0.3, methods=("GET",), count=3)
        for name in ("scan_filter", "join_warehouse"):
            right_or_source_error(con, ref, QUERIES[name], FAST, stalls=True)
    assert proxy.injected[fault] > 0


def test_a_stall_that_persists_is_a_source_error_in_time(shop) -> None:
    catalog, _, proxy = shop
    opts = FAST | {"max_attempts": 2}
    with fedquery.connect(with_options(catalog, **opts)) as con:
        proxy.inject("stall", methods=("GET",), match=r"\.parquet$")
        with pytest.raises(fedquery.SourceError) as info:
            bounded(lambda: con.sql(QUERIES["aggregate"]).fetchall(), deadline(opts, stalls=True))
    assert info.value.source == "lake"
    assert "options.request_timeout (1 s)" in str(info.value)


@pytest.mark.parametrize("phase", ["listing", "footer", "data"])
def test_a_trickling_response_fails_within_read_timeout(shop, phase: str) -> None:
    """S3 sends a body a few bytes at a time, never silent for request_timeout: each read is
    given up once it outlasts read_timeout (plus its bytes at min_read_speed) and the query
    fails naming the object. Abandoned reads outnumbering pyarrow's I/O threads, still
    trickling, do not hold up the next queries; once they end the pool is its size again."""
    catalog, ref, proxy = shop
    opts = FAST | {"read_timeout": 2}
    sql = QUERIES["aggregate"]
    io_threads = pa.io_thread_count()
    slow = with_options(catalog, read_timeout=2)
    with fedquery.connect(slow) as con:
        if phase == "data":
            assert right_or_source_error(con, ref, sql, opts)  # listed, footers read and kept
        match = rf"^/{BUCKET}/?$" if phase == "listing" else r"\.parquet$"
        proxy.inject("trickle", methods=("GET",), match=match, **TRICKLE)
        # small files are kept whole with their footers: new connections read them again
        # (made before the trickle: pyarrow builds no S3 client while a request is running)
        fresh = [fedquery.connect(slow) for _ in range(2 * io_threads)] if phase == "data" else []
        for i in range(2 * io_threads):
            con_i = fresh[i] if fresh else con
            with pytest.raises(fedquery.SourceError) as info:
                bounded(lambda con_i=con_i: con_i.sql(sql).fetchall(), deadline(opts))
            assert info.value.source == "lake"
            what = "list" if phase == "listing" else "read"
            assert re.search(rf"table 'orders': cannot {what} s3://{BUCKET}/lake/orders/\S*: no "
                             r"answer in time: the read took longer than .*options\.read_timeout "
                             r"\(2 s\)", str(info.value)), info.value
            if SPARE_IO.extra > io_threads:
                break
        assert SPARE_IO.extra > io_threads  # more reads abandoned than pyarrow has I/O threads
        proxy.clear(release=False)  # the abandoned reads go on trickling
        for _ in range(2):
            assert right_or_source_error(con, ref, sql, opts)
        for other in fresh:
            other.close()
    assert not proxy.wait_idle(0.1)  # they did: still trickling
    proxy.release()
    _wait_for(lambda: SPARE_IO.extra == 0)
    assert pa.io_thread_count() == io_threads


def test_read_timeout_defaults_from_the_attempts_and_timeouts(s3_endpoint: str,
                                                              s3_credentials: dict) -> None:
    """Unset, read_timeout is every attempt spending its connect and request timeouts."""
    from fedquery.connectors.remote_fs import open_native
    from fedquery.secrets import Secrets

    location, _ = open_native("s3://x/", options(s3_endpoint), source="lake", secrets=Secrets())
    assert location.limits.read_timeout == FAST["max_attempts"] * (FAST["connect_timeout"]
                                                                   + FAST["request_timeout"])
    assert location.limits.seconds(200_000) == location.limits.read_timeout + 2
    for name in ("read_timeout", "min_read_speed"):
        lake = {"kind": "parquet", "root": "s3://x/", "options": options(s3_endpoint, **{name: 0})}
        with pytest.raises(fedquery.FedQueryError, match=rf"options\.{name}: expected a positive"):
            fedquery.connect({"sources": {"lake": lake}, "tables": {}})


def test_connect_sends_s3_nothing(shop) -> None:
    """S3 is a blackhole (no request ever answered) while connecting to a lake of many
    tables: connect sends it nothing (each table is listed by the first query reading it), a
    query fails naming only the table it reads, and once S3 answers the same connection does."""
    catalog, ref, proxy = shop
    tables = {**catalog["tables"], **{f"orders_{i}": {"source": "lake", "path": "orders/",
                                                      "partitioning": "hive"} for i in range(6)}}
    catalog = {**catalog, "tables": tables}
    proxy.inject("stall")
    con = bounded(lambda: fedquery.connect(catalog), deadline(FAST))
    with con:
        assert proxy.log == [] and proxy.injected["stall"] == 0
        assert right_or_source_error(con, ref, "SELECT count(*) FROM clients", FAST)
        with pytest.raises(fedquery.SourceError) as info:
            bounded(lambda: con.sql("SELECT count(*) FROM returns").fetchall(),
                    deadline(FAST, stalls=True))
        assert f"table 'returns': cannot list s3://{BUCKET}/lake/returns/" in str(info.value)
        assert proxy.log and all("returns" in r.query for r in proxy.log)
        proxy.clear()
        assert right_or_source_error(con, ref, QUERIES["lake_join"], FAST)
        assert con.sql("SELECT count(*) FROM orders_3").fetchall() == \
            ref.sql("SELECT count(*) FROM orders").fetchall()


@pytest.mark.parametrize("fault", ["reset", "reset_body", "cut"])
def test_resets_and_cut_bodies_are_retried(shop, fault: str) -> None:
    catalog, ref, proxy = shop
    right = 0
    with fedquery.connect(catalog) as con:
        proxy.inject(fault, rate=0.3, methods=("GET", "HEAD"))
        for sql in QUERIES.values():
            right += right_or_source_error(con, ref, sql, FAST)
    assert proxy.injected[fault] > 0
    assert right >= 1


def test_outage_during_connect_then_recovery(shop) -> None:
    """S3 is down while connecting: the warehouse still answers, lake queries fail in words,
    and once S3 is back the same connection lists the tables and answers."""
    catalog, ref, proxy = shop
    sql = QUERIES["join_warehouse"]
    proxy.down()
    try:
        con = bounded(lambda: fedquery.connect(catalog), deadline(FAST))
        assert right_or_source_error(con, ref, "SELECT count(*) FROM clients", FAST)
        with pytest.raises(fedquery.SourceError) as info:
            bounded(lambda: con.sql(sql).fetchall(), deadline(FAST))
        assert info.value.source == "lake"
        assert f"table 'orders': cannot list s3://{BUCKET}/lake/orders/: cannot reach the S3 " \
               f"endpoint {proxy.url}" in str(info.value)
    finally:
        proxy.up()
    with con:
        assert right_or_source_error(con, ref, sql, FAST)
        assert con.schema("orders").names == ref.sql("SELECT * FROM orders").columns


def test_outage_after_connect_then_recovery(shop) -> None:
    catalog, ref, proxy = shop
    with fedquery.connect(catalog) as con:
        proxy.down()
        try:
            with pytest.raises(fedquery.SourceError) as info:
                bounded(lambda: con.sql(QUERIES["aggregate"]).fetchall(), deadline(FAST))
        finally:
            proxy.up()
        assert info.value.source == "lake"
        assert f"table 'orders': cannot list s3://{BUCKET}/lake/orders/: cannot reach the S3 " \
               f"endpoint {proxy.url} (gave up after 6 attempts)" in str(info.value)
        assert right_or_source_error(con, ref, QUERIES["aggregate"], FAST)


def test_503_storm_during_connect_then_recovery(shop) -> None:
    catalog, ref, proxy = shop
    proxy.inject("503")
    con = bounded(lambda: fedquery.connect(catalog), deadline(FAST))
    with con:
        with pytest.raises(fedquery.SourceError, match="kept failing with a transient error"):
            bounded(lambda: con.sql(QUERIES["aggregate"]).fetchall(), deadline(FAST))
        proxy.clear()
        for sql in QUERIES.values():
            assert right_or_source_error(con, ref, sql, FAST)


def test_retries_never_run_out(s3_faults: FaultProxy, s3_endpoint: str, s3_credentials: dict) -> None:
    """A filesystem keeps retrying however many retries it made before (AWS's standard
    strategy, through pyarrow, spends a quota of about 100 retries that never comes back)."""
    from fedquery.connectors.remote_fs import open_native
    from fedquery.secrets import Secrets

    s3_client(s3_endpoint).create_bucket(Bucket="retries")
    s3_client(s3_endpoint).put_object(Bucket="retries", Key="a", Body=b"x")
    location, _ = open_native("s3://retries/", options(s3_faults.url, max_attempts=3),
                              source="lake", secrets=Secrets())
    for _ in range(60):  # 120 retries
        s3_faults.inject("503", count=2)
        assert location.filesystem.get_file_info("retries/a").size == 1
    assert s3_faults.injected["503"] == 120


# ------------------------------------------------------------------ objects replaced


@pytest.fixture()
def bucket(request: pytest.FixtureRequest, s3_endpoint: str, s3_credentials: dict) -> str:
    name = "fault-" + str(abs(hash(request.node.nodeid)) % 10**12)
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def put(endpoint: str, bucket: str, key: str, table: pa.Table) -> int:
    """Write a Parquet object directly to the server (not through the proxy); its size."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="NONE", use_dictionary=False)
    body = sink.getvalue().to_pybytes()
    s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=body)
    return len(body)


def modified(endpoint: str, bucket: str, key: str):
    return s3_client(endpoint).head_object(Bucket=bucket, Key=key)["LastModified"]


def one_table(bucket: str, proxy: FaultProxy, **extra) -> dict:
    return {"sources": {"lake": {"kind": "parquet", "root": f"s3://{bucket}/",
                                 "options": options(proxy.url, **extra)}},
            "tables": {"t": {"source": "lake", "path": "t/"}}}


def test_column_dropped_between_planning_and_execution(bucket: str, s3_endpoint: str,
                                                       s3_faults: FaultProxy) -> None:
    put(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}))
    put(s3_endpoint, bucket, "t/b.parquet", pa.table({"x": [4], "y": ["d"]}))
    with fedquery.connect(one_table(bucket, s3_faults)) as con:
        planned = con.sql("SELECT count(y), sum(x) FROM t")
        put(s3_endpoint, bucket, "t/b.parquet", pa.table({"x": [4]}))
        with pytest.raises(fedquery.SourceError) as info:
            bounded(planned.fetchall, deadline(FAST))
        assert f"s3://{bucket}/t/b.parquet has no column 'y'" in str(info.value)
        put(s3_endpoint, bucket, "t/b.parquet", pa.table({"x": [4], "y": [5]}))
        with pytest.raises(fedquery.SourceError, match=r"b\.parquet: column 'y' is int64 there but "
                                                       r"string in the table"):
            bounded(con.sql("SELECT count(y) FROM t").fetchall, deadline(FAST))


def test_same_size_rewrite_in_the_same_second(bucket: str, s3_endpoint: str,
                                              s3_faults: FaultProxy) -> None:
    """A rewrite with the same size and time as the object it replaces is still seen: the
    connection keeps the old footer only for the same ETag."""
    old, new = pa.table({"x": [1, 2, 3]}), pa.table({"x": [7, 8, 9]})
    sql = "SELECT count(*), sum(x) FROM t WHERE x >= 2"
    with fedquery.connect(one_table(bucket, s3_faults)) as con:
        for _ in range(10):  # until both writes land in the same second
            size = put(s3_endpoint, bucket, "t/a.parquet", old)
            first = modified(s3_endpoint, bucket, "t/a.parquet")
            assert bounded(con.sql(sql).fetchall, deadline(FAST)) == [(2, 5)]
            assert put(s3_endpoint, bucket, "t/a.parquet", new) == size
            if modified(s3_endpoint, bucket, "t/a.parquet") == first:
                break
        else:
            pytest.skip("could not write twice within one second")
        assert bounded(con.sql(sql).fetchall, deadline(FAST)) == [(3, 24)]


@pytest.mark.parametrize("settled", [False, True], ids=["young-etag", "settled-listing"])
@pytest.mark.parametrize("change", ["rewritten", "deleted"])
def test_object_changed_while_the_query_reads_it(bucket: str, s3_endpoint: str,
                                                 s3_faults: FaultProxy, monkeypatch, settled: bool,
                                                 change: str) -> None:
    """The object is replaced (or deleted) while its data read is stalled: the query fails
    saying so, instead of reading the new bytes with the old footer."""
    # larger than the tail kept with a footer (64 KiB), so its data is read with a GET
    big = np.random.default_rng(5).standard_normal(40_000)
    put(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": list(range(40_000)), "y": big}))
    put(s3_endpoint, bucket, "t/b.parquet", pa.table({"x": [5], "y": [2.5]}))
    if settled:  # objects older than this count as settled: pinned by their listing alone
        monkeypatch.setattr(s3_lake, "SETTLED_AFTER", 1.0)
        time.sleep(2.1)
    opts = FAST | {"request_timeout": 2}
    with fedquery.connect(one_table(bucket, s3_faults, request_timeout=2)) as con:
        assert bounded(con.sql("SELECT count(*) FROM t").fetchall, deadline(opts)) == [(40_001,)]
        s3_faults.reset_counts()
        s3_faults.inject("stall", methods=("GET",), match=r"/t/a\.parquet$", count=1)
        query = Background(con.sql("SELECT sum(x), sum(y) FROM t").fetchall)
        _wait_for(lambda: s3_faults.injected["stall"] == 1)
        if change == "deleted":
            s3_client(s3_endpoint).delete_object(Bucket=bucket, Key="t/a.parquet")
        else:
            put(s3_endpoint, bucket, "t/a.parquet", pa.table({"x": [-1] * 40_000, "y": big}))
        s3_faults.release()
        with pytest.raises(fedquery.SourceError) as info:
            query.result(deadline(opts, stalls=True))
        assert f"s3://{bucket}/t/a.parquet was {change} while the query read it" in str(info.value)
    heads = sum(1 for r in s3_faults.log if r.method == "HEAD")
    assert (heads == 0) if settled else (heads > 0)


def _wait_for(condition, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the proxy"
        time.sleep(0.01)
