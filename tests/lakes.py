"""Helpers of the Iceberg and Delta tests: a pyiceberg SQL catalog on a SQLite file in a
test's folder, and the fedquery source that reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CATALOG_NAME = "lake"


def iceberg_catalog(root: Path, namespace: str = "ns") -> Any:
    """A pyiceberg SQL catalog (``root/catalog.db``, warehouse ``root/warehouse``)."""
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog(CATALOG_NAME, type="sql", uri=f"sqlite:///{root}/catalog.db",
                           warehouse=(root / "warehouse").as_uri())
    catalog.create_namespace(namespace)
    return catalog


def iceberg_source(root: Path) -> dict[str, Any]:
    """The catalog entry of a source reading ``iceberg_catalog(root)``."""
    return {"kind": "iceberg", "catalog": {"type": "sql", "name": CATALOG_NAME,
                                           "uri": f"sqlite:///{root}/catalog.db",
                                           "warehouse": (root / "warehouse").as_uri()}}
