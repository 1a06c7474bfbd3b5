"""Shared fixtures: a data set fedquery has never seen, its DuckDB reference, and the sample set.

``unseen`` is a small shop: a DuckDB warehouse (``shop.duckdb``: customers, products and a
``sales`` schema), a Parquet lake (``orders/region=.../*.parquet`` hive-partitioned, ``returns/``
plain) and a LanceDB table of product vectors. Its names differ from the sample drive data on
purpose, so nothing in fedquery can lean on them. The reference is a plain DuckDB connection
that reads the same files directly, under the same names the catalog gives them.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.functions.embedding import REGISTRY

pytest_plugins = ["tests.services.postgres", "tests.services.s3", "tests.services.azure"]

SEED = 20240917
N_CUSTOMERS, N_PRODUCTS, N_ORDERS, N_RETURNS = 600, 150, 4000, 400
REGIONS = ("east", "north", "south", "west")
VEC_DIM = 8

WAREHOUSE_DDL = """
CREATE TABLE customers (customer_id INTEGER, name VARCHAR, segment VARCHAR, country VARCHAR);
CREATE TABLE products (product_id INTEGER, title VARCHAR, category VARCHAR, price DECIMAL(10,2));
CREATE SCHEMA sales;
CREATE TABLE sales.targets (segment VARCHAR, country VARCHAR, quarter INTEGER, target DECIMAL(12,2));
CREATE TABLE sales.region_managers (region VARCHAR, manager VARCHAR);
"""


# ------------------------------------------------------------------ the unseen shop data set


def _pick(rng: np.random.Generator, options: list[Any], n: int, p: list[float] | None = None) -> list:
    """``n`` draws from ``options`` (None allowed among them), as Python values."""
    index = rng.choice(len(options), size=n, p=p)
    return [options[i] for i in index]


def _customers(rng: np.random.Generator) -> pa.Table:
    first = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"]
    last = ["Smith", "Ng", "Okafor", "Muller", "Rossi", "Tanaka"]
    names = [f"{a} {b}" for a, b in zip(_pick(rng, first, N_CUSTOMERS), _pick(rng, last, N_CUSTOMERS),
                                        strict=True)]
    return pa.table({
        "customer_id": pa.array(range(1, N_CUSTOMERS + 1), pa.int32()),
        "name": pa.array(names, pa.string()),
        "segment": pa.array(_pick(rng, ["consumer", "corporate", "home_office", None], N_CUSTOMERS,
                                  [0.5, 0.3, 0.15, 0.05]), pa.string()),
        "country": pa.array(_pick(rng, ["DE", "FR", "US", "JP", "BR", None], N_CUSTOMERS,
                                  [0.2, 0.2, 0.3, 0.1, 0.15, 0.05]), pa.string()),
    })


def _products(rng: np.random.Generator) -> pa.Table:
    adjectives = ["Red", "Blue", "Tiny", "Huge", "Smart"]
    nouns = ["Lamp", "Chair", "Kettle", "Robot", "Novel", "Rake"]
    titles = [f"{a} {b}" for a, b in zip(_pick(rng, adjectives, N_PRODUCTS), _pick(rng, nouns, N_PRODUCTS),
                                         strict=True)]
    cents = rng.integers(100, 50_000, N_PRODUCTS)
    prices = [None if i % 17 == 0 else f"{c / 100:.2f}" for i, c in enumerate(cents)]
    return pa.table({
        "product_id": pa.array(range(1, N_PRODUCTS + 1), pa.int32()),
        "title": pa.array(titles, pa.string()),
        "category": pa.array(_pick(rng, ["garden", "kitchen", "toys", "books", None], N_PRODUCTS,
                                   [0.25, 0.25, 0.2, 0.2, 0.1]), pa.string()),
        "price": pa.array([None if p is None else Decimal(p) for p in prices],
                          pa.decimal128(10, 2)),
    })


def _targets(rng: np.random.Generator) -> pa.Table:
    rows = [(s, c, q) for s in ("consumer", "corporate", "home_office")
            for c in ("DE", "FR", "US", "JP") for q in (1, 2, 3, 4)]
    cents = rng.integers(1_000_00, 90_000_00, len(rows))
    return pa.table({
        "segment": [r[0] for r in rows],
        "country": [r[1] for r in rows],
        "quarter": pa.array([r[2] for r in rows], pa.int32()),
        "target": pa.array([Decimal(int(c)) / 100 for c in cents],
                           pa.decimal128(12, 2)),
    })


def _region_managers() -> pa.Table:
    # 'west' has no manager; 'central' has no orders: both sides of a full join get NULLs.
    return pa.table({"region": ["east", "north", "south", "central"],
                     "manager": ["Iris", "Jon", "Kim", "Lee"]})


def _orders(rng: np.random.Generator) -> pa.Table:
    order_ids = rng.permutation(np.arange(1, N_ORDERS + 1, dtype=np.int64))
    customer = rng.integers(1, N_CUSTOMERS + 51, N_ORDERS)  # ids above 600 match no customer
    product = rng.integers(1, N_PRODUCTS + 11, N_ORDERS)    # ids above 150 match no product
    qty = rng.integers(1, 11, N_ORDERS)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    seconds = rng.integers(0, 366 * 24 * 3600, N_ORDERS)
    null_customer = rng.random(N_ORDERS) < 0.03
    null_product = rng.random(N_ORDERS) < 0.02
    null_qty = rng.random(N_ORDERS) < 0.01
    notes = _pick(rng, [None, "gift", "express", "fragile", "", "call first"], N_ORDERS,
                  [0.7, 0.08, 0.08, 0.06, 0.03, 0.05])
    return pa.table({
        "order_id": pa.array(order_ids, pa.int64()),
        "customer_id": pa.array(customer.astype(np.int32), pa.int32(), mask=null_customer),
        "product_id": pa.array(product.astype(np.int32), pa.int32(), mask=null_product),
        "qty": pa.array(qty.astype(np.int32), pa.int32(), mask=null_qty),
        "ordered_at": pa.array(start + seconds.astype("timedelta64[s]"), pa.timestamp("us")),
        "note": pa.array(notes, pa.string()),
        "region": pa.array(_pick(rng, list(REGIONS), N_ORDERS, [0.4, 0.3, 0.2, 0.1]), pa.string()),
    })


def _returns(rng: np.random.Generator) -> pa.Table:
    # Some returned orders do not exist and some are returned twice.
    return pa.table({
        "order_id": pa.array(rng.integers(1, N_ORDERS + 201, N_RETURNS), pa.int64()),
        "reason": pa.array(_pick(rng, ["damaged", "late", "wrong item", None], N_RETURNS,
                                 [0.4, 0.3, 0.2, 0.1]), pa.string()),
    })


def _product_vectors(rng: np.random.Generator) -> pa.Table:
    # Every 7th product has no vector; products divisible by 5 have a second model's vector.
    ids = [p for p in range(1, N_PRODUCTS + 1) if p % 7]
    rows = [(p, "m1") for p in ids] + [(p, "m2") for p in ids if p % 5 == 0]
    values = rng.standard_normal((len(rows), VEC_DIM)).astype(np.float32)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), VEC_DIM)
    return pa.table({
        "product_id": pa.array([r[0] for r in rows], pa.int32()),
        "model": pa.array([r[1] for r in rows], pa.string()),
        "vec": vec,
    })


def _write_warehouse(path: Path, tables: dict[str, pa.Table]) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(WAREHOUSE_DDL)
        for name, table in tables.items():
            con.register("incoming", table)
            con.execute(f"INSERT INTO {name} SELECT * FROM incoming")
            con.unregister("incoming")
    finally:
        con.close()


def _write_lake(lake: Path, orders: pa.Table, returns: pa.Table) -> None:
    for region in REGIONS:
        part = orders.filter(pc.equal(orders["region"], region)).drop_columns(["region"])
        folder = lake / "orders" / f"region={region}"
        folder.mkdir(parents=True)
        half = part.num_rows // 2
        pq.write_table(part.slice(0, half), folder / "part-0.parquet", row_group_size=300)
        pq.write_table(part.slice(half), folder / "part-1.parquet", row_group_size=300)
    (lake / "returns").mkdir()
    pq.write_table(returns.slice(0, 250), lake / "returns" / "returns-0.parquet")
    pq.write_table(returns.slice(250), lake / "returns" / "returns-1.parquet")


def _write_vectors(uri: Path, table: pa.Table) -> None:
    import lancedb

    lancedb.connect(str(uri)).create_table("product_vectors", table)


def build_unseen(root: Path) -> dict[str, Any]:
    """Write the shop data set under ``root``; return its catalog as a dict (absolute paths)."""
    rng = np.random.default_rng(SEED)
    _write_warehouse(root / "shop.duckdb", {
        "customers": _customers(rng), "products": _products(rng),
        "sales.targets": _targets(rng), "sales.region_managers": _region_managers()})
    _write_lake(root / "lake", _orders(rng), _returns(rng))
    _write_vectors(root / "vectors", _product_vectors(rng))
    return unseen_catalog(root)


def unseen_catalog(root: Path) -> dict[str, Any]:
    """The catalog of the shop data set; catalog names differ from the warehouse's on purpose."""
    return {
        "sources": {
            "shop": {"kind": "duckdb", "path": str(root / "shop.duckdb")},
            "lake": {"kind": "parquet", "root": str(root / "lake")},
            "vec": {"kind": "lancedb", "uri": str(root / "vectors")},
        },
        "tables": {
            "clients": {"source": "shop", "table": "customers"},
            "products": {"source": "shop", "table": "products"},
            "targets": {"source": "shop", "table": "sales.targets"},
            "orders": {"source": "lake", "path": "orders/", "partitioning": "hive"},
            "returns": {"source": "lake", "path": "returns/*.parquet"},
            "product_vectors": {"source": "vec", "table": "product_vectors"},
        },
    }


