"""HTML for Jupyter: the first rows of a result, with thumbnails for images and point clouds.

Image URI columns (blob columns whose files are images) show a small PNG thumbnail, point-cloud
URI columns a top-down x/y plot, and BLOB values that are PNG or JPEG bytes the image itself.
Files are read through the session's ``Blobs`` (confined to the declared roots, in its I/O pool);
a file that is refused, missing or unreadable shows its escaped URI and a short reason, and
rendering never raises for it. Every value is HTML-escaped; the whole document is capped in size,
and images beyond the cap are left out (with a note).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedquery.errors import FedQueryError
from fedquery.functions.blobs import kind_of

if TYPE_CHECKING:
    from fedquery.functions.blobs import Blobs

THUMB_PX = 96
MAX_HTML_BYTES = 2 << 20
MAX_FILE_BYTES = 64 << 20  # a file larger than this is not read for a preview
MAX_PLOT_POINTS = 20_000
TEXT_LIMIT = 200


@dataclass(frozen=True)
class Preview:
    """What a cell shows: a PNG, or the reason there is none."""

    png: bytes | None = None
    error: str | None = None


def render_html(columns: Sequence[str], rows: Sequence[tuple], *, more: bool,
                blob_columns: dict[str, str] | None = None, blobs: Blobs | None = None,
                max_bytes: int = MAX_HTML_BYTES) -> str:
    """An HTML table of ``rows``; ``blob_columns`` maps a column name to its files source."""
    blob_columns = blob_columns or {}
    sources = [blob_columns.get(name) if blobs is not None else None for name in columns]
    previews = _previews(rows, sources, blobs)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    head = f"<table><thead><tr>{header}</tr></thead><tbody>"
    tail = "</tbody></table>"
    parts, size, omitted = [head], len(head) + len(tail) + 200, 0
    for r, row in enumerate(rows):
        cells = []
        for c, value in enumerate(row):
            preview = previews.get((r, c))
            cell = _cell(value, preview)
            if preview is not None and preview.png is not None and size + len(cell) > max_bytes:
                omitted += 1
                cell = _cell(value, Preview(error="image left out: size cap"))
            size += len(cell)
            cells.append(cell)
        parts.append("<tr>" + "".join(cells) + "</tr>")
        size += 9
    parts.append(tail)
    if omitted:
        parts.append(f"<p>{omitted} image(s) left out: the output is capped at "
                     f"{max_bytes // 1024} KiB</p>")
    if more:
        parts.append("<p>… more rows</p>")
    return "".join(parts)


# ---------------------------------------------------------------- previews


def _previews(rows: Sequence[tuple], sources: list[str | None],
              blobs: Blobs | None) -> dict[tuple[int, int], Preview]:
    """A preview for every cell that can have one, made in the blob I/O pool."""
    jobs: list[tuple[tuple[int, int], Any, str | None]] = []
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, bytes | bytearray | memoryview):
                if _is_image_bytes(bytes(value)):
                    jobs.append(((r, c), bytes(value), None))
            elif isinstance(value, str) and sources[c] is not None and kind_of(value):
                jobs.append(((r, c), value, sources[c]))
    if not jobs:
        return {}

    def make(job: tuple[tuple[int, int], Any, str | None]) -> Preview:
        _, value, source = job
        try:
            if isinstance(value, bytes):
                return _image_preview(value)
            return _uri_preview(value, source, blobs)
        except Exception as exc:  # noqa: BLE001 - a preview never breaks the table
            return Preview(error=_short(str(exc).splitlines()[0] if str(exc) else
                                        type(exc).__name__, 120))

    made = blobs.map(make, jobs) if blobs is not None else [make(j) for j in jobs]
    return {job[0]: preview for job, preview in zip(jobs, made, strict=True)}


def _uri_preview(uri: str, source: str | None, blobs: Blobs) -> Preview:
    try:
        blob = blobs.resolve(uri, source)
        data, size = blobs.read(blob, MAX_FILE_BYTES + 1)
    except FedQueryError as exc:
        return Preview(error=_short(str(exc), 120))
    except (OSError, ValueError) as exc:
        missing = isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower()
        return Preview(error="file not found" if missing else _short(str(exc), 120))
    if len(data) > MAX_FILE_BYTES:
        return Preview(error=f"file too large to preview ({size} bytes)")
    if kind_of(uri) == "image":
        return _image_preview(data)
    return _pointcloud_preview(data, blob.path)


def _image_preview(data: bytes) -> Preview:
    from fedquery.functions.images import thumbnail_png

    png = thumbnail_png(data, THUMB_PX)
    return Preview(png=png) if png is not None else Preview(error="not a readable image")


def _pointcloud_preview(data: bytes, name: str) -> Preview:
    from fedquery.functions.pointclouds import read_pointcloud_from

    table = read_pointcloud_from(data, name)
    if table is None:
        return Preview(error="not a readable point cloud")
    return Preview(png=top_down_png(table.column("x").to_numpy(), table.column("y").to_numpy()))


def top_down_png(x: np.ndarray, y: np.ndarray, size: int = THUMB_PX) -> bytes:
    """A ``size`` x ``size`` PNG of the points seen from above (x right, y up), subsampled."""
    from PIL import Image

    keep = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x, dtype=np.float64)[keep], np.asarray(y, dtype=np.float64)[keep]
    if len(x) > MAX_PLOT_POINTS:
        chosen = np.random.default_rng(0).choice(len(x), MAX_PLOT_POINTS, replace=False)
        x, y = x[chosen], y[chosen]
    pixels = np.full((size, size, 3), 255, dtype=np.uint8)
    if len(x):
        span = max(x.max() - x.min(), y.max() - y.min(), 1e-9)
        cx, cy = (x.max() + x.min()) / 2, (y.max() + y.min()) / 2
        col = np.clip(((x - cx) / span + 0.5) * (size - 1), 0, size - 1).astype(int)
        row = np.clip((0.5 - (y - cy) / span) * (size - 1), 0, size - 1).astype(int)
        pixels[row, col] = (31, 119, 180)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG", optimize=True)
    return out.getvalue()


def _is_image_bytes(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")


# ---------------------------------------------------------------- cells


def _cell(value: Any, preview: Preview | None) -> str:
    text = html.escape(_short(_text(value)))
    if preview is None:
        return f"<td>{text}</td>"
    if preview.png is not None:
        encoded = base64.b64encode(preview.png).decode("ascii")
        title = "" if isinstance(value, bytes | bytearray | memoryview) else f' title="{text}"'
        return f'<td><img src="data:image/png;base64,{encoded}"{title} alt="{text}"></td>'
    reason = html.escape(preview.error or "no preview")
    return f'<td>{text}<br><small style="color:#a00">{reason}</small></td>'


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return str(value)


def _short(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
