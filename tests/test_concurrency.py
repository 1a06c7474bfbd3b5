"""One connection used from many threads: planning and running at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import fedquery


def test_first_queries_from_many_threads_on_a_fresh_connection(sample) -> None:
    """The first plans of a connection describe tables and create functions; threads doing
    that at once must not meet DuckDB's "connection is busy"."""
    queries = ([f"SELECT count(*) FROM frames f JOIN drives d USING (drive_id) WHERE d.drive_id > {i}"
                for i in range(6)]
               + [f"SELECT count(*) FROM lidar_sweeps l JOIN frame_embeddings e USING (drive_id) "
                  f"WHERE l.drive_id > {i}" for i in range(6)]
               + [f"SELECT count(embed_text(d.city)), count(image_info(f.image_uri)) FROM frames f "
                  f"JOIN drives d USING (drive_id) WHERE f.frame_id > {i}" for i in range(6)])
    with fedquery.connect(sample) as con:
        with ThreadPoolExecutor(len(queries)) as pool:
            answers = list(pool.map(lambda q: con.sql(q).fetchall(), queries))
        for query, answer in zip(queries, answers, strict=True):
            assert answer == con.sql(query).fetchall(), query


QUERIES = [
    "SELECT count(*) FROM orders o JOIN clients c USING (customer_id) WHERE c.country = 'DE'",
    "SELECT segment, count(*) FROM clients GROUP BY 1 ORDER BY 1",
    "SELECT r.reason, count(*) FROM returns r JOIN orders o USING (order_id) GROUP BY 1 ORDER BY 1",
    "SELECT p.category, sum(o.qty) FROM orders o JOIN products p USING (product_id) GROUP BY 1 "
    "ORDER BY 1",
    "SELECT t.quarter, sum(t.target) FROM targets t GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM frame",  # must fail with PlanError, whatever the others do
]


def test_fresh_postgres_connection_from_many_threads(unseen, unseen_root, postgres_database) -> None:
    """The first plans over PostgreSQL tables describe them and make DuckDB stand-ins for them;
    sixteen threads doing that at once get every answer right and every error as PlanError
    (they met "connection is busy" and "Table ... does not exist" before)."""
    from tests.services.postgres import load_shop, shop_catalog_in_postgres

    catalog, ref = unseen
    load_shop(postgres_database, unseen_root)
    want = {q: ref.sql(q).fetchall() for q in QUERIES[:-1]}
    for _ in range(3):
        catalog_in_pg = shop_catalog_in_postgres(catalog, postgres_database.dsn)
        with fedquery.connect(catalog_in_pg) as con, ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda i: _outcome(con, QUERIES[i % len(QUERIES)]), range(32)))
        for i, outcome in enumerate(outcomes):
            query = QUERIES[i % len(QUERIES)]
            assert outcome == want.get(query, "PlanError"), query


def _outcome(con: fedquery.Connection, query: str, params=None):
    """The rows, or the class name of the FedQueryError (``params`` naming one means none)."""
    try:
        return con.sql(query, params=None if isinstance(params, str) else params).fetchall()
    except fedquery.FedQueryError as exc:
        return type(exc).__name__


MIXED = [
    ("SELECT d.city, count(*) FROM frames f JOIN drives d USING (drive_id) "
     "WHERE d.weather = 'rain' GROUP BY 1 ORDER BY 1", None),
    ("SELECT f.frame_id, image_info(f.image_uri).width FROM frames f ORDER BY f.frame_id LIMIT 5",
     None),
    ("SELECT e.frame_id FROM frame_embeddings e JOIN frames f USING (frame_id) "
     "WHERE f.camera = 'front' ORDER BY array_cosine_distance(e.embedding, "
     "(SELECT embedding FROM frame_embeddings ORDER BY frame_id LIMIT 1)), e.frame_id LIMIT 3", None),
    ("SELECT drive_id, len(frames) FROM drive WHERE city = ? ORDER BY drive_id", ["Austin"]),
    ("SELECT * FROM read_csv('/etc/passwd')", "ForbiddenError"),
    ("SELECT image_info('/etc/passwd')", "ForbiddenError"),
    ("SELECT * FROM framez", "PlanError"),
    ("SELECT count(*) FROM frames WHERE camera = $cam", {"cam": "front"}),
]


def test_eight_threads_on_one_connection_mixed(sample) -> None:
    """Joins, blob functions, a vector top-k, an entity, refusals and unknown names, from
    eight threads on one connection: every answer equal to the one run alone, every error of
    its class."""
    with fedquery.connect(sample) as con:
        want = [_outcome(con, sql, params) for sql, params in MIXED]
        assert [w for w in want if isinstance(w, str)] == ["ForbiddenError", "ForbiddenError",
                                                           "PlanError"]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: _outcome(con, *MIXED[i % len(MIXED)]), range(96)))
    assert got == [want[i % len(MIXED)] for i in range(96)]


def test_a_stalled_source_holds_up_no_other_query(unseen, unseen_root, postgres_database,
                                                   pg_proxy) -> None:
    """The first plan over a PostgreSQL table asks the server for its columns; while that
    server is silent, a query over the lake alone plans and answers at once (it waited behind
    the planner's lock for the whole read timeout before)."""
    import threading
    import time

    from tests.services.postgres import load_shop, proxied_dsn, shop_catalog_in_postgres

    catalog, ref = unseen
    load_shop(postgres_database, unseen_root)
    federated = shop_catalog_in_postgres(catalog, proxied_dsn(postgres_database.dsn, pg_proxy.port))
    federated["sources"]["pg"].update(read_timeout=20, connect_timeout=15)
    lake_only = "SELECT region, count(*) FROM orders GROUP BY 1 ORDER BY 1"
    with fedquery.connect(federated) as con:
        con.sql(lake_only).fetchall()  # the lake's table is described: no source is asked again
        pg_proxy.stall("both")
        stalled = threading.Thread(target=_outcome, args=(con, "SELECT count(*) FROM products"),
                                   daemon=True)
        stalled.start()
        time.sleep(1)  # let it reach the server (it then waits up to read_timeout, 20 s)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(_outcome, con, lake_only).result(timeout=5)
        assert answer == ref.sql(lake_only).fetchall()
        assert stalled.is_alive()  # the PostgreSQL query is still waiting for its server
        pg_proxy.pass_through()
        stalled.join(30)
