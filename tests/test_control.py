"""Stopping queries: ``timeout=``, ``Result.cancel()``, ``Connection.interrupt()`` and Ctrl-C end
an endless DuckDB query, a long PostgreSQL query and a long blob query within about a second,
with a ``FedQueryError``; the next query on the same connection works, and PostgreSQL keeps no
backend running the stopped statement. The catalog's ``settings`` give a default timeout, a
memory limit, a row limit and the progress bar's manners.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

import fedquery

RECURSIVE = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
ENDLESS_RANGE = "SELECT count(*) FROM range(1000000000000)"
SOON = 3.0  # seconds a stopped query may take to hand control back (asked: about 1 s)


def _worker_ends(con: fedquery.Connection, within: float = SOON) -> bool:
    """Whether the stopped query's worker really stops (its cursor closed) within ``within`` s,
    not only its caller."""
    deadline = time.monotonic() + within
    while con._session._running and time.monotonic() < deadline:
        time.sleep(0.05)
    return not con._session._running


def _stopped(call, error: type[BaseException]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(error) as info:
        call()
    return info.value, time.monotonic() - started


@pytest.fixture()
def con():
    with fedquery.connect({"sources": {}}) as connection:
        yield connection


@pytest.mark.parametrize("sql", [RECURSIVE, ENDLESS_RANGE], ids=["recursive", "range"])
@pytest.mark.parametrize("how", ["arrow", "batches", "fetchall"])
def test_timeout_stops_an_endless_query(con, sql: str, how: str) -> None:
    result = con.sql(sql, timeout=0.5)
    fetch = {"arrow": result.arrow, "fetchall": result.fetchall,
             "batches": lambda: result.batches().read_all()}[how]
    error, seconds = _stopped(fetch, fedquery.QueryTimeout)
    assert isinstance(error, fedquery.QueryCancelled) and "timeout of 0.5 s" in str(error)
    assert seconds < 0.5 + SOON
    assert _worker_ends(con)
    assert con.sql("SELECT 42 AS x").fetchall() == [(42,)]


def test_the_catalogs_timeout_is_the_default_and_sql_overrides_it() -> None:
    with fedquery.connect({"sources": {}, "settings": {"timeout": 0.5}}) as con:
        error, _ = _stopped(lambda: con.sql(RECURSIVE).arrow(), fedquery.QueryTimeout)
        assert "timeout of 0.5 s" in str(error)
        error, _ = _stopped(lambda: con.sql(RECURSIVE, timeout=0.3).arrow(), fedquery.QueryTimeout)
        assert "timeout of 0.3 s" in str(error)
        assert con.sql("SELECT 1 AS x", timeout=30).fetchall() == [(1,)]


@pytest.mark.parametrize("bad", [0, -1, "5", True, float("nan")])
def test_a_bad_timeout_is_refused(con, bad) -> None:
    with pytest.raises(fedquery.PlanError, match="timeout must be a positive number"):
        con.sql("SELECT 1", timeout=bad)


def test_result_cancel_from_another_thread(con) -> None:
    result = con.sql(ENDLESS_RANGE)
    threading.Timer(0.5, result.cancel).start()
    error, seconds = _stopped(result.arrow, fedquery.QueryCancelled)
    assert "Result.cancel()" in str(error) and not isinstance(error, fedquery.QueryTimeout)
    assert seconds < 0.5 + SOON
    assert con.sql("SELECT 2 AS x").fetchall() == [(2,)]


def test_connection_interrupt_stops_every_running_query(con) -> None:
    outcomes: list[BaseException | None] = []

    def run(sql: str) -> None:
        try:
            con.sql(sql).arrow()
            outcomes.append(None)
        except BaseException as exc:  # noqa: BLE001 - what each caller gets
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(sql,)) for sql in (RECURSIVE, ENDLESS_RANGE)]
    for thread in threads:
        thread.start()
    time.sleep(0.7)
    con.interrupt()
    for thread in threads:
        thread.join(SOON + 5)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 2
    assert all(isinstance(o, fedquery.QueryCancelled) and "interrupt()" in str(o) for o in outcomes)
    assert con.sql("SELECT 3 AS x").fetchall() == [(3,)]  # open, usable


@pytest.mark.parametrize("how", ["arrow", "batches"])
def test_ctrl_c_is_a_query_cancelled_and_a_keyboard_interrupt(con, how: str) -> None:
    timer = threading.Timer(0.7, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    result = con.sql(RECURSIVE)
    error, seconds = _stopped(result.arrow if how == "arrow" else
                              lambda: result.batches().read_all(), KeyboardInterrupt)
    timer.join()
    assert isinstance(error, fedquery.QueryCancelled) and "Ctrl-C" in str(error)
    assert seconds < 0.7 + SOON
    assert con.sql("SELECT 4 AS x").fetchall() == [(4,)]


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="module")
def big_pg(postgres_database):
    postgres_database.load("public.big", pa.table({"x": pa.array(range(200_000), pa.int64())}))
    return postgres_database


def _running(db, marker: str) -> int:
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' "
                       "AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                       parameters=(marker,))
        return cursor.fetchall()[0][0]


@pytest.mark.parametrize("stop", ["timeout", "cancel", "ctrl_c"])
def test_a_long_postgres_query_stops_and_leaves_no_backend(big_pg, stop: str) -> None:
    marker = f"-{stop}-{os.getpid()}"  # a literal that names the statement on the server
    sql = (f"SELECT count(*) AS n FROM pg.public.big AS a JOIN pg.public.big AS b "
           f"ON a.x + b.x = -1 WHERE '{marker}' <> ''")
    catalog = {"sources": {"pg": {"kind": "postgres", "dsn": big_pg.dsn}}}
    with fedquery.connect(catalog) as con:
        result = con.sql(sql, timeout=1.0 if stop == "timeout" else None)
        if stop == "cancel":
            threading.Timer(1.0, result.cancel).start()
        elif stop == "ctrl_c":
            threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        error, seconds = _stopped(result.arrow, fedquery.QueryCancelled)
        assert seconds < 1.0 + SOON
        assert isinstance(error, fedquery.QueryTimeout) == (stop == "timeout")
        assert _worker_ends(con)
        deadline = time.monotonic() + 10
        while _running(big_pg, marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _running(big_pg, marker) == 0  # the server stopped the statement
        assert con.sql("SELECT count(*) AS n FROM pg.public.big").fetchall() == [(200_000,)]


# ------------------------------------------------------------------ blob functions


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(8):
        Image.effect_noise((640, 480), 40 + i).convert("RGB").save(root / f"p{i}.jpg", quality=90)
    return root


@pytest.mark.parametrize("stop", ["timeout", "ctrl_c"])
def test_a_long_blob_query_stops_between_files(photos: Path, stop: str) -> None:
    catalog = {"sources": {"camera": {"kind": "files", "root": str(photos)}},
               "tables": {"photos": {"source": "camera"}}}
    # thousands of thumbnails, each of its own size: minutes of decoding
    sql = ("SELECT octet_length(thumbnail(p.uri, CAST(16 + r.range % 400 AS INTEGER))) AS n "
           "FROM photos AS p, range(20000) AS r")
    with fedquery.connect(catalog) as con:
        result = con.sql(sql, timeout=1.0 if stop == "timeout" else None)
        if stop == "ctrl_c":
            threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        error, seconds = _stopped(result.arrow, fedquery.QueryCancelled)
        assert isinstance(error, fedquery.QueryTimeout) == (stop == "timeout")
        assert seconds < 1.0 + SOON
        assert _worker_ends(con)  # a batch of 2,048 thumbnails is not finished first
        rows = con.sql("SELECT count(*) AS n FROM photos").fetchall()
        assert rows == [(8,)]


# ------------------------------------------------------------------ settings


def test_max_rows_fails_a_result_over_it_and_passes_one_at_it() -> None:
    with fedquery.connect({"sources": {}, "settings": {"max_rows": 1000}}) as con:
        assert con.sql("SELECT * FROM range(1000)").arrow().num_rows == 1000
        for fetch in (lambda r: r.arrow(), lambda r: r.batches().read_all()):
            with pytest.raises(fedquery.PlanError, match=r"more than 1,000 rows.*max_rows"):
                fetch(con.sql("SELECT * FROM range(1000000000000)"))  # stops at 1,001
        assert con.sql("SELECT count(*) AS n FROM range(5000)").fetchall() == [(5000,)]


def test_memory_limit_is_the_executors_and_its_error_says_so() -> None:
    with fedquery.connect({"sources": {}, "settings": {"memory_limit": "20MB"}}) as con:
        big = "SELECT list(range) AS l FROM range(20000000)"  # one list of 160 MB, not spillable
        with pytest.raises(fedquery.PlanError, match="settings.memory_limit"):
            con.sql(big).arrow()
        assert con.sql("SELECT 5 AS x").fetchall() == [(5,)]


@pytest.mark.parametrize("setting, key, message", [
    ({"timeout": -1}, "settings.timeout", "positive number of seconds"),
    ({"max_rows": 0}, "settings.max_rows", "positive integer"),
    ({"memory_limit": "lots"}, "settings.memory_limit", "a size such as 4GB"),
    ({"progress": "maybe"}, "settings.progress", "auto, true or false"),
    ({"speed": "fast"}, "settings.speed", "unknown key"),
])
def test_bad_settings_name_their_key(setting, key, message) -> None:
    with pytest.raises(fedquery.CatalogError, match=f"{key}: .*{message}"):
        fedquery.connect({"sources": {}, "settings": setting})


@pytest.mark.parametrize("progress, shown", [(True, True), (False, False), ("auto", False)])
def test_progress_bar_past_a_second(capfd, progress, shown: bool) -> None:
    """tqdm draws on stderr once a query has run a second; ``auto`` is off when stderr is not a
    terminal (as under pytest)."""
    with fedquery.connect({"sources": {}, "settings": {"progress": progress}}) as con:
        with pytest.raises(fedquery.QueryTimeout):
            con.sql(RECURSIVE, timeout=2.0).arrow()
        con.sql("SELECT 1").arrow()  # quick: never a bar
    err = capfd.readouterr().err
    assert ("fedquery:" in err) == shown, err[-500:]


def test_ctrl_c_in_the_command_line_exits_130(tmp_path: Path) -> None:
    """The CLI prints ``interrupted`` and exits 130 for Ctrl-C during a query (it printed the
    QueryCancelled as an error, exit 1, once Ctrl-C became one)."""
    import select
    import subprocess
    import sys

    catalog = tmp_path / "empty.yaml"
    catalog.write_text("sources: {}\nsettings: {progress: true}\n")  # the bar: inside the query
    process = subprocess.Popen([sys.executable, "-m", "fedquery.cli", "sql", str(catalog), RECURSIVE],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen, deadline = b"", time.monotonic() + 60
        while b"fedquery:" not in seen and time.monotonic() < deadline:
            if select.select([process.stderr], [], [], 0.5)[0]:
                seen += os.read(process.stderr.fileno(), 4096)
        assert b"fedquery:" in seen  # the query has run a second
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()  # never left running an endless query
    assert process.returncode == 130, err
    assert err.decode().replace("\r", "\n").strip().splitlines()[-1] == "interrupted"


def test_a_plan_run_inside_the_query_stops_with_it(unseen) -> None:
    """A top-k's key set is a plan run on the query's worker before the search: a timeout stops
    it too (it ran on, endless, after the caller had its QueryTimeout)."""
    catalog, _ = unseen
    endless = "(WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r)"
    sql = f"""SELECT v.product_id FROM product_vectors AS v JOIN products AS p USING (product_id)
              WHERE p.product_id > {endless} - 1000000000000000
              ORDER BY array_distance(v.vec, (SELECT vec FROM product_vectors
                                              WHERE product_id = 1 AND model = 'm1'))
              LIMIT 3"""
    with fedquery.connect(catalog) as con:
        assert "keys of the rest of the join, run first" in con.explain(sql)
        error, seconds = _stopped(lambda: con.sql(sql, timeout=1.0).arrow(), fedquery.QueryTimeout)
        assert seconds < 1.0 + SOON
        assert _worker_ends(con)
        assert con.sql("SELECT count(*) AS n FROM products").fetchall()[0][0] > 0
