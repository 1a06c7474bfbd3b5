"""The connector protocol: what the planner and executor ask of a source.

A connector describes itself with ``Capabilities`` (data the planner reads; it never asks what
class a connector is), lists and describes its tables, and answers fragments: a ``ScanRequest``
for one table, or SQL text for SQL sources. Sources DuckDB reads natively also ``bind`` their
tables into the executor's DuckDB so that DuckDB's own pushdown applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


@dataclass(frozen=True)
class Capabilities:
    """What a source can do, as data.

    ``dialect``: the SQL dialect of ``run_sql`` (None: no SQL). ``native``: DuckDB scans the
    source's tables itself once ``bind`` ran. ``subtrees``: whole joins and aggregates may be sent.
    ``remote``: rows cross a network, so the planner filters them by join keys before they move.
    ``expressions``: for a dialect other than DuckDB's, the names of the sqlglot expression
    classes the source evaluates exactly as DuckDB does (None: every one); the planner keeps
    any other expression in DuckDB. ``max_identifier_length``: the longest name (in UTF-8
    bytes) the source keeps whole; a query naming a longer alias stays in DuckDB.
    """

    dialect: str | None = None
    native: bool = False
    projection: bool = True
    predicates: bool = True
    limit: bool = True
    subtrees: bool = False
    vector_search: bool = False
    default_schema: str = "main"
    remote: bool = False
    expressions: frozenset[str] | None = None
    max_identifier_length: int | None = None


@dataclass(frozen=True)
class KeySet:
    """Rows whose ``column`` is one of ``values`` (an Arrow array, without NULLs): the exact
    prefilter of a top-k scan, kept out of the SQL text because it may hold many keys."""

    column: str
    values: pa.Array

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class ScanRequest:
    """A one-table fragment: which columns, which rows (DuckDB SQL predicate), how many.

    ``table`` is ``source.schema.table``. ``order_by`` holds DuckDB SQL sort keys (``ts DESC``);
    it matters only with ``limit``: the first ``limit`` rows in that order (a top-N), and with
    ``with_ties`` also every row tied with the last of them.
    ``keys`` (native sources only) keeps the rows whose column is one of a set of keys.
    ``params`` are the values of the ``$name`` placeholders in ``filter``: the plan holds the
    request without them, the executor adds them for one run.
    """

    table: str
    columns: tuple[str, ...] | None = None
    filter: str | None = None
    limit: int | None = None
    order_by: tuple[str, ...] = ()
    with_ties: bool = False
    keys: KeySet | None = field(default=None, compare=False)
    params: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TableRef:
    """A table as its source knows it: optional schema and a name."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@runtime_checkable
class Connector(Protocol):
    """One source. Optional methods: ``run_sql(sql) -> RecordBatchReader``, ``bind(con)``."""

    name: str
    kind: str
    capabilities: Capabilities

    def tables(self) -> list[TableRef]:
        """Every table the source holds (SQL sources) or declares (file sources)."""
        ...

    def schema(self, table: TableRef) -> pa.Schema:
        """The Arrow schema of one table."""
        ...

    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        """Stream the rows a one-table fragment asks for."""
        ...

    def describe(self, table: TableRef) -> dict[str, Any]:
        """What ``explain`` shows about where a table lives (no secrets)."""
        ...

    def close(self) -> None:
        """Release connections and handles."""
        ...


class NativeConnector(Protocol):
    """A connector whose tables DuckDB scans itself."""

    def bind(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Make ``<source>.<schema>.<table>`` resolvable in ``con``; return readable folders."""
        ...
