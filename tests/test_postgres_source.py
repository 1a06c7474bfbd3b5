"""``kind: postgres`` against a real PostgreSQL: types, parameter values, the SQL PostgreSQL
receives, timeouts, redaction, read-only sessions, and whole queries compared with DuckDB."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pytest

import fedquery
from fedquery.connectors._postgres_settings import Settings
from fedquery.connectors.base import ScanRequest, TableRef
from fedquery.errors import CatalogError, SourceError
from tests.services.postgres import load_shop, shop_catalog_in_postgres

PASSWORD = "S3cr3tPW"

TYPED_DDL = """CREATE TABLE public.typed (
  id integer, small smallint, big bigint, price numeric(12, 3), ratio numeric,
  steps numeric(5, 1)[], r real, d double precision, ok boolean, t text, v varchar(5),
  c char(3), day date, ts timestamp, tstz timestamptz, tod time, span interval, u uuid,
  j json, jb jsonb, ints integer[], words text[], raw bytea)"""
TYPED_ROWS = [
    """INSERT INTO public.typed VALUES (1, 1, 10000000000, 1234.567, 1.25, '{1.5,NULL,-2.0}',
      1.5, 2.25, true, 'O''Brien', 'abc', 'xy', '2024-02-29', '2024-02-29 23:59:59.123456',
      '2024-03-01 01:30:00+02', '12:34:56', '1 day 02:00:00',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{"k": "v"}', '{1,2,3}',
      '{"a","b"}', '\\x00ff10')""",
    """INSERT INTO public.typed VALUES (2, -2, -5, -0.001, 123456789.123456789, '{}', -0.5,
      -1e300, false, '', 'Zoë', 'z', '1999-12-31', '2000-01-01 00:00:00',
      '2000-01-01 00:00:00+00', '00:00:00', '-3 hours', '00000000-0000-0000-0000-000000000000',
      '[]', '{}', '{}', '{}', '\\x')""",
    "INSERT INTO public.typed (id) VALUES (3)",
]
TYPED_SCHEMA = {
    "id": pa.int32(), "small": pa.int16(), "big": pa.int64(), "price": pa.decimal128(12, 3),
    "ratio": pa.float64(), "steps": pa.list_(pa.decimal128(5, 1)), "r": pa.float32(),
    "d": pa.float64(), "ok": pa.bool_(), "t": pa.string(), "v": pa.string(), "c": pa.string(),
    "day": pa.date32(), "ts": pa.timestamp("us"), "tstz": pa.timestamp("us", "UTC"),
    "tod": pa.time64("us"), "span": pa.month_day_nano_interval(), "u": pa.uuid(),
    "j": pa.string(), "jb": pa.string(), "ints": pa.list_(pa.int32()),
    "words": pa.list_(pa.string()), "raw": pa.binary(),
}
DUCKDB_TYPES = {  # what DuckDB (the residual) sees: the types its own postgres extension gives
    "price": "DECIMAL(12,3)", "ratio": "DOUBLE", "steps": "DECIMAL(5,1)[]",
    "tstz": "TIMESTAMP WITH TIME ZONE", "span": "INTERVAL", "u": "UUID", "jb": "VARCHAR",
    "ints": "INTEGER[]", "raw": "BLOB", "day": "DATE", "ts": "TIMESTAMP",
}


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def db(postgres_database):
    """The test module's database: the typed table, a view, a table in another schema and a
    mixed-case table, analysed so row estimates exist."""
    postgres_database.execute(
        TYPED_DDL, *TYPED_ROWS,
        "CREATE VIEW public.typed_ids AS SELECT id FROM public.typed",
        "CREATE SCHEMA lab",
        "CREATE TABLE lab.readings AS SELECT g AS id, g % 7 AS bucket FROM generate_series(1, 5000) g",
        'CREATE TABLE public."MixedCase" ("CamelCol" integer, plain text)',
        """INSERT INTO public."MixedCase" VALUES (1, 'one'), (2, 'two')""",
        "ANALYZE")
    return postgres_database


def secret_dsn(dsn: str) -> tuple[str, str]:
    """The DSN with a password in it, and that password (pgserver trusts every local role, so
    an invented password connects; a server given through FEDQUERY_TEST_PG_DSN keeps its own)."""
    if "://" not in dsn:
        return (dsn, dsn.split("password=", 1)[1].split()[0]) if "password=" in dsn else (
            f"{dsn} password={PASSWORD}", PASSWORD)
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    scheme, rest = dsn.split("://", 1)
    user, at, host = rest.partition("@")
    if not at:
        user, host = "postgres", rest
    return f"{scheme}://{user.split(':')[0]}:{PASSWORD}@{host}", PASSWORD


@pytest.fixture(scope="module")
def secret(db) -> str:
    return secret_dsn(db.dsn)[1]


@pytest.fixture(scope="module")
def con(db, secret):
    """A connection whose DSN, with its password, comes from ``${FQ_PG_DSN}``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FQ_PG_DSN", secret_dsn(db.dsn)[0])
        connection = fedquery.connect({
            "sources": {"pg": {"kind": "postgres", "dsn": "${FQ_PG_DSN}", "statement_timeout": 2,
                               "batch_rows": 1000}},
            "tables": {"typed": {"source": "pg", "table": "typed"},
                       "readings": {"source": "pg", "table": "lab.readings"}}})
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def pg(con):
    return con._session.connectors["pg"]


