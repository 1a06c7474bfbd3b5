"""Aliases reused across scopes: every rename, cut and pushdown stays inside its scope.

The shapes the outside suite found wrong (a CTE, an IN-subquery or a correlated subquery that
reuses an alias of the query around it), on the shop with its warehouse in DuckDB and in
PostgreSQL, each answer equal to DuckDB's, and each plan one that ``explain(analyze=True)`` runs.
"""

from __future__ import annotations

import pytest

import fedquery
from tests.fuzz_check import check
from tests.services.postgres import load_shop, shop_catalog_in_postgres

QUERIES = {
    # pushdown_joins renamed the inner customer_address columns to the merged join's
    "in_subquery_reuses_a_merged_alias": """
        SELECT count(*) FROM clients c, orders o, returns r
        WHERE c.customer_id = o.customer_id AND r.order_id = o.order_id
          AND c.country IN (SELECT c.country FROM clients c WHERE c.segment = 'corporate')""",
    "cte_reuses_a_merged_alias": """
        WITH x AS (SELECT c.country FROM targets c WHERE c.quarter = 3 AND c.target > 50000)
        SELECT count(*) FROM clients c JOIN targets t ON t.country = c.country
        JOIN orders o ON o.customer_id = c.customer_id
        WHERE c.country IN (SELECT c.country FROM x c) AND t.quarter = 2""",
    "subquery_reuses_a_merged_alias_for_another_table": """
        SELECT c.segment, count(*) AS n FROM clients c, targets t, orders o
        WHERE c.country = t.country AND t.quarter = 1 AND o.customer_id = c.customer_id
          AND c.country IN (SELECT c.country FROM targets c WHERE c.target > 60000)
        GROUP BY c.segment ORDER BY c.segment""",
    # a nested IN-subquery reusing the alias was taken for a one-table scan
    "nested_in_subquery_reuses_the_alias": """
        SELECT t.segment, t.target FROM targets t
        WHERE t.country IN (SELECT t.country FROM targets t
                            WHERE t.quarter = (SELECT max(t.quarter) FROM targets t))
        ORDER BY 1, 2""",
    # a subquery reusing an outer alias was judged uncorrelated and sent alone
    "correlated_subquery_with_an_inner_reuse": """
        SELECT o.order_id FROM orders o
        WHERE EXISTS (SELECT 1 FROM clients c WHERE c.customer_id = o.customer_id
                      AND c.country IN (SELECT o.country FROM clients o WHERE o.segment = 'consumer'))
        ORDER BY 1 LIMIT 20""",
    "derived_table_reuses_outer_alias": """
        SELECT c.name, x.n FROM clients c
        JOIN (SELECT c.customer_id, count(*) AS n FROM orders c GROUP BY c.customer_id) x
          ON x.customer_id = c.customer_id
        WHERE c.country = 'FR' ORDER BY 2 DESC, 1 LIMIT 10""",
    "scalar_subquery_in_select_reuses_alias": """
        SELECT c.customer_id, (SELECT count(*) FROM orders c2 WHERE c2.customer_id = c.customer_id)
               AS orders_of_c,
               (SELECT max(c.quarter) FROM targets c) AS last_quarter
        FROM clients c WHERE c.customer_id < 20 ORDER BY 1""",
}


@pytest.fixture(scope="module")
def layouts(unseen, unseen_root, postgres_database):
    catalog, _ = unseen
    load_shop(postgres_database, unseen_root)
    made = {"duckdb": fedquery.connect(catalog),
            "postgres": fedquery.connect(shop_catalog_in_postgres(catalog, postgres_database.dsn))}
    yield made
    for con in made.values():
        con.close()


@pytest.mark.parametrize("layout", ["duckdb", "postgres"])
@pytest.mark.parametrize("name", QUERIES)
def test_reused_aliases_answer_as_duckdb(layouts, unseen, layout: str, name: str) -> None:
    _, ref = unseen
    sql = QUERIES[name]
    assert check(layouts[layout], ref, sql) == "ok"
    assert "analyze:" in layouts[layout].explain(sql, analyze=True)
