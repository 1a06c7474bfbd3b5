"""Similarity joined to metadata: the top-k rewrite answers exactly as the exhaustive query.

Every query runs through fedquery and through plain DuckDB over the same files (``conftest``'s
reference connection), which computes every distance. Where the rewrite applies, ``explain``
shows the top-k and ``explain(analyze=True)`` shows that the vector table gave at most k rows
(plus rows tied with the k-th).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fedquery
from fedquery.vectors import typed_vectors
from tests.conftest import VEC_DIM
from tests.explain_text import rows, source_fragment

QUERY = np.random.default_rng(7).standard_normal(VEC_DIM).astype(np.float32)

CASES = {
    "alone": (True, 5, """
        SELECT v.product_id, v.model, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v ORDER BY d LIMIT 5"""),
    "alone-own-filter": (True, 7, """
        SELECT v.product_id, array_distance(v.vec, $q) AS d FROM product_vectors v
        WHERE v.model = 'm2' ORDER BY array_distance(v.vec, $q) LIMIT 7"""),
    "metadata-filter": (True, 6, """
        SELECT p.product_id, p.title, v.model, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        WHERE p.category = 'toys' AND p.price > 100 ORDER BY d LIMIT 6"""),
    "metadata-filter-where-join": (True, 4, """
        SELECT p.title, array_negative_inner_product(v.vec, $q) AS d
        FROM product_vectors v, products p
        WHERE p.product_id = v.product_id AND p.category IN ('garden', 'books') AND v.model = 'm1'
        ORDER BY d LIMIT 4"""),
    "three-sources-one-to-many": (True, 10, """
        SELECT o.order_id, c.country, p.title, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        JOIN orders o ON o.product_id = p.product_id JOIN clients c ON c.customer_id = o.customer_id
        WHERE c.country = 'DE' AND o.region = 'east'
        ORDER BY d, o.order_id LIMIT 10"""),
    "vector-table-joined-last": (True, 8, """
        SELECT o.order_id, array_cosine_distance(v.vec, $q) AS d
        FROM orders o JOIN product_vectors v ON v.product_id = o.product_id
        WHERE o.qty >= 3 ORDER BY d, o.order_id LIMIT 8"""),
    "fewer-than-k-qualify": (True, 50, """
        SELECT p.product_id, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        WHERE p.title = 'Tiny Rake' ORDER BY d LIMIT 50"""),
    "none-qualify": (True, 5, """
        SELECT p.product_id, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        WHERE p.category = 'no such category' ORDER BY d LIMIT 5"""),
    "offset": (True, 9, """
        SELECT v.product_id, v.model, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        WHERE p.category = 'kitchen' ORDER BY d, v.model LIMIT 4 OFFSET 5"""),
    "key-equals-two-tables": (True, 5, """
        SELECT v.product_id, v.model, array_cosine_distance(v.vec, $q) AS dist
        FROM product_vectors v JOIN orders o ON o.product_id = v.product_id
        JOIN products p ON p.product_id = v.product_id
        WHERE p.category = 'toys' AND o.region = 'west' AND o.qty = 5
        ORDER BY dist, v.model LIMIT 5"""),
    "key-equals-two-columns-of-one-table": (True, 5, """
        SELECT v.product_id, o.order_id, array_cosine_distance(v.vec, $q) AS dist
        FROM product_vectors v JOIN orders o
        ON v.product_id = o.product_id AND v.product_id = o.customer_id
        ORDER BY dist, o.order_id LIMIT 5"""),
    "limit-percent-not-rewritten": (False, 0, """
        SELECT v.product_id, array_cosine_distance(v.vec, $q) AS dist
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        ORDER BY dist, v.model LIMIT 10%"""),
    "inner-then-left-join": (True, 8, """
        SELECT v.product_id, o.order_id, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        LEFT JOIN orders o ON o.product_id = v.product_id AND o.qty > 8
        WHERE p.category = 'garden' ORDER BY d, o.order_id LIMIT 8"""),
    "where-on-a-left-joined-table-not-rewritten": (False, 0, """
        SELECT v.product_id, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v LEFT JOIN products p ON p.product_id = v.product_id
        AND p.category = 'toys' WHERE p.title IS NULL ORDER BY d, v.model LIMIT 6"""),
    "vector-table-left-joined-not-rewritten": (False, 0, """
        SELECT p.product_id, array_cosine_distance(v.vec, $q) AS d
        FROM products p LEFT JOIN product_vectors v ON p.product_id = v.product_id
        ORDER BY d, p.product_id, v.model LIMIT 6"""),
    "left-join-keeps-every-vector-row": (True, 6, """
        SELECT v.product_id, p.title, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v LEFT JOIN products p ON p.product_id = v.product_id
        AND p.category = 'toys' ORDER BY d, v.model LIMIT 6"""),
    "cross-table-condition-not-rewritten": (False, 0, """
        SELECT v.product_id, array_cosine_distance(v.vec, $q) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        WHERE v.product_id + p.product_id > 100 ORDER BY d, v.model LIMIT 6"""),
    "grouped-not-rewritten": (False, 0, """
        SELECT p.category, min(array_cosine_distance(v.vec, $q)) AS d
        FROM product_vectors v JOIN products p ON p.product_id = v.product_id
        GROUP BY p.category ORDER BY d LIMIT 3"""),
}


def _reference(ref, sql: str) -> list[tuple]:
    types = (("q", f"FLOAT[{VEC_DIM}]"),)
    return ref.execute(sql, typed_vectors({"q": QUERY.tolist()}, types)).fetchall()


def _same(rows: list[tuple], expected: list[tuple]) -> None:
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert row[:-1] == want[:-1]
        assert row[-1] == pytest.approx(want[-1], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_same_answer_as_exhaustive_duckdb(name: str, fq: fedquery.Connection, unseen) -> None:
    rewritten, _, sql = CASES[name]
    _, ref = unseen
    _same(fq.sql(sql, params={"q": QUERY}).fetchall(), _reference(ref, sql))
    assert ("top-k:" in fq.explain(sql, params={"q": QUERY}) or "order:" in fq.explain(
        sql, params={"q": QUERY})) == rewritten


@pytest.mark.parametrize("name", [n for n, (rewritten, _, _) in CASES.items() if rewritten])
def test_vector_table_gives_at_most_k_rows(name: str, fq: fedquery.Connection) -> None:
    _, k, sql = CASES[name]
    analyzed = fq.explain(sql, params={"q": QUERY}, analyze=True)
    moved = rows(source_fragment(analyzed, "vec"))
    assert moved <= k, (moved, analyzed)


@pytest.mark.parametrize("vector", [QUERY, QUERY.tolist(), tuple(QUERY.tolist()),
                                    QUERY.astype(np.float64)])
def test_query_vector_as_list_or_array(fq: fedquery.Connection, unseen, vector) -> None:
    _, _, sql = CASES["metadata-filter"]
    _same(fq.sql(sql, params={"q": vector}).fetchall(), _reference(unseen[1], sql))


@pytest.mark.parametrize(("vector", "message"), [
    ([1.0, 2.0], f"has 2 values; the column it is compared with is FLOAT[{VEC_DIM}]"),
    ("abc", "must be a list or 1-D array"),
    ([1.0] * (VEC_DIM - 1) + ["x"], "must hold numbers only"),
])
def test_bad_query_vector_is_a_plan_error(fq: fedquery.Connection, vector, message) -> None:
    with pytest.raises(fedquery.PlanError, match=re.escape(message)):
        fq.sql(CASES["alone"][2], params={"q": vector}).fetchall()


def test_literal_query_vector(fq: fedquery.Connection, unseen) -> None:
    literal = "[" + ", ".join(repr(float(x)) for x in QUERY) + f"]::FLOAT[{VEC_DIM}]"
    sql = CASES["metadata-filter"][2].replace("$q", literal)
    assert "top-k:" in fq.explain(sql)
    _same(fq.sql(sql).fetchall(), unseen[1].execute(sql).fetchall())


def test_vector_search_table_function(fq: fedquery.Connection, unseen) -> None:
    sql = ("SELECT s.product_id, s.model, s._distance FROM vector_search('product_vectors', $q, 6) s "
           "ORDER BY s._distance, s.model")
    rows = fq.sql(sql, params={"q": QUERY}).fetchall()
    expected = _reference(unseen[1], """
        SELECT product_id, model, array_cosine_distance(vec, $q) AS d FROM product_vectors
        ORDER BY d, model LIMIT 6""")
    _same(rows, expected)
    assert "limit:   6" in fq.explain(sql, params={"q": QUERY})
    table = fq.sql("SELECT * FROM vector_search('product_vectors', $q, 3, metric := 'l2')",
                   params={"q": QUERY}).arrow()
    assert table.column_names == ["product_id", "model", "vec", "_distance"]
    expected = _reference(unseen[1], "SELECT product_id, array_distance(vec, $q) AS d "
                                     "FROM product_vectors ORDER BY d LIMIT 3")
    assert table.column("product_id").to_pylist() == [r[0] for r in expected]


@pytest.mark.parametrize(("sql", "error", "message"), [
    ("SELECT * FROM vector_search('product_vectors', $q)", fedquery.ParseError,
     "vector_search takes ('table', query_vector, k"),
    ("SELECT * FROM vector_search('product_vector', $q, 3)", fedquery.PlanError,
     "unknown table 'product_vector' (did you mean 'product_vectors'?)"),
    ("SELECT * FROM vector_search('product_vectors', $q, 3, metric := 'hamming')", fedquery.PlanError,
     "unknown metric 'hamming'"),
    ("SELECT * FROM vector_search('products', $q, 3)", fedquery.PlanError, "has no vector columns"),
    ("SELECT * FROM vector_search('product_vectors', $q, 0)", fedquery.PlanError,
     "k must be a positive integer"),
    ("SELECT * FROM vector_search('product_vectors', $q, 3, colum := 'vec')", fedquery.PlanError,
     "unknown option 'colum'"),
])
def test_vector_search_errors(fq: fedquery.Connection, sql: str, error, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        fq.sql(sql, params={"q": QUERY})


@pytest.mark.parametrize("name", ["metadata-filter", "three-sources-one-to-many", "offset"])
def test_many_keys_join_as_a_table_and_too_many_drop_the_top_k(
        name: str, fq: fedquery.Connection, unseen, monkeypatch) -> None:
    """Past the literal limit the keys are a registered table (a semi-join); past the key
    limit the scan returns every row. Both answer as the exhaustive query."""
    import fedquery.connectors._native as native
    import fedquery.fetch as fetch

    _, _, sql = CASES[name]
    expected = _reference(unseen[1], sql)
    monkeypatch.setattr(native, "IN_LITERALS_MAX", 2)
    _same(fq.sql(sql, params={"q": QUERY}).fetchall(), expected)
    monkeypatch.setattr(fetch, "VECTOR_KEYS_MAX", 2)
    _same(fq.sql(sql, params={"q": QUERY}).fetchall(), expected)
    assert "top-k dropped" in fq.explain(sql, params={"q": QUERY}, analyze=True)


@pytest.fixture(scope="module")
def federated(postgres_database, unseen, unseen_root, s3_endpoint, s3_credentials):
    """The shop's warehouse in PostgreSQL, its lake on S3, its vectors in LanceDB."""
    from tests.services.postgres import shop_on_postgres_and_s3

    federated = shop_on_postgres_and_s3(postgres_database, unseen, unseen_root, s3_endpoint,
                                        s3_credentials, "vectors-topk")
    ref = unseen[1]
    with fedquery.connect(federated) as con:
        yield con, ref


