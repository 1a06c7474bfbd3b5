"""The connector contract: what the planner and executor ask of a source.

Every source is a subclass of ``Connector``: it lists, describes and scans its tables (a
``ScanRequest`` for one table) and declares its settings. Optional abilities are methods with
defaults (row estimates, failures DuckDB passes on as text, cancelling a read) or one of two
mixins: ``SQLSource`` (the source runs whole fragments of SQL in its own dialect) and
``NativeSource`` (DuckDB scans its tables itself once ``bind`` ran, so DuckDB's own pushdown
applies). ``Capabilities`` is the data the planner reads about what a source may be sent; the
conformance suite (``fedquery.connectors.conformance``) checks that they agree with the class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from fedquery.connectors import settings as _settings
from fedquery.connectors.settings import Setting

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from fedquery.catalog import Catalog, SourceSpec
    from fedquery.errors import FedQueryError


@dataclass(frozen=True)
class Capabilities:
    """What a source can do, as data.

    ``dialect``: the SQL dialect of ``run_sql`` (None: no SQL; set exactly for a ``SQLSource``).
    ``native``: DuckDB scans the source's tables itself once ``bind`` ran (exactly for a
    ``NativeSource``). ``predicates``: a scan may be sent a filter (False: every filter stays
    in DuckDB). ``limit``: a scan may be sent a limit and its order (a top-N).
    ``subtrees``: whole joins and aggregates may be sent. ``vector_search``: a nearest-first
    top-k scan may be answered by the source's own vector search.
    ``remote``: rows cross a network, so the planner filters them by join keys before they move.
    ``expressions``: for a dialect other than DuckDB's, the names of the sqlglot expression
    classes the source evaluates exactly as DuckDB does (None: every one); the planner keeps
    any other expression in DuckDB. ``max_identifier_length``: the longest name (in UTF-8
    bytes) the source keeps whole; a query naming a longer alias stays in DuckDB.
    """

    dialect: str | None = None
    native: bool = False
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
    part: tuple[str, ...] | None = None  # a split scan's part: its files or fragments (``split``)


@dataclass(frozen=True)
class TableRef:
    """A table as its source knows it: optional schema and a name."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


class Connector(ABC):
    """One declared source. Subclasses set ``kind``, ``capabilities`` and ``SETTINGS`` and
    implement ``tables``, ``schema`` and ``scan``; every other method has a default.

    A scan answers exactly what its ``ScanRequest`` asks (columns in that order, the rows the
    filter keeps, the keys, the top-N with its ties), with the types ``schema`` reports. The
    conformance suite checks each of these on a real source.
    """

    kind: ClassVar[str] = "custom"
    capabilities: Capabilities = Capabilities()
    #: the keys a source of this kind may declare in the catalog (besides ``kind``)
    SETTINGS: ClassVar[Mapping[str, Setting]] = {}
    #: the keys a table of this source may declare (besides ``source``)
    TABLE_SETTINGS: ClassVar[Mapping[str, Setting]] = {"table": Setting(_settings.text)}

    def __init__(self, spec: SourceSpec, catalog: Catalog) -> None:
        self.name = spec.name

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any], where: str) -> None:
        """Refuse the source's catalog settings unless they are right (``CatalogError`` naming
        the key path, ``where`` being ``catalog.yaml: sources.<name>``). Called when the
        catalog loads, before any connection: it must not reach the source."""
        _settings.check(cls.SETTINGS, settings, where, cls.kind)

    @classmethod
    def check_table(cls, table: Mapping[str, Any], where: str) -> None:
        """The same for one declared table's keys (``where``: ``... tables.<name>``)."""
        _settings.check(cls.TABLE_SETTINGS, table, where, cls.kind,
                        what="key for a table of a {kind} source")

    # ------------------------------------------------------------------ required

    @abstractmethod
    def tables(self) -> list[TableRef]:
        """Every table the source holds (SQL sources) or declares (file sources)."""

    @abstractmethod
    def schema(self, table: TableRef) -> pa.Schema:
        """The Arrow schema of one table."""

    @abstractmethod
    def scan(self, request: ScanRequest) -> pa.RecordBatchReader:
        """Stream the rows a one-table fragment asks for."""

    # ------------------------------------------------------------------ optional

    def describe(self, table: TableRef) -> dict[str, Any]:
        """What ``explain`` shows about where a table lives (``kind`` first; no secrets)."""
        return {"kind": self.kind}

    def estimate_rows(self, table: TableRef) -> int | None:
        """The source's own estimate of a table's row count (None: unknown)."""
        return None

    def location(self) -> str | None:
        """The file, folder or URI the source reads, as DuckDB's messages would name it."""
        return None

    def split(self, request: ScanRequest, parts: int) -> list[ScanRequest]:
        """A scan as at most ``parts`` requests whose rows together are the scan's (a
        distributed engine reads them in parallel); default: one, the scan itself. Only a scan
        with no limit is split."""
        return [request]

    def bytes_read(self) -> int | None:
        """Bytes read from the source so far (None: not counted)."""
        return None

    def take_failure(self, text: str) -> FedQueryError | None:
        """The error this source raised inside a scan DuckDB ran, which DuckDB passes on as
        ``text`` only (None: not this source's)."""
        return None

    def cancel(self, reader: pa.RecordBatchReader) -> None:
        """Stop a read this source started (from any thread); the default lets the reader end
        when it is closed."""
        return None

    def describe_search(self, request: ScanRequest) -> str | None:
        """How a nearest-first top-k scan will search (``explain``), for ``vector_search``."""
        return None

    def vector_indexes(self, table: str) -> dict:
        """The vector indexes of a catalog table, by column (``Connection.vector_indexes``)."""
        return {}

    def close(self) -> None:
        """Release connections and handles (none by default)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind!r}>"


class SQLSource(ABC):
    """Mixin of a source that runs whole fragments of SQL in ``capabilities.dialect``."""

    @abstractmethod
    def run_sql(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.RecordBatchReader:
        """Run a fragment (DuckDB SQL over ``source.schema.table`` names) with its values."""

    def estimate_sql_rows(self, sql: str) -> int | None:
        """The source planner's row estimate for a fragment (None: unknown)."""
        return None

    def source_sql(self, fragment: str | ScanRequest, params: Mapping[str, Any] | None = None) -> str | None:
        """The exact text the source will receive for a fragment (``explain``); None: the
        fragment rendered in the source's dialect is close enough."""
        return None


class NativeSource(ABC):
    """Mixin of a source whose tables DuckDB scans itself."""

    @abstractmethod
    def bind(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Make ``<source>.<schema>.<table>`` resolvable in ``con``; return readable folders."""

    def relations(self, tables: list[str] | None = None, *, reading: bool = True) -> dict[str, Any]:
        """Python-side objects DuckDB scans for some tables (a Lance dataset, a remote lake's
        pinned files), registered on a query's cursor under the given view names."""
        return {}
