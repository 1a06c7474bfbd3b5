"""A source runs a join of its tables only when that join does not multiply rows.

TPC-H 5 joins customers and suppliers of one nation inside PostgreSQL: linked only by the
nation key, that join has customers x suppliers / nations rows, far more than both tables,
where DuckDB first joins each side to the (filtered) rest of the query. PostgreSQL's planner
estimates the joined fragment; it is sent only when its estimate is not above its inputs'
rows together, else the connected parts that pass are (suppliers with their nation).
"""

from __future__ import annotations

import re

import duckdb
import pytest

import fedquery

SQL = """
SELECT n.n_name, count(*) AS pairs, sum(c.c_acctbal) AS balance
FROM customer c JOIN supplier s ON c.c_nationkey = s.s_nationkey
JOIN nation n ON s.s_nationkey = n.n_nationkey
JOIN orders o ON o.o_custkey = c.c_custkey AND o.o_suppkey = s.s_suppkey
WHERE n.n_name IN ('ALGERIA', 'BRAZIL')
GROUP BY n.n_name ORDER BY n.n_name
"""


@pytest.fixture(scope="module")
def world(postgres_database, tmp_path_factory: pytest.TempPathFactory):
    postgres_database.execute(
        "CREATE TABLE nation AS SELECT g AS n_nationkey, (ARRAY['ALGERIA','BRAZIL','CANADA',"
        "'EGYPT','FRANCE'])[g + 1] AS n_name FROM generate_series(0, 4) g",
        "CREATE TABLE customer AS SELECT g AS c_custkey, g % 5 AS c_nationkey, "
        "(g % 97)::double precision AS c_acctbal FROM generate_series(1, 3000) g",
        "CREATE TABLE supplier AS SELECT g AS s_suppkey, g % 5 AS s_nationkey "
        "FROM generate_series(1, 400) g",
        "ANALYZE")
    lake = tmp_path_factory.mktemp("join-costs")
    duckdb.sql("SELECT g AS o_orderkey, (g * 7) % 3000 + 1 AS o_custkey, (g * 13) % 400 + 1 "
               "AS o_suppkey FROM range(20000) t(g)").write_parquet(str(lake / "orders.parquet"))
    catalog = {
        "sources": {"pg": {"kind": "postgres", "dsn": postgres_database.dsn},
                    "lake": {"kind": "parquet", "root": str(lake)}},
        "tables": {"customer": {"source": "pg", "table": "public.customer"},
                   "supplier": {"source": "pg", "table": "public.supplier"},
                   "nation": {"source": "pg", "table": "public.nation"},
                   "orders": {"source": "lake", "path": "orders.parquet"}},
    }
    with fedquery.connect(catalog) as con:
        yield con, postgres_database, lake


def test_a_multiplying_join_stays_local_and_the_answer_is_right(world) -> None:
    con, db, lake = world
    text = con.explain(SQL, analyze=True)
    pg_rows = [int(r.replace(",", "")) for r in re.findall(
        r"\[__f\d+\] pg .*?analyze: ([\d,]+) rows", text, re.S)]
    # customers x suppliers of two nations would be 2 x 600 x 80 = 96,000 rows from PostgreSQL
    assert sum(pg_rows) <= 3000 + 400 + 5
    assert not re.search(r"customer AS c .*supplier AS s|supplier AS s .*customer AS c", text)
    local = duckdb.connect()
    with db.connect() as conn, conn.cursor() as cursor:
        for table in ("customer", "supplier", "nation"):
            cursor.execute(f"SELECT * FROM {table}")
            local.register(table, cursor.fetch_arrow_table())
    local.sql(f"CREATE VIEW orders AS SELECT * FROM '{lake / 'orders.parquet'}'")
    assert con.sql(SQL).fetchall() == [tuple(r) for r in local.sql(SQL).fetchall()]


def test_a_join_that_does_not_multiply_is_still_sent(world) -> None:
    con, _, _ = world
    sql = ("SELECT n.n_name, count(*) FROM supplier s JOIN nation n ON s.s_nationkey = "
           "n.n_nationkey JOIN orders o ON o.o_suppkey = s.s_suppkey GROUP BY 1 ORDER BY 1")
    text = con.explain(sql)
    assert "__j0.s__s_suppkey" in text and "__j0.n__n_name" in text  # one merged fragment
