"""Same-source joins run inside the source, and only tables the source can join by itself."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from fedquery.connectors.base import Capabilities
from fedquery.rules import pushdown_joins


class Catalog:
    def capabilities(self, source: str) -> Capabilities:
        return Capabilities(dialect="postgres", subtrees=source == "pg")

    def estimate_query(self, source: str, sql: str) -> None:
        return None  # no estimates: a group is merged whole


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


def test_tables_linked_only_by_an_inequality_stay_apart() -> None:
    """TPC-DS 64's shape: two demographics rows related by ``<>`` alone are nearly a cross
    product (1.9M x 1.9M at scale 1); each is joined to the fact table first, in DuckDB."""
    sales = scan("ss", "lake.main.store_sales", "cdemo", "customer")
    tree = rewrite(f"SELECT count(*) AS n FROM {sales}"
                   f" JOIN {scan('c', 'pg.public.customer', 'id', 'cdemo')} ON ss.customer = c.id"
                   f" JOIN {scan('cd1', 'pg.public.demographics', 'id', 'marital')} ON ss.cdemo = cd1.id"
                   f" JOIN {scan('cd2', 'pg.public.demographics', 'id', 'marital')} ON c.cdemo = cd2.id"
                   " WHERE cd1.marital <> cd2.marital OR cd1.marital < cd2.marital")
    merged = [s for s in tree.find_all(exp.Subquery) if s.alias.startswith("__j")]
    assert len(merged) == 1, tree.sql("duckdb")
    inner = merged[0].this.sql("duckdb")
    assert "AS c" in inner and "AS cd2" in inner and "AS cd1" not in inner
    assert "cd1.marital <> __j0.cd2__marital" in tree.sql("duckdb")


def test_an_equality_with_both_tables_on_one_side_links_nothing() -> None:
    """``a.x + b.y = 3`` is no equi-join: the source would build the cross product."""
    tree = rewrite(f"SELECT a.x AS x FROM {scan('a', 'pg.public.t', 'x')}"
                   f" JOIN {scan('b', 'pg.public.u', 'y')} ON TRUE"
                   " WHERE a.x + b.y = 3")
    assert not any(s.alias.startswith("__j") for s in tree.find_all(exp.Subquery))
