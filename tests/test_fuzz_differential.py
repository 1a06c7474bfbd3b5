"""Differential fuzzing: random queries answered by fedquery and by plain DuckDB must agree.

The queries (``tests/sqlfuzz.py``) join, nest, correlate, aggregate and window over the shop
data set, reusing aliases across scopes on purpose. Each source layout runs its own seeded
batch: the warehouse in DuckDB beside a local lake, in PostgreSQL beside a local lake, and in
PostgreSQL beside a lake on S3. DuckDB over the local files is the reference every time.
Longer campaigns run from the shell: ``python -m tests.sqlfuzz --count 5000 --config pg``.
"""

from __future__ import annotations

import pytest

import fedquery
from tests.fuzz_check import check
from tests.services.postgres import shop_catalog_in_postgres, shop_on_postgres_and_s3
from tests.sqlfuzz import generate, generate_with_parameters

PER_LAYOUT = 300


@pytest.fixture(scope="module")
def layouts(unseen, unseen_root, postgres_database, s3_endpoint, s3_credentials):
    """name -> fedquery connection, for every source layout of the shop."""
    catalog, _ = unseen
    federated = shop_on_postgres_and_s3(postgres_database, unseen, unseen_root, s3_endpoint,
                                        s3_credentials, "fuzz")  # loads the shop into PostgreSQL
    made = {
        "local": fedquery.connect(catalog),
        "postgres": fedquery.connect(shop_catalog_in_postgres(catalog, postgres_database.dsn)),
        "postgres+s3": fedquery.connect(federated),
    }
    yield made
    for con in made.values():
        con.close()


@pytest.mark.parametrize("layout", ["local", "postgres", "postgres+s3"])
def test_random_queries_answer_as_duckdb(layouts, unseen, layout: str) -> None:
    _, ref = unseen
    seed = {"local": 11, "postgres": 12, "postgres+s3": 13}[layout]
    outcomes = [check(layouts[layout], ref, sql) for sql in generate(seed, PER_LAYOUT)]
    assert outcomes.count("ok") >= PER_LAYOUT * 0.9, outcomes  # the generator makes valid SQL


@pytest.mark.parametrize("layout", ["local", "postgres"])
def test_random_queries_with_parameters_answer_as_duckdb(layouts, unseen, layout: str) -> None:
    """Literals become ``$p0`` (a dict of values) or ``?`` (a list): each fragment binds the
    values it names, whichever source runs it (``?`` failed whenever PostgreSQL was involved)."""
    _, ref = unseen
    seed = {"local": 21, "postgres": 22}[layout]
    pairs = generate_with_parameters(seed, PER_LAYOUT // 2)
    assert sum(isinstance(p, list) for _, p in pairs) >= 10  # both kinds are drawn
    outcomes = [check(layouts[layout], ref, sql, params) for sql, params in pairs]
    assert outcomes.count("ok") >= len(pairs) * 0.9, outcomes
