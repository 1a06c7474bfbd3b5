"""``kind: adbc`` with a real SQLite file: federated answers equal DuckDB's over the same rows,
what SQLite receives (explain), SQLite's semantic traps, errors and secrets."""

from __future__ import annotations

import datetime as dt
import sqlite3

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.errors import CatalogError, FedQueryError

ITEMS = pa.table({
    "id": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.int64()),
    "name": ["apple", "Apple", "banana", None, "APRICOT", "b%x", "cherry", "avocado"],
    "code": ["9", "10", "100", "2", None, "11", "3", "20"],  # numbers kept as text
    "score": [1.5, None, 3.0, 2.0, None, 0.5, 4.0, 2.5],
    "day": [dt.date(2024, 2, 28), dt.date(2024, 2, 29), None, dt.date(2024, 3, 1),
            dt.date(2024, 2, 29), dt.date(2024, 1, 1), dt.date(2024, 3, 2), dt.date(2024, 2, 29)],
    "ts": [dt.datetime(2024, 2, 29, 12), dt.datetime(2024, 2, 29, 12, 0, 0, 500000), None,
           dt.datetime(2024, 2, 29, 11, 59), dt.datetime(2024, 3, 1), dt.datetime(2024, 2, 29, 12),
           dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 29, 12, 0, 1)],
})
# how each timestamp is written in SQLite: ISO text, in the forms tools write it
TS_TEXT = ["2024-02-29 12:00:00.000000", "2024-02-29T12:00:00.5", None, "2024-02-29 11:59:00",
           "2024-03-01 00:00:00", "2024-02-29 12:00:00", "2024-01-01T00:00:00", "2024-02-29 12:00:01"]
SALES = pa.table({"item_id": [1, 1, 2, 3, 5, 7, 7, 7, 9], "qty": [3, 1, 2, 5, 1, 4, 4, 2, 1]})
STOCK = pa.table({"item_id": [1, 2, 3, 4, 7], "warehouse": ["n", "s", "n", "s", "n"]})


def write_sqlite(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, code TEXT, "
                "score REAL, day DATE, ts TIMESTAMP)")
    rows = ITEMS.to_pylist()
    con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", [
        (r["id"], r["name"], r["code"], r["score"], None if r["day"] is None else r["day"].isoformat(),
         text) for r, text in zip(rows, TS_TEXT, strict=True)])
    con.execute("CREATE TABLE stock (item_id INTEGER, warehouse TEXT)")
    con.executemany("INSERT INTO stock VALUES (?, ?)", STOCK.to_pylist() and
                    [tuple(r.values()) for r in STOCK.to_pylist()])
    con.commit()
    con.close()


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    root = tmp_path_factory.mktemp("adbc_sqlite")
    write_sqlite(root / "shop.sqlite")
    (root / "lake").mkdir()
    pq.write_table(SALES, root / "lake" / "sales.parquet")
    return root


@pytest.fixture(scope="module")
def con(lite):
    con = fedquery.connect({
        "sources": {"lite": {"kind": "adbc", "driver": "sqlite", "uri": str(lite / "shop.sqlite")},
                    "lake": {"kind": "parquet", "root": str(lite / "lake")}},
        "tables": {"items": {"source": "lite", "table": "items"},
                   "stock": {"source": "lite", "table": "stock"},
                   "sales": {"source": "lake", "path": "sales.parquet"}}})
    yield con
    con.close()


def duck(sql: str, **tables: pa.Table) -> list[tuple]:
    """Plain DuckDB's answer over the same rows."""
    ref = duckdb.connect()
    for name, table in {"items": ITEMS, "sales": SALES, "stock": STOCK, **tables}.items():
        ref.register(name, table)
    return ref.sql(sql).fetchall()


def same(con, sql: str, ordered: bool = False, **tables: pa.Table) -> list[tuple]:
    got, want = con.sql(sql).fetchall(), duck(sql, **tables)
    if not ordered:
        got, want = sorted(got, key=repr), sorted(want, key=repr)
    assert got == want
    return got


# ---------------------------------------------------------------------- federation

def test_joins_a_parquet_lake_as_duckdb_does(con) -> None:
    same(con, "SELECT i.name, sum(s.qty) AS qty FROM items i JOIN sales s ON s.item_id = i.id "
              "WHERE i.day >= DATE '2024-02-29' GROUP BY i.name")


