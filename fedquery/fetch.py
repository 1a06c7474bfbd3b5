"""Fetching fragments from their sources: build sides first, join keys into probes, counted.

Each fragment that is not run inline by DuckDB is opened through its connector (``scan`` or
``run_sql``): the one fragment of a plan is registered on the query's cursor as an Arrow
stream; the fragments of a join are stored as temporary tables (``_store``). A build side of a
dynamic filter is read whole first (it is small by decision); its distinct keys become an IN
list, or a min/max range past the limit, added to the probe's request. Every stream counts its
rows and the time spent producing them; a fragment read whole also the bytes its source read.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from fedquery.connectors._native import scan_sql, table_ref
from fedquery.connectors.base import KeySet, SQLSource
from fedquery.errors import FedQueryError, SourceError
from fedquery.parse import DIALECT

VECTOR_KEYS_MAX = 10_000_000  # keys a top-k prefilter takes; more: every row instead
UNIQUE_KEYS_MAX = 65_536  # keys deduplicated here; more are passed on as they come
LAZY_KEYS = 16_384  # more keys than this go to a vector search as a count and a check

if TYPE_CHECKING:
    import duckdb

    from fedquery.execute import Session
    from fedquery.plan import Fragment, Plan


@dataclass
class FragmentStats:
    """What one fragment moved: rows, time spent producing them, bytes its source read."""

    name: str
    source: str
    rows: int = 0
    seconds: float = 0.0
    bytes_read: int | None = None
    key_filter: str | None = None
    search: str | None = None  # what a vector search did (strategy, estimate, settings)
    read: str | None = None  # what a scan read and skipped (a lake's files), when it says
    error: BaseException | None = None
    cancel: Callable[[], None] | None = None  # wakes a read that waits for its source


def fetch_fragments(session: Session, plan: Plan, params: Any, cursor: duckdb.DuckDBPyConnection,
                    *, inline: set[str], whole: bool = False,
                    opened: list[FragmentStats] | None = None) -> list[FragmentStats]:
    """Register every fragment not in ``inline`` on ``cursor``; builds run first, whole.

    With ``whole`` every fragment is read to the end before the next one starts, so the bytes
    each source read are each fragment's own (``explain(analyze=True)``). Each fragment's
    stats go into ``opened`` as soon as it is open, for a caller that may cancel its read.
    """
    built: dict[str, pa.Table] = {}
    stats = []
    ahead_of_join = len(plan.fragments) > 1  # DuckDB orders the join: give it statistics
    for fragment in _build_order(plan.fragments):
        if fragment.name in inline:
            continue
        stat = FragmentStats(fragment.name, fragment.source)
        predicate = key_predicate(fragment, built)
        stat.key_filter = describe_predicate(predicate, fragment)
        if fragment.query_vector is not None:
            params = _with_query_vector(session, fragment, params)
        if fragment.vector_keys is not None:
            fragment = _with_vector_keys(session, fragment, params)
            stat.key_filter = _describe_keys(fragment)
        if fragment.request is not None and (whole or fragment.request.vector is not None):
            # a source tells what it did (a search's strategy, files a lake read and skipped)
            fragment = replace(fragment, request=replace(fragment.request, trace=[]))
        if not whole and native_probe(fragment):
            _view(cursor, fragment, predicate)
            stats.append(stat)
            continue
        connector = session.connectors[fragment.source]
        before, started = connector.bytes_read(), time.perf_counter()
        from_source = _open(session, fragment, params, predicate)  # where a SQL source runs it
        stat.cancel = functools.partial(connector.cancel, from_source)
        if opened is not None:
            opened.append(stat)
        stat.seconds += time.perf_counter() - started
        if fragment.request is not None and fragment.request.trace:
            said = "; ".join(fragment.request.trace)
            if fragment.request.vector is not None:
                stat.search = said
            else:
                stat.read = said
        reader = _counted(from_source, stat)
        if fragment.materialize or whole:
            built[fragment.name] = reader.read_all()
            if ahead_of_join:
                _store(cursor, fragment.name, built[fragment.name])
            else:
                cursor.register(fragment.name, built[fragment.name])
            if before is not None:
                stat.bytes_read = connector.bytes_read() - before
        else:
            if ahead_of_join:
                _store(cursor, fragment.name, reader)
            else:  # the query's one fragment: streamed straight through
                cursor.register(fragment.name, reader)
        stats.append(stat)
    return stats


def native_probe(fragment: Fragment) -> bool:
    """A scan DuckDB reads itself that waits only for a build's keys: once they are known it
    runs inside the residual as a view (DuckDB reads it in the join's pipeline, with the
    table's statistics), not copied into a temporary table first."""
    request = fragment.request
    return (fragment.native and fragment.kind == "scan" and fragment.key_filter is not None
            and not fragment.materialize and not fragment.parameters
            and fragment.vector_keys is None and fragment.query_vector is None
            and request is not None and request.vector is None and request.keys is None)


def _view(cursor: duckdb.DuckDBPyConnection, fragment: Fragment, predicate: exp.Expr | None) -> None:
    """The probe as a temporary view of the query's cursor: its scan with the key predicate
    (an IN list of literals or a range: no parameter, nothing registered)."""
    request = fragment.request
    if predicate is not None:
        request = replace(request, filter=_and(request.filter, predicate))
    sql = scan_sql(fragment.source, request, table_ref(request.table))
    cursor.execute(f'CREATE TEMP VIEW "{fragment.name}" AS {sql}')


def _store(cursor: duckdb.DuckDBPyConnection, name: str, stream: Any) -> None:
    """A fragment's rows (a table or a stream) copied into a temporary table of the query's
    cursor: DuckDB's own storage, which spills to disk past its memory limit, and keeps
    statistics (row count, min/max, distinct counts) that DuckDB orders joins by. A registered
    Arrow stream it estimates at one row (TPC-DS 85 at scale 1 joined two 1.9M-row fragments
    first and filled the disk); a registered Arrow table by its row count only (TPC-H Q5 over
    PostgreSQL + S3 at SF 0.3: 400 ms; stored, 300 ms)."""
    staged = f"{name}__stream"
    cursor.register(staged, stream)
    try:
        cursor.execute(f'CREATE TEMP TABLE "{name}" AS SELECT * FROM "{staged}"').fetchall()
    finally:
        cursor.unregister(staged)


def _build_order(fragments) -> list[Fragment]:
    """Builds first, and every fragment after the build whose keys it takes."""
    by_name = {f.name: f for f in fragments}
    ordered: list[Fragment] = []

    def visit(fragment: Fragment) -> None:
        if fragment in ordered:
            return
        if fragment.key_filter is not None and fragment.key_filter.build in by_name:
            visit(by_name[fragment.key_filter.build])
        ordered.append(fragment)

    for fragment in sorted(fragments, key=lambda f: not f.materialize):
        visit(fragment)
    return ordered


def key_predicate(fragment: Fragment, built: dict[str, pa.Table]) -> exp.Expr | None:
    """``column IN (keys)`` or ``column BETWEEN min AND max`` from the build side's keys."""
    planned = fragment.key_filter
    if planned is None or planned.build not in built:
        return None
    keys = pc.unique(built[planned.build].column(planned.build_column)).drop_null()
    column = exp.column(planned.column)
    if pa.types.is_floating(keys.type) and len(keys) and not pc.all(pc.is_finite(keys)).as_py():
        return None  # NaN equals NaN in a DuckDB join; no literal or range says so everywhere
    if len(keys) == 0:
        return exp.false()
    if len(keys) <= planned.in_list_max:
        return column.isin(*(_literal(v) for v in keys.to_pylist()))
    bounds = pc.min_max(keys)
    low, high = (_literal(bounds[k].as_py()) for k in ("min", "max"))
    return exp.Between(this=column, low=low, high=high)


def _with_vector_keys(session: Session, fragment: Fragment, params: Any) -> Fragment:
    """Run a top-k scan's keys plan: the fragment whose request keeps those keys; past
    ``VECTOR_KEYS_MAX`` keys, the fragment without its top-k (every row, exactly as if
    unplanned: the residual still orders and limits). A source that searches vectors gets
    more than ``LAZY_KEYS`` keys lazily: their count, and a check of candidates."""
    planned = fragment.vector_keys

    def load() -> pa.Array:
        table = session.table(planned.plan, subset(params, planned.plan.parameters))
        keys = table.column(0).combine_chunks().drop_null()
        return pc.unique(keys) if len(keys) <= UNIQUE_KEYS_MAX else keys  # else a set is built

    if planned.count is not None and planned.check is not None:
        count = session.table(planned.count, subset(params, planned.count.parameters))
        count = int(count.column(0)[0].as_py() or 0)
        if count > LAZY_KEYS:  # loaded only by an exact pass, however many
            keys = KeySet(planned.column, count=count, load=load,
                          check=functools.partial(_check_keys, session, planned.check, params))
            return replace(fragment, request=replace(fragment.request, keys=keys))
    keys = load()
    if len(keys) > VECTOR_KEYS_MAX:
        whole = replace(fragment.request, order_by=(), limit=None, with_ties=False, vector=None)
        return replace(fragment, request=whole)
    return replace(fragment, request=replace(fragment.request, keys=KeySet(planned.column, keys)))


def _check_keys(session: Session, check: tuple[str, Plan], params: Any,
                candidates: pa.Array) -> pa.Array:
    """Which of the candidates are keys: the keys plan kept to them."""
    name, plan = check
    values = {**(subset(params, plan.parameters) or {}), name: candidates.to_pylist()}
    return session.table(plan, values).column(0).combine_chunks()


def _with_query_vector(session: Session, fragment: Fragment, params: Any) -> dict[str, Any]:
    """Run a top-k scan's query-vector plan: ``params`` with its one value, typed as the vector
    column (no row: NULL, as the scalar subquery gives)."""
    planned = fragment.query_vector
    table = session.table(planned.plan, subset(params, planned.plan.parameters))
    value = table.column(0)[0].as_py() if table.num_rows else None
    values = {**(params or {}), planned.parameter: value}
    if planned.sql_type and value is not None:
        from fedquery.vectors import typed_vectors

        values = typed_vectors(values, ((planned.parameter, planned.sql_type),))
    return values


def _describe_keys(fragment: Fragment) -> str:
    request = fragment.request
    if request.keys is None:
        return f"top-k dropped: more than {VECTOR_KEYS_MAX:,} keys pass the rest of the join"
    if not request.keys.loaded:
        return (f"{request.keys.column} IN (up to {len(request.keys):,} keys of the rest of the "
                f"join: counted, candidates checked), top {request.limit}")
    return (f"{request.keys.column} IN ({len(request.keys):,} keys from the rest of the join), "
            f"top {request.limit}")


def _literal(value: Any) -> exp.Expr:
    """A key as a SQL literal made by sqlglot (UUIDs as their text)."""
    return exp.convert(str(value) if isinstance(value, uuid.UUID) else value)


def describe_predicate(predicate: exp.Expr | None, fragment: Fragment) -> str | None:
    """The applied key filter in a few words, for ``explain(analyze=True)``."""
    if predicate is None:
        return None
    if isinstance(predicate, exp.In):
        return f"{fragment.key_filter.column} IN ({len(predicate.expressions)} keys)"
    return predicate.sql(DIALECT)


def _open(session: Session, fragment: Fragment, params: Any,
          predicate: exp.Expr | None) -> pa.RecordBatchReader:
    """The fragment's stream from its connector, with the key predicate added."""
    connector = session.connectors[fragment.source]
    values = subset(params, fragment.parameters)
    try:
        if fragment.kind == "scan" or not isinstance(connector, SQLSource):
            request = replace(fragment.request, params=values)
            if predicate is not None:
                request = replace(request, filter=_and(request.filter, predicate))
            return connector.scan(request)
        return connector.run_sql(probed(fragment.sql, predicate), values)
    except FedQueryError:
        raise
    except Exception as exc:
        raise SourceError(session.secrets.redact(str(exc)), source=fragment.source) from exc


def probed(sql: str, predicate: exp.Expr | None) -> str:
    """A SQL fragment keeping only the rows of ``predicate`` (a probe's key filter)."""
    if predicate is None:
        return sql
    probe = sqlglot.parse_one(sql, dialect=DIALECT).subquery("__probe")
    return exp.select("*").from_(probe).where(predicate).sql(DIALECT)


def _and(condition: str | None, predicate: exp.Expr) -> str:
    if not condition:
        return predicate.sql(DIALECT)
    return exp.and_(sqlglot.parse_one(condition, dialect=DIALECT), predicate).sql(DIALECT)


def _counted(reader: pa.RecordBatchReader, stat: FragmentStats) -> pa.RecordBatchReader:
    """The same stream, counting rows and the time spent producing them."""

    def batches():
        source = iter(reader)
        while True:
            started = time.perf_counter()
            try:
                batch = next(source)
            except StopIteration:
                break
            except BaseException as exc:  # DuckDB sees only its text: keep it for the executor
                stat.error = exc
                raise
            finally:
                stat.seconds += time.perf_counter() - started
            stat.rows += batch.num_rows
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def subset(params: Any, names: tuple[str, ...]) -> Any:
    """The values of the named parameters only (positional lists pass through)."""
    if not params or not names:
        return None
    if isinstance(params, dict):
        return {k: v for k, v in params.items() if k in names}
    return params
