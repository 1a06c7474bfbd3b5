"""How fast a stopped query stops: from the stop (``timeout=``, ``Result.cancel()``, Ctrl-C) to
the caller's error, and to the end of the query's work (its worker's cursor closed), for an
endless DuckDB query, a long blob query and a long PostgreSQL join; then whether PostgreSQL
still runs the join.

    python bench/stop_latency.py        (starts its own PostgreSQL with pgserver)
"""

from __future__ import annotations

import _thread
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

import pyarrow as pa  # noqa: E402
from PIL import Image  # noqa: E402

import fedquery  # noqa: E402

RECURSIVE = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
RANGE = "SELECT count(*) FROM range(1000000000000)"
BLOB = ("SELECT octet_length(thumbnail(p.uri, CAST(16 + r.range % 400 AS INTEGER))) "
        "FROM photos AS p, range(20000) AS r")
JOIN = "SELECT count(*) AS n FROM pg.public.big AS a JOIN pg.public.big AS b ON a.x + b.x = -1"
HOW = ("timeout", "cancel", "ctrl-c")


def measure(con: fedquery.Connection, sql: str, how: str, after: float = 1.0) -> str:
    """Stop ``sql`` ``after`` seconds by ``how``; the caller's and the worker's delays."""
    result = con.sql(sql, timeout=after if how == "timeout" else None)
    if how == "cancel":
        threading.Timer(after, result.cancel).start()
    elif how == "ctrl-c":
        threading.Timer(after, _thread.interrupt_main).start()
    started = time.monotonic()
    try:
        result.arrow()
        return "finished (not stopped)"
    except BaseException as exc:  # noqa: BLE001 - what the caller gets
        caller, error = time.monotonic() - started - after, exc
    while con._session._running and time.monotonic() - started < 60:
        time.sleep(0.01)
    worker = time.monotonic() - started - after
    next_ok = con.sql("SELECT 1").fetchall() == [(1,)]
    return (f"{type(error).__name__}: caller +{caller * 1000:.0f} ms, worker ended "
            f"+{worker * 1000:.0f} ms, next query ok={next_ok}")


def main() -> None:
    import pgserver

    from tests.services.postgres import PgDatabase

    con = fedquery.connect({"sources": {}})
    for sql, name in ((RECURSIVE, "recursive CTE"), (RANGE, "range(1e12)")):
        for how in HOW:
            print(f"{name:14} {how:8}", measure(con, sql, how))
    root = tempfile.mkdtemp(prefix="fq-stop-photos-")
    for i in range(8):
        Image.effect_noise((640, 480), 40 + i).convert("RGB").save(f"{root}/p{i}.jpg", quality=90)
    photos = fedquery.connect({"sources": {"cam": {"kind": "files", "root": root}},
                               "tables": {"photos": {"source": "cam"}}})
    for how in HOW:
        print(f"{'blob thumbs':14} {how:8}", measure(photos, BLOB, how))
    server = pgserver.get_server(tempfile.mkdtemp(prefix="fq-stop-pg-"), cleanup_mode="delete")
    db = PgDatabase("postgres", server.get_uri())
    db.load("public.big", pa.table({"x": pa.array(range(200_000), pa.int64())}))
    pg = fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": db.dsn}}})
    for how in HOW:
        print(f"{'postgres join':14} {how:8}", measure(pg, JOIN, how))
    with db.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%a.x + b.x%' "
                       "AND state <> 'idle' AND pid <> pg_backend_pid()")
        print("PostgreSQL backends still running the join:", cursor.fetchall()[0][0])


if __name__ == "__main__":
    main()