def test_joins_postgresql_as_duckdb_does(lite, postgres_database, monkeypatch) -> None:
    postgres_database.execute("DROP TABLE IF EXISTS public.adbc_prices")
    prices = pa.table({"item_id": pa.array([1, 2, 3, 7, 8], pa.int32()),
                       "price": [1.25, 2.5, 0.75, 9.0, 4.0]})
    postgres_database.load("public.adbc_prices", prices,
                           "CREATE TABLE public.adbc_prices (item_id integer, price double precision)")
    monkeypatch.setenv("FQ_ADBC_PG", postgres_database.dsn)
    with fedquery.connect({
            "sources": {"lite": {"kind": "adbc", "driver": "adbc_driver_sqlite",
                                 "uri": str(lite / "shop.sqlite")},
                        "pg": {"kind": "postgres", "dsn": "${FQ_ADBC_PG}"}},
            "tables": {"items": {"source": "lite", "table": "items"},
                       "prices": {"source": "pg", "table": "public.adbc_prices"}}}) as fq:
        same(fq, "SELECT i.id, i.name, p.price FROM items i JOIN prices p ON p.item_id = i.id "
                 "WHERE i.name LIKE 'a%' OR p.price > 5", prices=prices)


def test_a_join_and_aggregate_run_in_sqlite(con) -> None:
    sql = ("SELECT s.warehouse, count(*) AS n, max(i.score) AS best FROM items i "
           "JOIN stock s ON s.item_id = i.id GROUP BY s.warehouse")
    same(con, sql)
    sent = con.explain(sql)
    assert "JOIN" in sent and "GROUP BY" in sent and '"main"."stock"' in sent


def test_the_filter_reaches_sqlite_as_glob(con) -> None:
    sql = "SELECT i.id FROM items i JOIN sales s ON s.item_id = i.id WHERE i.name LIKE 'a%'"
    same(con, sql)
    assert "GLOB 'a*'" in con.explain(sql)


# ---------------------------------------------------------------------- SQLite's traps

@pytest.mark.parametrize("where", [
    "name LIKE 'a%'",                 # SQLite's LIKE ignores ASCII case
    "name NOT LIKE '%A%'",
    "name LIKE 'b\\%x' OR name LIKE '_pple'",
    "CAST(code AS INTEGER) < 10",     # a cast SQLite makes leniently: done in DuckDB
    "id < '5'",                       # a number compared with text: DuckDB compares numbers
    "code < '2'",                     # text with text: byte order
    "name < 'b'",                     # byte order: 'APRICOT' < 'Apple' < 'apple'
    "day = DATE '2024-02-29'",
    "day BETWEEN '2024-02-28' AND '2024-03-01'",
    "ts = TIMESTAMP '2024-02-29 12:00:00'",  # stored with a zero fraction, or a 'T'
    "ts > TIMESTAMP '2024-02-29 12:00:00'",
    "ts < '2024-02-29 12:00:00.5'",
], ids=["like_case", "not_like", "like_chars", "cast_text", "number_text", "text_text", "text_order",
        "date_equal", "date_between", "ts_equal", "ts_greater", "ts_string"])
def test_filters_answer_as_duckdb(con, where: str) -> None:
    same(con, f"SELECT id FROM items WHERE {where}")


def test_integer_division_is_duckdbs(con) -> None:
    got = same(con, "SELECT id, id / 2 AS half, sum(id) / count(*) AS mean FROM items GROUP BY id")
    assert (1, 0.5, 1.0) in got


def test_nulls_last_in_a_top_n(con) -> None:
    same(con, "SELECT id, score FROM items ORDER BY score, id LIMIT 7", ordered=True)
    same(con, "SELECT id, score FROM items ORDER BY score DESC, id LIMIT 3", ordered=True)


def test_dates_and_timestamps_come_back_typed(con) -> None:
    schema = con.schema("items")
    assert schema.field("day").type == pa.date32()
    assert schema.field("ts").type == pa.timestamp("us")
    same(con, "SELECT id, day, ts FROM items")


def test_what_sqlite_cannot_do_exactly_is_read_and_done_in_duckdb(con) -> None:
    sql = "SELECT i.id, i.code FROM items i JOIN sales s ON s.item_id = i.id WHERE i.id / 2 > 1"
    same(con, sql)
    shown = con.explain(sql)
    assert "/ 2" not in shown.split("residual")[0]  # SQLite divides integers whole: not sent


