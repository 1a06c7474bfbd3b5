"""The result of a query: run lazily, on first fetch, as a stream of Arrow record batches.

Every method, and the stream ``batches()`` returns, lets only ``FedQueryError`` out, with the
catalog's secrets masked (``fedquery.boundary``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.boundary import boundary, guarded_batches

if TYPE_CHECKING:
    import pandas

    from fedquery.execute import Session
    from fedquery.plan import Plan

HTML_ROWS = 20


class Result:
    """Rows of one query. ``batches()`` streams; ``arrow()`` runs once and keeps the table.

    >>> con.sql("SELECT 42 AS answer").fetchall()  # doctest: +SKIP
    [(42,)]
    """

    def __init__(self, session: Session, plan: Plan, params: Any) -> None:
        self._session, self._plan, self._params = session, plan, params
        self._table: pa.Table | None = None

    @property
    def columns(self) -> list[str]:
        """Output column names, known before anything runs."""
        return list(self._plan.columns)

    def batches(self) -> pa.RecordBatchReader:
        """A stream of record batches; each call runs the query again unless it was fetched."""
        if self._table is not None:
            return self._table.to_reader()
        with self._guard():
            reader = self._session.run(self._plan, self._params).reader()
            return guarded_batches(reader, self._session.secrets, self._sources())

    def arrow(self) -> pa.Table:
        """All rows as a ``pyarrow.Table`` (runs the query once, then cached)."""
        if self._table is None:
            with self._guard():
                self._table = self._session.run(self._plan, self._params).table()
        return self._table

    def df(self) -> pandas.DataFrame:
        """All rows as a pandas DataFrame."""
        table = self.arrow()
        with self._guard():
            return table.to_pandas()

    def fetchall(self) -> list[tuple]:
        """All rows as a list of tuples."""
        table = self.arrow()
        with self._guard():
            columns = [c.to_pylist() for c in table.columns]
            return list(zip(*columns, strict=True)) if columns else []

    def __len__(self) -> int:
        return self.arrow().num_rows

    def _guard(self):
        """The API boundary for this result: its catalog's secrets, its plan's sources."""
        secrets = self._session.secrets if self._session is not None else None
        return boundary(secrets, sources=self._sources())

    def _sources(self) -> list[str]:
        return [f.source for f in self._plan.fragments] if self._plan is not None else []

    def __repr__(self) -> str:
        if self._table is None:
            return f"<fedquery.Result columns={self.columns} (not fetched)>"
        return f"<fedquery.Result {self._table.num_rows} rows x {len(self.columns)} columns>"

    def _repr_html_(self) -> str:
        """The first rows as an HTML table: thumbnails for image and point-cloud URI columns
        and image bytes, every other value escaped, the whole capped in size."""
        from fedquery.notebook import render_html

        head = _first_rows(self.batches(), HTML_ROWS + 1)
        with self._guard():
            functions = self._session.functions if self._session is not None else None
            blob_columns = dict(self._plan.blob_columns) if self._plan is not None else {}
            return render_html(self.columns, head[:HTML_ROWS], more=len(head) > HTML_ROWS,
                               blob_columns=blob_columns,
                               blobs=functions.blobs if functions is not None else None)


def _first_rows(reader: pa.RecordBatchReader, n: int) -> list[tuple]:
    rows: list[tuple] = []
    for batch in reader:
        columns = [c.to_pylist() for c in batch.slice(0, n - len(rows)).columns]
        rows.extend(zip(*columns, strict=True))
        if len(rows) >= n:
            break
    return rows

