"""The Ray engine's executor: a plan's fragments as distributed Daft reads, blob functions as
Daft UDFs on the workers, the residual on the cluster; results stream back as Arrow batches.

Build sides of dynamic filters (small by the planner's decision) come back to the driver for
their keys, as in the local engine; so do a top-k's key sets and query vectors (computed by
plans of their own, run on this engine).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot

from fedquery.conform import conform, expected
from fedquery.connectors.registered import RegisteredTables
from fedquery.errors import FedQueryError, SourceError
from fedquery.execute import check_rows
from fedquery.fetch import _build_order, _with_query_vector, _with_vector_keys, key_predicate, subset
from fedquery.parse import DIALECT
from fedquery.ray import cluster, daft_stage, hoist, residual, worker
from fedquery.ray.reads import FragmentSource, Opening, daft_schema

if TYPE_CHECKING:
    from fedquery.catalog import Catalog
    from fedquery.control import QueryControl
    from fedquery.execute import Session
    from fedquery.functions.embedding import Embedder
    from fedquery.plan import Fragment, Plan

PARTS_PER_CPU = 2  # tasks a split scan or a blob UDF gets per CPU of the cluster


class RayEngine:
    """Runs one connection's plans on a Ray cluster."""

    def __init__(self, session: Session, catalog: Catalog, *, strict: bool = False,
                 address: str | None = None) -> None:
        self.session = session
        self.address = cluster.join(address)
        self._opening = Opening(uuid.uuid4().hex, catalog, (), strict)
        self.embedders: dict[str, Embedder] = {}
        self.last_residual: str | None = None  # where the last residual ran: daft or duckdb

    def add_embedder(self, embedder: Embedder) -> None:
        self.embedders[embedder.function_name.lower()] = embedder

    @property
    def opening(self) -> Opening:
        return replace(self._opening, embedders=tuple(self.embedders.values()))

    def batches(self, plan: Plan, params: Any, control: QueryControl | None = None,
                max_rows: int | None = None) -> pa.RecordBatchReader:
        """The plan's rows as a stream, conformed to the types the local engine gives."""
        wanted = expected(plan.types, self.session.arrow_types)
        stream = self._stream(plan, params, control)
        first = next(stream, None)
        schema = (conform(pa.Table.from_batches([first]), wanted, plan.columns).schema
                  if first is not None else _declared(wanted, plan))

        def batches() -> Iterator[pa.RecordBatch]:
            rows = 0
            for batch in _chain(first, stream):
                rows += batch.num_rows
                check_rows(rows, max_rows)
                yield from conform(pa.Table.from_batches([batch]), wanted, plan.columns).to_batches()

        return pa.RecordBatchReader.from_batches(schema, batches())

    def table(self, plan: Plan, params: Any, control: QueryControl | None = None,
              max_rows: int | None = None) -> pa.Table:
        return self.batches(plan, params, control, max_rows).read_all()

    def measure(self, uris: pa.Array, source: str | None) -> pa.Table:
        """``con.profile``'s measuring pass, on the workers (``measure``)."""
        from fedquery.ray import measure

        return measure.measure_on_cluster(self.opening, uris, source, self.parts())

    def thumbnails(self, uris: list[str], source: str | None) -> dict[str, bytes]:
        from fedquery.ray import measure

        return measure.thumbnails(self.opening, uris, source, self.parts())

    def embedded(self, uris: list[str], source: str | None) -> pa.Table | None:
        from fedquery.ray import measure

        return measure.embedded(self.opening, uris, source, self.parts())

    def parts(self) -> int:
        """How many parts a split scan or a batch of blob work gets: a few per CPU."""
        return cluster.worker_cpus() * PARTS_PER_CPU

    # ------------------------------------------------------------------ the run

    def _stream(self, plan: Plan, params: Any, control: QueryControl | None) -> Iterator[pa.RecordBatch]:
        """``_run``'s batches; an error raised on the cluster as the fedquery error it was."""
        try:
            yield from self._run(plan, params, control)
        except Exception as exc:
            raise from_cluster(exc) from None

    def _run(self, plan: Plan, params: Any, control: QueryControl | None) -> Iterator[pa.RecordBatch]:
        import ray

        parts = self.parts()  # asked of the cluster once a run
        frames = self._frames(plan, params, parts)
        opening = self.opening
        tree = sqlglot.parse_one(plan.residual, dialect=DIALECT)
        tree = hoist.hoist(tree, frames, opening, self.embedders, parts, cluster.has_gpu())
        schemas = {name: daft_schema(df.schema().to_pyarrow_schema(), name)
                   for name, df in frames.items()}
        core = self._core(tree, frames, schemas)
        if core is not None:  # joins and aggregates by Daft; order and limit by DuckDB
            final, df = core
            inputs = {daft_stage.CORE: (daft_schema(df.schema().to_pyarrow_schema(), "the core"),
                                        list(df.iter_partitions()))}
        else:
            final = tree.sql(DIALECT)
            inputs = {name: (schemas[name], list(df.iter_partitions())) for name, df in frames.items()}
        self.last_residual = "daft" if core is not None else "duckdb"
        values = worker.to_wire(subset(params, plan.residual_parameters))
        task = residual.remote_residual().remote(opening, plan, final, values, inputs)
        if control is not None:
            control.on_stop(lambda: ray.cancel(task))
        for ref in task:
            yield ray.get(ref)

    def _core(self, tree, frames: dict, schemas: dict):
        """The residual's core as a Daft query and the DuckDB SQL that finishes it, when Daft
        answers it as DuckDB would (``daft_stage``) and can plan it; else None."""
        import daft

        stages = daft_stage.split(tree, schemas)
        if stages is None:
            return None
        try:
            df = daft.sql(stages.core, **frames)
            # optimized and planned for the cluster now: Daft's optimizer fails on some plans
            # only then, its distributed planner panics on some (pyo3's PanicException is a
            # BaseException), and neither may happen once the query runs
            df.explain(show_all=True, file=io.StringIO())
        except BaseException as exc:  # noqa: BLE001 - what Daft cannot plan: DuckDB runs it all
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return None
        return stages.final, df

    def _frames(self, plan: Plan, params: Any, parts: int):
        """Each fragment as a Daft DataFrame (build sides read first, for their keys)."""
        import daft

        built: dict[str, pa.Table] = {}
        frames: dict[str, daft.DataFrame] = {}
        for fragment in _build_order(plan.fragments):
            predicate = key_predicate(fragment, built)
            if fragment.query_vector is not None:
                params = _with_query_vector(self.session, fragment, params)
            if fragment.vector_keys is not None:
                fragment = _with_vector_keys(self.session, fragment, params)
            df = self._read(fragment, params, predicate.sql(DIALECT) if predicate is not None else None,
                            parts)
            if fragment.materialize:
                built[fragment.name] = df.to_arrow()
                df = daft.from_arrow(built[fragment.name])
            frames[fragment.name] = df
        return frames

    def _read(self, fragment: Fragment, params: Any, predicate: str | None, count: int):
        import daft

        connector = self.session.connectors[fragment.source]
        if isinstance(connector, RegisteredTables):  # the driver's own data, read here
            table = worker.open_fragment(self.session, fragment, params, predicate).read_all()
            return daft.from_arrow(table.cast(daft_schema(table.schema, fragment.name)))
        schema = daft_schema(worker.fragment_schema(self.session, fragment, params), fragment.name)
        parts = None
        request = fragment.request
        if (fragment.kind == "scan" and request is not None and request.limit is None
                and request.vector is None):
            parts = connector.split(request, count)
        return FragmentSource(self.opening, fragment, params, predicate, schema, parts).read()


def _chain(first, rest):
    if first is not None:
        yield first
    yield from rest


def _declared(wanted, plan: Plan) -> pa.Schema:
    return pa.schema([pa.field(c, t) for c, t in zip(plan.columns, wanted, strict=True)])


def from_cluster(exc: BaseException) -> FedQueryError:
    """The fedquery error a task raised on the cluster, found in the chain Ray and Daft wrap
    it in; anything else as a ``SourceError`` in words."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, FedQueryError) and type(error).__module__ == "fedquery.errors":
            return error  # not Ray's wrapper, which subclasses the error it wraps
        restored = worker.carried(str(error))
        if isinstance(restored, FedQueryError):
            return restored
        stack += [getattr(error, "cause", None), error.__cause__, error.__context__]
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    last = text[-1].strip() if text else type(exc).__name__
    return SourceError(f"engine='ray': a task failed on the cluster: {last}", source="ray")