def scan(pg, **request) -> pa.Table:
    return pg.scan(ScanRequest(table="pg.public.typed", **request)).read_all()


def silent_listener() -> socket.socket:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def catalog(dsn_var: str, **settings) -> dict:
    return {"sources": {"pg": {"kind": "postgres", "dsn": f"${{{dsn_var}}}", **settings}},
            "tables": {}}


def everything_said(exc: BaseException) -> str:
    """An exception's message, repr and formatted traceback with its whole chain."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


# ---------------------------------------------------------------------- types


def test_schema_maps_every_type(pg) -> None:
    schema = pg.schema(TableRef("public", "typed"))
    assert dict(zip(schema.names, schema.types, strict=True)) == TYPED_SCHEMA


def test_scan_types_match_schema(pg) -> None:
    got = scan(pg)
    assert got.schema == pg.schema(TableRef("public", "typed"))
    assert scan(pg, filter="id < 0").schema == got.schema


def test_values_round_trip(pg) -> None:
    rows = {r["id"]: r for r in scan(pg).to_pylist()}
    first, second, empty = rows[1], rows[2], rows[3]
    assert first["price"] == Decimal("1234.567") and second["price"] == Decimal("-0.001")
    assert first["ratio"] == 1.25 and second["ratio"] == pytest.approx(123456789.123456789)
    assert first["steps"] == [Decimal("1.5"), None, Decimal("-2.0")] and second["steps"] == []
    assert first["big"] == 10_000_000_000 and first["small"] == 1
    assert first["tstz"] == dt.datetime(2024, 2, 29, 23, 30, tzinfo=dt.UTC)
    assert first["ts"] == dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    assert first["day"] == dt.date(2024, 2, 29) and first["tod"] == dt.time(12, 34, 56)
    assert first["u"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert first["j"] == '{"k": [1, 2]}' and first["jb"] == '{"k": "v"}'
    assert first["ints"] == [1, 2, 3] and first["words"] == ["a", "b"]
    assert first["raw"] == b"\x00\xff\x10" and second["raw"] == b""
    assert (first["t"], second["t"], second["v"], first["c"]) == ("O'Brien", "", "Zoë", "xy ")
    assert first["span"].days == 1 and first["span"].nanoseconds == 2 * 3600 * 10**9
    assert all(value is None for key, value in empty.items() if key != "id")


def test_duckdb_sees_the_types_of_its_postgres_extension(pg) -> None:
    table = scan(pg)
    with duckdb.connect() as ref:
        ref.register("t", table)
        types = dict(ref.execute("SELECT column_name, column_type FROM (DESCRIBE t)").fetchall())
        assert {k: types[k] for k in DUCKDB_TYPES} == DUCKDB_TYPES
        uid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        assert ref.execute("SELECT id FROM t WHERE u = $u", {"u": uid}).fetchall() == [(1,)]


def test_run_sql_star_has_the_scan_types(pg) -> None:
    got = pg.run_sql("SELECT * FROM pg.public.typed").read_all()
    assert got.schema == pg.schema(TableRef("public", "typed"))


def test_run_sql_aggregate_types_follow_duckdb(pg) -> None:
    got = pg.run_sql(
        "SELECT sum(t.price) AS total, sum(t.big) AS bigs, avg(t.price) AS mean, min(t.price) AS low,"
        " count(*) AS n, CAST(t.ratio AS DECIMAL(20, 6)) AS r6 FROM pg.public.typed AS t "
        "WHERE t.id = 2 GROUP BY t.ratio").read_all()
    assert dict(zip(got.schema.names, got.schema.types, strict=True)) == {
        "total": pa.decimal128(38, 3), "bigs": pa.decimal128(38, 0), "mean": pa.float64(),
        "low": pa.decimal128(12, 3), "n": pa.int64(), "r6": pa.decimal128(20, 6)}
    assert got.to_pylist() == [{"total": Decimal("-0.001"), "bigs": Decimal(-5),
                                "mean": -0.001, "low": Decimal("-0.001"), "n": 1,
                                "r6": Decimal("123456789.123457")}]


def test_projection_and_no_columns(pg) -> None:
    got = scan(pg, columns=("tstz", "id"), filter="id = 1")
    assert got.column_names == ["tstz", "id"] and got.num_rows == 1
    assert scan(pg, columns=(), filter="id >= 2").num_rows == 2


# ---------------------------------------------------------------------- parameter values

PARAM_CASES = {
    "int": ("id = $x", 2, {2}),
    "string_with_quote": ("t = $x", "O'Brien", {1}),
    "injection_is_a_value": ("t = $x", "x' OR '1'='1", set()),
    "empty_string": ("t = $x", "", {2}),
    "non_ascii": ("v = $x", "Zoë", {2}),
    "float": ("d > $x", 0.0, {1}),
    "decimal": ("price > $x", Decimal("1000.5"), {1}),
    "date": ("day = $x", dt.date(2024, 2, 29), {1}),
    "timestamp": ("ts >= $x", dt.datetime(2024, 2, 29, 23, 59, 59, 123456), {1}),
    "timestamptz": ("tstz = $x", dt.datetime(2024, 2, 29, 23, 30, tzinfo=dt.UTC), {1}),
    "timestamptz_offset": ("tstz = $x",
                           dt.datetime(2024, 3, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                           {1}),
    "time": ("tod > $x", dt.time(1, 0), {1}),
    "interval": ("span < $x", dt.timedelta(hours=1), {2}),
    "bool": ("ok = $x", False, {2}),
    "uuid": ("u = $x", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), {1}),
    "uuid_as_text": ("u = $x", "00000000-0000-0000-0000-000000000000", {2}),
    "bytes": ("raw = $x", b"\x00\xff\x10", {1}),
    "null": ("t IS NOT DISTINCT FROM $x", None, {3}),
    "in_list": ("id IN $x", [1, 3, 99], {1, 3}),
    "empty_in_list": ("id IN $x", [], set()),
    "list_contains": ("list_contains(words, $x)", "b", {1}),
    "bigint": ("big = $x", 10_000_000_000, {1}),
}


@pytest.mark.parametrize("condition, value, ids", PARAM_CASES.values(), ids=PARAM_CASES.keys())
def test_filter_with_parameter(pg, condition: str, value, ids: set[int]) -> None:
    got = scan(pg, columns=("id",), filter=condition, params={"x": value})
    assert set(got["id"].to_pylist()) == ids
    assert "$x" not in pg.sent[-1]


def test_several_parameters_and_top_n(pg) -> None:
    got = scan(pg, columns=("id", "d"), filter="id >= $low AND t <> $name",
               params={"low": 1, "name": "nobody"}, order_by=("d DESC", "id"), limit=2)
    assert got.to_pylist() == [{"id": 1, "d": 2.25}, {"id": 2, "d": -1e300}]


def test_missing_parameter_is_a_source_error(pg) -> None:
    with pytest.raises(SourceError, match=r"\$x"):
        scan(pg, filter="id = $x", params={})


def test_unsendable_parameter_is_a_source_error(pg) -> None:
    with pytest.raises(SourceError, match="dict"):
        scan(pg, filter="id = $x", params={"x": {"a": 1}})


def test_run_sql_positional_parameters(pg) -> None:
    got = pg.run_sql("SELECT t.id FROM pg.public.typed AS t WHERE t.id = $1 OR t.t = $2",
                     [2, "O'Brien"]).read_all()
    assert sorted(got["id"].to_pylist()) == [1, 2]


# ---------------------------------------------------------------------- what PostgreSQL receives


def test_scan_sql_snapshot(pg) -> None:
    scan(pg, columns=("id", "words"), filter="len(words) = $n AND t LIKE 'O%'", params={"n": 2},
         order_by=("id DESC",), limit=5)
    assert pg.sent[-1] == (
        'SELECT "id", "words" FROM "public"."typed" WHERE CARDINALITY("words") = 2 '
        """AND "t" LIKE 'O%' ESCAPE '' ORDER BY "id" DESC NULLS LAST LIMIT 5""")


def test_run_sql_snapshot_and_source_sql(pg) -> None:
    sql = ("SELECT r.bucket, count(*) AS n FROM pg.lab.readings AS r JOIN pg.public.typed AS t "
           "ON r.id = t.id WHERE t.day >= $since GROUP BY r.bucket ORDER BY n DESC LIMIT 3")
    shown = pg.source_sql(sql)
    assert shown == (
        'SELECT r."bucket", COUNT(*) AS "n" FROM "lab"."readings" AS r JOIN "public"."typed" AS t '
        'ON r."id" = t."id" WHERE t."day" >= $since GROUP BY r."bucket" ORDER BY "n" DESC '
        "NULLS LAST LIMIT 3")
    got = pg.run_sql(sql, {"since": dt.date(2000, 1, 1)}).read_all()
    assert got.to_pylist() == [{"bucket": 1, "n": 1}]
    assert pg.sent[-1] == shown.replace("$since", "CAST('2000-01-01' AS DATE)")
    assert pg.source_sql(sql, {"since": dt.date(2000, 1, 1)}) == pg.sent[-1]


def test_mixed_case_names_are_matched_and_quoted(pg) -> None:
    got = pg.scan(ScanRequest(table="pg.public.mixedcase", columns=("CamelCol",),
                              filter="camelcol > 1 AND PLAIN = 'two'")).read_all()
    assert got.to_pylist() == [{"CamelCol": 2}]
    assert pg.sent[-1] == ('SELECT "CamelCol" FROM "public"."MixedCase" '
                           """WHERE "CamelCol" > 1 AND "plain" = 'two'""")


def test_run_sql_keeps_output_names(pg) -> None:
    got = pg.run_sql('SELECT m.CamelCol AS "Total" FROM pg.public.MixedCase AS m '
                     "ORDER BY Total DESC").read_all()
    assert got.column_names == ["Total"] and got["Total"].to_pylist() == [2, 1]


def test_run_sql_takes_one_query_only(pg) -> None:
    with pytest.raises(SourceError, match="one query"):
        pg.run_sql("SELECT 1; DROP TABLE public.typed")
    with pytest.raises(SourceError, match="cannot send"):
        pg.run_sql("SELEC 1")


def test_sent_is_bounded(pg) -> None:
    for i in range(105):
        pg.source_sql(f"SELECT {i}")  # rendering sends nothing
    assert len(pg.sent) <= 100
    for _ in range(101):
        pg.run_sql("SELECT 1 AS one").read_all()
    assert len(pg.sent) == 100 and set(pg.sent) == {'SELECT 1 AS "one"'}


# ---------------------------------------------------------------------- description


def test_tables_lists_user_tables_and_views_only(pg) -> None:
    tables = pg.tables()
    for ref in (TableRef("public", "typed"), TableRef("public", "typed_ids"),
                TableRef("lab", "readings"), TableRef("public", "MixedCase")):
        assert ref in tables
    assert not {t.schema for t in tables} & {"pg_catalog", "information_schema"}


def test_estimate_rows(pg) -> None:
    assert pg.estimate_rows(TableRef("lab", "readings")) == 5000
    assert pg.estimate_rows(TableRef("public", "typed_ids")) is None


def test_describe_names_the_place_not_the_secret(pg, secret) -> None:
    detail = pg.describe(TableRef("public", "typed"))
    assert detail["kind"] == "postgres" and detail["relation"] == '"public"."typed"'
    assert detail["database"] and secret not in repr(detail)


def test_unknown_table_and_column(pg) -> None:
    with pytest.raises(SourceError, match="no table"):
        pg.schema(TableRef("public", "nope"))
    with pytest.raises(SourceError, match="no column 'nope'"):
        scan(pg, columns=("nope",))


# ---------------------------------------------------------------------- sessions


def test_read_only_session(pg, db) -> None:
    with pytest.raises(SourceError, match="read-only"):
        pg.run_sql("WITH gone AS (DELETE FROM public.typed RETURNING id) "
                   "SELECT count(*) FROM gone").read_all()
    with pytest.raises(SourceError):
        pg.run_sql("INSERT INTO public.typed (id) VALUES (99)")
    assert scan(pg, columns=("id",)).num_rows == 3


def test_statement_timeout(pg) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="statement_timeout") as caught:
        pg.run_sql("SELECT pg_sleep(60)").read_all()
    assert time.monotonic() - started < 2 + 10  # the catalog says 2 s; 60 s means it did not work
    assert caught.value.source == "pg"
    assert pg.run_sql("SELECT 1 AS one").read_all().num_rows == 1  # the pool recovered


def test_statement_timeout_interval_string(db, monkeypatch) -> None:
    monkeypatch.setenv("FQ_PG_DSN2", db.dsn)
    with (fedquery.connect(catalog("FQ_PG_DSN2", statement_timeout="300ms")) as con,
          pytest.raises(SourceError, match="300ms")):
        con._session.connectors["pg"].run_sql("SELECT pg_sleep(30)").read_all()


def test_bad_statement_timeout_fails_at_connect(db, monkeypatch) -> None:
    monkeypatch.setenv("FQ_PG_DSN2", db.dsn)
    with pytest.raises(SourceError, match="statement_timeout"):
        fedquery.connect(catalog("FQ_PG_DSN2", statement_timeout="forever"))


def test_ctrl_c_cancels_the_statement(db, monkeypatch) -> None:
    """Ctrl-C while a read waits: KeyboardInterrupt at once, and the server stops the
    statement (the session's cancel is sent from another thread)."""
    monkeypatch.setenv("FQ_PG_DSN2", db.dsn)
    marker = f"fq_ctrl_c_{uuid.uuid4().hex[:8]}"

    def running() -> bool:
        with db.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                           "AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                           parameters=(marker,))
            return cursor.fetchall()[0][0] > 0

    with fedquery.connect(catalog("FQ_PG_DSN2")) as con:
        pg = con._session.connectors["pg"]
        interrupt = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        interrupt.start()
        with pytest.raises(KeyboardInterrupt):
            pg.run_sql(f"SELECT pg_sleep(60) AS {marker}").read_all()
        interrupt.join()
        assert wait_for(lambda: not running())
        assert pg.run_sql("SELECT 1 AS one").read_all().num_rows == 1


def test_batches_are_bounded_and_streamed(pg) -> None:
    reader = pg.scan(ScanRequest(table="pg.lab.readings", columns=("id",)))
    sizes = [batch.num_rows for batch in reader]
    assert sum(sizes) == 5000 and max(sizes) <= 1000


def test_a_stream_dropped_early_returns_its_session(pg) -> None:
    idle = pg._pool.idle
    reader = pg.run_sql("SELECT g FROM generate_series(1, 2000000) AS g")
    reader.read_next_batch()
    del reader  # the session is cancelled and released on its own thread
    assert wait_for(lambda: pg._pool.idle >= max(idle, 1))
    assert pg.run_sql("SELECT 42 AS x").read_all()["x"].to_pylist() == [42]


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_concurrent_scans(pg) -> None:
    results: dict[int, int] = {}

    def work(bucket: int) -> None:
        got = pg.scan(ScanRequest(table="pg.lab.readings", columns=("id",),
                                  filter="bucket = $b", params={"b": bucket})).read_all()
        results[bucket] = got.num_rows

    threads = [threading.Thread(target=work, args=(b,)) for b in range(7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results.values()) == 5000 and len(results) == 7


# ---------------------------------------------------------------------- connecting and secrets


def test_connect_timeout_against_a_silent_server(monkeypatch) -> None:
    with silent_listener() as listener:
        port = listener.getsockname()[1]
        monkeypatch.setenv("FQ_SILENT_DSN", f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/db")
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            fedquery.connect(catalog("FQ_SILENT_DSN", connect_timeout=2))
        elapsed = time.monotonic() - started
    assert caught.value.source == "pg"
    assert "timeout" in str(caught.value) and "connect_timeout is 2 s" in str(caught.value)
    assert 1.5 < elapsed < 2 + 3
    assert PASSWORD not in everything_said(caught.value)


def test_unreachable_server_is_named_without_the_password(monkeypatch) -> None:
    monkeypatch.setenv("FQ_DEAD_DSN", f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/db")
    with pytest.raises(SourceError, match="cannot connect") as caught:
        fedquery.connect(catalog("FQ_DEAD_DSN", connect_timeout=3))
    assert caught.value.source == "pg"
    assert PASSWORD not in everything_said(caught.value)


def test_key_value_dsn_password_is_hidden(monkeypatch) -> None:
    monkeypatch.setenv("FQ_DEAD_DSN", f"host=127.0.0.1 port=1 user=x password={PASSWORD} dbname=d")
    with pytest.raises(SourceError) as caught:
        fedquery.connect(catalog("FQ_DEAD_DSN"))
    assert PASSWORD not in everything_said(caught.value)


def test_password_never_shown(con, pg, secret) -> None:
    assert secret not in repr(con) and secret not in repr(pg)
    assert secret not in con.explain("SELECT id FROM typed WHERE t = 'O''Brien'")
    with pytest.raises(SourceError) as caught:
        pg.run_sql("SELECT no_such_column FROM pg.public.typed").read_all()
    assert secret not in everything_said(caught.value)
    assert "no_such_column" in str(caught.value)


@pytest.mark.parametrize("settings, key", [
    ({"connect_timeout": "soon"}, "connect_timeout"),
    ({"connect_timeout": -1}, "connect_timeout"),
    ({"batch_rows": 0}, "batch_rows"),
    ({"pool_size": 1.5}, "pool_size"),
    ({"password": "x"}, "password"),
    ({"read_timeout": "soon"}, "read_timeout"),
    ({"read_timeout": 0}, "read_timeout"),
    ({"read_timeout": float("inf")}, "read_timeout"),
], ids=["timeout_text", "timeout_negative", "batch_rows", "pool_size", "unknown", "read_text",
        "read_zero", "read_infinite"])
def test_settings_are_checked(settings: dict, key: str, monkeypatch) -> None:
    monkeypatch.setenv("FQ_ANY_DSN", "postgresql://nobody@127.0.0.1:1/db")
    with pytest.raises(CatalogError, match=rf"sources\.pg\.{key}"):
        fedquery.connect(catalog("FQ_ANY_DSN", **settings))


def settings_of(**raw) -> Settings:
    return Settings(raw, "<dict>: sources.pg")


@pytest.mark.parametrize("raw, seconds", [
    ({}, 300), ({"statement_timeout": 2}, 7), ({"statement_timeout": "2min"}, 125),
    ({"statement_timeout": "1500ms"}, 6.5), ({"statement_timeout": "forever"}, 300),
    ({"statement_timeout": 2, "read_timeout": 1.5}, 1.5),
], ids=["none", "seconds", "interval", "milliseconds", "unreadable", "explicit"])
def test_read_timeout_follows_statement_timeout(raw: dict, seconds: float) -> None:
    assert settings_of(dsn="host=h", **raw).read_timeout == seconds


def test_dsn_gets_keepalives_unless_it_has_its_own() -> None:
    uri = settings_of(dsn="postgresql://u@h/db?keepalives_idle=60", read_timeout=4).effective_dsn()
    assert "keepalives=1" in uri and "keepalives_idle=60" in uri and "keepalives_idle=10" not in uri
    assert "tcp_user_timeout=4000" in uri and uri.endswith("client_encoding=UTF8")
    plain = settings_of(dsn="host=h dbname=d", read_timeout=100).effective_dsn()
    assert "keepalives_idle=10" in plain and "tcp_user_timeout=30000" in plain


def test_sessions_get_the_settings_the_sql_relies_on(pg) -> None:
    got = pg.run_sql("SELECT current_setting('standard_conforming_strings') AS scs, "
                     "current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, "
                     "current_setting('transaction_read_only') AS ro, "
                     "current_setting('client_encoding') AS enc").read_all().to_pylist()
    assert got == [{"scs": "on", "tz": "UTC", "ds": "ISO, MDY", "ro": "on", "enc": "UTF8"}]


# ---------------------------------------------------------------------- whole queries


@pytest.fixture(scope="module")
def shop(db, unseen, unseen_root: Path):
    """The unseen shop with its warehouse in PostgreSQL and its lake as Parquet; the DuckDB
    reference reads the original files under the same names."""
    catalog_dict, ref = unseen
    load_shop(db, unseen_root)
    shop_catalog = shop_catalog_in_postgres(catalog_dict, "${FQ_SHOP_DSN}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FQ_SHOP_DSN", db.dsn)
        con = fedquery.connect(shop_catalog)
    yield con, ref
    con.close()


def same_rows(got: pa.Table, want: pa.Table) -> None:
    assert got.column_names == want.column_names
    key = [(name, "ascending") for name in want.column_names]
    assert got.sort_by(key).to_pylist() == want.sort_by(key).to_pylist()


WHOLE_IN_PG = ()
SHOP_QUERIES = {
    "filter": ("SELECT customer_id, name FROM clients WHERE country = $c AND segment = 'corporate'",
               {"c": "DE"}, WHOLE_IN_PG),
    "aggregate_in_pg": ("SELECT country, count(*) AS n FROM clients GROUP BY country", None,
                        WHOLE_IN_PG),
    "decimal_sum": ("SELECT category, sum(price) AS total, max(price) AS top FROM products "
                    "GROUP BY category", None, WHOLE_IN_PG),
    "join_in_pg": ("SELECT t.segment, sum(t.target) AS goal FROM targets t JOIN clients c "
                   "ON c.segment = t.segment AND c.country = t.country WHERE t.quarter = $q "
                   "GROUP BY t.segment", {"q": 2}, WHOLE_IN_PG),
    "top_n": ("SELECT product_id, price FROM products WHERE price IS NOT NULL "
              "ORDER BY price DESC, product_id LIMIT 5", None, WHOLE_IN_PG),
    "cross_source": ("SELECT c.segment, sum(o.qty) AS qty FROM orders o JOIN clients c "
                     "ON o.customer_id = c.customer_id WHERE c.country = 'DE' GROUP BY c.segment",
                     None, ()),
    "one_customer": ("SELECT o.order_id, o.qty, p.title FROM orders o JOIN products p "
                     "ON o.product_id = p.product_id WHERE o.customer_id = $id", {"id": 42}, ()),
    "positional_cross_source": (
        "SELECT c.segment, sum(o.qty) AS qty FROM orders o JOIN clients c "
        "ON o.customer_id = c.customer_id WHERE o.qty > ? AND c.country = ? GROUP BY c.segment",
        [3, "DE"], ()),
    "numbered_cross_source": (
        "SELECT c.segment, count(*) AS n FROM orders o JOIN clients c "
        "ON o.customer_id = c.customer_id WHERE c.country = $2 AND o.qty > $1 GROUP BY c.segment",
        [3, "DE"], ()),
    "positional_in_pg": ("SELECT count(*) AS n FROM clients WHERE segment = ? AND country <> ?",
                         ["corporate", "US"], ()),
    "pg_subquery_in_cross_source": (
        "SELECT r.reason, count(*) AS n FROM returns r JOIN orders o ON o.order_id = r.order_id "
        "WHERE o.customer_id IN (SELECT customer_id FROM clients WHERE segment = $s) "
        "GROUP BY r.reason", {"s": "home_office"}, ()),
}


@pytest.mark.parametrize("sql, params", [pytest.param(sql, params, marks=marks, id=name)
                                         for name, (sql, params, marks) in SHOP_QUERIES.items()])
def test_shop_query_equals_duckdb(shop, sql: str, params) -> None:
    con, ref = shop
    want = ref.sql(sql, params=params).to_arrow_table()
    same_rows(con.sql(sql, params=params).arrow(), want)


def test_filter_reaches_postgres_in_explain(shop) -> None:
    con, _ = shop
    text = con.explain("SELECT name FROM clients WHERE country = 'DE' AND customer_id < 100")
    pg_lines = [line for line in text.splitlines() if line.strip().startswith("sql:")]
    assert any("\"country\" = 'DE'" in line and '"public"."customers"' in line
               for line in pg_lines), text


def test_run_sql_decimal_types_survive_a_wrapping_query(pg) -> None:
    """The executor wraps a fragment to add join keys; its output types must not change."""
    inner = ("SELECT t.id, sum(t.price) AS total FROM pg.public.typed AS t GROUP BY t.id")
    plain = pg.run_sql(inner).read_all()
    wrapped = pg.run_sql(f"SELECT * FROM ({inner}) AS __probe WHERE id IN (1, 2)").read_all()
    with_cte = pg.run_sql(f"WITH w AS ({inner}) SELECT w.total FROM w").read_all()
    assert plain.schema.field("total").type == pa.decimal128(38, 3)
    assert wrapped.schema == plain.schema
    assert with_cte.schema.field("total").type == pa.decimal128(38, 3)


def test_a_bare_question_mark_is_refused_not_guessed(pg) -> None:
    """A ``?`` reaching the source has lost its place in the user's query: never guess it."""
    with pytest.raises(SourceError, match=r"positional \? parameter"):
        pg.run_sql("SELECT t.id FROM pg.public.typed AS t WHERE t.id = ?", [1])
    assert pg.source_sql("SELECT t.id FROM pg.public.typed AS t WHERE t.id = ?").endswith("= ?")
    got = pg.run_sql("SELECT t.id FROM pg.public.typed AS t WHERE t.id = $2 OR t.id = $1",
                     {"1": 1, "2": 3}).read_all()
    assert sorted(got["id"].to_pylist()) == [1, 3]


class _LyingInt(int):
    def __str__(self) -> str:
        return "1 UNION ALL SELECT 99999 FROM pg_settings"

    __repr__ = __str__


class _LyingFloat(float):
    def __repr__(self) -> str:
        return "0 OR true"

    __str__ = __repr__


class _LyingStr(str):
    def __str__(self) -> str:
        return "x' OR 'a' = 'a"

    def replace(self, *args, **kwargs) -> str:  # what a naive escaper would call
        return "x' OR 'a' = 'a"


class _LyingDecimal(decimal.Decimal):
    def __str__(self) -> str:
        return "0 OR true"


@pytest.mark.parametrize(("sql", "value", "rows"), [
    ("SELECT id FROM readings WHERE id = $v ORDER BY id", _LyingInt(3), [(3,)]),
    ("SELECT count(*) FROM readings WHERE id < $v", _LyingFloat(2.5), [(2,)]),
    ("SELECT count(*) FROM readings WHERE CAST(id AS VARCHAR) = $v", _LyingStr("7"), [(1,)]),
    ("SELECT count(*) FROM readings WHERE id < $v", _LyingDecimal("4"), [(3,)]),
    ("SELECT count(*) FROM readings WHERE id IN $v", [_LyingInt(1), _LyingInt(2)], [(2,)]),
], ids=["int", "float", "str", "decimal", "list"])
def test_parameter_values_never_splice_their_own_text(con, pg, sql: str, value, rows) -> None:
    """A subclass of a built-in type whose __str__/__repr__ says something else is bound as the
    value it holds: nothing of its text reaches PostgreSQL (it did: an injection)."""
    assert con.sql(sql, params={"v": value}).fetchall() == rows
    sent = " ".join(pg.sent)
    assert "pg_settings" not in sent and "OR true" not in sent and "'a' = 'a" not in sent
