"""USING SAMPLE and the clauses of a table reference in DuckDB's reading.

``USING SAMPLE`` made DuckDB's parse tree hold a mapping where the sandbox's walker expected a
table reference's type name, and every such query failed as an internal error. It is refused
now, clearly: DuckDB samples the FROM result before WHERE, and fedquery applies the WHERE at
the sources, so the sample would be drawn from rows already filtered (``FROM frames WHERE
frame_id <= 5 USING SAMPLE 5 ROWS`` gave 5 every time; DuckDB about one time in sixteen).
``TABLESAMPLE`` on a table stays with the table at its source and works. The expressions of
``AT (VERSION => ...)`` and ``TABLESAMPLE``, which DuckDB evaluates when it binds, are checked
like any other.
"""

from __future__ import annotations

import pytest

import fedquery
from fedquery import ForbiddenError
from fedquery.parse import parse
from fedquery.sandbox_duckdb import check_duckdb_reading

USING_SAMPLE = [
    "SELECT * FROM clients USING SAMPLE 1",
    "SELECT count(*) FROM clients USING SAMPLE 50%",
    "SELECT count(*) FROM clients USING SAMPLE 10 ROWS",
    "SELECT count(*) FROM clients USING SAMPLE reservoir(5 ROWS) REPEATABLE (42)",
    "SELECT count(*) FROM clients USING SAMPLE 10% (bernoulli, 7)",
    "SELECT count(*) FROM clients USING SAMPLE 10 PERCENT (system)",
    "SELECT count(*) FROM orders WHERE order_id <= 5 USING SAMPLE 5 ROWS",
    "SELECT count(*) FROM orders o JOIN clients c USING (customer_id) USING SAMPLE 5",
    "SELECT count(*) FROM (SELECT * FROM clients USING SAMPLE 5) AS s",
    "SELECT * FROM clients WHERE customer_id IN (SELECT customer_id FROM orders USING SAMPLE 5)",
]


@pytest.mark.parametrize("sql", USING_SAMPLE)
def test_using_sample_is_refused_clearly(fq: fedquery.Connection, sql: str) -> None:
    for call in (lambda: fq.sql(sql), lambda: fq.explain(sql)):
        with pytest.raises(fedquery.PlanError, match=r"^USING SAMPLE is not supported: .*sample a "
                                                     r"table instead \(FROM frames TABLESAMPLE 10%"):
            call()


@pytest.mark.parametrize(("sql", "rows"), [
    ("SELECT count(*) FROM clients TABLESAMPLE 5 ROWS", 5),
    ("SELECT count(*) FROM orders AS o TABLESAMPLE reservoir(7 ROWS)", 7),
    ("SELECT count(*) FROM clients TABLESAMPLE 100%", 600),
])
def test_tablesample_on_a_table_works(fq: fedquery.Connection, sql: str, rows: int) -> None:
    assert fq.sql(sql).fetchall() == [(rows,)]


def test_tablesample_is_taken_before_the_filter(fq: fedquery.Connection) -> None:
    """As in DuckDB: the sample is drawn from the table, then filtered. 5 rows of 4000 orders
    hold one of the 5 lowest ids in about 1 draw of 160; never all 5 of them."""
    sql = "SELECT count(*) FROM orders TABLESAMPLE 5 ROWS WHERE order_id <= 5"
    counts = [fq.sql(sql).fetchall()[0][0] for _ in range(20)]
    assert max(counts) < 5, counts


# ---------------------------------------------------------------------------- DuckDB's reading


SEEN = [parse("SELECT * FROM t")]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM t AT (VERSION => getenv('HOME'))",
    "SELECT * FROM t AT (TIMESTAMP => read_text('/etc/passwd'))",
    "SELECT * FROM t AT (VERSION => (SELECT count(*) FROM duckdb_settings()))",
])
def test_at_clause_is_read_by_the_duckdb_check(sql: str) -> None:
    with pytest.raises(ForbiddenError):
        check_duckdb_reading(sql, SEEN)


def test_harmless_at_clause_and_sample_pass_the_duckdb_check() -> None:
    check_duckdb_reading("SELECT * FROM t AT (VERSION => 3)", SEEN)
    check_duckdb_reading("SELECT * FROM t TABLESAMPLE 10 ROWS", SEEN)
    check_duckdb_reading("SELECT * FROM t TABLESAMPLE reservoir(10 ROWS) REPEATABLE (1)", SEEN)


def test_using_sample_in_duckdbs_reading_is_refused() -> None:
    with pytest.raises(fedquery.PlanError, match="USING SAMPLE is not supported"):
        check_duckdb_reading("SELECT * FROM t USING SAMPLE 1", SEEN)
