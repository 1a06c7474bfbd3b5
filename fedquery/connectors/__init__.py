"""Connectors, one module per source kind, found through a lazy table.

Built-ins are named here as ``"module:Class"`` and imported only when a catalog uses them, with
the install hint for a missing extra (the way fsspec's ``known_implementations`` works). Third
parties add kinds through the ``fedquery.connectors`` entry point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from fedquery.connectors.base import (
    Capabilities,
    Connector,
    NativeSource,
    ScanRequest,
    SQLSource,
    TableRef,
)

if TYPE_CHECKING:
    from fedquery.catalog import Catalog, SourceSpec

KNOWN_CONNECTORS: dict[str, tuple[str, str]] = {
    "duckdb": ("fedquery.connectors.duckdb:DuckDBConnector", "pip install duckdb"),
    "parquet": ("fedquery.connectors.parquet:ParquetConnector", "pip install pyarrow"),
    "lancedb": ("fedquery.connectors.lancedb:LanceDBConnector", "pip install 'fedquery[lance]'"),
    "files": ("fedquery.connectors.files:FilesConnector", "pip install fsspec"),
    "postgres": ("fedquery.connectors.postgres:PostgresConnector", "pip install 'fedquery[postgres]'"),
    "adbc": ("fedquery.connectors.adbc:AdbcConnector",
             "pip install 'fedquery[adbc]' plus the warehouse's driver package"),
    "iceberg": ("fedquery.connectors.iceberg:IcebergConnector", "pip install 'fedquery[iceberg]'"),
    "delta": ("fedquery.connectors.delta:DeltaConnector", "pip install 'fedquery[delta]'"),
}

__all__ = ["Capabilities", "Connector", "NativeSource", "SQLSource", "ScanRequest", "TableRef",
           "KNOWN_CONNECTORS", "connector_class", "known_kinds", "open_connector"]


def open_connector(spec: SourceSpec, catalog: Catalog) -> Connector:
    """Instantiate the connector for one declared source."""
    return connector_class(spec.kind, f"{catalog.origin}: sources.{spec.name}")(spec, catalog)


def known_kinds() -> list[str]:
    """Every kind a catalog may name: the built-ins and those of installed plugins."""
    return sorted({*KNOWN_CONNECTORS, *(e.name for e in entry_points(group="fedquery.connectors"))})


def connector_class(kind: str, where: str) -> type[Connector]:
    """The class of a kind (imported on first use), or a ``CatalogError`` at ``where`` saying
    which package to install."""
    from fedquery.errors import CatalogError

    target, hint = KNOWN_CONNECTORS.get(kind, (None, ""))
    if target is None:
        found = entry_points(group="fedquery.connectors", name=kind)
        if not found:
            raise CatalogError(f"{where}.kind: no connector for {kind!r}")
        return next(iter(found)).load()
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if exc.name == module:
            raise CatalogError(f"{where}.kind: {kind!r} sources are not supported by this "
                               "version of fedquery") from exc
        raise CatalogError(f"{where}: the {kind!r} connector needs a package that is not "
                           f"installed ({exc.name}); {hint}") from exc
