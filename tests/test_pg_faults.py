"""PostgreSQL behind a fault-injecting proxy: stalls, cuts, resets, kills and restarts.

Every query under a fault gives the right answer (equal to DuckDB's over the same data) or a
``SourceError`` naming the source, within the source's timeouts: each one runs in a thread
joined with a deadline made of those timeouts, so a hang fails the test instead of freezing
it. After the fault clears, queries succeed again (dead sessions were replaced).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.errors import SourceError
from tests.services.postgres import proxied_dsn

READ_TIMEOUT = 2
CONNECT_TIMEOUT = 2
# A query may wait out a read timeout on a stuck session, open a new session (connect plus
# the driver's first queries) and wait once more; planning asks the source a few questions.
DEADLINE = 4 * (CONNECT_TIMEOUT + 2 * READ_TIMEOUT) + 10
N_ACCOUNTS, N_EVENTS, N_PAYMENTS = 4000, 150_000, 20_000
REGIONS = ["north", "south", "east", "west", "centre", None]
KINDS = ["view", "click", "buy", "refund", "it's \\odd"]
MID_STREAM = 200_000  # bytes of a response let through before a mid-stream fault


# ---------------------------------------------------------------------- data


def _data() -> dict[str, pa.Table]:
    rng = np.random.default_rng(8)
    accounts = pa.table({
        "id": pa.array(np.arange(1, N_ACCOUNTS + 1, dtype=np.int32)),
        "region": pa.array([REGIONS[i] for i in rng.integers(0, len(REGIONS), N_ACCOUNTS)]),
        "name": pa.array([f"acct {i}" + ("\\'" if i % 97 == 0 else "") for i in range(N_ACCOUNTS)]),
    })
    cents = rng.integers(-5_000, 500_000, N_EVENTS)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    events = pa.table({
        "id": pa.array(np.arange(1, N_EVENTS + 1, dtype=np.int64)),
        "account_id": pa.array(rng.integers(1, N_ACCOUNTS + 50, N_EVENTS).astype(np.int32)),
        "kind": pa.array([KINDS[i] for i in rng.integers(0, len(KINDS), N_EVENTS)]),
        "amount": pa.array([Decimal(int(c)) / 100 for c in cents], pa.decimal128(12, 2)),
        "at": pa.array(start + rng.integers(0, 366 * 86400, N_EVENTS).astype("timedelta64[s]")),
        "note": pa.array([f"note {i} " + "x" * int(n) for i, n in
                          enumerate(rng.integers(10, 60, N_EVENTS))]),
    })
    days = np.datetime64("2024-01-01") + rng.integers(0, 366, N_PAYMENTS).astype("timedelta64[D]")
    payments = pa.table({
        "event_id": pa.array(rng.integers(1, N_EVENTS + 1000, N_PAYMENTS).astype(np.int64)),
        "day": pa.array(days.astype("datetime64[D]")),
        "method": pa.array([["card", "cash", "wire"][i] for i in rng.integers(0, 3, N_PAYMENTS)]),
    })
    regions = pa.table({"region": ["north", "south", "east", "west", "nowhere"],
                        "manager": ["Ann", "Bo", "Cy", "Di", "Ed"]})
    return {"accounts": accounts, "events": events, "payments": payments, "regions": regions}


@pytest.fixture(scope="module")
def data() -> dict[str, pa.Table]:
    return _data()


def _load(db, data: dict[str, pa.Table]) -> None:
    db.execute("DROP TABLE IF EXISTS public.accounts", "DROP TABLE IF EXISTS public.events")
    db.load("public.accounts", data["accounts"],
            "CREATE TABLE public.accounts (id integer, region text, name text)")
    db.load("public.events", data["events"],
            "CREATE TABLE public.events (id bigint, account_id integer, kind text, "
            "amount numeric(12, 2), at timestamp, note text)")
    db.execute("ANALYZE")


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, data) -> Path:
    root = tmp_path_factory.mktemp("faults_lake")
    (root / "payments").mkdir()
    half = N_PAYMENTS // 2
    pq.write_table(data["payments"].slice(0, half), root / "payments" / "part-0.parquet")
    pq.write_table(data["payments"].slice(half), root / "payments" / "part-1.parquet")
    pq.write_table(data["regions"], root / "regions.parquet")
    return root


@pytest.fixture(scope="module")
def reference(data) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB over the same rows, under the catalog's names."""
    ref = duckdb.connect()
    for name, table in data.items():
        ref.register(f"{name}_arrow", table)
        ref.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def db(postgres_database, data):
    _load(postgres_database, data)
    postgres_database.execute("CREATE TABLE public.wide AS SELECT g AS id, repeat('x', 100) AS pad "
                              "FROM generate_series(1, 400000) AS g")
    return postgres_database


