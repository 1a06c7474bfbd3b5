"""Literals read as DuckDB reads them. sqlglot keeps only the first number and unit of an
interval string such as ``'1 day 02:03:04'`` (``INTERVAL '1' DAY``) and drops the sign of
``'1 day ago'``, and reads ``?::INT`` as one operator: fedquery's parser mends both
(``parse.as_duckdb_reads``)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery

STRINGS = ["1 day 02:03:04", "1 day ago", "3 days 4:05", "1 day -02:00:00", "2 hours 30 minutes",
           "1 day", "02:03:04", "-1 day", "1.5 hours", "1 year 2 months", "10 microseconds",
           "2 weeks ago", "P1D"]


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("intervals")
    (root / "t").mkdir()
    pq.write_table(pa.table({"ts": pa.array(
        [f"2024-05-0{d} 0{h}:00:00" for d in range(1, 4) for h in range(0, 4)]).cast(
        pa.timestamp("us"))}), root / "t" / "a.parquet")
    with fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": str(root)}},
                           "tables": {"t": {"source": "lake", "path": "t/"}}}) as con:
        yield con, root


def _duckdb(sql: str, root=None):
    with duckdb.connect() as plain:
        if root is not None:
            plain.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{root}/t/*.parquet')")
        try:
            return plain.sql(sql).fetchall()
        except duckdb.Error:
            return "error"


@pytest.mark.parametrize("text", STRINGS)
def test_interval_literal_as_duckdb_reads_it(con, text: str) -> None:
    connection, _ = con
    sql = f"SELECT INTERVAL '{text}' AS v, INTERVAL '{text}' + INTERVAL 1 HOUR AS w, -INTERVAL '{text}' AS n"
    try:
        got = connection.sql(sql).fetchall()
    except fedquery.FedQueryError:
        got = "error"
    assert got == _duckdb(sql)


@pytest.mark.parametrize("text", ["1 day 02:00:00", "2 days ago"])
def test_interval_in_a_pushed_filter(con, text: str) -> None:
    connection, root = con
    sql = (f"SELECT count(*) FROM t WHERE ts >= TIMESTAMP '2024-05-01 00:00:00' + INTERVAL '{text}'")
    assert connection.sql(sql).fetchall() == _duckdb(sql, root)


def test_a_positional_placeholder_cast(con) -> None:
    """``?::INT`` is a placeholder and a cast in DuckDB (sqlglot reads ``?::`` as one token)."""
    connection, _ = con
    sql = "SELECT ?::INT + 1 AS a, ?::VARCHAR AS b, '?::' AS c, ? :: DOUBLE AS d"
    assert connection.sql(sql, params=["7", 8, "2.5"]).fetchall() == [(8, "8", "?::", 2.5)]


@pytest.mark.parametrize("condition", ["t NOT IN (1, 2) <= TRUE", "t NOT BETWEEN 2 AND 3 >= flag",
                                       "(t NOT IN (1)) = flag", "NOT t = 1 AND flag"])
def test_a_negation_under_a_comparison_keeps_its_meaning(condition: str) -> None:
    """sqlglot writes ``(t NOT IN (1, 2)) <= TRUE`` without its brackets; DuckDB would read the
    text as ``NOT (t IN (1, 2) <= TRUE)``: found by tests/predfuzz.py on every source."""
    values = pa.table({"t": [1, 2, 3, 4], "flag": [True, False, True, None]})
    sql = f"SELECT t FROM v WHERE {condition} ORDER BY t"
    with fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": "/"}}}) as con:
        con.register("v", values)
        got = con.sql(sql).fetchall()
    with duckdb.connect() as plain:
        plain.register("v", values)
        assert got == plain.sql(sql).fetchall()