@pytest.mark.parametrize("name", ["metadata-filter", "three-sources-one-to-many",
                                  "vector-table-joined-last", "none-qualify"])
def test_postgres_and_s3_metadata(name: str, federated) -> None:
    """Exact across PostgreSQL, S3 and LanceDB; the vector table gives at most k rows and a
    PostgreSQL table joined on the key sends only the rows of the k found."""
    con, ref = federated
    _, k, sql = CASES[name]
    _same(con.sql(sql, params={"q": QUERY}).fetchall(), _reference(ref, sql))
    analyzed = con.explain(sql, params={"q": QUERY}, analyze=True)
    assert rows(source_fragment(analyzed, "vec")) <= k, analyzed
    if "JOIN products p ON p.product_id = v.product_id" in sql:
        assert rows(source_fragment(analyzed, "pg")) <= k, analyzed


def test_parameters_of_the_keys_plan(fq: fedquery.Connection, unseen) -> None:
    sql = """SELECT o.order_id, array_cosine_distance(v.vec, $q) AS dist
             FROM product_vectors v JOIN orders o ON o.product_id = v.product_id
             WHERE o.qty = $n AND o.region = $r ORDER BY dist, o.order_id LIMIT 7"""
    values = {"q": QUERY, "n": 5, "r": "east"}
    assert "top-k:" in fq.explain(sql, params=values)
    typed = typed_vectors({"q": QUERY.tolist(), "n": 5, "r": "east"}, (("q", f"FLOAT[{VEC_DIM}]"),))
    _same(fq.sql(sql, params=values).fetchall(), unseen[1].execute(sql, typed).fetchall())


