"""The shop data set of ``tests/conftest.py`` moved into the newer sources, for differential
fuzzing (``tests/sqlfuzz.py``, ``tests/test_fuzz_differential.py``):

- ``sqlite``: the warehouse tables (clients, products, targets) in a SQLite file read through
  ``kind: adbc`` (declared INTEGER / TEXT / DECIMAL columns, as docs/catalog.md documents), the
  lake local Parquet;
- ``iceberg``: orders (partitioned by region) and returns as Iceberg tables of a pyiceberg SQL
  catalog, the warehouse in DuckDB;
- ``delta``: orders (partitioned by region) and returns as Delta tables, the warehouse in DuckDB.

The rows are the reference's own (read back from plain DuckDB), so DuckDB over the original
files stays the reference.
"""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path
from typing import Any

import duckdb

from tests.lakes import iceberg_catalog, iceberg_source

LAYOUTS = ("sqlite", "iceberg", "delta")
SQLITE_DDL = {
    "clients": "CREATE TABLE customers (customer_id INTEGER, name TEXT, segment TEXT, country TEXT)",
    "products": "CREATE TABLE products (product_id INTEGER, title TEXT, category TEXT, "
                "price DECIMAL(10, 2))",
    "targets": "CREATE TABLE targets (segment TEXT, country TEXT, quarter INTEGER, "
               "target DECIMAL(12, 2))",
}
SQLITE_NAMES = {"clients": "customers", "products": "products", "targets": "targets"}
LAKE_TABLES = ("orders", "returns")


def _rows(ref: duckdb.DuckDBPyConnection, table: str):
    return ref.sql(f"SELECT * FROM {table}").to_arrow_table()


def write_sqlite(path: Path, ref: duckdb.DuckDBPyConnection) -> None:
    """The warehouse tables in a SQLite file (decimals as SQLite keeps them: REAL)."""
    con = sqlite3.connect(path)
    for table, ddl in SQLITE_DDL.items():
        con.execute(ddl)
        rows = [tuple(float(v) if hasattr(v, "as_tuple") else v for v in row.values())
                for row in _rows(ref, table).to_pylist()]
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO {SQLITE_NAMES[table]} VALUES ({marks})", rows)
    con.commit()
    con.close()


def write_iceberg(root: Path, ref: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """orders (identity-partitioned by region, two appends) and returns as Iceberg tables."""
    catalog = iceberg_catalog(root, "shop")
    for name in LAKE_TABLES:
        rows = _rows(ref, name)
        table = catalog.create_table(f"shop.{name}", schema=rows.schema)
        if name == "orders":
            with table.update_spec() as spec:
                spec.add_identity("region")
        half = rows.num_rows // 2
        table.append(rows.slice(0, half))
        table.append(rows.slice(half))
    return iceberg_source(root)


def write_delta(root: Path, ref: duckdb.DuckDBPyConnection) -> None:
    """orders (partitioned by region, two versions) and returns as Delta tables."""
    from deltalake import write_deltalake

    for name in LAKE_TABLES:
        rows = _rows(ref, name)
        half = rows.num_rows // 2
        partitions = ["region"] if name == "orders" else None
        write_deltalake(root / name, rows.slice(0, half), partition_by=partitions)
        write_deltalake(root / name, rows.slice(half), partition_by=partitions, mode="append")


def layout_catalog(layout: str, folder: Path, catalog: dict[str, Any],
                   ref: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The shop's ``catalog`` with some tables moved into ``layout``'s source (files written
    under ``folder``, which must exist and be empty)."""
    catalog = copy.deepcopy(catalog)
    sources, tables = catalog["sources"], catalog["tables"]
    if layout == "sqlite":
        write_sqlite(folder / "shop.sqlite", ref)
        sources["lite"] = {"kind": "adbc", "driver": "sqlite", "uri": str(folder / "shop.sqlite")}
        for name, table in SQLITE_NAMES.items():
            tables[name] = {"source": "lite", "table": f"main.{table}"}
    elif layout == "iceberg":
        sources["ice"] = write_iceberg(folder, ref)
        for name in LAKE_TABLES:
            tables[name] = {"source": "ice", "table": f"shop.{name}"}
    elif layout == "delta":
        write_delta(folder, ref)
        sources["dl"] = {"kind": "delta", "root": str(folder)}
        for name in LAKE_TABLES:
            tables[name] = {"source": "dl", "path": name}
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return catalog
