"""``kind: delta``: Delta Lake tables under one root (a folder or ``s3://``), read through
deltalake.

Each query pins one version per table on its first scan (``_table_format.QueryPins``), or the
one the catalog names (``version``, ``as_of``). A scan gives deltalake's engine the
translatable part of its filter (``_lake_filter``), which skips data files by the partition
values and min/max statistics of the transaction log before any is opened, and reads the rest
with their deletion vectors applied; DuckDB then applies the whole request exactly over the
stream. ``explain(analyze=True)`` shows the files read and skipped.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlglot import exp

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
from fedquery.errors import CatalogError, SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec

PINS = ("version", "as_of")
# the S3 options every remote root takes, as deltalake's storage options name them
_STORAGE_OPTIONS = {"endpoint_url": "AWS_ENDPOINT_URL", "key": "AWS_ACCESS_KEY_ID",
                    "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN",
                    "region": "AWS_REGION", "anonymous": "AWS_SKIP_SIGNATURE"}


def _check_version(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(f"{where}: expected a table version (a non-negative integer), got "
                             f"{s.describe(value)}")


class DeltaConnector(Connector):
    """Delta tables declared in the catalog (``path:`` under the root), one-table scans."""

    kind = "delta"
    capabilities = Capabilities(dialect=None, native=False, subtrees=False)
    SETTINGS = {"root": Setting(s.text, required=True, doc="folder or s3:// URL of the tables"),
                "options": Setting(s.s3_options, doc="S3 options of an s3:// root")}
    TABLE_SETTINGS = {
        "path": Setting(s.text, doc="the table's folder under the root (default: the name)"),
        "table": Setting(s.text, doc="the same as path"),
        "version": Setting(_check_version, doc="read this version (time travel)"),
        "as_of": Setting(ic.check_instant, doc="read the version current at this time"),
    }

    @classmethod
    def check_table(cls, table, where: str) -> None:
        super().check_table(table, where)
        ic.check_one_pin(table, where, PINS)

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        self.name = spec.name
        self.check_settings(spec.settings, f"{catalog.origin}: sources.{spec.name}")
        self.root = spec.resolve(spec.settings["root"])
        self._secrets = catalog.secrets
        self._storage = _storage_options(spec.settings.get("options") or {})
        self._tables: dict[str, tuple[str, dict[str, Any]]] = {}
        for table in catalog.tables.values():
            if table.source == spec.name:
                options = {k: v for k, v in (getattr(table, "options", None) or {}).items()
                           if k in PINS}
                self.check_table({"path": table.path or table.table or table.name, **options},
                                 f"{catalog.origin}: tables.{table.name}")
                self._tables[table.name] = (self._uri(table.path or table.table or table.name),
                                            options)
        self._pins = QueryPins()
        self._lock = threading.Lock()
        if "://" in self.root:
            self.capabilities = Capabilities(dialect=None, native=False, remote=True)
        elif not os.path.isdir(self.root):
            raise SourceError(f"delta root is not a folder: {self.root}", source=self.name)

    def _uri(self, path: str) -> str:
        if "://" in self.root:
            return self.root.rstrip("/") + "/" + path.strip("/")
        return os.path.normpath(os.path.join(self.root, path))

    # ------------------------------------------------------------------ versions

    def _open(self, name: str) -> Any:
        """The table at the version a query reads: the catalog's pin, else the latest."""
        from deltalake import DeltaTable

        uri, options = self._table(name)
        with self._failures(f"cannot open Delta table {self._shown(uri)}"):
            if not self._exists(uri):
                raise SourceError(f"no Delta table at {self._shown(uri)} (no _delta_log there)",
                                  source=self.name)
            table = DeltaTable(uri, storage_options=self._storage or None)
        pin = options.get("version")
        if pin is None and options.get("as_of") is not None:
            pin = ic.instant(options["as_of"])
        if pin is not None:
            latest = table.version()
            with self._failures(f"Delta table {self._shown(uri)} has no version "
                                f"{_pin_text(pin)} (latest: {latest})"):
                table.load_as_version(pin)
        return table

    def _exists(self, uri: str) -> bool:
        if "://" not in uri:
            return os.path.isdir(os.path.join(uri, "_delta_log"))
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(uri, storage_options=self._storage or None)

    def _table(self, name: str) -> tuple[str, dict[str, Any]]:
        if name not in self._tables:
            raise SourceError(f"no table {name!r} declared for this source", source=self.name)
        return self._tables[name]

    def _pinned(self, name: str) -> Any:
        return self._pins.pinned(name, lambda: self._open(name))

    def _shown(self, uri: str) -> str:
        return repr(self._secrets.redact(ic.redact_url(uri)))

    # ------------------------------------------------------------------ contract

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name in self._tables]

    def schema(self, table: TableRef) -> pa.Schema:
        return _arrow_schema(self._pinned(table.name))

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        name = table_ref(request.table).name
        table = self._pinned(name)
        schema = _arrow_schema(table)
        predicate = _sql(prune_predicate(request.filter, request.params, schema), schema)
        columns = read_columns(request, schema)
        with self._failures(f"cannot read Delta table {self._shown(self._table(name)[0])}"):
            if request.trace is not None:
                with_trace(request, _report(table, predicate))
            stream = table.scan(columns=columns, predicate=predicate)
        return exact(conform(stream, schema), request)

    def estimate_rows(self, table: TableRef) -> int | None:
        """Rows of the pinned version, from the log's statistics (None: some file has none)."""
        import pyarrow as pa

        actions = pa.table(self._pinned(table.name).get_add_actions(flatten=True))
        if "num_records" not in actions.column_names or actions["num_records"].null_count:
            return None
        return int(pa.compute.sum(actions["num_records"]).as_py() or 0)

    def describe(self, table: TableRef) -> dict[str, Any]:
        uri, options = self._tables.get(table.name, (table.name, {}))
        pin = next((f"{k}={options[k]}" for k in PINS if options.get(k) is not None), None)
        return {"kind": self.kind, "path": self._secrets.redact(ic.redact_url(uri)),
                "version": pin}

    def location(self) -> str | None:
        return self.root

    def _failures(self, what: str):
        return failures_as_source_errors(self.name, self._secrets, what)


