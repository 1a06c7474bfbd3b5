"""``fedquery serve`` as a driver or BI tool meets it: values and their Python types, the
session statements tools send first, catalog listings, the catalog's limits, cancelling.

The server runs in-process here (``fedquery.serve.Server`` on a thread) where a test needs
to see inside it (a disconnect cancels the query), else as the ``fedquery serve`` command.
"""

from __future__ import annotations

import datetime
import socket
import threading
import time
from decimal import Decimal

import psycopg
import pytest

import fedquery
from fedquery.serve import Server
from tests.serve_process import ServeProcess, psql

LONG = "SELECT count(*) FROM orders a, orders b, orders c WHERE a.qty + b.qty + c.qty > 1"


@pytest.fixture(scope="module")
def limited(unseen) -> dict:
    """The shop catalog with limits: 50 rows at most, 20 s at most."""
    return {**unseen[0], "settings": {"max_rows": 50, "timeout": 20}}


@pytest.fixture(scope="module")
def server(limited, tmp_path_factory):
    with ServeProcess(limited, tmp=tmp_path_factory.mktemp("serve")) as proc:
        assert proc.port, proc.output
        yield proc


@pytest.fixture()
def con(server):
    with psycopg.connect(server.dsn(application_name="pytest-tool"), autocommit=True) as con:
        yield con


# ---------------------------------------------------------------------- values

VALUES = """SELECT 7::INTEGER AS i, 9000000000::BIGINT AS big, 3::SMALLINT AS small,
  12.345::DECIMAL(10, 3) AS num, 0.1::DOUBLE AS dbl, 0.5::REAL AS flt, 'héllo'::VARCHAR AS txt,
  DATE '2024-02-29' AS d, TIMESTAMP '2024-02-29 13:14:15.123456' AS ts,
  TIMESTAMPTZ '2024-02-29 13:14:15+00' AS tstz, TIME '01:02:03' AS t, true AS yes, false AS no,
  NULL::INTEGER AS nothing, [1, NULL, 3] AS ints, ['a', 'b "c"', NULL] AS texts,
  [[1.5, 2.5], [3.5, 4.5]] AS grid, {'k': 1, 's': 'v'} AS record, '\\x01\\xff'::BLOB AS bytes,
  INTERVAL 1 DAY + INTERVAL 7384 SECOND AS span, 'inf'::DOUBLE AS inf, 'nan'::DOUBLE AS nan"""
EXPECTED = {
    "i": 7, "big": 9000000000, "small": 3, "num": Decimal("12.345"), "dbl": 0.1, "flt": 0.5,
    "txt": "héllo", "d": datetime.date(2024, 2, 29),
    "ts": datetime.datetime(2024, 2, 29, 13, 14, 15, 123456),
    "tstz": datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.UTC),
    "t": datetime.time(1, 2, 3), "yes": True, "no": False, "nothing": None, "ints": [1, None, 3],
    "texts": ["a", 'b "c"', None], "grid": [[Decimal("1.5"), Decimal("2.5")],
                                            [Decimal("3.5"), Decimal("4.5")]],
    "record": {"k": 1, "s": "v"}, "bytes": b"\x01\xff",
    "span": datetime.timedelta(days=1, hours=2, minutes=3, seconds=4), "inf": float("inf"),
}


def test_values_arrive_as_the_python_values_psycopg_gives_for_postgres_types(con) -> None:
    cur = con.execute(VALUES)
    row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
    nan = row.pop("nan")
    assert nan != nan  # noqa: PLR0124 - NaN is the one value not equal to itself
    assert row == EXPECTED
    assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in EXPECTED.items()}


def test_binary_results_of_scalar_types_are_the_same_values(con) -> None:
    scalars = VALUES.split(", [1, NULL")[0].replace(", TIME '01:02:03' AS t", "")
    text = con.execute(scalars).fetchone()
    with con.cursor(binary=True) as cur:
        assert cur.execute(scalars).fetchone() == text
    assert text[0] == 7


