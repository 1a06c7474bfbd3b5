"""Long AND/OR chains plan in time linear in their length and answer as DuckDB does.

The parser nests ``a OR b OR c ...`` one level per term; ``fedquery.parse.balanced`` rebuilds
such chains as balanced trees, so no walk of the plan pays for (or overflows on) their depth.
"""

from __future__ import annotations

from sqlglot import exp

from fedquery.parse import parse


def depth(node: exp.Expr) -> int:
    """How deep the tree's connectors nest (a loop: a left-deep chain would overflow)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack += [(child, level + 1) for child in current.iter_expressions()]
    return deepest


def test_a_chain_of_5000_ors_is_balanced() -> None:
    sql = "SELECT 1 FROM t WHERE " + " OR ".join(f"x = {i}" for i in range(5000))
    tree = parse(sql)
    assert depth(tree) < 20  # log2(5000) ~ 13 levels of OR, plus the statement's own
    terms = list(tree.args["where"].this.flatten())
    assert [t.expression.this for t in terms] == [str(i) for i in range(5000)]  # order kept


def test_short_chains_and_parentheses_stay_as_written() -> None:
    sql = "SELECT 1 FROM t WHERE a = 1 AND (b = 2 OR c = 3) AND d = 4"
    assert parse(sql).sql("duckdb") == sql


def test_mixed_chains_are_balanced_each(fq, unseen) -> None:
    """ANDs of ORs (and ORs of ANDs) over a lake table: the same rows as DuckDB's."""
    _, ref = unseen
    ors = " OR ".join(f"order_id = {i}" for i in range(1, 3001, 3))
    ands = " AND ".join(f"order_id <> {i}" for i in range(2, 400, 7))
    sql = (f"SELECT order_id, qty FROM orders WHERE ({ors}) AND {ands} AND (qty > 2 OR qty IS NULL)"
           f" ORDER BY order_id")
    got = fq.sql(sql).fetchall()
    assert got == ref.sql(sql).fetchall()
    assert 0 < len(got) < 1000


def test_5000_or_terms_across_sources(fq, unseen) -> None:
    """A federated join filtered by 5,000 ORs plans (it took 44 s, or overflowed the stack)
    and answers as DuckDB does."""
    _, ref = unseen
    ors = " OR ".join(f"o.order_id = {i}" for i in range(5000))
    sql = (f"SELECT c.customer_id, count(*) AS n FROM orders o JOIN clients c "
           f"ON o.customer_id = c.customer_id WHERE {ors} GROUP BY ALL ORDER BY ALL")
    assert fq.sql(sql).fetchall() == ref.sql(sql).fetchall()
