"""Python data registered by name on a connection (``con.register``), scanned by DuckDB.

Not a kind a catalog declares: each connection has one such source (named ``python``, or
``python_1``... when the catalog already has a source by that name) holding the pandas and
polars DataFrames and Arrow tables, batches, readers and datasets registered on it. Like a
LanceDB source, every table is a view in the executor's DuckDB over the object registered
under an internal name on each query's cursor, so queries reach it only through the planner
(parse, sandbox, bind) and DuckDB pushes projections and filters into Arrow datasets.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from fedquery.connectors._native import DuckDBBound, attach_memory, quote, relation, scan_reader, table_ref
from fedquery.connectors.base import Capabilities, ScanRequest, TableRef
from fedquery.errors import PlanError
from fedquery.sandbox_functions import fold

if TYPE_CHECKING:
    import pyarrow as pa

    from fedquery.connectors._native import SharedConnection

SOURCE = "python"
ACCEPTED = ("a pandas or polars DataFrame, a pyarrow Table, RecordBatch, RecordBatchReader or "
            "Dataset, or any object with __arrow_c_stream__")


class RegisteredTables(DuckDBBound):
    """The Python objects registered on one connection, by table name (as DuckDB compares
    names: the planner may spell a name in another case than ``register`` was given it)."""

    kind = "python"
    capabilities = Capabilities(dialect=None, native=True, subtrees=False)

    def __init__(self, taken: set[str]) -> None:
        names = (f"{SOURCE}_{i}" if i else SOURCE for i in itertools.count())
        self.name = next(n for n in names if n not in taken)
        self._objects: dict[str, Any] = {}
        self._internal: dict[str, str] = {}
        self._ids = itertools.count()

    def bind(self, con: SharedConnection) -> list[str]:
        attach_memory(con, self.name)
        self._con = con
        return []

    def add(self, table: str, obj: Any) -> None:
        """Register ``obj`` (converted by ``scannable``) as ``table``, in place of any before."""
        con = self._bound()
        internal = f"__fq_registered_{next(self._ids)}"
        con.register(internal, obj)
        con.execute(f"CREATE OR REPLACE VIEW {relation(self.name, TableRef('main', table))} AS "
                    f"SELECT * FROM {quote(internal)}")
        old = self._internal.get(fold(table))
        self._objects[fold(table)], self._internal[fold(table)] = (table, obj), internal
        if old is not None:
            con.unregister(old)

    def remove(self, table: str) -> None:
        con = self._bound()
        con.execute(f"DROP VIEW IF EXISTS {relation(self.name, TableRef('main', table))}")
        con.unregister(self._internal.pop(fold(table)))
        del self._objects[fold(table)]

    def relations(self, tables: list[str] | None = None, *, reading: bool = True) -> dict[str, Any]:
        """The objects each executor cursor registers (those of ``tables``)."""
        wanted = None if tables is None else {fold(t) for t in tables}
        return {self._internal[key]: obj for key, (_, obj) in self._objects.items()
                if wanted is None or key in wanted}

    def tables(self) -> list[TableRef]:
        return [TableRef("main", name) for name, _ in self._objects.values()]

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        table = table_ref(request.table)
        cursor = self._bound().cursor()
        for name, obj in self.relations([table.name]).items():
            cursor.register(name, obj)
        return scan_reader(cursor, self.name, request, table)

    def estimate_rows(self, table: TableRef) -> int | None:
        _, obj = self._objects.get(fold(table.name), (None, None))
        rows = getattr(obj, "num_rows", None)
        if rows is None and hasattr(obj, "shape"):
            rows = obj.shape[0]
        return rows if isinstance(rows, int) else None

    def describe(self, table: TableRef) -> dict[str, Any]:
        name, obj = self._objects.get(fold(table.name), (table.name, None))
        kind = f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}"
        return {"kind": self.kind, "registered": name, "object": kind}


def scannable(obj: Any) -> Any:
    """What DuckDB scans for a registered object: a DataFrame or an Arrow table or dataset as
    it is; a stream (a RecordBatchReader, any ``__arrow_c_stream__`` object that is not a
    table) read whole now, as a registered name may be read by many queries."""
    import pyarrow as pa

    module = type(obj).__module__.split(".")[0]
    if isinstance(obj, pa.Table) or module == "pandas" and type(obj).__name__ == "DataFrame":
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if module == "polars" and type(obj).__name__ == "DataFrame":
        return obj.to_arrow()
    if _is_dataset(obj):
        return obj
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all()
    if hasattr(obj, "__arrow_c_stream__"):
        return pa.table(obj)
    raise PlanError(f"register: expected {ACCEPTED}; got {type(obj).__name__}")


def _is_dataset(obj: Any) -> bool:
    try:
        import pyarrow.dataset as ds
    except ImportError:
        return False
    return isinstance(obj, ds.Dataset)
