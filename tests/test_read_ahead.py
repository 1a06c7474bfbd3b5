"""Streams of a join read ahead: DuckDB learns every fragment's row count before it orders joins.

A fragment registered as an Arrow stream looks like one row to DuckDB's join planner; with
several of them it may join two big ones first (TPC-DS 85 at scale 1 spilled to a full disk).
A stream that ends within the read-ahead budget is registered as a table; a longer one is copied
into a temporary table of the query's cursor. Every batch reaches DuckDB once, in order.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

import fedquery
from fedquery import fetch
from fedquery.fetch import _read_ahead, _store


def _stream(batches: int, rows: int = 1000) -> pa.RecordBatchReader:
    schema = pa.schema([("k", pa.int64()), ("s", pa.string())])
    made = (pa.record_batch([pa.array(range(b * rows, (b + 1) * rows), pa.int64()),
                             pa.array([f"v{i}" for i in range(rows)])], schema=schema)
            for b in range(batches))
    return pa.RecordBatchReader.from_batches(schema, made)


def test_a_short_stream_becomes_a_table_with_every_row() -> None:
    got, held = _read_ahead(_stream(5), budget=1 << 30)
    assert isinstance(got, pa.Table)
    assert got.column("k").to_pylist() == list(range(5000))
    assert held == got.nbytes


def test_a_long_stream_stays_a_stream_with_every_batch_once_in_order() -> None:
    one = _stream(1).read_all().nbytes
    got, held = _read_ahead(_stream(10), budget=2 * one)
    assert isinstance(got, pa.RecordBatchReader)
    assert 2 * one < held <= 4 * one  # read ahead just past the budget, not the whole stream
    assert got.read_all().column("k").to_pylist() == list(range(10_000))


def test_no_budget_reads_nothing_ahead() -> None:
    stream = _stream(3)
    got, held = _read_ahead(stream, budget=0)
    assert got is stream and held == 0


def test_a_stored_stream_is_a_temporary_table_duckdb_counts() -> None:
    con = duckdb.connect()
    cursor = con.cursor()
    _store(cursor, "__f9", _stream(4))
    assert cursor.execute('SELECT count(*), sum(k) FROM "__f9"').fetchall() == [(4000, sum(range(4000)))]
    estimated = cursor.sql('EXPLAIN SELECT * FROM "__f9"').fetchall()[0][1]
    assert "4000" in estimated.replace(",", "")  # the planner knows its size
    assert "__f9__stream" not in {r[0] for r in cursor.sql("SHOW TABLES").fetchall()}
    other = con.cursor()  # the table belongs to this query's cursor only
    assert "__f9" not in {r[0] for r in other.sql("SHOW TABLES").fetchall()}


def test_join_answers_are_the_same_whatever_the_budget(tmp_path, monkeypatch) -> None:
    """Tables, copied streams and plain streams give one answer (a lake fragment with a key
    filter is streamed, the warehouse's build side read first)."""
    lake = tmp_path / "lake" / "facts"
    lake.mkdir(parents=True)
    duckdb.sql("COPY (SELECT i AS k, i % 97 AS g FROM range(200000) t(i)) TO "
               f"'{lake}/part-0.parquet' (FORMAT parquet)")
    warehouse = tmp_path / "wh.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE dims AS SELECT i AS g, 'name' || i AS name FROM range(97) t(i)")
        con.execute("CREATE TABLE picks AS SELECT i * 7 AS k FROM range(5000) t(i)")
    catalog = {"sources": {"wh": {"kind": "duckdb", "path": str(warehouse)},
                           "lake": {"kind": "parquet", "root": str(tmp_path / "lake")}},
               "tables": {"facts": {"source": "lake", "path": "facts/"},
                          "dims": {"source": "wh", "table": "dims"},
                          "picks": {"source": "wh", "table": "picks"}}}
    sql = ("SELECT d.name, count(*) AS n, sum(f.k) AS s FROM facts f JOIN picks p ON f.k = p.k "
           "JOIN dims d ON d.g = f.g GROUP BY d.name ORDER BY d.name")
    want = duckdb.sql(f"SELECT 'name' || g AS name, count(*) AS n, sum(k) AS s FROM "
                      f"read_parquet('{lake}/*.parquet') WHERE k % 7 = 0 AND k < 35000 "
                      "GROUP BY g ORDER BY name").fetchall()
    answers = []
    for per_fragment, total in ((128 << 20, 512 << 20), (1024, 512 << 20), (1024, 0)):
        monkeypatch.setattr(fetch, "PREFETCH_BYTES", per_fragment)
        monkeypatch.setattr(fetch, "PREFETCH_TOTAL", total)
        with fedquery.connect(catalog) as con:
            answers.append(con.sql(sql).fetchall())
    assert answers[0] == answers[1] == answers[2] == sorted(want)