# ---------------------------------------------------------------------- errors and secrets

def test_a_driver_not_installed_names_the_package(lite) -> None:
    with pytest.raises(CatalogError, match=r"pip install adbc-driver-nosuch"):
        fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "adbc_driver_nosuch",
                                            "dialect": "duckdb"}}})


def test_a_missing_database_file_is_named(lite) -> None:
    with pytest.raises(CatalogError, match=r"sources\.w\.uri: no SQLite database at .*nope\.sqlite"):
        fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "sqlite",
                                            "uri": str(lite / "nope.sqlite")}}})


def test_a_driver_without_a_known_dialect_needs_one() -> None:
    with pytest.raises(CatalogError, match=r"sources\.w\.dialect: required"):
        fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "flightsql",
                                            "uri": "grpc://127.0.0.1:1"}}})


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(CatalogError, match=r"sources\.w\.dialect: unknown SQL dialect"):
        fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "sqlite", "uri": "x",
                                            "dialect": "nosuchsql"}}})


def test_a_missing_table_is_a_clear_error(lite) -> None:
    with fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "sqlite",
                                             "uri": str(lite / "shop.sqlite")}},
                           "tables": {"t": {"source": "w", "table": "missing"}}}) as fq, \
            pytest.raises(FedQueryError, match="missing"):
        fq.sql("SELECT * FROM t").fetchall()


def test_sqlite_is_opened_read_only(lite, con) -> None:
    connector = con._session.connectors["lite"]
    with pytest.raises(FedQueryError, match="readonly"):
        connector._query("CREATE TABLE written (a)")


def test_secrets_in_options_never_show(lite, monkeypatch) -> None:
    secret = "hunter2-very-secret-token"
    monkeypatch.setenv("FQ_ADBC_TOKEN", secret)
    with pytest.raises(FedQueryError) as caught:
        fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "sqlite",
                                            "uri": str(lite / "shop.sqlite"),
                                            "options": {"adbc.sqlite.auth_token": "${FQ_ADBC_TOKEN}"}}}})
    assert secret not in str(caught.value) and secret not in repr(caught.value)


def test_a_scan_sqlite_cannot_filter_exactly_is_filtered_by_duckdb(con) -> None:
    from fedquery.connectors.base import ScanRequest

    connector = con._session.connectors["lite"]
    request = ScanRequest(table="lite.main.items", columns=("id",),
                          filter="CAST(code AS INTEGER) < 10 OR id / 4 = 2", limit=10)
    got = sorted(connector.scan(request).read_all()["id"].to_pylist())
    assert got == sorted(r[0] for r in duck(
        "SELECT id FROM items WHERE CAST(code AS INTEGER) < 10 OR id / 4 = 2"))
    shown = connector.source_sql(request)
    assert "then DuckDB evaluates the rest" in shown and "WHERE" not in shown
    fragment = connector.run_sql("SELECT id / 2 AS half FROM lite.main.items WHERE id <= 2").read_all()
    assert sorted(fragment["half"].to_pylist()) == [0.5, 1.0]


def test_a_nocase_column_sorts_and_ties_in_byte_order(tmp_path) -> None:
    from fedquery.connectors.base import ScanRequest

    db = sqlite3.connect(tmp_path / "nocase.sqlite")
    db.execute("CREATE TABLE words (id INTEGER, word TEXT COLLATE NOCASE)")
    words = [(1, "b"), (2, "B"), (3, "a"), (4, "A"), (5, "c")]
    db.executemany("INSERT INTO words VALUES (?, ?)", words)
    db.commit()
    db.close()
    with fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "sqlite",
                                             "uri": str(tmp_path / "nocase.sqlite")}}}) as fq:
        connector = fq._session.connectors["w"]
        ties = connector.scan(ScanRequest("w.main.words", columns=("id",), order_by=("word",),
                                          limit=1, with_ties=True)).read_all()
        assert ties["id"].to_pylist() == [4]  # 'A' alone: 'a' is not its tie in DuckDB
        got = fq.sql("SELECT id FROM w.main.words WHERE word = 'b' OR word < 'B' ORDER BY word").fetchall()
        assert got == [(4,), (1,)]


# ---------------------------------------------------------------------- found by tests/predfuzz.py