def test_correlated_top_k_is_answered_exhaustively(fq: fedquery.Connection, unseen) -> None:
    sql = """SELECT c.customer_id, (SELECT v.product_id FROM product_vectors v
                 JOIN orders o ON o.product_id = v.product_id WHERE o.customer_id = c.customer_id
                 ORDER BY array_cosine_distance(v.vec, $q), v.product_id, v.model LIMIT 1) AS best
             FROM clients c WHERE c.customer_id <= 20 ORDER BY c.customer_id"""
    assert fq.sql(sql, params={"q": QUERY}).fetchall() == _reference(unseen[1], sql)


def test_cte_named_as_the_vector_table_reads_the_table(fq: fedquery.Connection, unseen) -> None:
    sql = """WITH product_vectors AS (SELECT * FROM product_vectors WHERE model = 'm2')
             SELECT v.product_id, array_cosine_distance(v.vec, $q) AS d FROM product_vectors v
             ORDER BY d LIMIT 3"""
    _same(fq.sql(sql, params={"q": QUERY}).fetchall(), _reference(unseen[1], sql))


@pytest.mark.parametrize("sql", ["SELECT order_id FROM orders ORDER BY order_id LIMIT 1%",
                                 "SELECT order_id FROM orders LIMIT 10 PERCENT"])
