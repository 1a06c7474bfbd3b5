"""``kind: iceberg``: tables of an Iceberg catalog (SQL on SQLite or PostgreSQL, REST, ...),
read through pyiceberg.

Each query pins one snapshot per table on its first scan (``_table_format.QueryPins``), or the
one the catalog names (``snapshot_id``, ``as_of``, ``ref``). A scan plans its files with
pyiceberg: the translatable part of its filter (``_lake_filter``) prunes manifests by their
partition summaries and data files by partition values and column statistics, before any data
file is opened; the files left are read with their delete files applied (positional deletes by
pyiceberg, equality deletes by ``_iceberg_deletes``), and DuckDB applies the whole request
exactly over the stream. ``explain(analyze=True)`` shows the files read and skipped.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from fedquery.connectors import _iceberg_catalog as ic
from fedquery.connectors import settings as s
from fedquery.connectors._lake_filter import And, Cmp, In, IsNull, Node, Or, prune_predicate
from fedquery.connectors._native import table_ref
from fedquery.connectors._table_format import (
    QueryPins,
    conform,
    exact,
    failures_as_source_errors,
    public_schema,
    read_columns,
    with_trace,
)
from fedquery.connectors.base import Capabilities, Connector, ScanRequest, TableRef
from fedquery.connectors.settings import Setting
from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec

PINS = ("snapshot_id", "as_of", "ref")


class IcebergConnector(Connector):
    """Iceberg tables declared in the catalog (``table: namespace.name``), one-table scans."""

    kind = "iceberg"
    capabilities = Capabilities(dialect=None, native=False, subtrees=False)
    SETTINGS = {"catalog": Setting(ic.check_catalog, required=True,
                                   doc="pyiceberg catalog properties: type, uri, warehouse, ...")}
    TABLE_SETTINGS = {
        "table": Setting(s.text, doc="namespace.table in the Iceberg catalog (default: the name)"),
        "snapshot_id": Setting(ic.check_snapshot_id, doc="read this snapshot (time travel)"),
        "as_of": Setting(ic.check_instant, doc="read the snapshot current at this time"),
        "ref": Setting(s.text, doc="read the head of this branch or tag"),
    }

    @classmethod
    def check_table(cls, table, where: str) -> None:
        super().check_table(table, where)
        ic.check_one_pin(table, where, PINS)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        self.name = spec.name
        where = f"{catalog.origin}: sources.{spec.name}"
        self.check_settings(spec.settings, where)
        self._props = ic.properties(spec.settings, spec.base_dir)
        self._catalog_name = ic.catalog_name(spec.settings, spec.name)
        self._secrets = catalog.secrets
        for value in ic.secret_values(self._props):
            self._secrets.add_setting(value)
        self._tables: dict[str, tuple[str, dict[str, Any]]] = {}
        for table in catalog.tables.values():
            if table.source == spec.name:
                options = dict(getattr(table, "options", None) or {})
                self.check_table({"table": table.table, **options},
                                 f"{catalog.origin}: tables.{table.name}")
                self._tables[table.name] = (table.table or table.name, options)
        self._catalog: Any = None
        self._lock = threading.Lock()
        self._pins = QueryPins()
        warehouse = self._props.get("warehouse", "")
        if self._props["type"] != "sql" or ("://" in warehouse and not warehouse.startswith("file:")):
            # rows cross a network: worth filtering by join keys before they move
            self.capabilities = Capabilities(dialect=None, native=False, remote=True)
        local = ic.sqlite_file(self._props.get("uri", ""))
        if self._props["type"] == "sql" and local is not None:
            import os

            if not os.path.isfile(local):
                raise SourceError(f"the Iceberg catalog's SQLite file does not exist: {local}",
                                  source=self.name)

    # ------------------------------------------------------------------ catalog and pins

    def _open_catalog(self) -> Any:
        with self._lock:
            if self._catalog is None:
                from pyiceberg.catalog import load_catalog

                with self._failures("cannot open the Iceberg catalog"):
                    self._catalog = load_catalog(self._catalog_name, **self._props)
            return self._catalog

    def _load(self, name: str) -> Any:
        """The table's current metadata, read from the catalog now."""
        identifier = self._identifier(name)
        catalog = self._open_catalog()
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            with self._failures(f"cannot load Iceberg table {identifier!r}"):
                return catalog.load_table(identifier)
        except SourceError as exc:
            if isinstance(exc.__cause__, NoSuchTableError | NoSuchNamespaceError):
                raise SourceError(f"Iceberg table {identifier!r} does not exist in the catalog "
                                  "(check tables.<name>.table: namespace.table)",
                                  source=self.name) from exc.__cause__
            raise

    def _identifier(self, name: str) -> str:
        if name not in self._tables:
            raise SourceError(f"no table {name!r} declared for this source", source=self.name)
        return self._tables[name][0]

    def _pin(self, name: str) -> tuple[Any, int | None]:
        """The table and the snapshot a query reads: the catalog's pin, else the current."""
        table = self._load(name)
        options = self._tables[name][1]
        if options.get("snapshot_id") is not None:
            snapshot = table.snapshot_by_id(options["snapshot_id"])
            missing = f"snapshot_id {options['snapshot_id']}"
        elif options.get("as_of") is not None:
            moment = ic.instant(options["as_of"])
            snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
            missing = f"a snapshot at or before as_of {moment.isoformat()}"
        elif options.get("ref") is not None:
            snapshot = table.snapshot_by_name(options["ref"])
            missing = f"the branch or tag ref {options['ref']!r}"
        else:
            snapshot = table.current_snapshot()
            return table, snapshot.snapshot_id if snapshot else None
        if snapshot is None:
            known = ", ".join(str(s.snapshot_id) for s in table.snapshots()[-5:]) or "none"
            raise SourceError(f"Iceberg table {self._identifier(name)!r} has no {missing} "
                              f"(latest snapshots: {known})", source=self.name)
        return table, snapshot.snapshot_id

    def _pinned(self, name: str) -> tuple[Any, int | None]:
        return self._pins.pinned(name, lambda: self._pin(name))

    # ------------------------------------------------------------------ contract

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._tables]

    def schema(self, table: TableRef) -> pa.Schema:
        iceberg_table, snapshot = self._pinned(table.name)
        return self._arrow_schema(iceberg_table, snapshot)

    def _arrow_schema(self, iceberg_table: Any, snapshot: int | None) -> pa.Schema:
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        projected = iceberg_table.scan(snapshot_id=snapshot).projection()
        return public_schema(schema_to_pyarrow(projected))

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        name = table_ref(request.table).name
        iceberg_table, snapshot = self._pinned(name)
        schema = self._arrow_schema(iceberg_table, snapshot)
        predicate = prune_predicate(request.filter, request.params, schema)
        unordered = request.filter is None and not request.order_by and request.keys is None

        def planned(predicate: Node | None) -> tuple[Any, list, Any]:
            scan = iceberg_table.scan(row_filter=_expression(predicate),
                                      selected_fields=tuple(read_columns(request, schema)),
                                      snapshot_id=snapshot,
                                      limit=request.limit if unordered else None)
            return (scan, *self._plan(scan))

        with self._failures(f"cannot plan a scan of Iceberg table {self._identifier(name)!r}"):
            try:
                scan, tasks, deletes = planned(predicate)
            except TypeError:  # pyiceberg compares a NULL partition value under an OR
                scan, tasks, deletes = planned(_without_or(predicate))
        with_trace(request, _report(iceberg_table, snapshot, tasks, deletes))
        with self._failures(f"cannot read Iceberg table {self._identifier(name)!r}"):
            batches = self._read(scan, tasks, deletes)
        return exact(conform(batches, schema), request)

    def _plan(self, scan: Any) -> tuple[list, Any]:
        """The scan's file tasks and the equality deletes they need (None: none)."""
        from fedquery.connectors._iceberg_deletes import plan_with_equality_deletes

        try:
            return list(scan.plan_files()), None
        except ValueError as exc:
            if "equality deletes" not in str(exc):
                raise
        return plan_with_equality_deletes(scan)

    def _read(self, scan: Any, tasks: list, deletes: Any) -> pa.RecordBatchReader:
        import pyarrow as pa
        from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow

        projected = scan.projection()
        if deletes is not None:
            from fedquery.connectors._iceberg_deletes import read_with_equality_deletes

            return read_with_equality_deletes(scan, tasks, deletes)
        batches = ArrowScan(scan.table_metadata, scan.io, projected, scan.row_filter,
                            scan.case_sensitive, scan.limit).to_record_batches(tasks)
        target = schema_to_pyarrow(projected)
        return pa.RecordBatchReader.from_batches(
            target, (b.cast(target) if b.schema != target else b for b in batches))

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of the pinned snapshot, from its summary (deleted rows not subtracted)."""
        iceberg_table, snapshot = self._pinned(table.name)
        if snapshot is None:
            return 0
        summary = iceberg_table.snapshot_by_id(snapshot).summary
        total = summary.get("total-records") if summary is not None else None
        return int(total) if total is not None else None

    def describe(self, table: TableRef) -> dict[str, Any]:
        identifier, options = self._tables.get(table.name, (table.name, {}))
        pin = next((f"{k}={options[k]}" for k in PINS if options.get(k) is not None), None)
        return {"kind": self.kind, "catalog": ic.describe_catalog(self._props),
                "table": identifier, "snapshot": pin}

    def location(self) -> str | None:
        return ic.redact_url(self._props.get("warehouse") or self._props.get("uri") or "") or None

    def close(self) -> None:
        with self._lock:
            catalog, self._catalog = self._catalog, None
        engine = getattr(catalog, "engine", None)
        if engine is not None:
            engine.dispose()

    # ------------------------------------------------------------------ errors

    def _failures(self, what: str):
        return failures_as_source_errors(self.name, self._secrets, what)


def _without_or(node: Node | None) -> Node | None:
    """The conjuncts of a pruning predicate that hold no OR (fewer files are skipped; the
    scan applies the whole filter afterwards)."""
    parts = node.parts if isinstance(node, And) else (node,) if node is not None else ()
    kept = tuple(p for p in parts if not _has_or(p))
    return None if not kept else kept[0] if len(kept) == 1 else And(kept)


def _has_or(node: Node) -> bool:
    return isinstance(node, Or) or (isinstance(node, And) and any(_has_or(p) for p in node.parts))


def _expression(node: Node | None) -> Any:
    """A pruning predicate as a pyiceberg expression (AlwaysTrue: none)."""
    import datetime as dt

    from pyiceberg import expressions as e

    if node is None:
        return e.AlwaysTrue()
    if isinstance(node, And | Or):
        parts = [_expression(p) for p in node.parts]
        return (e.And if isinstance(node, And) else e.Or)(*parts)
    if isinstance(node, IsNull):
        return e.NotNull(node.column) if node.negated else e.IsNull(node.column)

    def value(v: Any) -> Any:
        return v.isoformat() if isinstance(v, dt.date) else v

    if isinstance(node, In):
        return e.In(node.column, {value(v) for v in node.values})
    ops = {"=": e.EqualTo, "!=": e.NotEqualTo, "<": e.LessThan, "<=": e.LessThanOrEqual,
           ">": e.GreaterThan, ">=": e.GreaterThanOrEqual}
    assert isinstance(node, Cmp)
    return ops[node.op](node.column, value(node.value))


def _report(table: Any, snapshot: int | None, tasks: list, deletes: Any) -> str:
    """What a scan reads, for explain: data files read of the snapshot's, delete files."""
    total = None
    if snapshot is not None:
        summary = table.snapshot_by_id(snapshot).summary
        total = summary.get("total-data-files") if summary is not None else None
    read = len(tasks)
    delete_files = len({d.file_path for t in tasks for d in t.delete_files})
    if deletes is not None:
        delete_files += deletes.file_count
    total_text = f" of {int(total)}" if total is not None else ""
    skipped = f", {int(total) - read} skipped by partition and statistics" if total is not None else ""
    return (f"snapshot {snapshot}: {read}{total_text} data files read{skipped}; "
            f"{delete_files} delete files applied")
