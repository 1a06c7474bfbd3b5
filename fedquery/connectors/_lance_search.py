"""The k nearest rows of a Lance dataset under a filter: its ANN index when many rows
qualify, an exact pass over the vectors when few do (or when there is no index).

A search answers a top-k scan request (``ScanRequest.vector``): the rows of the vector table
passing its own filter (``request.filter``) and, for a join, whose key is one of the keys of
the rest of the join (``request.keys``), nearest first. It returns those rows (a few more when
distances tie within rounding), and the residual orders them with DuckDB's own distance, so the
answer's order is DuckDB's. The strategy is chosen per run, from the qualifying rows:

- **exact** (no usable index, ``exact := true``, or at most ``EXACT_ROWS`` qualify): with up to
  ``TAKE_ROWS`` keys, the key column is read, the matching rows' vectors are taken by row id;
  else one streaming pass reads the vectors batch by batch, computes the distances where they
  are read (numpy over Arrow buffers, no copy), and keeps the best with a partial sort. Rows
  whose distance is NULL or NaN rank last in DuckDB: when such rows would be needed (fewer than
  k others), the search steps aside and DuckDB scans.
- **index, prefiltered** (up to ``PREFILTER_KEYS`` keys, or no keys): Lance's ANN search with
  the table's filter and the keys as its prefilter, ``nprobes`` partitions first (more when
  the prefilter leaves too few), ``refine`` x k candidates re-ranked with the exact vectors.
- **index, over-fetched** (more keys): the table's filter as the prefilter, k / selectivity x
  ``OVERFETCH`` candidates, kept when their key is among the keys; doubled until k qualify or
  the table has no more rows.

Any ANN answer with fewer than k rows, when more may qualify, is redone exactly: the answer
always has min(k, qualifying) rows. Every step is written to ``request.trace``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedquery.connectors._lance_filter import arrow_filter
from fedquery.connectors._lance_keys import KeyIndex
from fedquery.connectors.base import ScanRequest, SearchSettings

EXACT_ROWS = 8_192  # qualifying rows up to which an exact pass beats the index (measured:
# 5,068 of 5M rows: exact 65 ms, recall 1; the index 73 ms, recall 0.93)
TAKE_ROWS = 16_384  # keys whose rows are taken by id; more: one streaming pass
PREFILTER_KEYS = 16_384  # keys given to Lance as a prefilter; more: over-fetch and check
OVERFETCH = 2.0  # candidates per qualifying row expected, in the first over-fetch round
MAX_ROUNDS = 6
SLACK = 16  # rows kept past the k-th, for ties and rounding; DuckDB orders them
BATCH_ROWS = 65_536
DEFAULT_REFINE = 20
DEFAULT_REFINE_DOT = 40  # inner products rank by unnormalised vectors: PQ errors weigh more
DEFAULT_NPROBES = 20  # per 256 partitions (recall@10 >= 0.95 measured: bench/vectors.py)
TOLERANCE = 1e-5  # relative: distances this close to the k-th may order either way
WIDEN_BELOW = 0.1  # prefilters keeping less than this share search more partitions
WIDEN_MAX = 4.0  # at most this many times more (0.1% of 5M: x10 cost 160 ms, exact 70 ms)


@dataclass(frozen=True)
class VectorIndex:
    """An ANN index of one column: its name, kind (``IVF_PQ``...), metric and partitions."""

    name: str
    column: str
    kind: str
    metric: str
    partitions: int | None

    def __str__(self) -> str:
        parts = f", {self.partitions} partitions" if self.partitions else ""
        return f"{self.kind} index {self.name!r} ({self.metric}{parts})"


def vector_indexes(dataset: Any) -> dict[str, VectorIndex]:
    """The vector indexes of a Lance dataset by column (one per column: the first listed)."""
    found: dict[str, VectorIndex] = {}
    for described in dataset.describe_indices():
        details = getattr(described, "details", None) or {}
        metric = str(details.get("metric_type", "")).lower()
        names = list(getattr(described, "field_names", []) or [])
        if not metric or len(names) != 1 or names[0] in found:
            continue
        kind, partitions = _statistics(dataset, described.name)
        found[names[0]] = VectorIndex(described.name, names[0], kind, metric, partitions)
    return found


def _statistics(dataset: Any, name: str) -> tuple[str, int | None]:
    """An index's kind (``IVF_PQ``...) and partition count, from Lance's index statistics."""
    try:
        stats = dataset.stats.index_stats(name)
    except Exception:  # noqa: BLE001 - only the explain text and a default depend on it
        return "vector", None
    segments = stats.get("indices") or [{}]
    partitions = segments[0].get("num_partitions")
    return str(stats.get("index_type") or "vector"), int(partitions) if partitions else None


def settings_for(index: VectorIndex | None, metric: str,
                 *layers: SearchSettings | None) -> SearchSettings:
    """The settings of one search: the query's over the table's over the defaults."""
    nprobes = DEFAULT_NPROBES
    if index is not None and index.partitions:
        nprobes = max(DEFAULT_NPROBES, math.ceil(index.partitions * DEFAULT_NPROBES / 256))
    refine = DEFAULT_REFINE_DOT if metric == "dot" else DEFAULT_REFINE
    merged = SearchSettings(nprobes, refine, None)
    for layer in layers:
        if layer is not None:
            merged = layer.over(merged)
    return merged


def describe_plan(index: VectorIndex | None, column: str, metric: str,
                  settings: SearchSettings) -> str:
    """What a search will do, for ``explain``."""
    if index is None or index.metric != metric:
        why = "no ANN index on " + column if index is None else (
            f"{index} answers {index.metric}, not {metric}")
        return f"exact ({why}): distances computed as the vectors are read, best k kept"
    if settings.exact:
        return f"exact (exact := true; {index} not used)"
    choice = "always" if settings.exact is False else (
        f"when more than {EXACT_ROWS:,} rows qualify, else exact")
    return (f"{index} on {column}: {choice}; nprobes {settings.nprobes}, refine "
            f"{settings.refine}; keys up to {PREFILTER_KEYS:,} as its prefilter, more by "
            "over-fetch and check")


class Search:
    """One top-k search of a Lance dataset for one scan request."""

    def __init__(self, dataset: Any, request: ScanRequest, query: np.ndarray,
                 index: VectorIndex | None, settings: SearchSettings,
                 key_index: Callable[[str], KeyIndex | None] = lambda column: None,
                 widen: bool = True) -> None:
        self.dataset, self.request, self.query = dataset, request, query
        self.key_index, self.widen = key_index, widen  # widen: nprobes is the default
        self.vector = request.vector
        self.k = int(request.limit)
        self.index = index if index is not None and index.metric == self.vector.metric else None
        self.settings = settings
        self.trace: list[str] = request.trace if request.trace is not None else []
        self.columns = list(request.columns)
        self.keys = request.keys

    def run(self) -> pa.Table | None:
        """The rows, or None when DuckDB must scan instead (an untranslatable filter...)."""
        own = arrow_filter(self.request.filter, self.request.params)
        if own is False:
            self.trace.append("filter not expressible for Lance: DuckDB scans")
            return None
        self.own = own
        rows = self.dataset.count_rows()
        own_rows = rows if own is None else self.dataset.count_rows(filter=own)
        key_rows = len(self.keys) if self.keys is not None else None
        upper = own_rows if key_rows is None else min(own_rows, key_rows)
        estimate = f"{upper:,} of {rows:,} rows may qualify"
        if self.index is None or self.settings.exact:
            self.trace.append(f"exact ({estimate}; {self._why_exact()})")
            return self._exact()
        if self.settings.exact is None and upper <= EXACT_ROWS:
            self.trace.append(f"exact ({estimate}, at most {EXACT_ROWS:,})")
            return self._exact()
        selectivity = max(upper, 1) / max(rows, 1)
        if key_rows is None or key_rows <= PREFILTER_KEYS:
            found = self._prefiltered(estimate, selectivity)
        else:
            selectivity = max(own_rows, 1) / rows * min(1.0, key_rows / rows)
            found = self._overfetched(estimate, selectivity, rows)
        if found is None or (found.num_rows < self.k and upper > found.num_rows):
            self.trace.append("index answer short of k rows: redone exactly")
            return self._exact()
        return found

    def _why_exact(self) -> str:
        if self.settings.exact:
            return "exact := true"
        if self.index is None:
            return f"no ANN index on {self.vector.column} for {self.vector.metric}"
        return ""

    # ---------------------------------------------------------------- index

    def _ann(self, k: int, prefilter: Any, refine: int, allowed: bytes | None = None
             ) -> pa.Table:
        wanted = list(dict.fromkeys(self.columns + ([self.keys.column] if self.keys else [])))
        nearest = {"column": self.vector.column, "q": self.query, "k": k,
                   "metric": self.vector.metric, "minimum_nprobes": self.settings.nprobes,
                   "refine_factor": refine}
        options: dict[str, Any] = {"columns": wanted + ["_distance"], "nearest": nearest}
        if prefilter is not None or allowed is not None:
            options.update(filter=prefilter, prefilter=True, row_addr_allowlist=allowed)
        return self.dataset.scanner(**options).to_table()

    def _allowed(self) -> bytes | None:
        """The rows of the keys as Lance's row-address allow list, when a key index serves."""
        index = self.key_index(self.keys.column)
        if index is None:
            return None
        from lance.dataset import serialize_row_addrs

        return serialize_row_addrs(index.addresses(self.keys.values.to_numpy()).tolist())

    def _widened(self, selectivity: float) -> int:
        """The default nprobes, widened under a narrow prefilter: fewer qualifying rows in each
        partition need more partitions for the same recall (measured at 1M: 1% of the rows
        reached recall@10 0.93 with 20 partitions, 0.96 with 40)."""
        nprobes = self.settings.nprobes
        if not self.widen or selectivity >= WIDEN_BELOW:
            return nprobes
        factor = min(WIDEN_MAX, math.sqrt(WIDEN_BELOW / max(selectivity, 1e-9)))
        wider = math.ceil(nprobes * factor)
        partitions = self.index.partitions or wider
        return min(partitions, wider)

    def _prefiltered(self, estimate: str, selectivity: float) -> pa.Table:
        self.settings = SearchSettings(self._widened(selectivity), self.settings.refine,
                                       self.settings.exact)
        prefilter, allowed = self.own, None
        if self.keys is not None:
            allowed = self._allowed()
        if self.keys is not None and allowed is None:
            keys = pc.field(self.keys.column).isin(self._key_values())
            prefilter = keys if prefilter is None else prefilter & keys
        found = self._ann(self.k, prefilter, self.settings.refine, allowed)
        self.trace.append(f"index, prefiltered ({estimate}): {self.index}, nprobes "
                          f"{self.settings.nprobes}, refine {self.settings.refine}; Lance "
                          f"returned {found.num_rows:,} rows")
        return self._best(found.sort_by("_distance"))

    def _overfetched(self, estimate: str, selectivity: float, rows: int) -> pa.Table | None:
        fetch = min(rows, max(self.k, math.ceil(self.k * OVERFETCH / selectivity)))
        # re-rank refine / 3 x the fetched rows, but at least 2 x refine x k: at 10% the k
        # nearest qualifying rows are about the k / 0.1 nearest of all, so the candidates must
        # reach that deep (measured, 10% of 5M, 200 fetched: 400 re-ranked gave recall 0.80,
        # 1,000 gave 0.93)
        refine = max(1, math.ceil(self.settings.refine / 3),
                     math.ceil(2 * self.settings.refine * self.k / fetch))
        for round_ in range(1, MAX_ROUNDS + 1):
            found = self._ann(fetch, self.own, refine)
            candidates = found.column(self.keys.column).combine_chunks()
            kept = found.filter(pc.is_in(candidates, value_set=self.keys.contains(candidates)))
            self.trace.append(f"index, over-fetched ({estimate}): round {round_}, {fetch:,} "
                              f"nearest (nprobes {self.settings.nprobes}, refine {refine}), "
                              f"{kept.num_rows:,} with a key of the join")
            if kept.num_rows >= self.k or found.num_rows < fetch:
                return self._best(kept.sort_by("_distance"))
            fetch = min(rows, fetch * (2 if kept.num_rows else 4))
        return None

    def _key_values(self, unique: bool = True) -> pa.Array:
        """The keys, typed as the vector table's key column (an int32 warehouse key against
        an int64 Lance column...)."""
        values = self.keys.values.cast(self.dataset.schema.field(self.keys.column).type)
        return pc.unique(values) if unique else values

    def _best(self, found: pa.Table) -> pa.Table:
        """The first k rows of ``found`` (sorted by ``_distance``) and any within rounding
        of the k-th, with the requested columns only."""
        if found.num_rows > self.k:
            distances = found.column("_distance").to_numpy()
            limit = distances[self.k - 1] + TOLERANCE * max(1.0, abs(float(distances[self.k - 1])))
            found = found.slice(0, max(self.k, int(np.searchsorted(distances, limit, "right"))))
        return found.select(self.columns)

    # ---------------------------------------------------------------- exact

    def _exact(self) -> pa.Table | None:
        if self.keys is not None and len(self.keys) <= TAKE_ROWS:
            best = self._exact_taken()
        else:
            best = self._exact_streamed()
        if best is None:
            self.trace.append("a NULL vector, element or NaN distance in play: DuckDB scans")
            return None
        return self.dataset._take_rows(best, columns=self.columns).select(self.columns)

    def _exact_taken(self) -> list[int] | None:
        """Row ids of the nearest among the rows whose key is one of a few keys."""
        column, best = self.keys.column, _Best(self.k, self.query, self.vector.metric)
        allowed = self._allowed()
        if allowed is not None:  # the rows of the keys, read by address
            found = self.dataset.scanner(columns=[self.vector.column], filter=self.own,
                                         row_addr_allowlist=allowed, with_row_address=True)
            for batch in found.to_reader():
                best.add(batch.column(self.vector.column), batch.column("_rowaddr").to_numpy())
            return best.row_ids()
        keys = pc.field(column).isin(self._key_values())
        wanted = keys if self.own is None else self.own & keys
        ids = self.dataset.to_table(columns=[column], filter=wanted, with_row_id=True)
        ids = ids.column("_rowid").combine_chunks()
        for start in range(0, len(ids), BATCH_ROWS):
            chunk = ids.slice(start, BATCH_ROWS)
            taken = self.dataset._take_rows(chunk, columns=[self.vector.column])
            best.add(taken.column(self.vector.column).combine_chunks(), chunk.to_numpy())
        return best.row_ids()

    def _exact_streamed(self) -> list[int] | None:
        """Row ids of the nearest, in one pass over the vectors (and keys)."""
        columns = [self.vector.column] + ([self.keys.column] if self.keys is not None else [])
        keys = _Membership(self._key_values(unique=False)) if self.keys is not None else None
        # Lance's own batch size: larger batches read several times slower (measured)
        scanner = self.dataset.scanner(columns=columns, filter=self.own, with_row_id=True)
        best = _Best(self.k, self.query, self.vector.metric)
        for batch in scanner.to_reader():
            hits = keys.of(batch.column(self.keys.column)) if keys is not None else None
            best.add(batch.column(self.vector.column), batch.column("_rowid").to_numpy(), hits)
        return best.row_ids()


