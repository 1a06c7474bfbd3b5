"""HTML for Jupyter: the first rows of a result, its shape and types, pictures of its files.

Above the table, its shape (``1,234 rows × 3 columns``; ``at least 21 rows`` when only the
first rows were fetched); under each column name, its DuckDB type. Nested values are compact
nested tables or JSON (``notebook_values``), never Python reprs. A string that names a file of
a declared files source, an image's bytes, and the URIs inside nested values show a thumbnail
(or a point cloud's top-down plot) with the URI under it (``notebook_previews``); a file of a
blob column that cannot be shown shows its URI and the reason. Every value is HTML-escaped and
cut at ``TEXT_LIMIT`` characters; the whole document is capped in size, and images beyond the
cap are left out (with a note). Rendering never raises for a value or a file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fedquery.notebook_previews import (
    NESTED_PX,
    THUMB_PX,
    Preview,
    Previews,
    short,
    top_down_png,
)
from fedquery.notebook_values import (
    NESTED_KEYS,
    NESTED_ROWS,
    as_mapping,
    compact_json,
    is_nested,
    scalar_text,
    struct_rows,
)

if TYPE_CHECKING:
    from fedquery.functions.blobs import Blobs

__all__ = ["MAX_HTML_BYTES", "THUMB_PX", "render_error", "render_html", "top_down_png"]

MAX_HTML_BYTES = 2 << 20
TEXT_LIMIT = 200  # characters of one value's text
INNER_LIMIT = 80  # ... of a value in a nested table
TYPE_LIMIT = 40  # ... of a column's type name (the whole type is its tooltip)
CAPTION_LIMIT = 60  # ... of the URI under a thumbnail (the whole URI is its tooltip)
_SMALL = 'style="font-size:smaller;color:#666;font-weight:normal"'
_NESTED = 'class="fq-nested" style="font-size:smaller;margin:0"'


def render_html(columns: Sequence[str], rows: Sequence[tuple], *, more: bool,
                types: Sequence[str] | None = None, row_count: int | None = None,
                blob_columns: dict[str, str] | None = None, blobs: Blobs | None = None,
                max_bytes: int = MAX_HTML_BYTES) -> str:
    """An HTML table of ``rows`` (the first of the result; ``more``: there are others).

    ``types``: each column's DuckDB type; ``row_count``: the result's rows, when known;
    ``blob_columns``: column name -> files source of its URIs; ``blobs``: reads the files.
    """
    blob_columns = blob_columns or {}
    sources = [blob_columns.get(name) for name in columns]
    previews = Previews(blobs)
    _Table(previews, max_bytes).body(rows, sources)  # the first pass asks for the previews
    previews.make()
    table = _Table(previews, max_bytes)
    body = table.body(rows, sources)
    head = _head(columns, types)
    notes = []
    if table.omitted:
        notes.append(f"{table.omitted} image(s) left out: the output is capped at "
                     f"{max_bytes // 1024} KiB")
    if previews.left_out:
        notes.append(f"{previews.left_out} file(s) not previewed: at most {previews.limit} "
                     "previews a table")
    tail = "".join(f"<p {_SMALL}>{html.escape(n)}</p>" for n in notes)
    shape = f"<p {_SMALL}>{shape_text(len(rows), more, row_count, len(columns))}</p>"
    filler = ('<tr class="fq-more">' + "<td>…</td>" * len(columns) + "</tr>") if more else ""
    return (f'<div class="fedquery">{shape}<table class="fq-result">{head}<tbody>{body}'
            f"{filler}</tbody></table>{tail}</div>")


def render_error(exc: BaseException) -> str:
    """What a display shows for a result whose query failed: the error's kind and message."""
    text = html.escape(f"{type(exc).__name__}: {exc}")
    return (f'<pre class="fq-error" style="color:#a00;white-space:pre-wrap">{text}</pre>')


def shape_text(shown: int, more: bool, row_count: int | None, columns: int) -> str:
    """``1,234 rows × 3 columns (the first 20 shown)``, or ``at least 21 rows`` when the count
    is not known."""
    cols = f"{columns:,} column{'' if columns == 1 else 's'}"
    if row_count is None and more:
        return f"at least {shown + 1:,} rows × {cols} (the first {shown:,} shown)"
    count = shown if row_count is None else row_count
    rows = f"{count:,} row{'' if count == 1 else 's'}"
    return f"{rows} × {cols}" + (f" (the first {shown:,} shown)" if count > shown else "")


