"""Connectors, one module per source kind, found through a lazy table.

Built-ins are named here as ``"module:Class"`` and imported only when a catalog uses them, with
the install hint for a missing extra (the way fsspec's ``known_implementations`` works). Third
parties add kinds through the ``fedquery.connectors`` entry point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from fedquery.connectors.base import Capabilities, Connector, ScanRequest, TableRef

if TYPE_CHECKING:
    from fedquery.catalog import Catalog, SourceSpec

KNOWN_CONNECTORS: dict[str, tuple[str, str]] = {
    "duckdb": ("fedquery.connectors.duckdb:DuckDBConnector", "pip install duckdb"),
    "parquet": ("fedquery.connectors.parquet:ParquetConnector", "pip install pyarrow"),
    "lancedb": ("fedquery.connectors.lancedb:LanceDBConnector", "pip install 'fedquery[lance]'"),
    "files": ("fedquery.connectors.files:FilesConnector", "pip install fsspec"),
    "postgres": ("fedquery.connectors.postgres:PostgresConnector", "pip install 'fedquery[postgres]'"),
    "iceberg": ("fedquery.connectors.iceberg:IcebergConnector", "pip install 'fedquery[iceberg]'"),
    "delta": ("fedquery.connectors.delta:DeltaConnector", "pip install 'fedquery[delta]'"),
}

__all__ = ["Capabilities", "Connector", "ScanRequest", "TableRef", "KNOWN_CONNECTORS",
           "open_connector"]


def open_connector(spec: SourceSpec, catalog: Catalog) -> Connector:
    """Instantiate the connector for one declared source."""
    from fedquery.errors import CatalogError

    target, hint = KNOWN_CONNECTORS.get(spec.kind, (None, ""))
    if target is None:
        found = entry_points(group="fedquery.connectors", name=spec.kind)
        if not found:
            raise CatalogError(f"{catalog.origin}: sources.{spec.name}.kind: no connector for "
                               f"{spec.kind!r}")
        return next(iter(found)).load()(spec, catalog)
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)(spec, catalog)
    except ImportError as exc:
        if exc.name == module:
            raise CatalogError(f"{catalog.origin}: sources.{spec.name}.kind: {spec.kind!r} "
                               "sources are not supported by this version of fedquery") from exc
        raise CatalogError(f"{catalog.origin}: sources.{spec.name}: the {spec.kind!r} "
                           f"connector needs a package that is not installed ({exc.name}); "
                           f"{hint}") from exc