class _Membership:
    """Whether values are among a set of keys, the set built once: integer keys sorted (a
    binary search per value), others through Arrow's hash lookup (its set rebuilt per call)."""

    def __init__(self, keys: pa.Array) -> None:
        self.integers = pa.types.is_integer(keys.type)
        if self.integers:
            numbers = keys.to_numpy()
            ordered = len(numbers) < 2 or bool(np.all(numbers[1:] >= numbers[:-1]))
            self.keys = numbers if ordered else np.sort(numbers)  # often already in order
        else:
            self.keys = pc.unique(keys)

    def of(self, values: pa.Array) -> np.ndarray:
        """A boolean mask: which values are keys (NULL never is)."""
        if not (self.integers and pa.types.is_integer(values.type)):
            found = pc.is_in(values, value_set=self.keys)
            return found.to_numpy(zero_copy_only=False)
        if len(self.keys) == 0:
            return np.zeros(len(values), bool)
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        numbers = values.fill_null(0).to_numpy()
        at = np.minimum(np.searchsorted(self.keys, numbers), len(self.keys) - 1)
        return valid & (self.keys[at] == numbers)


class _Best:
    """The rows nearest to a query vector, fed batch by batch (a partial sort each batch).

    Distances are DuckDB's up to rounding: cosine ``1 - a.b / (|a||b|)``, l2 the Euclidean
    distance (compared squared), dot ``-a.b``. Rows with a NULL vector, a NULL element or a
    non-finite distance are counted, not ranked.
    """

    def __init__(self, k: int, query: np.ndarray, metric: str) -> None:
        self.k, self.metric = k, metric
        self.query = query.astype(np.float32)
        self.norm = float(np.linalg.norm(self.query.astype(np.float64)))
        self.keep = 2 * k + SLACK
        self.distances = np.empty(0, np.float64)
        self.ids = np.empty(0, np.uint64)
        self.unranked = 0
        self.refused = False  # a wanted vector holds a NULL element

    def add(self, vectors: pa.Array, ids: np.ndarray, wanted: np.ndarray | None = None) -> None:
        """Rank a batch of vectors (only the rows ``wanted``, when given), ``ids`` their row
        ids. Distances are computed for the whole batch: cheaper than copying the wanted."""
        if isinstance(vectors, pa.ChunkedArray):
            vectors = vectors.combine_chunks()
        if len(vectors) == 0:
            return
        dim = vectors.type.list_size
        child = vectors.values.slice(vectors.offset * dim, len(vectors) * dim)
        wanted = np.ones(len(vectors), bool) if wanted is None else wanted
        ranked = np.ones(len(vectors), bool)
        if vectors.null_count:
            ranked &= vectors.is_valid().to_numpy(zero_copy_only=False)
        if child.null_count:  # DuckDB refuses such a vector: let it say so
            holes = child.is_null().to_numpy(zero_copy_only=False).reshape(-1, dim).any(axis=1)
            self.refused = self.refused or bool((holes & wanted).any())
            ranked &= ~holes
        matrix = child.to_numpy(zero_copy_only=False).reshape(-1, dim)
        distances = self._distances(matrix)
        ranked &= np.isfinite(distances)
        self.unranked += int((wanted & ~ranked).sum())
        keep = wanted & ranked
        self._merge(distances[keep], ids[keep])

    def _distances(self, matrix: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            dots = (matrix @ self.query).astype(np.float64)
            if self.metric == "dot":
                return -dots
            squares = np.einsum("ij,ij->i", matrix, matrix).astype(np.float64)
            if self.metric == "l2":
                return squares - 2 * dots + self.norm ** 2
            return 1.0 - dots / (np.sqrt(squares) * self.norm)

    def _merge(self, distances: np.ndarray, ids: np.ndarray) -> None:
        distances = np.concatenate([self.distances, distances])
        ids = np.concatenate([self.ids, ids.astype(np.uint64)])
        if len(distances) > self.keep:
            cut = np.argpartition(distances, self.keep - 1)[:self.keep]
            distances, ids = distances[cut], ids[cut]
        self.distances, self.ids = distances, ids

    def row_ids(self) -> list[int] | None:
        """The ids of the k nearest and of any row within rounding of the k-th; None when
        rows without a distance would rank among them."""
        if self.refused or (len(self.distances) < self.k and self.unranked):
            return None
        order = np.argsort(self.distances, kind="stable")
        distances, ids = self.distances[order], self.ids[order]
        if len(distances) > self.k:
            kth = distances[self.k - 1]
            scale = max(1.0, abs(float(kth)), self.norm ** 2 if self.metric != "cosine" else 0.0)
            ids = ids[: max(self.k, int(np.searchsorted(distances, kth + TOLERANCE * scale,
                                                          "right")))]
        return ids.tolist()
