"""A fragment as a Daft read: one task per part of its source, each run on a worker.

``FragmentSource`` is a Daft ``DataSource``: its tasks carry the fragment (with the keys of a
dynamic filter already added) and the catalog, never rows; each task opens the catalog in its
worker process (``worker.connection``) and reads its part there through the same connector
code the local engine runs. String and binary views become Daft's large types.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from daft.io.source import DataSource, DataSourceTask
from daft.recordbatch import RecordBatch
from daft.schema import Schema

from fedquery.errors import FedQueryError, PlanError
from fedquery.ray import worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fedquery.catalog import Catalog
    from fedquery.functions.embedding import Embedder
    from fedquery.plan import Fragment

TASK_ROWS = 131_072  # rows a task hands Daft at a time


@dataclass(frozen=True)
class Opening:
    """How a worker opens the catalog: its key, the catalog itself, embedders registered."""

    key: str
    catalog: Catalog
    embedders: tuple[Embedder, ...] = ()
    strict: bool = False

    def connection(self):
        return worker.connection(self.key, self.catalog, self.embedders, self.strict)


def daft_schema(schema: pa.Schema, what: str) -> pa.Schema:
    """``schema`` as Daft holds it: views as large types; a type Daft cannot hold natively is
    a ``PlanError`` naming the column (Daft would keep it as opaque Python objects)."""
    fields = []
    for f in schema:
        type_ = {pa.string_view(): pa.large_string(),
                 pa.binary_view(): pa.large_binary()}.get(f.type, f.type)
        fields.append(f.with_type(type_))
    schema = pa.schema(fields)
    daft = Schema.from_pyarrow_schema(schema)
    for field in daft:
        if field.dtype.is_python():
            raise PlanError(f"engine='ray': column {field.name!r} of {what} has the type "
                            f"{schema.field(field.name).type}, which Daft cannot hold; cast it "
                            "in the query or use engine='local'")
    return schema


def daft_types(schema: pa.Schema) -> Schema:
    """The Daft schema of batches of ``schema`` as Daft converts them: for some types not
    ``Schema.from_pyarrow_schema``'s (``arrow.uuid`` is Daft's ``UUID`` in a batch, an
    ``Extension`` in a schema), and a read whose batches differ from its schema fails. Taken
    from a row of nulls (Daft types an empty table by its schema)."""
    nulls = pa.table({field.name: pa.nulls(1, field.type) for field in schema})
    return RecordBatch.from_arrow_table(nulls).schema()


def as_daft(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> RecordBatch:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return RecordBatch.from_arrow_table(table.cast(schema))


class FragmentTask(DataSourceTask):
    """One part of one fragment, read in a worker process."""

    def __init__(self, opening: Opening, fragment: Fragment, params: Any,
                 predicate: str | None, schema: pa.Schema) -> None:
        self.opening, self.fragment, self.params = opening, fragment, worker.to_wire(params)
        self.predicate, self._arrow = predicate, schema

    @property
    def schema(self) -> Schema:
        return daft_types(self._arrow)

    async def read(self) -> AsyncIterator[RecordBatch]:
        try:
            async for batch in self._read():
                yield batch
        except FedQueryError as exc:
            raise worker.CarriedError(exc) from None

    async def _read(self) -> AsyncIterator[RecordBatch]:
        con = self.opening.connection()
        pending: list[pa.RecordBatch] = []
        rows = 0
        for batch in worker.open_fragment(con._session, self.fragment,
                                              worker.from_wire(self.params), self.predicate):
            pending.append(batch)
            rows += batch.num_rows
            if rows >= TASK_ROWS:
                yield as_daft(pa.Table.from_batches(pending), self._arrow)
                pending, rows = [], 0
        if pending:
            yield as_daft(pa.Table.from_batches(pending), self._arrow)


class FragmentSource(DataSource):
    """A fragment split into ``parts`` (scan requests of its parts; one: read whole)."""

    def __init__(self, opening: Opening, fragment: Fragment, params: Any, predicate: str | None,
                 schema: pa.Schema, parts: list | None = None) -> None:
        self.opening, self.fragment, self.params, self.predicate = opening, fragment, params, predicate
        self._arrow = schema
        self.parts = parts or [fragment.request]

    @property
    def name(self) -> str:
        return f"fedquery {self.fragment.name} ({self.fragment.source})"

    @property
    def schema(self) -> Schema:
        return daft_types(self._arrow)

    async def get_tasks(self, pushdowns: Any) -> AsyncIterator[DataSourceTask]:
        for request in self.parts:
            fragment = self.fragment if request is None else replace(self.fragment, request=request)
            yield FragmentTask(self.opening, fragment, self.params, self.predicate, self._arrow)
