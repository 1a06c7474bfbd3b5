"""The executor of a connection opened with ``engine="ray"``: the local engine's session (it
describes queries and plans them), whose plans run on the cluster (``RayEngine``).

``explain(analyze=True)`` runs on the local engine: its figures are per fragment, of one
process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.execute import Session
from fedquery.waiting import Producer, off_thread

if TYPE_CHECKING:
    from fedquery.catalog import Catalog
    from fedquery.control import QueryControl
    from fedquery.functions.embedding import Embedder
    from fedquery.plan import Plan


class RaySession(Session):
    """A ``Session`` whose ``run`` and ``table`` execute on a Ray cluster."""

    def __init__(self, connectors, secrets, functions, settings, *, catalog: Catalog,
                 strict: bool = False, address: str | None = None) -> None:
        from fedquery.ray import cluster

        cluster.require()  # before anything imports Daft
        from fedquery.ray.engine import RayEngine

        super().__init__(connectors, secrets, functions, settings)
        self.engine = RayEngine(self, catalog, strict=strict, address=address)

    def add_embedder(self, embedder: Embedder) -> None:
        super().add_embedder(embedder)
        self.engine.add_embedder(embedder)

    def run(self, plan: Plan, params: Any, *, analyze: bool = False,
            control: QueryControl | None = None, max_rows: int | None = None):
        if analyze:
            return super().run(plan, params, analyze=True, control=control, max_rows=max_rows)
        return _Run(self, plan, params, control or self.control(), max_rows)

    def table(self, plan: Plan, params: Any, *, control: QueryControl | None = None,
              max_rows: int | None = None) -> pa.Table:
        return self.run(plan, params, control=control, max_rows=max_rows).table()


class _Run:
    """One plan started on the cluster: read whole (``table``) or as a stream (``reader``)."""

    def __init__(self, session: RaySession, plan: Plan, params: Any, control: QueryControl,
                 max_rows: int | None) -> None:
        self.session, self.plan, self.params = session, plan, params
        self.control, self.max_rows = control, max_rows
        self.stats: list = []

    def table(self) -> pa.Table:
        try:
            return off_thread(lambda: self._open().read_all(), lambda: None, control=self.control)
        finally:
            self.control.done()

    def reader(self) -> pa.RecordBatchReader:
        source = off_thread(self._open, lambda: None, control=self.control)
        batches = Producer(iter(source), lambda: None, self.control.done, control=self.control)
        return pa.RecordBatchReader.from_batches(source.schema, iter(batches))

    def _open(self) -> pa.RecordBatchReader:
        with self.control.current():
            return self.session.engine.batches(self.plan, self.params, self.control, self.max_rows)
