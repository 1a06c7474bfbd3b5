"""The connector protocol: what the planner and executor ask of a source.

A connector describes itself with ``Capabilities`` (data the planner reads; it never asks what
class a connector is), lists and describes its tables, and answers fragments: a ``ScanRequest``
for one table, or SQL text for SQL sources. Sources DuckDB reads natively also ``bind`` their
tables into the executor's DuckDB so that DuckDB's own pushdown applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


class KeySet:
    """Rows whose ``column`` is one of a set of keys: the exact prefilter of a top-k scan,
    kept out of the SQL text because it may hold many keys.

    Given as ``values`` (an Arrow array without NULLs, maybe with duplicates), or, when there
    are many, lazily: ``count`` (at least the number of distinct keys), ``load`` (every key,
    called at most once, on first use of ``values``) and ``check`` (which of some candidate
    keys are in the set), so a source that over-fetches and checks never loads them all.
    """

    def __init__(self, column: str, values: pa.Array | None = None, *, count: int | None = None,
                 load: Callable[[], pa.Array] | None = None,
                 check: Callable[[pa.Array], pa.Array] | None = None) -> None:
        if values is None and load is None:
            raise ValueError("a KeySet needs its values or a way to load them")
        self.column, self._values, self._load, self._check = column, values, load, check
        self.count = len(values) if values is not None else int(count or 0)

    @property
    def loaded(self) -> bool:
        return self._values is not None

    @property
    def values(self) -> pa.Array:
        if self._values is None:
            self._values = self._load()
            self.count = len(self._values)
        return self._values

    def contains(self, candidates: pa.Array) -> pa.Array:
        """The distinct ``candidates`` that are keys of the set."""
        import pyarrow.compute as pc

        candidates = pc.unique(candidates.drop_null())
        if self._values is None and self._check is not None:
            return pc.unique(self._check(candidates)).cast(candidates.type)
        values = self.values.cast(candidates.type)  # the smaller side hashed: few candidates
        if len(values) > 8 * len(candidates):
            return pc.unique(pc.filter(values, pc.is_in(values, value_set=candidates)))
        return pc.filter(candidates, pc.is_in(candidates, value_set=values))

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class SearchSettings:
    """How a vector top-k may use an ANN index: ``nprobes`` (index partitions searched first),
    ``refine`` (candidates re-ranked with the exact vectors, a multiple of k), ``exact`` (True:
    never the index; False: the index whenever there is one; None: the planner's choice by
    the number of qualifying rows). None for a number: the default."""

    nprobes: int | None = None
    refine: int | None = None
    exact: bool | None = None

    def over(self, defaults: SearchSettings) -> SearchSettings:
        """These settings, each unset one taken from ``defaults``."""
        return SearchSettings(*(mine if mine is not None else theirs for mine, theirs in
                                zip(self.astuple(), defaults.astuple(), strict=True)))

    def astuple(self) -> tuple:
        return (self.nprobes, self.refine, self.exact)


@dataclass(frozen=True)
class VectorQuery:
    """The nearest-first order of a top-k scan as data, for a source that searches vectors
    itself: ``metric`` (``cosine``, ``l2`` or ``dot``) between ``column`` and the query vector
    ``query`` (DuckDB SQL of a constant: a ``$parameter``, a literal, an embedding call)."""

    column: str
    metric: str
    query: str
    settings: SearchSettings = SearchSettings()


@dataclass(frozen=True)
class ScanRequest:
    """A one-table fragment: which columns, which rows (DuckDB SQL predicate), how many.

    ``table`` is ``source.schema.table``. ``order_by`` holds DuckDB SQL sort keys (``ts DESC``);
    it matters only with ``limit``: the first ``limit`` rows in that order (a top-N), and with
    ``with_ties`` also every row tied with the last of them.
    ``keys`` (native sources only) keeps the rows whose column is one of a set of keys.
    ``params`` are the values of the ``$name`` placeholders in ``filter``: the plan holds the
    request without them, the executor adds them for one run. ``vector`` says that
    ``order_by`` is nearest-first to a query vector (a source with ``vector_search`` may then
    answer with its own search); the source appends what it did to ``trace`` when given one.
    """

    table: str
    columns: tuple[str, ...] | None = None
    filter: str | None = None
    limit: int | None = None
    order_by: tuple[str, ...] = ()
    with_ties: bool = False
    keys: KeySet | None = field(default=None, compare=False)
    params: Mapping[str, Any] | None = field(default=None, compare=False)
    vector: VectorQuery | None = None
    trace: list[str] | None = field(default=None, compare=False)


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