def catalog(dsn: str, lake: Path, **settings: Any) -> dict:
    pg = {"kind": "postgres", "dsn": dsn, "read_timeout": READ_TIMEOUT,
          "connect_timeout": CONNECT_TIMEOUT, "statement_timeout": 30, **settings}
    return {"sources": {"pg": pg, "lake": {"kind": "parquet", "root": str(lake)}},
            "tables": {"accounts": {"source": "pg", "table": "accounts"},
                       "events": {"source": "pg", "table": "public.events"},
                       "payments": {"source": "lake", "path": "payments/*.parquet"},
                       "regions": {"source": "lake", "path": "regions.parquet"}}}


@pytest.fixture
def fq(db, lake, pg_proxy):
    """A fedquery connection whose warehouse is reached through the proxy."""
    with fedquery.connect(catalog(proxied_dsn(db.dsn, pg_proxy.port), lake)) as con:
        yield con


def connector(con):
    return con._session.connectors["pg"]


# ---------------------------------------------------------------------- running under a deadline


def within_deadline(work: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """``work()`` in a thread; its result or exception; a test failure past ``deadline``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"no answer and no error after {deadline} s: a hang")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def rows(table: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


# ---------------------------------------------------------------------- the proxy itself


def test_the_proxy_holds_bytes_past_the_allowance_and_refuses() -> None:
    import socket

    from tests.services.tcp_proxy import FaultProxy

    payload = bytes(range(256)) * 4096  # 1 MiB
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(payload)

    threading.Thread(target=serve, daemon=True).start()
    with FaultProxy(server.getsockname()[:2]) as proxy:
        proxy.stall("down", after_bytes=100_000)
        client = socket.create_connection((proxy.host, proxy.port), timeout=1)
        got = bytearray()
        with pytest.raises(TimeoutError):
            while chunk := client.recv(65536):
                got += chunk
        assert len(got) == 100_000 and proxy.bytes_down == 100_000
        proxy.pass_through()
        client.settimeout(10)
        while chunk := client.recv(65536):
            got += chunk
        assert bytes(got) == payload and proxy.bytes_down == len(payload)
        client.close()
        proxy.refuse()
        with (pytest.raises(ConnectionResetError),  # at connect or at the first read
              socket.create_connection((proxy.host, proxy.port), timeout=5) as refused):
            refused.recv(1)
        assert proxy.refused == 1
    server.close()


# ---------------------------------------------------------------------- one source, one fault


BIG = "SELECT e.id, e.note FROM pg.public.events AS e"


def read_batches(pg, sql: str = BIG, first: Callable[[], None] | None = None) -> int:
    """Rows of ``sql`` read through the connector; ``first`` runs after the first batch."""
    reader = pg.run_sql(sql)
    total = reader.read_next_batch().num_rows
    if first is not None:
        first()
    for batch in reader:
        total += batch.num_rows
    return total


def test_a_stream_that_stalls_fails_within_the_read_timeout(fq, pg_proxy) -> None:
    pg = connector(fq)
    with pytest.raises(SourceError, match="read_timeout") as caught:
        within_deadline(lambda: read_batches(pg, first=lambda: pg_proxy.stall("down")))
    assert caught.value.source == "pg"
    pg_proxy.pass_through()
    assert within_deadline(lambda: read_batches(pg)) == N_EVENTS


def test_a_stall_before_the_first_row_fails_within_the_read_timeout(fq, pg_proxy) -> None:
    pg = connector(fq)
    pg_proxy.stall("down", live_only=True)  # the pooled sessions go silent; new ones work
    with pytest.raises(SourceError, match="no answer from the server") as caught:
        within_deadline(lambda: pg.run_sql("SELECT 1 AS one").read_all())
    assert caught.value.source == "pg"
    assert within_deadline(lambda: pg.run_sql("SELECT 2 AS two").read_all())["two"].to_pylist() == [2]


def test_a_silent_server_fails_catalog_questions_too(fq, pg_proxy) -> None:
    pg = connector(fq)
    pg_proxy.stall("both")
    with pytest.raises(SourceError) as caught:
        within_deadline(lambda: pg.tables())
    assert caught.value.source == "pg"
    pg_proxy.pass_through()
    assert within_deadline(lambda: len(pg.tables())) >= 2


@pytest.mark.parametrize("fault", ["reset", "kill_all"])
def test_idle_sessions_killed_are_replaced(fq, pg_proxy, fault: str) -> None:
    pg = connector(fq)
    readers = [pg.run_sql("SELECT 1 AS one") for _ in range(4)]  # four sessions in the pool
    for reader in readers:
        reader.read_all()
    assert within_deadline(lambda: wait_for(lambda: pg._pool.idle == 4))
    getattr(pg_proxy, fault)()
    answers = [within_deadline(lambda i=i: pg.run_sql(f"SELECT {i} AS n").read_all()["n"][0].as_py())
               for i in range(18)]
    assert answers == list(range(18))
    assert within_deadline(lambda: pg.estimate_rows(pg.resolve(_ref("accounts")))) == N_ACCOUNTS


def test_a_stream_cut_after_rows_were_read_is_a_source_error(fq, pg_proxy) -> None:
    pg = connector(fq)
    with pytest.raises(SourceError, match="rows had been handed out already") as caught:
        within_deadline(lambda: read_batches(pg, first=pg_proxy.reset))
    assert caught.value.source == "pg" and "connection to the server was lost" in str(caught.value)
    assert not isinstance(caught.value.__cause__, SourceError)
    assert within_deadline(lambda: read_batches(pg)) == N_EVENTS


@pytest.mark.parametrize("after_bytes", [100, 50_000], ids=["while_starting", "first_batch"])
def test_a_session_lost_before_its_first_batch_is_replaced(fq, pg_proxy, after_bytes: int) -> None:
    pg = connector(fq)
    within_deadline(lambda: pg.run_sql("SELECT 1 AS one").read_all())
    pg_proxy.cut(after_bytes=after_bytes, live_only=True)  # the pooled session dies mid-answer
    assert within_deadline(lambda: read_batches(pg)) == N_EVENTS
    assert pg_proxy.accepted >= 2  # the statement ran again on a new connection


def test_a_refused_connection_is_a_source_error_then_recovers(fq, pg_proxy) -> None:
    pg = connector(fq)
    pg_proxy.kill_all()
    pg_proxy.refuse()
    with pytest.raises(SourceError, match="cannot connect") as caught:
        within_deadline(lambda: pg.run_sql("SELECT 1 AS one").read_all())
    assert caught.value.source == "pg"
    pg_proxy.pass_through()
    assert within_deadline(lambda: pg.run_sql("SELECT 1 AS one").read_all()).num_rows == 1


def test_a_server_that_never_answers_fails_connect_in_time(db, lake, pg_proxy) -> None:
    pg_proxy.stall("down", after_bytes=0)
    with pytest.raises(SourceError, match="cannot connect") as caught:
        within_deadline(lambda: fedquery.connect(catalog(proxied_dsn(db.dsn, pg_proxy.port), lake)))
    assert caught.value.source == "pg"


def test_a_real_restart_with_idle_sessions(restartable_postgres, data) -> None:
    from tests.services.postgres import PgDatabase

    server = PgDatabase("postgres", restartable_postgres.dsn)
    server.execute("DROP TABLE IF EXISTS public.accounts")
    server.load("public.accounts", data["accounts"],
                "CREATE TABLE public.accounts (id integer, region text, name text)")
    source = {"kind": "postgres", "dsn": restartable_postgres.dsn, "read_timeout": READ_TIMEOUT,
              "connect_timeout": CONNECT_TIMEOUT}
    with fedquery.connect({"sources": {"pg": source},
                           "tables": {"accounts": {"source": "pg", "table": "accounts"}}}) as con:
        sql = "SELECT region, count(*) AS n FROM accounts GROUP BY region"
        want = rows(con.sql(sql).arrow())
        for mode in ("fast", "immediate"):
            readers = [connector(con).run_sql("SELECT 1 AS one") for _ in range(3)]
            for reader in readers:
                reader.read_all()
            restartable_postgres.restart(mode)
            for _ in range(6):
                assert rows(within_deadline(lambda: con.sql(sql).arrow())) == want
        big = "SELECT a.id, g FROM pg.public.accounts AS a, generate_series(1, 100) AS g"
        reader = connector(con).run_sql(big)
        reader.read_next_batch()
        restartable_postgres.restart("fast")  # a query under way: its rows were handed out
        with pytest.raises(SourceError, match="connection to the server was lost") as caught:
            within_deadline(reader.read_all)
        assert caught.value.source == "pg"
        assert rows(within_deadline(lambda: con.sql(sql).arrow())) == want


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _ref(name: str):
    from fedquery.connectors.base import TableRef

    return TableRef("public", name)


# ---------------------------------------------------------------------- federated queries


QUERIES = {
    "aggregate_in_pg": ("SELECT kind, count(*) AS n, sum(amount) AS total FROM events "
                        "GROUP BY kind", None),
    "pg_joined_with_lake": ("SELECT r.manager, count(*) AS n FROM accounts a "
                            "JOIN regions r ON a.region = r.region GROUP BY r.manager", None),
    "big_stream": ("SELECT r.manager, count(*) AS n, sum(e.amount) AS total, "
                   "max(length(e.note)) AS longest FROM events e "
                   "JOIN accounts a ON e.account_id = a.id "
                   "JOIN regions r ON a.region = r.region GROUP BY r.manager", None),
    "dynamic_filter": ("SELECT e.kind, count(*) AS n, sum(e.amount) AS total FROM payments p "
                       "JOIN events e ON e.id = p.event_id WHERE p.day = $day "
                       "GROUP BY e.kind", {"day": dt.date(2024, 3, 1)}),
    "quotes_and_backslashes": ("SELECT count(*) AS n, min(id) AS first FROM events "
                               "WHERE kind = 'it''s \\odd' AND note LIKE $pattern",
                               {"pattern": "note 1%"}),
}


def answer(con_or_ref, name: str) -> list[tuple]:
    sql, params = QUERIES[name]
    if isinstance(con_or_ref, duckdb.DuckDBPyConnection):
        return rows(con_or_ref.sql(sql, params=params).to_arrow_table())
    return rows(con_or_ref.sql(sql, params=params).arrow())


@pytest.fixture(scope="module")
def expected(reference) -> dict[str, list[tuple]]:
    return {name: answer(reference, name) for name in QUERIES}


def test_queries_agree_with_duckdb_without_faults(fq, expected) -> None:
    for name in QUERIES:
        assert within_deadline(lambda n=name: answer(fq, n)) == expected[name], name


def _stall_mid_stream(proxy) -> None:
    proxy.stall("down", after_bytes=MID_STREAM)


def _stall_idle(proxy) -> None:
    proxy.stall("both", live_only=True)


RIGHT, BIG_FAILS, EITHER, ALL_FAIL = "right", "big_fails", "either", "all_fail"
FAULTS: dict[str, tuple[Callable[[Any], None], str]] = {  # name: (arm, what must happen)
    "stall_mid_stream": (_stall_mid_stream, BIG_FAILS),  # every stream past MID_STREAM stalls
    "stall_idle_sessions": (_stall_idle, EITHER),
    "reset_idle_sessions": (lambda proxy: proxy.reset(), RIGHT),
    "kill_idle_sessions": (lambda proxy: proxy.kill_all(), RIGHT),
    "reset_mid_stream": (lambda proxy: proxy.reset(after_bytes=MID_STREAM), BIG_FAILS),
    "cut_mid_stream": (lambda proxy: proxy.cut(after_bytes=MID_STREAM), BIG_FAILS),
    "restart_window": (lambda proxy: (proxy.kill_all(), proxy.refuse(5)), ALL_FAIL),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_federated_queries_under_a_fault(fq, pg_proxy, expected, fault: str) -> None:
    """Each query, with warm sessions in the pool, under the fault: DuckDB's answer or a
    SourceError naming the source, in time; after the fault, the right answer again."""
    arm, rule = FAULTS[fault]
    failed = set()
    for name in QUERIES:
        within_deadline(lambda: answer(fq, "pg_joined_with_lake"))  # sessions in the pool
        arm(pg_proxy)
        try:
            got = within_deadline(lambda n=name: answer(fq, n))
        except SourceError as exc:
            assert exc.source == "pg", exc
            failed.add(name)
        else:
            assert got == expected[name], name
        pg_proxy.pass_through()
        assert within_deadline(lambda n=name: answer(fq, n)) == expected[name], name
    if rule == RIGHT:
        assert not failed
    elif rule == BIG_FAILS:  # the fault really struck (it strikes the retry too)
        assert "big_stream" in failed
    elif rule == ALL_FAIL:
        assert failed == set(QUERIES)


def test_a_connection_killed_during_a_federated_query(fq, pg_proxy, expected) -> None:
    start = pg_proxy.bytes_down
    killer = threading.Thread(target=lambda: wait_for(
        lambda: pg_proxy.bytes_down > start + MID_STREAM, DEADLINE) and pg_proxy.kill_all())
    killer.start()
    try:
        got = within_deadline(lambda: answer(fq, "big_stream"))
    except SourceError as exc:
        assert exc.source == "pg"
    else:
        assert got == expected["big_stream"]
    finally:
        killer.join()
    assert within_deadline(lambda: answer(fq, "big_stream")) == expected["big_stream"]


# ---------------------------------------------------------------------- interrupts


PATIENT = 600  # a read timeout no test waits out: only a cancel ends these reads in time
SLEEPY = ("SELECT g, repeat('x', 100) AS pad, CASE WHEN g > 100000 THEN pg_sleep(60) END AS {m} "
          "FROM generate_series(1, 200000) AS g")  # rows at once, then a statement that waits


@pytest.fixture
def patient(db, lake, pg_proxy):
    """A connection through the proxy whose reads would wait ten minutes for the server."""
    settings = {"read_timeout": PATIENT, "statement_timeout": 3 * PATIENT}
    with fedquery.connect(catalog(proxied_dsn(db.dsn, pg_proxy.port), lake, **settings)) as con:
        yield con


def statement_running(db, marker: str, waiting_on: str | None = None) -> bool:
    """Whether a statement naming ``marker`` runs on the server (waiting on ``waiting_on``)."""
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                       "AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid() "
                       "AND ($2::text IS NULL OR wait_event = $2::text)",
                       parameters=(marker, waiting_on))
        return cursor.fetchall()[0][0] > 0


def read_on_another_thread(reader: pa.RecordBatchReader) -> dict[str, Any]:
    """Read ``reader`` to its end on a thread of its own, as DuckDB's threads pull a fragment;
    the outcome lands in the returned dict ("rows" or "error") once "done" is set."""
    outcome: dict[str, Any] = {"done": threading.Event()}

    def read() -> None:
        try:
            outcome["rows"] = sum(batch.num_rows for batch in reader)
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc
        finally:
            outcome["done"].set()

    threading.Thread(target=read, daemon=True).start()
    return outcome


def test_cancel_ends_a_read_that_waits_for_the_server(patient, db) -> None:
    """A fragment's stream waiting for rows on another thread gives up at once when cancelled,
    the statement stops on the server, and the source keeps working."""
    pg = connector(patient)
    marker = "fq_cancel_wait"
    reader = pg.run_sql(SLEEPY.format(m=marker))
    reader.read_next_batch()
    outcome = read_on_another_thread(reader)
    assert wait_for(lambda: statement_running(db, marker))
    pg.cancel(reader)
    assert outcome["done"].wait(DEADLINE), "the read did not end when cancelled"
    error = outcome.get("error")
    assert isinstance(error, SourceError) and error.source == "pg", error
    assert "the read was cancelled (the query was interrupted)" in str(error)
    assert wait_for(lambda: not statement_running(db, marker), DEADLINE)
    with pytest.raises(SourceError, match="cancelled"):  # and so is every later read
        reader.read_next_batch()
    assert within_deadline(lambda: read_batches(pg)) == N_EVENTS


def test_cancel_ends_a_read_on_a_silent_connection(patient, pg_proxy) -> None:
    """The server's answer stalls on the network: the cancel cannot reach the stuck read, yet
    the stream gives up at once (its session is dropped, never reused)."""
    pg = connector(patient)
    reader = pg.run_sql(BIG)
    reader.read_next_batch()
    pg_proxy.stall("down", live_only=True)
    outcome = read_on_another_thread(reader)
    time.sleep(0.5)  # let the read start waiting; the test holds either way
    pg.cancel(reader)
    assert outcome["done"].wait(DEADLINE), "the read did not end when cancelled"
    assert isinstance(outcome.get("error"), SourceError), outcome.get("error")
    pg_proxy.pass_through()
    assert within_deadline(lambda: read_batches(pg)) == N_EVENTS


class Pulls:
    """A reader's batches as DuckDB pulls them, with whether a pull is under way."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.reader, self.inside = reader, threading.Event()

    def __iter__(self):
        while True:
            self.inside.set()
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                return
            finally:
                self.inside.clear()
            yield batch


def test_an_interrupted_duckdb_query_ends_once_its_streams_are_cancelled(patient, db) -> None:
    """What the executor does on an interrupt: DuckDB's interrupt alone waits for its thread
    that is blocked in the fragment's read (until read_timeout); cancelling the fragment's
    stream ends that read, and the query ends at once with DuckDB's interrupt error or the
    stream's cancellation, whichever DuckDB saw first."""
    pg = connector(patient)
    marker = "fq_cancel_duckdb"
    reader = pg.run_sql(SLEEPY.format(m=marker))
    pulls = Pulls(reader)
    local = duckdb.connect()
    local.register("fragment", pa.RecordBatchReader.from_batches(reader.schema, pulls))

    def interrupt() -> None:  # once a DuckDB thread waits in the read of a sleeping statement
        wait_for(lambda: statement_running(db, marker, "PgSleep") and pulls.inside.is_set(),
                 DEADLINE)
        local.interrupt()
        pg.cancel(reader)

    stopper = threading.Thread(target=interrupt, daemon=True)
    stopper.start()
    with pytest.raises((duckdb.InterruptException, duckdb.InvalidInputException)) as caught:
        within_deadline(lambda: local.execute("SELECT count(*), max(pad) FROM fragment").fetchall())
    if isinstance(caught.value, duckdb.InvalidInputException):  # the stream's error came first
        assert "the read was cancelled" in str(caught.value)
    stopper.join()
    assert wait_for(lambda: not statement_running(db, marker), DEADLINE)
    local.close()


def test_ctrl_c_while_a_stream_waits_mid_way(patient, pg_proxy) -> None:
    """Ctrl-C while the main thread waits for the next batch of a stalled stream:
    KeyboardInterrupt at once (not the read timeout's SourceError), and the source recovers."""
    import os
    import signal

    pg = connector(patient)
    reader = pg.run_sql(BIG)
    reader.read_next_batch()
    pg_proxy.stall("down", live_only=True)
    interrupt = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    interrupt.start()
    with pytest.raises(KeyboardInterrupt):
        reader.read_all()
    interrupt.join()
    pg_proxy.pass_through()
    assert within_deadline(lambda: read_batches(pg)) == N_EVENTS


@pytest.mark.parametrize("fault", ["reset", "cut"])
def test_a_stream_cut_while_read_through_batches_says_why(fq, pg_proxy, fault: str) -> None:
    """A federated query's PostgreSQL stream cut while the answer is read with ``batches()``:
    the connector's own SourceError, as with ``arrow()``, not DuckDB's text of it."""
    sql = "SELECT id, pad FROM pg.public.wide"  # more rows than DuckDB reads ahead
    reader = within_deadline(lambda: fq.sql(sql).batches())
    within_deadline(reader.read_next_batch)
    getattr(pg_proxy, fault)()
    with pytest.raises(SourceError) as caught:
        within_deadline(reader.read_all)
    message = str(caught.value)
    assert caught.value.source == "pg"
    assert message.startswith("source 'pg': reading rows failed: the connection to the server "
                              "was lost"), message
    for leak in ("OSError", "__f0", "internal error", "Traceback"):
        assert leak not in message, message
