"""The result of a query: run on first fetch, then kept, like a DuckDB relation's.

The first ``arrow()``, ``df()``, ``fetchall()``, ``pl()``, ``fetchone()`` (...) runs the query
once and keeps the table; every later call, and every display, reads the kept table. A display
(``_repr_html_``, ``repr``) of a result not fetched yet runs the query for its first rows only
(``fedquery.preview``) and keeps those apart. Every method, and the stream ``batches()``
returns, lets only ``FedQueryError`` out, with the catalog's secrets masked
(``fedquery.boundary``). Python values and DataFrames are DuckDB's client's
(``fedquery.pyvalues``). A result not yet fetched cannot run once its connection is closed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedquery.boundary import CLOSED, boundary, guarded_batches
from fedquery.errors import FedQueryError, PlanError, QueryCancelled
from fedquery.pyvalues import pandas_frame, python_rows

if TYPE_CHECKING:
    import pandas
    import polars

    from fedquery.control import QueryControl
    from fedquery.execute import Session
    from fedquery.plan import Plan

HTML_ROWS = 20
FETCH_BLOCK = 2048  # rows fetchone/fetchmany convert to Python at a time

# (plan, parameter values) of the query limited to a number of rows; None: no cheaper query
Preview = Callable[[int], "tuple[Plan, Any] | None"]


class Result:
    """Rows of one query. ``batches()`` streams; every other read runs once and keeps the table.

    >>> con.sql("SELECT 42 AS answer").fetchall()  # doctest: +SKIP
    [(42,)]
    """

    def __init__(self, session: Session, plan: Plan, params: Any,
                 closed: Callable[[], bool] = lambda: False, preview: Preview | None = None,
                 timeout: float | None = None) -> None:
        self._session, self._plan, self._params = session, plan, params
        self._closed, self._preview, self._timeout = closed, preview, timeout
        self._control: QueryControl | None = None  # the run going on now, if any
        self._table: pa.Table | None = None
        self._head: pa.Table | None = None  # the first rows, from a display's limited run
        self._lock = threading.RLock()  # one run, whichever thread reads first
        self._position, self._block_start, self._block = 0, 0, []

    @property
    def columns(self) -> list[str]:
        """Output column names, known before anything runs."""
        return list(self._plan.columns)

    @property
    def types(self) -> list[str]:
        """DuckDB's type name of each column (``'BIGINT'``, ``'FLOAT[512]'``), known before
        anything runs."""
        return list(self._plan.types)

    @property
    def shape(self) -> tuple[int | None, int]:
        """(rows, columns); rows is None until the result is fetched (a display alone fetches
        only the first rows, unless they are all)."""
        rows = self._table.num_rows if self._table is not None else None
        return rows, len(self.columns)

    def batches(self) -> pa.RecordBatchReader:
        """A stream of record batches; each call runs the query again unless it was fetched."""
        if self._table is not None:
            return self._table.to_reader()
        with self._guard():
            self._check_open()
            reader = self._session.run(self._plan, self._params, control=self._new_control(),
                                       max_rows=self._session.settings.max_rows).reader()
            return guarded_batches(reader, self._session.secrets, self._sources(),
                                   closed=self._closed)

    def arrow(self) -> pa.Table:
        """All rows as a ``pyarrow.Table`` (runs the query once, then kept)."""
        with self._lock:
            if self._table is None:
                with self._guard():
                    self._check_open()
                    self._table = self._session.table(self._plan, self._params,
                                                      control=self._new_control(),
                                                      max_rows=self._session.settings.max_rows)
        return self._table

    def cancel(self) -> None:
        """Stop this result's query if it runs (from any thread): its caller gets
        ``QueryCancelled`` within a fraction of a second; the connection stays usable."""
        control = self._control
        if control is not None:
            control.stop(QueryCancelled("the query was cancelled by Result.cancel()"))

    def _new_control(self) -> QueryControl:
        self._control = self._session.control(self._timeout)
        return self._control

    def df(self) -> pandas.DataFrame:
        """All rows as the pandas DataFrame DuckDB's ``df()`` gives for the same query."""
        table = self.arrow()
        with self._guard():
            return pandas_frame(table, self.types)

    def pl(self) -> polars.DataFrame:
        """All rows as a polars DataFrame (needs ``polars``)."""
        table = self.arrow()
        with self._guard():
            try:
                import polars as pl
            except ImportError as exc:
                raise FedQueryError("Result.pl() needs polars: pip install polars") from exc
            try:
                return pl.from_arrow(table)
            except pl.exceptions.PolarsError as exc:
                raise PlanError(f"polars cannot hold the result ({str(exc).splitlines()[0]}); "
                                "cast the column in the query, or use arrow() or df()") from exc

    def fetchall(self) -> list[tuple]:
        """All rows as a list of tuples, with the values DuckDB's Python client gives (a
        HUGEINT sum as an ``int``, a date or timestamp outside Python's range as its text).
        Every row, whatever ``fetchone`` and ``fetchmany`` have read."""
        table = self.arrow()
        with self._guard():
            return python_rows(table, self.types)

    def fetchone(self) -> tuple | None:
        """The next row of the kept table (the first, on the first call); None past the end."""
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, n: int = 1) -> list[tuple]:
        """The next ``n`` rows of the kept table (fewer at its end, none past it)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PlanError(f"fetchmany: n must be a count of rows (int >= 0), got {n!r}")
        table = self.arrow()
        with self._lock, self._guard():
            rows: list[tuple] = []
            while len(rows) < n and self._position < table.num_rows:
                offset = self._position - self._block_start
                if not 0 <= offset < len(self._block):
                    self._block_start, offset = self._position, 0
                    size = max(n - len(rows), FETCH_BLOCK)
                    self._block = python_rows(table.slice(self._position, size), self.types)
                taken = self._block[offset: offset + n - len(rows)]
                rows += taken
                self._position += len(taken)
            return rows

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        """The Arrow PyCapsule stream of the kept table: ``pa.table(res)``, ``pl.DataFrame(res)``
        and DuckDB's ``FROM res`` read it (the query runs once)."""
        table = self.arrow()
        with self._guard():
            return table.__arrow_c_stream__(requested_schema)

    def __len__(self) -> int:
        """The row count (fetches the result)."""
        return self.arrow().num_rows

    def __repr__(self) -> str:
        """The shape and the first rows (a result not fetched runs for those rows only); a
        query that fails shows its error in one line."""
        from fedquery.preview import text_table

        try:
            head, more = self._first_rows()
            rows = (f"{self._table.num_rows:,}" if self._table is not None
                    else f"{HTML_ROWS}+" if more else f"{head.num_rows}")
            title = (f"<fedquery.Result {rows} {'row' if rows == '1' else 'rows'} x "
                     f"{len(self.columns)} {'column' if len(self.columns) == 1 else 'columns'}>")
            with self._guard():
                body = text_table(self.columns, self.types,
                                  python_rows(head.slice(0, HTML_ROWS), self.types), more=more)
        except KeyboardInterrupt:
            raise  # Ctrl-C is never turned into output
        except FedQueryError as exc:
            return f"<fedquery.Result columns={self.columns}: {type(exc).__name__}: {exc}>"
        return f"{title}\n{body}"

    def _repr_html_(self) -> str:
        """The first rows as an HTML table (``fedquery.notebook``): shape, types, thumbnails of
        files, nested values; a query that fails shows its error, not a traceback."""
        from fedquery.notebook import render_error, render_html

        try:
            head, more = self._first_rows()
            with self._guard():
                rows = python_rows(head.slice(0, HTML_ROWS), self.types)
                functions = self._session.functions if self._session is not None else None
                plan = self._plan
                return render_html(
                    self.columns, rows, more=more,
                    types=list(plan.types) if plan is not None else None,
                    row_count=self._table.num_rows if self._table is not None else None,
                    blob_columns=dict(plan.blob_columns) if plan is not None else {},
                    blobs=functions.blobs if functions is not None else None)
        except KeyboardInterrupt:
            raise  # Ctrl-C is never turned into output
        except FedQueryError as exc:
            return render_error(exc)

    def _first_rows(self) -> tuple[pa.Table, bool]:
        """The rows a display shows (and one more, to tell whether there are more): from the
        kept table, else from a run of the query limited to them, kept apart (if that run gave
        every row, it is the result and is kept as such)."""
        wanted = HTML_ROWS + 1
        with self._lock:
            if self._table is None and self._head is None:
                self._head = self._run_preview(wanted)
                if self._head is not None and self._head.num_rows < wanted:
                    self._table = self._head
            head = self._table if self._table is not None else self._head
            if head is None:
                head = self.arrow()
        return head.slice(0, wanted), head.num_rows > HTML_ROWS

    def _run_preview(self, rows: int) -> pa.Table | None:
        """The first ``rows`` rows by a run of the limited query (None: there is none)."""
        if self._preview is None:
            return None
        with self._guard():
            self._check_open()
            limited = self._preview(rows)
            if limited is None or len(limited[0].columns) != len(self.columns):
                return None
            plan, params = limited
            table = self._session.table(plan, params, control=self._new_control())
            return table.rename_columns(self.columns) if table.num_columns else table

    def _guard(self) -> boundary:
        """The API boundary for this result: its catalog's secrets, its plan's sources; a
        failure once the connection is closed says so (returned as it is, so the traceback it
        trims is not put back by a generator)."""
        secrets = self._session.secrets if self._session is not None else None
        return boundary(secrets, sources=self._sources(), closed=self._closed)

    def _check_open(self) -> None:
        if self._closed():
            raise FedQueryError(CLOSED)

    def _sources(self) -> list[str]:
        return [f.source for f in self._plan.fragments] if self._plan is not None else []