def _head(columns: Sequence[str], types: Sequence[str] | None) -> str:
    names = "".join(f"<th>{html.escape(short(str(c), TEXT_LIMIT))}</th>" for c in columns)
    if not types or len(types) != len(columns):
        return f"<thead><tr>{names}</tr></thead>"
    kinds = "".join(f'<th {_SMALL} title="{html.escape(str(t))}">'
                    f"{html.escape(short(str(t), TYPE_LIMIT))}</th>" for t in types)
    return f'<thead><tr>{names}</tr><tr class="fq-types">{kinds}</tr></thead>'


class _Table:
    """The rows of one table, each cell's images kept while the document stays under its cap."""

    def __init__(self, previews: Previews, max_bytes: int) -> None:
        self.previews, self.max_bytes = previews, max_bytes
        self.size, self.omitted = 2048, 0  # the head, notes and tags around the rows

    def body(self, rows: Sequence[tuple], sources: list[str | None]) -> str:
        parts = []
        for row in rows:
            cells = [self._cell(value, source) for value, source in zip(row, sources, strict=False)]
            parts.append("<tr>" + "".join(cells) + "</tr>")
            self.size += 9
        return "".join(parts)

    def _cell(self, value: Any, source: str | None) -> str:
        cell = _Cell(self.previews, source)
        try:
            text = f"<td>{cell.top(value)}</td>"
            if cell.images and self.size + len(text) > self.max_bytes:
                self.omitted += cell.images
                text = f"<td>{_Cell(self.previews, source, images=False).top(value)}</td>"
        except Exception:  # noqa: BLE001 - a value that cannot be shown never breaks the table
            text = f"<td>{html.escape(short(scalar_text(value), TEXT_LIMIT))}</td>"
        self.size += len(text)
        return text


class _Cell:
    """One cell's HTML; ``source``: the files source of its column's URIs (None: not a blob
    column); ``images``: False once the document is full (a reason is shown instead)."""

    def __init__(self, previews: Previews, source: str | None, images: bool = True) -> None:
        self.previews, self.source, self.allow = previews, source, images
        self.images = 0

    def top(self, value: Any) -> str:
        rows = struct_rows(value)
        if rows is not None:
            return self._nested_rows(rows)
        mapping = as_mapping(value) if is_nested(value) else None
        if mapping:
            return self._nested_rows([mapping], many=False)
        if is_nested(value):
            return _json(value, TEXT_LIMIT)
        return self._scalar(value, THUMB_PX, TEXT_LIMIT)

    def _inner(self, value: Any) -> str:
        if is_nested(value):
            return _json(value, INNER_LIMIT)
        return self._scalar(value, NESTED_PX, INNER_LIMIT)

    def _scalar(self, value: Any, px: int, limit: int) -> str:
        text = html.escape(short(scalar_text(value, compact=px == NESTED_PX), limit))
        preview = self.previews.ask(value, self.source, self.source is not None, px)
        if preview is None:
            return text
        if preview.data is not None and self.allow:
            self.images += 1
            return _figure(preview, value, px)
        reason = preview.error or "image left out: size cap"
        return f'{text}<br><small style="color:#a00">{html.escape(reason)}</small>'

    def _nested_rows(self, rows: list[dict | None], many: bool = True) -> str:
        """A small table: the fields (first ``NESTED_KEYS``) over the first rows."""
        keys = list(dict.fromkeys(k for row in rows if row for k in row))
        shown = keys[:NESTED_KEYS]
        head = "".join(f"<th>{html.escape(short(str(k), INNER_LIMIT))}</th>" for k in shown)
        if len(keys) > len(shown):
            head += f"<th>… {len(keys) - len(shown)} more</th>"
        body = []
        for row in rows[:NESTED_ROWS]:
            cells = (f'<td colspan="{len(shown)}">NULL</td>' if row is None else
                     "".join(f"<td>{self._inner(row.get(k))}</td>" for k in shown))
            body.append(f"<tr>{cells}</tr>")
        if many and len(rows) > NESTED_ROWS:
            body.append(f'<tr><td colspan="{len(shown)}">… {len(rows) - NESTED_ROWS:,} more '
                        f"({len(rows):,} in all)</td></tr>")
        return f"<table {_NESTED}><tr>{head}</tr>{''.join(body)}</table>"


def _json(value: Any, limit: int) -> str:
    return f"<code>{html.escape(compact_json(value, limit))}</code>"


def _figure(preview: Preview, value: Any, px: int) -> str:
    """The image, and under it the URI (the text of the bytes for an image in a BLOB)."""
    encoded = base64.b64encode(preview.data).decode("ascii")
    whole = html.escape(scalar_text(value))
    caption = html.escape(short(scalar_text(value), CAPTION_LIMIT))
    return (f'<img src="data:{preview.mime};base64,{encoded}" title="{whole}" alt="{whole}">'
            f'<div style="font-size:smaller;max-width:{max(px, 96) * 2}px;'
            f'word-break:break-all">{caption}</div>')
