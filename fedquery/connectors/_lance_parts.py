"""A Lance table's scan in parts: groups of its fragments, at the version the driver saw.

A part names the dataset version first (``v<N>``), then fragment ids. A worker whose dataset
is at another version (the table was written since the query was planned) refuses the part
with a ``SourceError`` rather than read fragments of another version. A part is read through
Lance's own scanner (deletions applied), only the columns the request needs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from fedquery.errors import SourceError

if TYPE_CHECKING:
    import pyarrow as pa

    from fedquery.connectors.base import ScanRequest


def split(dataset: Any, request: ScanRequest, parts: int) -> list[ScanRequest]:
    ids = [str(f.fragment_id) for f in dataset.get_fragments()]
    count = min(parts, len(ids))
    if count <= 1 or request.limit is not None or request.vector is not None:
        return [request]
    version = f"v{dataset.version}"
    return [replace(request, part=(version, *ids[i::count])) for i in range(count)]


def reader(dataset: Any, request: ScanRequest, source: str) -> pa.RecordBatchReader:
    """The rows of the part's fragments, with the columns the request reads."""
    version, *ids = request.part
    if version != f"v{dataset.version}":
        raise SourceError(f"table {request.table}: it changed since the query was planned "
                          f"({version} then, v{dataset.version} now); run the query again",
                          source=source)
    fragments = [dataset.get_fragment(int(i)) for i in ids]
    return dataset.scanner(fragments=fragments, columns=_needed(dataset, request)).to_reader()


def _needed(dataset: Any, request: ScanRequest) -> list[str] | None:
    if request.columns is None:
        return None
    names = set(request.columns)
    if request.filter:
        names |= {c.name for c in sqlglot.parse_one(request.filter, dialect="duckdb").find_all(exp.Column)}
    if request.keys is not None:
        names.add(request.keys.column)
    names |= {c.name for key in request.order_by
              for c in sqlglot.parse_one(key, dialect="duckdb").find_all(exp.Column)}
    schema = dataset.schema.names
    return [n for n in schema if n in names]
