"""``kind: lancedb``: tables of a LanceDB database, scanned by DuckDB as Arrow datasets.

A Lance dataset is a pyarrow Dataset, so DuckDB pushes projections and filters into it. A
top-k scan (``ScanRequest.vector``) is answered by a search of our own instead
(``fedquery/connectors/_lance_search.py``): the table's ANN index when many rows qualify, an exact
pass when few do. Sources are only read: a local database (a path or a ``file://`` URL) must
be an existing folder before lancedb is called, as ``lancedb.connect`` creates a missing one.
A database on an object store (``uri: s3://bucket/db``, with the S3 ``options`` every remote
root takes; ``gs://`` and ``az://`` with Lance's own storage options) is opened table by table,
``<uri>/<table>.lance``, with pylance (``_lance_storage``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from fedquery.connectors import _lance_parts, _lance_storage, settings
from fedquery.connectors._lance_keys import KeyIndexes
from fedquery.connectors._lance_search import Search, describe_plan, settings_for, vector_indexes
from fedquery.connectors._native import (
    DuckDBBound,
    attach_memory,
    quote,
    relation,
    scan_reader,
    table_ref,
    used_params,
)
from fedquery.connectors.base import Capabilities, ScanRequest, SearchSettings, TableRef
from fedquery.errors import FedQueryError, SourceError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec


class LanceDBConnector(DuckDBBound):
    """Vector tables of a LanceDB database, bound into DuckDB as views over Lance datasets."""

    kind = "lancedb"
    capabilities = Capabilities(dialect=None, native=True, subtrees=False, vector_search=True)
    SETTINGS = {"uri": settings.Setting(settings.text, required=True),
                "options": settings.Setting(settings.string_map, doc="object store options")}
    TABLE_SETTINGS = {"table": settings.Setting(settings.text),
                      "vector_search": settings.Setting(settings.search_settings,
                                                        doc="{nprobes, refine, exact}")}

    @classmethod
    def check_settings(cls, given, where: str) -> None:
        """The uri, and options: S3's (on ``s3://``) or Lance's own storage options."""
        super().check_settings(given, where)
        options = given.get("options") or {}
        if _lance_storage.scheme(given["uri"]) in _lance_storage.S3_SCHEMES:
            settings.s3_options(options, f"{where}.options")
        _lance_storage.check_options(given["uri"], options, where)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        super().__init__(spec, catalog)
        self.uri = spec.resolve(spec.settings["uri"])
        options = spec.settings.get("options") or {}
        self._storage = _lance_storage.storage_options(self.uri, options)
        self._endpoint = options.get("endpoint_url")
        _check_local_folder(self.uri, self.name)
        declared = {t.name: t.table or t.name for t in catalog.tables.values()
                    if t.source == spec.name}
        self._settings: dict[str, SearchSettings] = {
            t.name: t.vector_search for t in catalog.tables.values()
            if t.source == spec.name and t.vector_search is not None}
        self._indexes: dict[str, dict] = {}
        self._key_indexes = KeyIndexes()
        self._datasets = _open_datasets(self.uri, declared, self.name, self._storage)

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

    def relations(self, tables: list[str] | None = None, *, reading: bool = True) -> dict[str, Any]:
        """Objects each executor cursor must register: the Lance datasets (of ``tables``)."""
        return {self.relation_name(t): ds for t, ds in self._datasets.items()
                if tables is None or t in tables}

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._datasets]

    def split(self, request: ScanRequest, parts: int) -> list[ScanRequest]:
        """Groups of the table's fragments (``_lance_parts``)."""
        table = table_ref(request.table)
        if table.name not in self._datasets:
            return [request]
        return _lance_parts.split(self._datasets[table.name], request, parts)

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        table = table_ref(request.table)
        if request.part and table.name in self._datasets:
            cursor = self._bound().cursor()
            cursor.register(self.relation_name(table.name),
                            _lance_parts.reader(self._datasets[table.name], request, self.name))
            return scan_reader(cursor, self.name, request, table)
        if request.vector is not None and request.limit and request.columns:
            found = self._search(request, table.name)
            if found is not None:
                return found.to_reader()
        return scan_reader(self._cursor(table.name), self.name, request, table)

    def _cursor(self, table: str) -> duckdb.DuckDBPyConnection:
        """A cursor of the executor's DuckDB with the table's Lance dataset registered."""
        cursor = self._bound().cursor()
        for name, dataset in self.relations([table]).items():
            cursor.register(name, dataset)
        return cursor

    def _query_vector(self, request: ScanRequest, table: str) -> Any:
        """The query vector's value: a ``$name`` parameter's own, else computed by DuckDB
        (a literal, an embedding call)."""
        query, params = request.vector.query, request.params or {}
        if query.startswith("$") and query[1:] in params:
            value = params[query[1:]]
            value = getattr(value, "object", value)  # a typed DuckDB value holds it
            if value is None or hasattr(value, "__len__"):
                return value
        sql = f"SELECT {query}"
        cursor = self._cursor(table)
        return cursor.sql(sql, params=used_params(sql, request.params)).fetchall()[0][0]

    def _search(self, request: ScanRequest, table: str) -> pa.Table | None:
        """The top-k rows by our own search; None when DuckDB must scan (a NULL or
        mistyped query vector, a filter Lance cannot take)."""
        import numpy as np

        vector = request.vector
        value = self._query_vector(request, table)
        dataset = self._datasets[table]
        size = dataset.schema.field(vector.column).type.list_size
        if isinstance(value, str | bytes) or value is None or len(value) != size or any(
                v is None for v in value):
            return None
        index = self.vector_indexes(table).get(vector.column)
        settings = settings_for(index, vector.metric, self._settings.get(table), vector.settings)
        query = np.asarray(value, dtype=np.float32)

        def key_index(column: str):
            return self._key_indexes.get(table, dataset, column)

        widen = not any(layer is not None and layer.nprobes is not None
                        for layer in (self._settings.get(table), vector.settings))
        try:
            return Search(dataset, request, query, index, settings, key_index, widen).run()
        except FedQueryError:
            raise
        except Exception as exc:  # noqa: BLE001 - Lance refused: DuckDB scans, as exactly
            if request.trace is not None:
                request.trace.append(f"Lance search failed ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]}): DuckDB scans")
            return None

    def vector_indexes(self, table: str) -> dict:
        """The ANN indexes of a table by column (read once per connection)."""
        if table not in self._indexes:
            self._indexes[table] = vector_indexes(self._datasets[table])
        return self._indexes[table]

    def describe_search(self, request: ScanRequest) -> str:
        """How a top-k scan request will be answered, for ``explain``."""
        table, vector = table_ref(request.table).name, request.vector
        index = self.vector_indexes(table).get(vector.column)
        settings = settings_for(index, vector.metric, self._settings.get(table), vector.settings)
        return describe_plan(index, vector.column, vector.metric, settings)

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of the Lance dataset, from its manifest."""
        return self._datasets[table.name].count_rows()

    def describe(self, table: TableRef) -> dict[str, Any]:
        shown = {"kind": "lancedb", "uri": self.uri, "table": table.name}
        return shown | ({"endpoint": self._endpoint} if self._endpoint else {})

    def location(self) -> str:
        return self.uri

    def refresh(self, table: str) -> None:
        """Re-open one table's Lance dataset at its latest version, in place of the one opened
        at connect time, so the next queries see what ``create_index`` committed."""
        dataset = self._datasets[table]
        latest = dataset.checkout_version(dataset.latest_version)  # a new object: running
        self._datasets[table] = latest                              # scans keep the old one
        self._indexes.pop(table, None)  # read again on the next search; the key indexes stay
        if self._con is not None:       # valid: an index moves no row
            self._con.register(self.relation_name(table), latest)

    def indices(self, table: str) -> list[tuple[str, str, str, str]]:
        """``(index name, column, index type, metric)`` of each vector index of one table,
        e.g. ``("vec_idx", "vec", "IVF_PQ", "cosine")``."""
        return [(i.name, i.column, i.kind, i.metric) for i in self.vector_indexes(table).values()]



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


def _open_datasets(uri: str, declared: dict[str, str], source: str,
                   storage: dict[str, str]) -> dict[str, Any]:
    """The Lance dataset of each declared table (catalog name -> LanceDB table name). A local
    LanceDB table is the folder ``<uri>/<table>.lance``, opened with pylance alone (``import
    lancedb`` costs over a second at connect; ``import lance`` a third of that); a database laid
    out otherwise is opened through lancedb; one on an object store table by table."""
    if _lance_storage.scheme(uri):
        return _open_remote(uri, declared, source, storage)
    folders = {t: os.path.join(uri, f"{t}.lance") for t in set(declared.values())}
    if all(os.path.isdir(f) for f in folders.values()):
        import lance

        try:
            return {name: lance.dataset(folders[table]) for name, table in declared.items()}
        except Exception as exc:  # noqa: BLE001 - pylance raises plain exceptions
            raise SourceError(f"cannot open LanceDB at {uri}: {exc}", source=source) from exc
    import lancedb

    try:
        db = lancedb.connect(uri)
        available = set(_table_names(db))
    except Exception as exc:  # lancedb raises plain exceptions
        raise SourceError(f"cannot open LanceDB at {uri}: {exc}", source=source) from exc
    missing = sorted(set(declared.values()) - available)
    if missing:
        raise SourceError(f"no table {missing[0]!r} in {uri} (has: "
                          f"{', '.join(sorted(available)) or 'none'})", source=source)
    return {name: db.open_table(table).to_lance() for name, table in declared.items()}


def _open_remote(uri: str, declared: dict[str, str], source: str,
                 storage: dict[str, str]) -> dict[str, Any]:
    """Each table of a database on an object store, ``<uri>/<table>.lance``; a missing one or
    an unreachable store is a ``SourceError`` naming the table (never the options)."""
    import lance

    out = {}
    for name, table in declared.items():
        location = f"{uri.rstrip('/')}/{table}.lance"
        try:
            out[name] = lance.dataset(location, storage_options=storage)
        except Exception as exc:  # noqa: BLE001 - pylance raises plain exceptions
            problem = str(exc).split(", /")[0]  # Lance appends the Rust source lines
            if "was not found" in problem:
                problem = f"no table {table!r} (no dataset at {location})"
            raise SourceError(f"cannot open LanceDB table {table!r} at {uri}: {problem}",
                              source=source) from exc
    return out


def _table_names(db: Any) -> list[str]:
    """Table names across lancedb versions (``list_tables`` pages, ``table_names`` is older)."""
    if hasattr(db, "list_tables"):
        listed = db.list_tables()
        return list(getattr(listed, "tables", listed))
    return list(db.table_names())