def _storage_options(options: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in options.items():
        if key in _STORAGE_OPTIONS and value is not None:
            out[_STORAGE_OPTIONS[key]] = str(value).lower() if isinstance(value, bool) else str(value)
    if str(out.get("AWS_ENDPOINT_URL", "")).startswith("http://"):
        out["AWS_ALLOW_HTTP"] = "true"
    return out


def _pin_text(pin: Any) -> str:
    return pin.isoformat() if isinstance(pin, dt.datetime) else str(pin)


def _arrow_schema(table: Any) -> pa.Schema:
    import pyarrow as pa

    return public_schema(pa.schema(table.schema().to_arrow()))


def _sql(node: Node | None, schema: pa.Schema) -> str | None:
    """A pruning predicate as the SQL text deltalake's engine takes (made by sqlglot)."""
    return _expression(node, schema).sql() if node is not None else None


def _expression(node: Node, schema: pa.Schema) -> exp.Expr:
    if isinstance(node, And | Or):
        parts = [_expression(p, schema) for p in node.parts]
        return exp.paren(exp.and_(*parts) if isinstance(node, And) else exp.or_(*parts))
    column = exp.column(node.column, quoted=True)
    if isinstance(node, IsNull):
        null = exp.Is(this=column, expression=exp.Null())
        return exp.not_(null) if node.negated else null
    arrow_type = schema.field(node.column).type
    if isinstance(node, In):
        return column.isin(*(_literal(v, arrow_type) for v in node.values))
    ops = {"=": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}
    assert isinstance(node, Cmp)
    return ops[node.op](this=column, expression=_literal(node.value, arrow_type))


def _literal(value: Any, arrow_type: pa.DataType) -> exp.Expr:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
    if isinstance(value, Decimal):
        target = f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
        return exp.cast(exp.Literal.string(str(value)), target)
    if isinstance(value, str):
        return exp.Literal.string(value)
    return exp.Literal.number(value)


def _report(table: Any, predicate: str | None) -> str:
    """What a scan reads, for explain: data files read of the version's, by the log."""
    total = len(table.file_uris())
    read = len(table.file_uris(file_pruning_predicate=predicate)) if predicate else total
    return (f"version {table.version()}: {read} of {total} data files read, {total - read} "
            "skipped by partition values and statistics")