def test_limit_percent_is_not_a_row_count(fq: fedquery.Connection, unseen, sql: str) -> None:
    assert len(fq.sql(sql).fetchall()) == len(unseen[1].execute(sql).fetchall())


def test_query_vector_from_embed_text(fq: fedquery.Connection, unseen) -> None:
    """A text embedded in the query is a constant: the top-k applies, embedded once."""
    from fedquery.functions.embedding import REGISTRY

    calls: list[int] = []

    def hashed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([np.random.default_rng(len(t)).standard_normal(VEC_DIM) for t in texts])

    saved = dict(REGISTRY._embedders), dict(REGISTRY._defaults)
    try:
        fedquery.register_embedder("len-seeded", hashed, VEC_DIM, kind="text")
        sql = CASES["metadata-filter"][2].replace("$q", "embed_text('red lamp', 'len-seeded')")
        assert "top-k:" in fq.explain(sql)
        vector = hashed(["red lamp"])[0].astype(np.float32)
        calls.clear()
        rows = fq.sql(sql).fetchall()
        assert calls == [1]
        expected = unseen[1].execute(CASES["metadata-filter"][2], typed_vectors(
            {"q": vector.tolist()}, (("q", f"FLOAT[{VEC_DIM}]"),))).fetchall()
        _same(rows, expected)
    finally:
        REGISTRY._embedders, REGISTRY._defaults = saved
        REGISTRY.generation += 1


def test_positional_parameters_are_answered_exhaustively(fq: fedquery.Connection, unseen) -> None:
    sql = CASES["metadata-filter"][2].replace("'toys'", "?").replace("$q", f"CAST(? AS FLOAT[{VEC_DIM}])")
    values = [QUERY.tolist(), "toys"]
    assert fq.sql(sql, params=values).fetchall() == unseen[1].execute(sql, values).fetchall()


@pytest.mark.parametrize("sql", [
    """SELECT p.product_id, v.model, array_cosine_distance(v.vec, (SELECT w.vec FROM product_vectors w
              WHERE w.product_id = 1 AND w.model = 'm1')) AS d
       FROM product_vectors v JOIN products p ON p.product_id = v.product_id
       WHERE p.category = 'toys' ORDER BY d, v.model LIMIT 6""",
    """WITH probe AS (SELECT w.vec FROM product_vectors w JOIN products p ON p.product_id = w.product_id
                      WHERE p.category = 'books' ORDER BY w.product_id, w.model LIMIT 1),
            other AS (SELECT 1 AS unused)
       SELECT o.order_id, array_distance(v.vec, (SELECT vec FROM probe)) AS d
       FROM product_vectors v JOIN orders o ON o.product_id = v.product_id
       WHERE o.region = 'north' ORDER BY array_distance(v.vec, (SELECT vec FROM probe)), o.order_id
       LIMIT 7""",
])
def test_query_vector_from_a_scalar_subquery(fq: fedquery.Connection, unseen, sql: str) -> None:
    """The subquery (with the CTEs it reads) runs first; its value is the scan's query vector."""
    analyzed = fq.explain(sql, analyze=True)
    assert "top-k:" in analyzed and rows(source_fragment(analyzed, "vec")) <= 7
    _same(fq.sql(sql).fetchall(), unseen[1].execute(sql).fetchall())


def test_aggregate_inside_the_query_vector_subquery(fq: fedquery.Connection, unseen) -> None:
    sql = """SELECT v.product_id, v.model, array_distance(v.vec, (SELECT w.vec FROM product_vectors w
                 WHERE w.product_id = (SELECT min(product_id) FROM products) AND w.model = 'm1')) AS d
             FROM product_vectors v JOIN products p ON p.product_id = v.product_id
             WHERE p.category = 'kitchen' ORDER BY d, v.model LIMIT 4"""
    assert "top-k:" in fq.explain(sql)
    _same(fq.sql(sql).fetchall(), unseen[1].execute(sql).fetchall())
