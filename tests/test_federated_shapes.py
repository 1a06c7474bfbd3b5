"""Shapes an outside hunt answered differently from DuckDB with the warehouse in PostgreSQL:
each now gives DuckDB's rows, column names and Arrow types.

The shop with its warehouse tables in PostgreSQL beside the local lake; the reference is plain
DuckDB over the local files.
"""

from __future__ import annotations

import pytest

import fedquery
from tests.fuzz_check import check
from tests.services.postgres import load_shop, shop_catalog_in_postgres

LONG = "a_rather_long_output_name_that_postgresql_would_cut_at_sixty_three_bytes"
QUERIES = {
    # a recursive CTE scans its PostgreSQL input once per step (a stream is read once)
    "recursive_cte": ("WITH RECURSIVE r(n) AS (SELECT min(order_id) FROM orders UNION ALL "
                      "SELECT r.n + 1 FROM r JOIN clients c ON c.customer_id = r.n WHERE r.n < 3) "
                      "SELECT * FROM r ORDER BY 1", None),
    # PostgreSQL cuts names at 63 bytes; a derived table's long name must survive
    "long_alias": (f"SELECT z.{LONG} FROM (SELECT customer_id AS {LONG} FROM clients) z "
                   f"JOIN orders o ON o.customer_id = z.{LONG} ORDER BY 1 LIMIT 5", None),
    # a query run whole in PostgreSQL named duplicate outputs id, id_1
    "duplicate_names": ("SELECT a.customer_id, b.customer_id FROM clients a JOIN clients b "
                        "USING (country) WHERE a.customer_id < 3 ORDER BY 1, 2 LIMIT 5", None),
    # DuckDB names an unaliased expression after the text as written
    "positional_name": ("SELECT customer_id + ? FROM clients ORDER BY 1 LIMIT 2", [5]),
    # DISTINCT ON keeps the first row of each key in the ORDER BY's order
    "distinct_on": ("SELECT DISTINCT ON (country) country, customer_id FROM clients "
                    "ORDER BY country, customer_id", None),
    # DuckDB's IN over a list parameter ignores its NULLs
    "not_in_list_with_null": ("SELECT count(*) FROM clients WHERE customer_id NOT IN $ids",
                              {"ids": [1, None]}),
    # round, || and casts to text keep DuckDB's formats
    "round_and_text": ("SELECT customer_id, round(customer_id - 0.5::DOUBLE) AS r, "
                       "CAST(customer_id / 2 AS VARCHAR) AS t, 'c=' || (customer_id / 4) AS u "
                       "FROM clients WHERE customer_id <= 6 ORDER BY 1", None),
    "fractional_interval": ("SELECT customer_id, TIMESTAMP '2024-01-01' + INTERVAL 1.5 HOUR AS t "
                            "FROM clients WHERE customer_id = 1", None),
    "string_agg_null_separator": ("SELECT string_agg(country, NULL) FROM clients "
                                  "WHERE customer_id < 4", None),
    "group_by_all": ("SELECT country, count(*) FROM clients GROUP BY ALL ORDER BY ALL", None),
    # PostgreSQL sums integers into BIGINT; DuckDB into HUGEINT
    "types_of_aggregates": ("SELECT segment, sum(customer_id) AS s, avg(customer_id) AS a "
                            "FROM clients GROUP BY segment ORDER BY segment", None),
}


@pytest.fixture(scope="module")
def con(unseen, unseen_root, postgres_database):
    catalog, _ = unseen
    load_shop(postgres_database, unseen_root)
    with fedquery.connect(shop_catalog_in_postgres(catalog, postgres_database.dsn)) as connection:
        yield connection


@pytest.mark.parametrize("name", QUERIES)
def test_postgres_warehouse_answers_as_duckdb(con, unseen, name: str) -> None:
    _, ref = unseen
    sql, params = QUERIES[name]
    assert check(con, ref, sql, params) == "ok"
    assert con.sql(sql, params=params).arrow().schema == ref.sql(sql, params=params).arrow().schema
