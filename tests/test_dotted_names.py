"""Tables whose names hold dots (``"a.b"``): named in the catalog, queried, explained, analyzed."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery


@pytest.fixture(scope="module")
def dotted(tmp_path_factory, postgres_database):
    root = tmp_path_factory.mktemp("dotted")
    with duckdb.connect(str(root / "w.duckdb")) as warehouse:
        warehouse.execute('CREATE TABLE "a.b" AS SELECT * FROM range(1, 5) t(x)')
    (root / "lake" / "t").mkdir(parents=True)
    pq.write_table(pa.table({"x": [2, 3, 4, 5]}), root / "lake" / "t" / "p.parquet")
    postgres_database.execute('CREATE TABLE "a.b" (x bigint)', 'INSERT INTO "a.b" VALUES (3), (4), (5), (6)')
    catalog = {"sources": {"w": {"kind": "duckdb", "path": str(root / "w.duckdb")},
                           "pg": {"kind": "postgres", "dsn": postgres_database.dsn},
                           "lake": {"kind": "parquet", "root": str(root / "lake")}},
               "tables": {"a.b": {"source": "lake", "path": "t/"},
                          "in_w": {"source": "w", "table": '"a.b"'},
                          "in_pg": {"source": "pg", "table": 'public."a.b"'}}}
    with fedquery.connect(catalog) as con:
        yield con


QUERIES = {
    'SELECT x FROM "a.b" ORDER BY x': [(2,), (3,), (4,), (5,)],
    "SELECT x FROM in_w ORDER BY x": [(1,), (2,), (3,), (4,)],
    'SELECT x FROM w."a.b" ORDER BY x': [(1,), (2,), (3,), (4,)],
    "SELECT x FROM in_pg ORDER BY x": [(3,), (4,), (5,), (6,)],
    'SELECT l.x FROM "a.b" l JOIN in_pg p USING (x) JOIN in_w w USING (x) ORDER BY 1': [(3,), (4,)],
}


@pytest.mark.parametrize(("sql", "rows"), QUERIES.items(), ids=range(len(QUERIES)))
def test_dotted_table_names(dotted, sql: str, rows) -> None:
    assert dotted.sql(sql).fetchall() == rows
    assert "analyze:" in dotted.explain(sql, analyze=True)  # failed: schema "a" does not exist
