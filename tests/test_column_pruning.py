"""Column pruning through every scope: what each scan asks its source for, and the same answer.

A scan keeps the columns read of it anywhere: through CTEs and derived tables (even under
``SELECT *``), over every reference of a CTE, in UNION branches, in correlated IN / EXISTS /
scalar subqueries (also over the same table), as a whole row. Each case names the columns each
scan of a table requests (one set a scan) and must give plain DuckDB's answer over the same files,
run as fedquery runs it and as a plan-as-data engine runs its fragments.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import sqlglot

import fedquery
from tests.test_differential import assert_same_table, run_plan_as_data

ORDERS = {"order_id", "customer_id", "product_id", "qty", "ordered_at", "note", "region"}
CLIENTS = {"customer_id", "name", "segment", "country"}


class Case(NamedTuple):
    id: str
    sql: str
    sent: dict[str, list[set[str]]]  # catalog table -> the columns each of its scans requests


CASES = [
    # ---- CTEs and derived tables over SELECT *: the consumer's columns reach the scan
    Case("cte_star_aggregate", """
        WITH x AS (SELECT * FROM orders) SELECT region, sum(qty) AS units FROM x GROUP BY region""",
         {"orders": [{"qty", "region"}]}),
    Case("derived_star", "SELECT s.qty, s.note FROM (SELECT * FROM orders) AS s",
         {"orders": [{"qty", "note"}]}),
    Case("cte_chain", """
        WITH a AS (SELECT * FROM orders), b AS (SELECT * FROM a WHERE a.qty > 3)
        SELECT b.region, b.note FROM b""",
         {"orders": [{"qty", "region", "note"}]}),
    Case("cte_count_star", "WITH x AS (SELECT * FROM orders) SELECT count(*) AS n FROM x",
         {"orders": [set()]}),
    Case("cte_aggregates_not_read", """
        WITH t AS (SELECT sum(qty) AS s, max(note) AS m FROM orders) SELECT count(*) AS n FROM t""",
         {"orders": [set()]}),
    Case("cte_window", """
        SELECT w.region, w.order_id FROM (
            SELECT *, row_number() OVER (PARTITION BY region ORDER BY qty DESC, order_id) AS rn
            FROM orders) AS w
        WHERE w.rn = 1""",
         {"orders": [{"order_id", "qty", "region"}]}),
    Case("cross_source_join_of_ctes", """
        WITH o AS (SELECT * FROM orders), c AS (SELECT * FROM clients)
        SELECT c.country, sum(o.qty) AS units FROM o JOIN c USING (customer_id) GROUP BY c.country""",
         {"orders": [{"customer_id", "qty"}], "clients": [{"customer_id", "country"}]}),
    # ---- a CTE read twice: the union of what its readers read
    Case("cte_self_join", """
        WITH x AS (SELECT * FROM orders)
        SELECT a.qty, b.note FROM x AS a JOIN x AS b ON a.order_id = b.order_id
        WHERE a.region = 'east'""",
         {"orders": [{"order_id", "qty", "note", "region"}]}),
    Case("cte_in_both_union_branches", """
        WITH x AS (SELECT * FROM orders)
        SELECT qty AS v FROM x UNION ALL SELECT customer_id FROM x""",
         {"orders": [{"customer_id", "qty"}]}),
    # ---- UNION ALL branches narrowed by position; UNION and DISTINCT keep what decides rows
    Case("union_all_of_stars", """
        SELECT u.qty FROM (SELECT * FROM orders UNION ALL SELECT * FROM orders) AS u""",
         {"orders": [{"qty"}, {"qty"}]}),
    Case("union_distinct_keeps_all", """
        SELECT count(*) AS n FROM (SELECT * FROM orders UNION SELECT * FROM orders) AS u""",
         {"orders": [ORDERS, ORDERS]}),
    Case("distinct_keeps_its_columns", """
        SELECT count(*) AS n FROM (SELECT DISTINCT region, customer_id, qty FROM orders) AS d""",
         {"orders": [{"customer_id", "qty", "region"}]}),
    Case("order_by_all_keeps_sort_keys", """
        SELECT s.order_id FROM (SELECT qty, order_id FROM orders ORDER BY ALL DESC LIMIT 5) AS s""",
         {"orders": [{"order_id", "qty"}]}),
    # ---- correlated subqueries: outer columns read only inside them are kept
    Case("exists_over_a_cte", """
        WITH x AS (SELECT * FROM orders)
        SELECT c.name FROM clients AS c
        WHERE EXISTS (SELECT 1 FROM x WHERE x.customer_id = c.customer_id AND x.qty > 8)""",
         {"orders": [{"customer_id", "qty"}], "clients": [{"customer_id", "name"}]}),
    Case("exists_select_star", """
        SELECT c.name FROM clients AS c
        WHERE EXISTS (SELECT * FROM orders AS o WHERE o.customer_id = c.customer_id AND o.qty > 8)""",
         {"orders": [{"customer_id"}], "clients": [{"customer_id", "name"}]}),  # qty: the scan's filter
    Case("not_exists_select_star_same_table", """
        SELECT o.order_id FROM orders AS o
        WHERE NOT EXISTS (SELECT * FROM orders AS i WHERE i.customer_id = o.customer_id
                          AND i.qty > o.qty)""",
         {"orders": [{"customer_id", "order_id", "qty"}, {"customer_id", "qty"}]}),
    Case("exists_of_an_aggregate_keeps_its_row", """
        SELECT c.name FROM clients AS c
        WHERE EXISTS (SELECT max(o.note) FROM orders AS o WHERE o.customer_id = c.customer_id
                      AND o.qty > 1)""",
         {"orders": [{"customer_id", "note"}], "clients": [{"customer_id", "name"}]}),
    Case("in_over_a_derived_table", """
        SELECT c.name FROM clients AS c
        WHERE c.customer_id IN (SELECT s.customer_id FROM (SELECT * FROM orders) AS s WHERE s.qty > 8)""",
         {"orders": [{"customer_id", "qty"}], "clients": [{"customer_id", "name"}]}),
    Case("scalar_subquery_reads_cte_column", """
        WITH x AS (SELECT * FROM orders)
        SELECT x.order_id FROM x
        WHERE x.qty > (SELECT avg(o.qty) FROM orders AS o WHERE o.product_id = x.product_id)""",
         {"orders": [{"order_id", "product_id", "qty"}, {"product_id", "qty"}]}),
    Case("same_table_same_alias_inside", """
        SELECT o.order_id FROM orders AS o
        WHERE o.qty = (SELECT max(o.qty) FROM (SELECT * FROM orders) AS o)""",
         {"orders": [{"order_id", "qty"}, {"qty"}]}),
    Case("same_table_correlated_derived", """
        SELECT o.order_id FROM orders AS o
        WHERE o.qty = (SELECT max(i.qty) FROM (SELECT * FROM orders) AS i
                       WHERE i.customer_id = o.customer_id)""",
         {"orders": [{"customer_id", "order_id", "qty"}, {"customer_id", "qty"}]}),
    # ---- whole rows and stars keep every column of what they name
    Case("whole_row_of_a_derived_table", """
        SELECT s, o.qty FROM (SELECT * FROM clients) AS s JOIN orders AS o
        ON o.customer_id = s.customer_id WHERE o.qty > 9""",
         {"orders": [{"customer_id", "qty"}], "clients": [CLIENTS]}),
    Case("to_json_of_a_row", """
        SELECT to_json(c) AS j, o.qty FROM clients AS c JOIN orders AS o
        ON o.customer_id = c.customer_id WHERE o.qty > 9""",
         {"orders": [{"customer_id", "qty"}], "clients": [CLIENTS]}),
    Case("unexpanded_star_beside_a_scan", """
        SELECT x.qty, x.u FROM (SELECT o.qty, u.* FROM orders AS o, unnest([1, 2]) AS u) AS x""",
         {"orders": [{"qty"}]}),
    # ---- a CTE nothing reads sends nothing
    Case("unused_cte", """
        WITH unused AS (SELECT * FROM returns) SELECT count(*) AS n FROM orders""",
         {"orders": [set()]}),
]


def sent(con: fedquery.Connection, sql: str) -> dict[str, list[set[str]]]:
    """Catalog table -> the columns each fragment of it requests (a scan's request, the outputs of
    a one-table query pushed as SQL), sorted."""
    tables = {f"lake.main.{t}": t for t in ("orders", "returns")} | {"shop.main.customers": "clients"}
    found: dict[str, list[set[str]]] = {}
    for fragment in con._planner.plan(sql).fragments:
        assert len(fragment.tables) == 1, fragment.sql
        columns = (fragment.request.columns if fragment.kind == "scan"
                   else sqlglot.parse_one(fragment.sql, read="duckdb").named_selects)
        found.setdefault(tables[fragment.tables[0]], []).append(set(columns))
    return {t: sorted(scans, key=sorted) for t, scans in found.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_columns_sent(case: Case, fq: fedquery.Connection) -> None:
    assert sent(fq, case.sql) == {t: sorted(s, key=sorted) for t, s in case.sent.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_answer_as_duckdb(case: Case, fq: fedquery.Connection, unseen) -> None:
    _, ref = unseen
    want = ref.sql(case.sql).to_arrow_table()
    assert want.num_rows > 0
    assert_same_table(fq.sql(case.sql).arrow(), want, ordered=False)
    assert_same_table(run_plan_as_data(fq, case.sql, None), want, ordered=False)
