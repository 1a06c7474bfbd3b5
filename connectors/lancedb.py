"""``kind: lancedb``: tables of a LanceDB database, scanned by DuckDB as Arrow datasets.

A Lance dataset is a pyarrow Dataset, so DuckDB pushes projections and filters into it.
Sources are only read: a local database (a path or a ``file://`` URL) must be an existing
folder before lancedb is called, as ``lancedb.connect`` creates a missing one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from connectors._native import DuckDBBound, attach_memory, quote, relation, scan_reader, table_ref
from connectors.base import Capabilities, ScanRequest, TableRef
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec


class LanceDBConnector(DuckDBBound):
    """Vector tables of a LanceDB database, bound into DuckDB as views over Lance datasets."""

    kind = "lancedb"
    capabilities = Capabilities(dialect=None, native=True, subtrees=False, vector_search=True)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        import lancedb

        self.name = spec.name
        self.uri = spec.resolve(spec.settings["uri"])
        _check_local_folder(self.uri, self.name)
        declared = {t.name: t.table or t.name for t in catalog.tables.values()
                    if t.source == spec.name}
        try:
            self._db = lancedb.connect(self.uri)
            available = set(_table_names(self._db))
        except Exception as exc:  # lancedb raises plain exceptions
            raise SourceError(f"cannot open LanceDB at {self.uri}: {exc}", source=self.name) from exc
        missing = sorted(set(declared.values()) - available)
        if missing:
            raise SourceError(f"no table {missing[0]!r} in {self.uri} (has: "
                              f"{', '.join(sorted(available)) or 'none'})", source=self.name)
        self._datasets = {name: self._db.open_table(table).to_lance()
                          for name, table in declared.items()}

    def relation_name(self, table: str) -> str:
        """The name the Lance dataset of one table is registered under in each cursor."""
        return f"__lance_{self.name}_{table}"

    def bind(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        attach_memory(con, self.name)
        for table, dataset in self._datasets.items():
            con.register(self.relation_name(table), dataset)
            con.execute(f"CREATE VIEW {relation(self.name, TableRef('main', table))} AS "
                        f"SELECT * FROM {quote(self.relation_name(table))}")
        self._con = con
        return []

    def relations(self, tables: list[str] | None = None) -> dict[str, Any]:
        """Objects each executor cursor must register: the Lance datasets (of ``tables``)."""
        return {self.relation_name(t): ds for t, ds in self._datasets.items()
                if tables is None or t in tables}

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._datasets]

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        table = table_ref(request.table)
        cursor = self._bound().cursor()
        for name, dataset in self.relations([table.name]).items():
            cursor.register(name, dataset)
        return scan_reader(cursor, self.name, request, table)

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of the Lance dataset, from its manifest."""
        return self._datasets[table.name].count_rows()

    def describe(self, table: TableRef) -> dict[str, Any]:
        return {"kind": "lancedb", "uri": self.uri, "table": table.name}

    def refresh(self, table: str) -> None:
        """Re-open one table's Lance dataset at its latest version, in place of the one opened
        at connect time, so the next queries see what ``create_index`` committed."""
        dataset = self._datasets[table]
        latest = dataset.checkout_version(dataset.latest_version)  # a new object: running
        self._datasets[table] = latest                              # scans keep the old one
        if self._con is not None:
            self._con.register(self.relation_name(table), latest)

    def indices(self, table: str) -> list[tuple[str, str, str, str]]:
        """``(index name, column, index type, metric)`` of each vector index of one table,
        e.g. ``("vec_idx", "vec", "IVF_PQ", "cosine")``."""
        from fedquery.vector_index import lance_indices

        return lance_indices(self._datasets[table])



def _check_local_folder(uri: str, source: str) -> None:
    """A ``SourceError`` unless a local ``uri`` is an existing folder (remote URIs pass)."""
    if "://" in uri:
        parts = urlsplit(uri)
        if parts.scheme.lower() != "file":
            return
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"LanceDB uri {uri}: a file:// URL names a local folder "
                              "(file:///path), not one on another host", source=source)
        uri = unquote(parts.path)
    if not os.path.exists(uri):
        raise SourceError(f"LanceDB database {uri} does not exist: sources are only read, so "
                          "fedquery never creates one; create it with lancedb first, or fix "
                          "the source's uri", source=source)
    if not os.path.isdir(uri):
        raise SourceError(f"LanceDB database {uri} is not a folder", source=source)


def _table_names(db: Any) -> list[str]:
    """Table names across lancedb versions (``list_tables`` pages, ``table_names`` is older)."""
    if hasattr(db, "list_tables"):
        listed = db.list_tables()
        return list(getattr(listed, "tables", listed))
    return list(db.table_names())