def test_binary_results_of_a_list_are_refused_with_0A000(con) -> None:
    with con.cursor(binary=True) as cur, pytest.raises(psycopg.errors.FeatureNotSupported):
        cur.execute("SELECT [1, 2] AS ints")


def test_parameters_bound_by_the_server_keep_their_types(con, unseen) -> None:
    query = ("SELECT %s::INTEGER + 1, %s, %s::DATE, %s::DOUBLE * 2, NOT %s, %s::DECIMAL(6, 2), "
             "%s::TIMESTAMP, %s IS NULL")
    params = [41, "it's \"quoted\"", datetime.date(2024, 1, 2), 1.25, True, Decimal("3.50"),
              datetime.datetime(2024, 1, 2, 3, 4, 5), None]
    assert con.execute(query, params).fetchone() == (
        42, "it's \"quoted\"", datetime.date(2024, 1, 2), 2.5, False, Decimal("3.50"),
        datetime.datetime(2024, 1, 2, 3, 4, 5), True)
    with con.cursor(binary=True) as cur:  # parameters sent in binary format
        assert cur.execute("SELECT %b::BIGINT * 2, %b::DOUBLE", [21, 0.5]).fetchone() == (42, 0.5)
    sql = "SELECT count(*) FROM orders WHERE region = %s AND qty > %s"
    with fedquery.connect(unseen[0]) as own:
        want = own.sql(sql.replace("%s", "?"), ["east", 3]).fetchone()
    assert con.execute(sql, ["east", 3]).fetchone() == want


def test_a_prepared_statement_runs_again_with_new_parameters(con) -> None:
    """psycopg prepares a query run often (and on ``prepare=True``): Parse once, Bind many."""
    got = [con.execute("SELECT count(*) FROM clients WHERE customer_id <= %s", [n],
                       prepare=True).fetchone()[0] for n in (10, 20, 600, 0)]
    assert got == [10, 20, 600, 0]


def test_describe_gives_the_columns_before_any_row(con) -> None:
    """``Cursor.describe``-like: a statement described (Parse, Describe S) without running."""
    pgconn = con.pgconn
    pgconn.prepare(b"described", b"SELECT customer_id, name FROM clients WHERE country = $1")
    described = pgconn.describe_prepared(b"described")
    assert [described.fname(i) for i in range(described.nfields)] == [b"customer_id", b"name"]
    assert [described.ftype(i) for i in range(described.nfields)] == [23, 25]
    assert described.nparams == 1


# ---------------------------------------------------------------------- what tools send first


def test_the_statements_drivers_and_bi_tools_open_with_are_answered(con) -> None:
    assert con.execute("SET extra_float_digits = 3").statusmessage == "SET"
    assert con.execute("SET application_name = 'DBeaver 24.1'").statusmessage == "SET"
    assert con.execute("SHOW application_name").fetchone() == ("DBeaver 24.1",)
    assert con.execute("SHOW extra_float_digits").fetchone() == ("3",)
    assert con.execute("SHOW TRANSACTION ISOLATION LEVEL").fetchone() == ("read committed",)
    assert con.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
    assert con.execute("select pg_catalog.version()").fetchone()[0].startswith("PostgreSQL 15.0")
    assert con.execute("SELECT current_schema(), current_database(), current_user").fetchone() \
        == ("public", "shop", "analyst")
    assert con.execute("SELECT current_setting('search_path')").fetchone() == ('"$user", public',)
    assert con.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").statusmessage == "SET"
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        con.execute("SET client_encoding = 'LATIN1'")
    assert con.info.parameter_status("server_version") == "15.0"
    assert con.info.parameter_status("TimeZone") == "UTC"


