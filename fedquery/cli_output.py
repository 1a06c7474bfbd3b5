"""How the ``fedquery`` command writes rows: CSV, JSON lines, a text table or Parquet.

Rows are written record batch by record batch as the query yields them, so memory holds one
batch at a time whatever the size of the result, and the first rows appear before the query
ends. Values are written as ``fedquery.cli_values`` describes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import pyarrow as pa

from fedquery.cli_values import csv_text, json_text
from fedquery.pyvalues import python_rows

FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROWS = 40    # rows a text table shows unless --max-rows says otherwise
CELL_WIDTH = 40    # characters of one table cell
SLICE_ROWS = 8192  # rows converted to Python values at a time


def write_csv(reader: pa.RecordBatchReader, out: IO[str]) -> None:
    """A header line, then one line a row; a NULL is an empty field, ``""`` an empty string."""
    out.write(",".join(_quoted(name) for name in reader.schema.names) + "\n")
    kinds = reader.schema.types
    for rows in _row_batches(reader):
        out.write("".join(",".join(_quoted(csv_text(v, k)) for v, k in zip(row, kinds, strict=True))
                          + "\n" for row in rows))
        out.flush()


def write_json(reader: pa.RecordBatchReader, out: IO[str]) -> None:
    """JSON lines: one object a row, keys in column order."""
    keys = [json_text(name) + ":" for name in reader.schema.names]
    kinds = reader.schema.types
    for rows in _row_batches(reader):
        out.write("".join("{" + ",".join(k + json_text(v, t)
                                         for k, v, t in zip(keys, row, kinds, strict=True))
                          + "}\n" for row in rows))
        out.flush()


def write_parquet(reader: pa.RecordBatchReader, out: IO[bytes]) -> None:
    """One Parquet file, a row group a batch or more (pyarrow's writer)."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def write_table(reader: pa.RecordBatchReader, out: IO[str], max_rows: int | None = TABLE_ROWS
                ) -> None:
    """A text table of the first ``max_rows`` rows (None: all), then how many were not shown."""
    out.write(table_text(reader.schema, _row_batches(reader), max_rows))


def format_table(table: pa.Table, max_rows: int | None = TABLE_ROWS) -> str:
    """A plain-text table of the first rows of ``table``, columns padded to their widest value."""
    return table_text(table.schema, _row_batches(table.to_reader()), max_rows)


def table_text(schema: pa.Schema, batches: Iterable[list[tuple]], max_rows: int | None) -> str:
    """Rows past ``max_rows`` are counted, not kept."""
    names, kinds = schema.names, schema.types
    shown: list[list[str]] = []
    total = 0
    for rows in batches:
        room = len(rows) if max_rows is None else max(max_rows - len(shown), 0)
        shown += [[_cell(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows[:room]]
        total += len(rows)
    widths = [max([len(n)] + [len(r[i]) for r in shown]) for i, n in enumerate(names)]
    lines = [" | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip(),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in shown]
    if total > len(shown):
        lines.append(f"... {total - len(shown)} more rows not shown (--max-rows N, or all)")
    lines.append(f"({total} rows)")
    return "\n".join(lines) + "\n"


def _row_batches(reader: pa.RecordBatchReader) -> Iterator[list[tuple]]:
    """The rows of each batch, ``SLICE_ROWS`` at a time, as tuples of Python values (those
    ``fetchall`` gives): a batch of a million rows is never held as Python objects at once."""
    for batch in reader:
        for start in range(0, batch.num_rows, SLICE_ROWS):
            part = batch.slice(start, SLICE_ROWS)
            rows = python_rows(part)
            # an INTERVAL keeps its months and days (DuckDB's text), not a timedelta of days
            intervals = [i for i, f in enumerate(part.schema) if pa.types.is_interval(f.type)]
            if intervals:
                raw = {i: part.column(i).to_pylist() for i in intervals}
                rows = [tuple(raw[i][r] if i in raw else v for i, v in enumerate(row))
                        for r, row in enumerate(rows)]
            yield rows


def _quoted(text: str | None) -> str:
    """A CSV field: quoted when it holds a comma, quote or line break, or is empty."""
    if text is None:
        return ""
    if text == "" or any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _cell(value: Any, kind: pa.DataType) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = csv_text(value, kind) or ""
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"
