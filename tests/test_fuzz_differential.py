"""Differential fuzzing: random queries answered by fedquery and by plain DuckDB must agree.

The queries (``tests/sqlfuzz.py``) join, nest, correlate, aggregate and window over the shop
data set, reusing aliases across scopes on purpose. Each source layout runs its own seeded
batch: the warehouse in DuckDB beside a local lake, in PostgreSQL beside a local lake, in
PostgreSQL beside a lake on S3, in SQLite (``kind: adbc``) beside a local lake, and the lake's
tables in Iceberg or in Delta (``tests/fuzz_layouts.py``). DuckDB over the local files is the
reference every time.
Longer campaigns run from the shell: ``python -m tests.sqlfuzz --count 5000 --config pg``.
"""

from __future__ import annotations

import pytest

import fedquery
from tests.fuzz_check import check
from tests.fuzz_layouts import LAYOUTS, layout_catalog
from tests.services.postgres import shop_catalog_in_postgres, shop_on_postgres_and_s3
from tests.sqlfuzz import generate, generate_with_parameters

PER_LAYOUT = 300
PER_NEW_LAYOUT = 150  # sqlite, iceberg, delta: longer campaigns from the shell
SEEDS = {"local": 11, "postgres": 12, "postgres+s3": 13, "sqlite": 14, "iceberg": 15, "delta": 16}


@pytest.fixture(scope="module")
def layouts(unseen, unseen_root, postgres_database, s3_endpoint, s3_credentials, tmp_path_factory):
    """name -> fedquery connection, for every source layout of the shop."""
    catalog, ref = unseen
    federated = shop_on_postgres_and_s3(postgres_database, unseen, unseen_root, s3_endpoint,
                                        s3_credentials, "fuzz")  # loads the shop into PostgreSQL
    made = {
        "local": fedquery.connect(catalog),
        "postgres": fedquery.connect(shop_catalog_in_postgres(catalog, postgres_database.dsn)),
        "postgres+s3": fedquery.connect(federated),
    }
    for layout in LAYOUTS:
        folder = tmp_path_factory.mktemp(f"fuzz_{layout}")
        made[layout] = fedquery.connect(layout_catalog(layout, folder, catalog, ref))
    yield made
    for con in made.values():
        con.close()


@pytest.mark.parametrize("layout", ["local", "postgres", "postgres+s3", *LAYOUTS])
def test_random_queries_answer_as_duckdb(layouts, unseen, layout: str) -> None:
    _, ref = unseen
    count = PER_NEW_LAYOUT if layout in LAYOUTS else PER_LAYOUT
    outcomes = [check(layouts[layout], ref, sql) for sql in generate(SEEDS[layout], count)]
    assert outcomes.count("ok") >= count * 0.9, outcomes  # the generator makes valid SQL


@pytest.mark.parametrize("layout", ["local", "postgres", *LAYOUTS])
def test_random_queries_with_parameters_answer_as_duckdb(layouts, unseen, layout: str) -> None:
    """Literals become ``$p0`` (a dict of values) or ``?`` (a list): each fragment binds the
    values it names, whichever source runs it (``?`` failed whenever PostgreSQL was involved)."""
    _, ref = unseen
    seed = SEEDS[layout] + 10
    pairs = generate_with_parameters(seed, PER_NEW_LAYOUT if layout in LAYOUTS else PER_LAYOUT // 2)
    assert sum(isinstance(p, list) for _, p in pairs) >= 10  # both kinds are drawn
    outcomes = [check(layouts[layout], ref, sql, params) for sql, params in pairs]
    assert outcomes.count("ok") >= len(pairs) * 0.9, outcomes