def test_transactions_are_no_ops_over_a_read_only_federation(server) -> None:
    """psycopg outside autocommit sends BEGIN before a query, COMMIT or ROLLBACK after."""
    with psycopg.connect(server.dsn()) as con:
        assert con.execute("SELECT count(*) FROM products").fetchone() == (150,)
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        con.commit()
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with con.transaction():
            assert con.execute("SELECT 1").fetchone() == (1,)
        con.execute("SELECT 2")
        con.rollback()
        assert con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_catalog_listings_show_the_federation_s_tables_and_columns(con, unseen) -> None:
    tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                         "WHERE table_schema = 'public' ORDER BY table_name").fetchall()
    assert [t for _, t in tables] == sorted(unseen[0]["tables"])
    columns = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_name = %s ORDER BY ordinal_position", ["clients"]).fetchall()
    assert columns == [("customer_id", "INTEGER"), ("name", "VARCHAR"), ("segment", "VARCHAR"),
                       ("country", "VARCHAR")]
    shop = con.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = 'shop' ORDER BY 1").fetchall()
    assert ("customers",) in shop  # a SQL source's own tables, under the source's name
    assert con.execute("SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'orders'") \
        .fetchone() == (1,)


def test_a_catalog_listing_cannot_reach_files_or_rows(con) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        con.execute("SELECT * FROM information_schema.tables, read_csv('/etc/passwd')")
    assert con.execute("SELECT count(*) FROM information_schema.columns "
                       "WHERE table_name = 'clients'").fetchone() == (4,)


def test_empty_queries_and_show_tables(con, server, unseen) -> None:
    with fedquery.connect(unseen[0]) as own:
        assert sorted(con.execute("SHOW TABLES").fetchall()) == sorted(own.sql("SHOW TABLES")
                                                                       .fetchall())
    done = psql(server.dsn(), ";")
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------- limits and cancelling


def test_the_catalog_row_limit_is_sqlstate_54000(con) -> None:
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as caught:
        con.execute("SELECT * FROM orders").fetchall()
    assert "50" in str(caught.value)
    assert len(con.execute("SELECT * FROM orders LIMIT 50").fetchall()) == 50


def test_the_catalog_timeout_is_sqlstate_57014(unseen, tmp_path) -> None:
    catalog = {**unseen[0], "settings": {"timeout": 1}}
    with ServeProcess(catalog, tmp=tmp_path) as proc, psycopg.connect(proc.dsn(),
                                                                       autocommit=True) as con:
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            con.execute(LONG)
        assert "timeout" in str(caught.value)
        assert con.execute("SELECT count(*) FROM products").fetchone() == (150,)


def test_a_cancel_request_stops_the_query_and_the_session_goes_on(con) -> None:
    threading.Timer(1.0, con.cancel).start()
    with pytest.raises(psycopg.errors.QueryCanceled) as caught:
        con.execute(LONG)
    assert "cancel" in str(caught.value)
    assert con.execute("SELECT count(*) FROM products").fetchone() == (150,)


def test_a_client_that_hangs_up_mid_query_has_its_query_cancelled(unseen) -> None:
    """The handler of a client that closed its socket while a long query ran ends (its
    session is forgotten) long before the query could have finished."""
    with fedquery.connect(unseen[0]) as connection:
        server = Server(connection, ("127.0.0.1", 0), verifier=None)
        loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
        loop.start()
        try:
            port = server.server_address[1]
            client = psycopg.connect(f"host=127.0.0.1 port={port} user=u dbname=d",
                                     autocommit=True)
            client.pgconn.send_query(LONG.encode())
            _until(lambda: server.ctxts and _running(server))
            socket.socket(fileno=client.pgconn.socket).close()  # hang up, no Terminate
            _until(lambda: not server.ctxts, seconds=30)
            assert connection.sql("SELECT count(*) FROM products").fetchone() == (150,)
        finally:
            server.shutdown()
            server.stop_clients()
            loop.join()
            server.server_close()


def _running(server: Server) -> bool:
    return any(ctx.session._running for ctx in list(server.ctxts.values()))


def _until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
