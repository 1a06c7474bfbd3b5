"""Fragments of a join are stored: DuckDB knows their statistics before it orders joins.

A fragment registered as an Arrow stream looks like one row to DuckDB's join planner; with
several of them it may join two big ones first (TPC-DS 85 at scale 1 spilled to a full disk),
and a registered Arrow table gives it a row count but no min/max or distinct counts. Each
fetched fragment of a join is copied into a temporary table of the query's cursor.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

import fedquery
from fedquery.fetch import _store


def _stream(batches: int, rows: int = 1000) -> pa.RecordBatchReader:
    schema = pa.schema([("k", pa.int64()), ("s", pa.string())])
    made = (pa.record_batch([pa.array(range(b * rows, (b + 1) * rows), pa.int64()),
                             pa.array([f"v{i}" for i in range(rows)])], schema=schema)
            for b in range(batches))
    return pa.RecordBatchReader.from_batches(schema, made)


def test_a_stored_stream_is_a_temporary_table_duckdb_counts() -> None:
    con = duckdb.connect()
    cursor = con.cursor()
    _store(cursor, "__f9", _stream(4))
    assert cursor.execute('SELECT count(*), sum(k) FROM "__f9"').fetchall() == [(4000, sum(range(4000)))]
    estimated = cursor.sql('EXPLAIN SELECT * FROM "__f9"').fetchall()[0][1]
    assert "4000" in estimated.replace(",", "")  # the planner knows its size
    stats = cursor.execute('SELECT stats(k) FROM "__f9" LIMIT 1').fetchall()[0][0]
    # and its values' range and distinct count, which a registered Arrow stream has not
    assert (stats["min"], stats["max"], stats["approx_unique"]) == (0, 3999, 4000)
    assert "__f9__stream" not in {r[0] for r in cursor.sql("SHOW TABLES").fetchall()}
    other = con.cursor()  # the table belongs to this query's cursor only
    assert "__f9" not in {r[0] for r in other.sql("SHOW TABLES").fetchall()}


def test_join_of_stored_fragments_answers_as_duckdb(tmp_path) -> None:
    """A lake fragment with a key filter and the warehouse's build side, both stored: the
    answer DuckDB gives over the files."""
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
    with fedquery.connect(catalog) as con:
        assert con.sql(sql).fetchall() == sorted(want)