@pytest.mark.parametrize("sql", [
    # date arithmetic: SQLite adds to the text's leading digits ('2024-02-28' + 1 = 2025)
    "SELECT id FROM items WHERE day + 1 = DATE '2024-03-01'",
    "SELECT id FROM items WHERE day > day + 1",
    # a timestamp chosen by COALESCE was compared as stored text ('...12:00:00.000000')
    "SELECT id FROM items WHERE coalesce(ts, TIMESTAMP '2024-03-05 00:00:00') = '2024-02-29 12:00:00'",
    # timestamps stored as 'T' or space, with or without zeros: one instant, several texts
    "SELECT max(ts) AS hi, min(ts) AS lo FROM items WHERE ts < '2024-03-01'",
    "SELECT count(DISTINCT ts) AS n FROM items",
    "SELECT ts, count(*) AS n FROM items GROUP BY ts",
    "SELECT DISTINCT ts FROM items",
    # a condition compared with text: DuckDB refuses, SQLite compared 0/1 with the text
    "SELECT id FROM items WHERE (id > 2) = name",
], ids=["date_plus_one", "date_vs_date_plus", "coalesce_timestamp",
        "max_timestamp", "count_distinct_timestamp", "group_by_timestamp", "distinct_timestamp",
        "bool_vs_text"])
def test_fuzz_findings_answer_as_duckdb(con, sql: str) -> None:
    try:
        want = duck(sql)
    except duckdb.Error:
        with pytest.raises(FedQueryError):
            con.sql(sql).fetchall()
        return
    assert sorted(con.sql(sql).fetchall(), key=repr) == sorted(want, key=repr)


def test_a_timestamp_top_n_sorts_instants_not_texts(con) -> None:
    # '2024-02-29T12:00:00.5' sorted after '2024-02-29 12:00:01' as text ('T' > ' ')
    same(con, "SELECT id, ts FROM items ORDER BY ts DESC NULLS LAST, id LIMIT 3", ordered=True)


def test_an_integer_product_that_overflows_raises_as_in_duckdb(con) -> None:
    sql = "SELECT id, id * 4611686018427387904 AS big FROM items WHERE id > 1"
    with pytest.raises(duckdb.Error, match="Overflow"):
        duck(sql)
    with pytest.raises(FedQueryError, match="Overflow"):  # SQLite answered with doubles
        con.sql(sql).fetchall()



def test_a_self_join_duckdb_evaluates_reads_the_table_once_per_use(con) -> None:
    """Found by tests/sqlfuzz.py: a fragment SQLite cannot run exactly (here ``id * 2``) was
    evaluated by DuckDB over one stream per table, which a self-join scanned twice."""
    sql = "SELECT a.id, b.name, a.id * 2 AS twice FROM items a JOIN items b ON b.id = a.id + 1"
    same(con, sql)


@pytest.mark.parametrize("where", [
    "TRUE = id IN (1, 2)",                    # SQLite: (TRUE = id) IN (1, 2)
    "name IN ('apple') < name IN ('banana')",
], ids=["eq_in", "in_lt_in"])
def test_conditions_compared_keep_duckdbs_precedence(con, where: str) -> None:
    """Found by tests/predfuzz.py: sqlglot writes no parentheses around a condition compared
    with something, and SQLite's precedence differs from DuckDB's."""
    same(con, f"SELECT id FROM items WHERE {where}")


@pytest.mark.xfail(strict=True, reason="adbc_driver_sqlite types a column by its first batch: "
                   "over 1024 leading NULLs make it INT64, and the first REAL fails the read "
                   "(found by tests/sqlfuzz.py --config sqlite; not fixed yet)")
def test_a_real_column_after_a_batch_of_nulls_is_read(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "nulls.sqlite")
    db.execute("CREATE TABLE t (id INTEGER, score REAL)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, None if i < 1500 else 1.5) for i in range(2000)])
    db.commit()
    db.close()
    with fedquery.connect({"sources": {"w": {"kind": "adbc", "driver": "sqlite",
                                             "uri": str(tmp_path / "nulls.sqlite")}},
                           "tables": {"t": {"source": "w", "table": "t"}}}) as fq:
        scores = [row[0] for row in fq.sql("SELECT score FROM t").fetchall()]
        assert scores.count(1.5) == 500 and scores.count(None) == 1500
