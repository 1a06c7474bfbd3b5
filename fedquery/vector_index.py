"""``fedquery index`` and ``Connection.create_index``: a LanceDB ANN index on a vector column.

The one command of fedquery that writes, and all it writes is an index: LanceDB trains it, puts
its files under the table's ``_indices/`` folder and commits a new manifest version that points
at the same data files, so no row is rewritten. Queries stay read-only.

An index answers only the distance it was trained with, so its metric must be the one queries
use: ``cosine`` (the default, as for ``vector_search``) for ``array_cosine_distance``, ``l2``
for ``array_distance``, ``dot`` for ``array_negative_inner_product``.

>>> create_index("catalog.yaml", "frame_embeddings", "embedding")  # doctest: +SKIP
IndexInfo(table='frame_embeddings', column='embedding', name='embedding_idx', kind='IVF_PQ', ...)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from fedquery.catalog import Catalog, SourceSpec, load_catalog
from fedquery.connectors._lance_search import VectorIndex, vector_indexes
from fedquery.errors import CatalogError, PlanError, SourceError
from fedquery.vectors import array_type

# fedquery's (and LanceDB's legacy) kind names -> the lancedb.index config class of each
KINDS = {
    "IVF_PQ": "IvfPq", "IVF_HNSW_SQ": "HnswSq", "IVF_HNSW_PQ": "HnswPq",
    "IVF_HNSW_FLAT": "HnswFlat", "IVF_FLAT": "IvfFlat", "IVF_SQ": "IvfSq", "IVF_RQ": "IvfRq",
}
METRICS = {"cosine": "cosine", "l2": "l2", "euclidean": "l2", "dot": "dot"}
SQL_FUNCTIONS = {"cosine": "array_cosine_distance", "l2": "array_distance",
                 "dot": "array_negative_inner_product"}
# Defaults measured by bench/index_defaults.py (1M and 5M clustered 128-d vectors, cosine):
# sqrt(rows) partitions matched or beat 256-1024 at 1M and 1024 at 5M, and 32 for IVF_HNSW_SQ
# at 1M (half its build time); the cap (reached at 16.8M rows, beyond what was measured)
# bounds k-means training, which took 1.55x longer for 2236 partitions than for 1024 at 5M.
MAX_PARTITIONS = 4096
SAMPLE_RATE = 256  # LanceDB's default: k-means trains on sample_rate vectors a partition
VALUES_PER_SUB_VECTOR = 4  # 128-d: 32 sub-vectors gave recall@10 0.994 at refine 10, 16 0.782
_NOT_PARAMS = {"distance_type", "accelerator"}


def label(index: VectorIndex) -> str:
    """``IVF_PQ(vec, cosine)``: an index as ``fedquery tables`` and the errors show it."""
    return f"{index.kind}({index.column}, {index.metric})"


@dataclass(frozen=True)
class IndexInfo:
    """What ``create_index`` built: on which table and column, of which kind and metric, over
    how many rows, with which parameters, in how long, committed as which dataset version."""

    table: str
    column: str
    name: str
    kind: str
    metric: str
    rows: int
    params: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    version: int | None = None

    def __str__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.params.items() if v is not None)
        return (f"{self.kind} index {self.name!r} on {self.table}.{self.column} ({self.metric}; "
                f"{options}) over {self.rows:,} rows in {self.seconds:.1f}s, version {self.version}")


def create_index(catalog: Catalog | str | os.PathLike | Mapping[str, Any], table: str,
                 column: str | None = None, *, kind: str = "IVF_PQ", metric: str = "cosine",
                 replace: bool = False, **params: Any) -> IndexInfo:
    """Build an ANN index on ``column`` (default: the table's one vector column) of a catalog
    table whose source is ``kind: lancedb``; only index files and a manifest are written.

    ``params`` are the lancedb.index config's (``num_partitions``, ``num_sub_vectors``, ``m``,
    ``ef_construction``, ...); unset ones get measured defaults (``index_params``). An index
    already on the column is an error unless ``replace=True``.

    >>> create_index("catalog.yaml", "frame_embeddings", kind="IVF_HNSW_SQ")  # doctest: +SKIP
    """
    catalog = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    name, source = lance_table(catalog, table)
    kind, metric = index_kind(kind), index_metric(metric)
    _check_replace(replace)
    target = _open_table(source, name)
    column = vector_column(table, target.schema, column)
    rows = target.count_rows()
    if rows == 0:
        raise PlanError(f"{table} has no rows: an index is trained on the table's vectors")
    existing = _existing_index(target, table, column, replace)
    options = index_params(kind, rows, target.schema.field(column).type.list_size, params, table)
    info = IndexInfo(table, column, existing or f"{column}_idx", kind, metric, rows, options)
    return _build(target, info, source, replace=existing is not None)


def _existing_index(target: Any, table: str, column: str, replace: bool) -> str | None:
    """The name of the index ``column`` has (an error unless ``replace``), or None."""
    existing = vector_indexes(target.to_lance()).get(column)
    if existing is not None and not replace:
        raise PlanError(f"{table}.{column} already has the index {existing.name!r} "
                        f"({label(existing)}); pass --replace (replace=True) to build it anew")
    return existing.name if existing is not None else None


def _build(target: Any, info: IndexInfo, source: SourceSpec, replace: bool) -> IndexInfo:
    config = _config_class(info.kind)(distance_type=info.metric, **info.params)
    start = time.perf_counter()
    try:
        target.create_index(info.column, config=config, replace=replace, name=info.name)
    except Exception as exc:  # lancedb raises plain exceptions
        raise SourceError(f"building the {info.kind} index on {info.table}.{info.column} "
                          f"failed: {str(exc).splitlines()[0]}", source=source.name) from exc
    return dataclasses.replace(info, seconds=time.perf_counter() - start, version=target.version)


def lance_table(catalog: Catalog, table: str) -> tuple[str, SourceSpec]:
    """The LanceDB table name and source of a catalog table; a ``PlanError`` for an unknown
    table or one in a source of another kind."""
    if not isinstance(table, str):
        raise PlanError(f"create_index: expected a table name (str), got {type(table).__name__}")
    spec = catalog.tables.get(table)
    if spec is None:
        raise PlanError(f"unknown table {table!r}{_did_you_mean(table, catalog.tables)}; an "
                        "index is built on a catalog table of a lancedb source")
    source = catalog.sources[spec.source]
    if source.kind != "lancedb":
        raise PlanError(f"only LanceDB tables take an index; {table} is in {source.name} "
                        f"(kind {source.kind})")
    return spec.table or spec.name, source


def index_kind(kind: str) -> str:
    """``IVF_PQ`` for ``ivf_pq``, ``IVF-PQ`` or ``IvfPq`` (LanceDB's config class name)."""
    if isinstance(kind, str):
        wanted = kind.replace("-", "_").replace("_", "").lower()
        for name, config in KINDS.items():
            if wanted in (name.replace("_", "").lower(), config.lower()):
                return name
    raise PlanError(f"unknown index kind {kind!r}{_did_you_mean(str(kind).upper(), KINDS)}; "
                    f"one of {', '.join(KINDS)}")


def index_metric(metric: str) -> str:
    """``cosine``, ``l2`` or ``dot`` (``euclidean`` is ``l2``), as ``vector_search`` names them."""
    found = METRICS.get(metric.lower()) if isinstance(metric, str) else None
    if found is None:
        uses = ", ".join(f"{m} for {f}" for m, f in SQL_FUNCTIONS.items())
        raise PlanError(f"unknown metric {metric!r}; one of {', '.join(sorted(METRICS))}: the "
                        f"distance of the queries, as an index answers only its own ({uses})")
    return found


def vector_column(table: str, schema: pa.Schema, wanted: str | None) -> str:
    """The column to index: ``wanted``, which must be a vector column, or the only one."""
    arrays = [f.name for f in schema if array_type(f.type)]
    if wanted is None:
        if len(arrays) != 1:
            raise PlanError(f"{table} has {len(arrays) or 'no'} vector columns"
                            f"{' (' + ', '.join(arrays) + ')' if arrays else ''}; name one "
                            "with --column (column=)")
        return arrays[0]
    if not isinstance(wanted, str):
        raise PlanError(f"create_index: column must be a column name (str), got "
                        f"{type(wanted).__name__}")
    if wanted in arrays:
        return wanted
    if wanted in schema.names:
        raise PlanError(f"{table}.{wanted} is not a vector column (it is "
                        f"{schema.field(wanted).type}); an ANN index takes a fixed-size list of "
                        f"floats: {', '.join(arrays) or 'none here'}")
    raise PlanError(f"{table} has no column {wanted!r}{_did_you_mean(wanted, schema.names)}; its "
                    f"vector columns: {', '.join(arrays) or 'none'}")


def index_params(kind: str, rows: int, dim: int, given: Mapping[str, Any], table: str = "table"
                 ) -> dict[str, Any]:
    """The config parameters: ``given`` (checked: known to ``kind``, positive integers) over
    the defaults, ``num_partitions`` (``default_partitions``) for every kind and
    ``num_sub_vectors`` (``default_sub_vectors``) for the PQ kinds.

    >>> index_params("IVF_PQ", 1_000_000, 128, {})
    {'num_partitions': 1000, 'num_sub_vectors': 32}
    """
    known = [f.name for f in fields(_config_class(kind)) if f.name not in _NOT_PARAMS]
    for name, value in given.items():
        if name not in known:
            raise PlanError(f"{kind} takes no parameter {name!r}{_did_you_mean(name, known)}; it "
                            f"takes {', '.join(known)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PlanError(f"{name} must be a positive integer, got {value!r}")
    options = {"num_partitions": default_partitions(rows)}
    if "num_sub_vectors" in known:
        options["num_sub_vectors"] = default_sub_vectors(dim)
    options.update({k: v for k, v in given.items() if v is not None})
    _check_shape(kind, rows, dim, options, table)
    return options


def default_partitions(rows: int) -> int:
    """IVF partitions: sqrt(rows), at most 4096, and at most one for each 256 rows (k-means
    is trained on 256 vectors a partition; LanceDB trims an IVF_PQ asking for more)."""
    return max(1, min(MAX_PARTITIONS, round(math.sqrt(rows)), rows // SAMPLE_RATE))


def default_sub_vectors(dim: int) -> int:
    """PQ sub-vectors: the most that divide ``dim`` and keep at least 4 values each (32 for
    128-d, 192 for 768-d); 1 when ``dim`` is under 8."""
    return next((n for n in range(dim // VALUES_PER_SUB_VECTOR, 1, -1) if dim % n == 0), 1)


def _check_shape(kind: str, rows: int, dim: int, options: Mapping[str, Any], table: str) -> None:
    partitions, sub_vectors = options["num_partitions"], options.get("num_sub_vectors")
    most = rows // options.get("sample_rate", SAMPLE_RATE) if "PQ" in kind else rows
    if partitions > max(most, 1):
        per = "one partition a row" if most == rows else "rows/sample_rate partitions"
        raise PlanError(f"{kind}: {partitions} partitions for {rows:,} rows of {table}; it "
                        f"trains at most {per} ({max(most, 1)}; the default is "
                        f"{default_partitions(rows)})")
    if sub_vectors is not None and (sub_vectors > dim or dim % sub_vectors):
        raise PlanError(f"{kind}: num_sub_vectors must divide the dimension {dim}, got "
                        f"{sub_vectors} (the default is {default_sub_vectors(dim)})")


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    hint = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _config_class(kind: str) -> type:
    return getattr(_lancedb().index, KINDS[kind])


def _lancedb() -> Any:
    try:
        import lancedb.index
    except ImportError as exc:
        raise CatalogError("building an index needs lancedb, which is not installed; "
                           "pip install 'fedquery[lance]'") from exc
    return lancedb


def _check_replace(replace: Any) -> None:
    if not isinstance(replace, bool):
        raise PlanError(f"create_index: replace must be True or False, got {replace!r}")


def _open_table(source: SourceSpec, name: str) -> Any:
    """The LanceDB table, from a database that must exist (``lancedb.connect`` would create a
    missing local folder)."""
    lancedb = _lancedb()
    uri = source.resolve(source.settings["uri"])
    parts = urlsplit(uri)
    local = unquote(parts.path) if parts.scheme.lower() == "file" else uri
    if "://" not in local and not os.path.isdir(local):
        raise SourceError(f"LanceDB database {uri} does not exist", source=source.name)
    try:
        return lancedb.connect(uri).open_table(name)
    except Exception as exc:  # lancedb raises plain exceptions
        raise SourceError(f"cannot open table {name!r} of {uri}: {str(exc).splitlines()[0]}",
                          source=source.name) from exc