def reference_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB over the same files, with the catalog's names for them."""
    import lance

    ref = duckdb.connect()
    ref.execute(f"ATTACH '{root / 'shop.duckdb'}' AS shop (READ_ONLY)")
    ref.execute("CREATE VIEW clients AS SELECT * FROM shop.customers")
    ref.execute("CREATE VIEW products AS SELECT * FROM shop.products")
    ref.execute("CREATE VIEW targets AS SELECT * FROM shop.sales.targets")
    ref.execute(f"CREATE VIEW orders AS SELECT * FROM read_parquet("
                f"'{root / 'lake' / 'orders' / '**' / '*.parquet'}', hive_partitioning = true)")
    ref.execute(f"CREATE VIEW returns AS SELECT * FROM read_parquet("
                f"'{root / 'lake' / 'returns' / '*.parquet'}')")
    vectors = lance.dataset(str(root / "vectors" / "product_vectors.lance")).to_table()
    ref.register("vectors_arrow", vectors)
    ref.execute("CREATE TABLE product_vectors AS SELECT * FROM vectors_arrow")
    ref.unregister("vectors_arrow")
    return ref


@pytest.fixture(scope="session")
def unseen_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the shop data set (built once per session)."""
    root = tmp_path_factory.mktemp("unseen")
    build_unseen(root)
    return root


@pytest.fixture(scope="session")
def unseen(unseen_root: Path):
    """(catalog dict, reference DuckDB connection) for the shop data set."""
    ref = reference_connection(unseen_root)
    yield unseen_catalog(unseen_root), ref
    ref.close()


@pytest.fixture(scope="session")
def fq(unseen) -> fedquery.Connection:
    """A fedquery connection over the shop catalog, shared by read-only tests."""
    catalog, _ = unseen
    con = fedquery.connect(catalog)
    yield con
    con.close()


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample drive data set, built once per session; returns its catalog.yaml path."""
    from fedquery.sample_data.generate import build

    return build(tmp_path_factory.mktemp("sample") / "fleet")


@pytest.fixture(scope="module")
def fleet(sample: Path):
    """A connection to the sample data set, and the folder it lives in."""
    with fedquery.connect(sample) as con:
        yield con, sample.parent


@pytest.fixture()
def registry():
    """The global registry, put back as it was after the test."""
    embedders, defaults = dict(REGISTRY._embedders), dict(REGISTRY._defaults)
    yield REGISTRY
    REGISTRY._embedders, REGISTRY._defaults = embedders, defaults
    REGISTRY.generation += 1
