"""A PostgreSQL warehouse and an S3 lake together: answers, pushdown, keys, secrets.

The shop fedquery has never seen, with its warehouse tables in a real PostgreSQL and its lake on
a real S3-compatible server; DuckDB over the local copies is the reference.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fedquery
from tests.explain_text import source_fragment
from tests.services.postgres import load_shop, shop_catalog_in_postgres
from tests.services.s3 import upload_tree

PASSWORD = "n0t-4-leak-Pw"


@pytest.fixture(scope="module")
def federation(postgres_database, unseen, unseen_root: Path, s3_endpoint: str, s3_credentials):
    """The shop over PostgreSQL and S3; the DuckDB reference over the local files."""
    catalog, ref = unseen
    load_shop(postgres_database, unseen_root)
    upload_tree(unseen_root / "lake", "federation", "lake", endpoint=s3_endpoint)
    lake = {"kind": "parquet", "root": "s3://federation/lake/",
            "options": {"endpoint_url": s3_endpoint, "key": "${AWS_ACCESS_KEY_ID}",
                        "secret": "${AWS_SECRET_ACCESS_KEY}"}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FQ_FED_DSN", postgres_database.dsn)
        con = fedquery.connect(shop_catalog_in_postgres(catalog, "${FQ_FED_DSN}", lake))
    yield con, ref
    con.close()


QUERIES = {
    "one_customer": ("""
        SELECT o.order_id, o.qty, c.name FROM orders o JOIN clients c
        ON o.customer_id = c.customer_id WHERE c.customer_id = $id ORDER BY o.order_id""",
                     {"id": 42}),
    "segment_revenue": ("""
        SELECT c.segment, p.category, count(*) AS n, sum(o.qty * p.price) AS revenue
        FROM orders o JOIN clients c ON c.customer_id = o.customer_id
        JOIN products p ON p.product_id = o.product_id
        WHERE c.country = 'DE' AND o.region IN ('east', 'north')
        GROUP BY ALL ORDER BY ALL""", None),
    "returns_by_reason": ("""
        SELECT r.reason, count(*) AS n FROM returns r JOIN orders o ON o.order_id = r.order_id
        JOIN clients c ON c.customer_id = o.customer_id WHERE c.segment = 'corporate'
        GROUP BY r.reason ORDER BY r.reason""", None),
    "targets_vs_orders": ("""
        WITH sold AS (SELECT c.segment, c.country, sum(o.qty) AS units
                      FROM orders o JOIN clients c USING (customer_id) GROUP BY ALL)
        SELECT t.segment, t.country, t.target, s.units FROM targets t
        LEFT JOIN sold s ON s.segment = t.segment AND s.country = t.country
        WHERE t.quarter = 1 ORDER BY ALL""", None),
    "window_per_customer": ("""
        SELECT customer_id, order_id, qty,
               rank() OVER (PARTITION BY customer_id ORDER BY qty DESC, order_id) AS r
        FROM orders WHERE customer_id IN (SELECT customer_id FROM clients WHERE country = 'FR')
        QUALIFY r <= 2 ORDER BY customer_id, r""", None),
}


@pytest.mark.parametrize(("sql", "params"), QUERIES.values(), ids=QUERIES.keys())
def test_same_answer_as_duckdb_on_local_copies(federation, sql: str, params) -> None:
    con, ref = federation
    got = con.sql(sql, params=params).arrow()
    want = ref.sql(sql, params=params).to_arrow_table()
    assert got.column_names == want.column_names
    assert got.to_pylist() == want.to_pylist()


def test_postgres_receives_the_filter(federation) -> None:
    con, _ = federation
    text = con.explain(QUERIES["one_customer"][0], params=QUERIES["one_customer"][1])
    block = source_fragment(text, "pg")
    assert re.search(r'"customer_id" = \$id', block), block


def test_one_customer_moves_only_its_rows_from_the_lake(federation) -> None:
    """The customer picked in PostgreSQL sends its key into the S3 scan: the lake returns its
    orders and little more (at most twice the matching rows)."""
    con, ref = federation
    sql, params = QUERIES["one_customer"]
    matching = ref.sql(sql, params=params).to_arrow_table().num_rows
    assert matching > 0
    text = con.explain(sql, analyze=True, params=params)
    lake = source_fragment(text, "lake")
    assert "keys sent: customer_id IN (1 keys)" in lake, lake
    rows = int(re.search(r"analyze: ([\d,]+) rows", lake).group(1).replace(",", ""))
    assert rows <= 2 * matching, text
    assert re.search(r"[\d,]+ bytes read", lake), lake


def test_key_filter_is_chosen_by_estimates(federation) -> None:
    con, _ = federation
    text = con.explain(QUERIES["one_customer"][0], params=QUERIES["one_customer"][1])
    assert "fetched first, whole" in source_fragment(text, "pg")
    assert "takes the keys of" in source_fragment(text, "lake")


def test_password_never_shows(postgres_dsn: str, federation) -> None:
    """A password given through ${VAR} is absent from errors, repr and explain."""
    con, _ = federation
    dsn = f"postgresql://fq:{PASSWORD}@127.0.0.1:1/shop"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FQ_BAD_DSN", dsn)
        with pytest.raises(fedquery.SourceError) as info:
            fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": "${FQ_BAD_DSN}",
                                                 "connect_timeout": 2}}})
    assert info.value.source == "pg"
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert PASSWORD not in repr(con) and PASSWORD not in con.explain("SELECT * FROM clients")


def test_source_error_while_streaming_names_the_source(federation) -> None:
    """PostgreSQL fails part way (division by zero in the pushed query): the error is the
    source's own, named, not DuckDB's text about a broken stream."""
    con, _ = federation
    with pytest.raises(fedquery.SourceError) as info:
        con.sql("SELECT c.segment, sum(c.customer_id / (c.customer_id - 42)) AS x "
                "FROM clients c GROUP BY c.segment").arrow()
    assert info.value.source == "pg"
    assert "division by zero" in str(info.value)


def test_duckdb_only_functions_stay_in_duckdb(federation) -> None:
    """``bar()`` exists in DuckDB only: the query is answered, the function never reaches
    PostgreSQL, and the filters it can run still do."""
    con, ref = federation
    sql = ("SELECT c.customer_id, bar(c.customer_id, 0, 600, 10) AS b FROM clients c "
           "WHERE c.country = 'DE' AND bar(c.customer_id, 0, 600, 10) <> '' "
           "ORDER BY c.customer_id LIMIT 5")
    assert con.sql(sql).fetchall() == ref.sql(sql).fetchall()
    block = source_fragment(con.explain(sql), "pg")
    assert "bar" not in block.lower() and "\"country\" = 'DE'" in block


def test_a_lake_probe_is_read_by_duckdb_once_its_keys_are_known(federation, monkeypatch) -> None:
    """The S3 scan that takes the customer's key runs inside the residual as a view with its IN
    list (DuckDB reads it in the join's pipeline), instead of being read into Arrow and copied
    into a temporary table first (TPC-H Q5 at SF 0.3: 301 -> 273 ms)."""
    import fedquery.fetch as fetch

    con, ref = federation
    sql, params = QUERIES["segment_revenue"]
    text = con.explain(sql, params=params)
    lake = source_fragment(text, "lake")
    assert "scanned by DuckDB once its keys are known" in lake and "takes the keys of" in lake
    stored: list[str] = []
    original = fetch._store
    monkeypatch.setattr(fetch, "_store", lambda cursor, name, stream: (
        stored.append(name), original(cursor, name, stream))[1])
    got = con.sql(sql, params=params).arrow()
    want = ref.sql(sql, params=params).to_arrow_table()
    assert got.to_pylist() == want.to_pylist()
    probes = re.findall(r"\[(__f\d+)\] lake \(parquet, scanned by DuckDB once", text)
    assert probes and not set(probes) & set(stored), (probes, stored)
