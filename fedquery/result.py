"""The result of a query: run lazily, on first fetch, as a stream of Arrow record batches.

Every method, and the stream ``batches()`` returns, lets only ``FedQueryError`` out, with the
catalog's secrets masked (``fedquery.boundary``). Python values are DuckDB's client's
(``fedquery.pyvalues``). A result not yet fetched cannot run once its connection is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.boundary import CLOSED, boundary, guarded_batches
from fedquery.errors import FedQueryError, PlanError
from fedquery.pyvalues import has_temporal, python_rows

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

    def __init__(self, session: Session, plan: Plan, params: Any,
                 closed: Callable[[], bool] = lambda: False) -> None:
        self._session, self._plan, self._params = session, plan, params
        self._closed = closed
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
            self._check_open()
            reader = self._session.run(self._plan, self._params).reader()
            return guarded_batches(reader, self._session.secrets, self._sources(),
                                   closed=self._closed)

    def arrow(self) -> pa.Table:
        """All rows as a ``pyarrow.Table`` (runs the query once, then cached)."""
        if self._table is None:
            with self._guard():
                self._check_open()
                self._table = self._session.table(self._plan, self._params)
        return self._table

    def df(self) -> pandas.DataFrame:
        """All rows as a pandas DataFrame."""
        table = self.arrow()
        with self._guard():
            try:
                return table.to_pandas()
            except (OverflowError, ValueError) as exc:
                if not any(has_temporal(f.type) for f in table.schema):
                    raise
                raise PlanError(f"a date or timestamp of the result is outside the range pandas "
                                f"can hold ({exc}); cast it to VARCHAR in the query, or use "
                                "arrow() or fetchall()") from exc

    def fetchall(self) -> list[tuple]:
        """All rows as a list of tuples, with the values DuckDB's Python client gives (a date
        or timestamp outside Python's range as its text, an infinite one as the largest or
        smallest ``datetime``)."""
        table = self.arrow()
        with self._guard():
            return python_rows(table)

    def __len__(self) -> int:
        return self.arrow().num_rows

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """The API boundary for this result: its catalog's secrets, its plan's sources; a
        failure once the connection is closed says so."""
        secrets = self._session.secrets if self._session is not None else None
        with boundary(secrets, sources=self._sources(), closed=self._closed):
            yield

    def _check_open(self) -> None:
        if self._closed():
            raise FedQueryError(CLOSED)

    def _sources(self) -> list[str]:
        return [f.source for f in self._plan.fragments] if self._plan is not None else []

    def __repr__(self) -> str:
        if self._table is None:
            return f"<fedquery.Result columns={self.columns} (not fetched)>"
        return f"<fedquery.Result {self._table.num_rows} rows x {len(self.columns)} columns>"

    def _repr_html_(self) -> str:
        """The first rows as an HTML table (``fedquery.notebook``): shape, types, thumbnails of
        files, nested values; a query that fails shows its error, not a traceback."""
        from fedquery.notebook import render_error, render_html

        try:
            with self._guard():
                head = _first_rows(self.batches(), HTML_ROWS + 1)
                functions = self._session.functions if self._session is not None else None
                plan = self._plan
                return render_html(
                    self.columns, head[:HTML_ROWS], more=len(head) > HTML_ROWS,
                    types=list(plan.types) if plan is not None else None,
                    row_count=self._table.num_rows if self._table is not None else None,
                    blob_columns=dict(plan.blob_columns) if plan is not None else {},
                    blobs=functions.blobs if functions is not None else None)
        except KeyboardInterrupt:
            raise  # Ctrl-C is never turned into output
        except FedQueryError as exc:
            return render_error(exc)


def _first_rows(reader: pa.RecordBatchReader, n: int) -> list[tuple]:
    rows: list[tuple] = []
    for batch in reader:
        rows.extend(python_rows(batch.slice(0, n - len(rows))))
        if len(rows) >= n:
            break
    return rows

