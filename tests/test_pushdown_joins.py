"""Same-source joins run inside the source, and only tables the source can join by itself."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from connectors.base import Capabilities
from fedquery.rules import pushdown_joins


class Catalog:
    def capabilities(self, source: str) -> Capabilities:
        return Capabilities(dialect="postgres", subtrees=source == "pg")


def rewrite(sql: str) -> exp.Expr:
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    for table in tree.find_all(exp.Table):
        if table.catalog:
            table.meta["source"] = table.catalog
    return pushdown_joins(tree, catalog=Catalog())


def scan(alias: str, table: str, *columns: str) -> str:
    projected = ", ".join(f"{alias}.{c}" for c in columns)
    return f"(SELECT {projected} FROM {table} AS {alias}) AS {alias}"


def test_linked_tables_of_one_source_become_one_join() -> None:
    customers = scan("c", "pg.public.customer", "id", "name", "nation")
    tree = rewrite(f"SELECT c.name AS name, o.total AS total FROM {customers}"
                   f" JOIN {scan('n', 'pg.public.nation', 'id', 'region')} ON n.id = c.nation"
                   f" JOIN {scan('o', 'lake.main.orders', 'customer', 'total')} ON o.customer = c.id"
                   " WHERE n.region = 'ASIA'")
    merged = [s for s in tree.find_all(exp.Subquery) if s.alias.startswith("__j")]
    assert len(merged) == 1
    inner = merged[0].this.sql("duckdb")
    assert "pg.public.customer AS c" in inner and "pg.public.nation AS n" in inner
    assert "n.id = c.nation" in inner and "n.region = 'ASIA'" in inner
    assert "o.customer = __j0.c__id" in tree.sql("duckdb")


def test_tables_linked_only_through_another_source_stay_apart() -> None:
    """part and supplier meet only in lineitem (the lake): no cross product is sent."""
    lineitem = scan("l", "lake.main.lineitem", "part", "supp")
    tree = rewrite(f"SELECT p.name AS name, s.name AS supplier FROM {lineitem}"
                   f" JOIN {scan('p', 'pg.public.part', 'id', 'name')} ON p.id = l.part"
                   f" JOIN {scan('s', 'pg.public.supplier', 'id', 'name')} ON s.id = l.supp"
                   " WHERE p.name = 'khaki'")
    assert not any(s.alias.startswith("__j") for s in tree.find_all(exp.Subquery))
    assert "CROSS JOIN" not in tree.sql("duckdb")
