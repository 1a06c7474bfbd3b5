"""The pictures a notebook table shows: thumbnails of images, plots of point clouds.

A string is previewed when it names a file of a declared files source: in a blob column (or
anywhere inside one, such as an entity's list of frames) it resolves against that column's
source, and a file that cannot be shown gets its reason; anywhere else (a URI computed in the
query, a member of a list) an image or point-cloud name is tried against the declared roots,
and shown only if it is a file inside one (nothing is said otherwise). Resolution and reads are
the blob functions' (``Blobs``: confined to the roots, capped by the source's limits). Image
bytes (``thumbnail(...)``) are shown too. Thumbnails are JPEG (PNG when transparent), plots
PNG. At most ``MAX_PREVIEWS`` are made per table, together in the blob I/O pool; making one
never raises.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedquery.errors import FedQueryError
from fedquery.functions.blobs import kind_of

if TYPE_CHECKING:
    from fedquery.functions.blobs import Blob, Blobs

THUMB_PX = 96  # the longer side of a thumbnail in a table cell
NESTED_PX = 48  # ... in a nested table
MAX_PREVIEWS = 64  # previews one table makes, at most
MAX_FILE_BYTES = 64 << 20  # a file larger than this is not read for a preview
MAX_URI_CHARS = 2048  # a longer string is not taken for a URI
MAX_PLOT_POINTS = 20_000
JPEG_QUALITY = 75


@dataclass(frozen=True)
class Preview:
    """What a cell shows: an image (``data`` of type ``mime``), or the reason there is none."""

    data: bytes | None = None
    mime: str = "image/jpeg"
    error: str | None = None


@dataclass(frozen=True)
class Want:
    """One preview to make: a URI (``declared``: in a blob column of ``source``) or bytes."""

    value: str | bytes
    source: str | None
    declared: bool
    px: int


class Previews:
    """The previews of one table: asked for while it is rendered a first time (``ask`` gives
    None then), made together (``make``), looked up while it is rendered again."""

    def __init__(self, blobs: Blobs | None, limit: int = MAX_PREVIEWS) -> None:
        self.blobs, self.limit = blobs, limit
        self.wanted: dict[Want, None] = {}
        self.made: dict[Want, Preview] | None = None
        self.left_out = 0

    def ask(self, value: Any, source: str | None, declared: bool, px: int) -> Preview | None:
        """The preview of ``value`` once made; None when it has none (or not yet)."""
        want = _want(value, source, declared, px, self.blobs)
        if want is None:
            return None
        if self.made is not None:
            return self.made.get(want)
        if want not in self.wanted:
            if len(self.wanted) >= self.limit:
                self.left_out += 1
                return None
            self.wanted[want] = None
        return None

    def make(self) -> None:
        """Make every preview asked for, in the blob I/O pool (in turn without one)."""
        wants = list(self.wanted)
        if self.blobs is not None and wants:
            made = self.blobs.map(lambda w: _made(w, self.blobs), wants)
        else:
            made = [_made(w, None) for w in wants]
        self.made = {w: p for w, p in zip(wants, made, strict=True) if p is not None}


def _want(value: Any, source: str | None, declared: bool, px: int,
          blobs: Blobs | None) -> Want | None:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return Want(data, None, False, px) if is_image_bytes(data) else None
    if (not isinstance(value, str) or blobs is None or not blobs.roots
            or len(value) > MAX_URI_CHARS or "\n" in value or kind_of(value) is None):
        return None
    return Want(value, source, declared, px)


def _made(want: Want, blobs: Blobs | None) -> Preview | None:
    """The preview, the reason there is none (declared URIs), or None (a guess that failed)."""
    try:
        if isinstance(want.value, bytes):
            return image_preview(want.value, want.px)
        if want.declared:
            return _declared(want, blobs)
        return _guessed(want, blobs)
    except Exception as exc:  # noqa: BLE001 - a preview never breaks the table
        if not want.declared and not isinstance(want.value, bytes):
            return None
        return Preview(error=short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


def _declared(want: Want, blobs: Blobs) -> Preview:
    try:
        blob = blobs.resolve(want.value, want.source)
        return _file_preview(blob, want, blobs)
    except FedQueryError as exc:
        return Preview(error=short(str(exc)))
    except (OSError, ValueError) as exc:
        return Preview(error="file not found" if _missing(exc) else short(str(exc)))


def _guessed(want: Want, blobs: Blobs) -> Preview | None:
    """The first declared root that holds the file: a full URI or absolute path names its root,
    a relative one is tried in each root in turn (a missing file: the next one)."""
    uri = want.value
    sources = [None] if "://" in uri or uri.startswith("/") else list(blobs.roots)
    for source in sources:
        try:
            return _file_preview(blobs.resolve(uri, source), want, blobs)
        except (OSError, ValueError) as exc:
            if not _missing(exc):
                return None
        except FedQueryError:
            return None
    return None


def _file_preview(blob: Blob, want: Want, blobs: Blobs) -> Preview:
    """Read the file within the source's cap for its kind (and ``MAX_FILE_BYTES``)."""
    image = kind_of(want.value) == "image"
    data, size = blobs.read(blob, MAX_FILE_BYTES + 1,
                            limit="thumbnail" if image else "read_pointcloud")
    if len(data) > MAX_FILE_BYTES:
        return Preview(error=f"file too large to preview ({size} bytes)")
    if image:
        return image_preview(data, want.px, blob.root.limit("thumbnail_pixels"))
    return pointcloud_preview(data, blob.path, want.px)


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower()


# ---------------------------------------------------------------- pictures


def image_preview(data: bytes, px: int, max_pixels: int | None = None) -> Preview:
    """A thumbnail of encoded image bytes: JPEG, or PNG when it is transparent."""
    from fedquery.functions.images import THUMBNAIL_PIXELS, thumbnail_png

    png = thumbnail_png(data, px, max_pixels or THUMBNAIL_PIXELS)
    if png is None:
        return Preview(error="not a readable image")
    return web_image(png)


def web_image(png: bytes) -> Preview:
    """A small PNG as JPEG (about a third of the bytes for a photo), unless some pixel is
    transparent: then it stays PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        if _transparent(img):
            return Preview(png, "image/png")
        out = io.BytesIO()
        img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16") else "RGB").save(
            out, "JPEG", quality=JPEG_QUALITY)
    return Preview(out.getvalue(), "image/jpeg")


def _transparent(img: Any) -> bool:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").getchannel("A").getextrema()[0] < 255
    return "transparency" in img.info


def pointcloud_preview(data: bytes, name: str, px: int) -> Preview:
    from fedquery.functions.pointclouds import read_pointcloud_from

    table = read_pointcloud_from(data, name)
    if table is None:
        return Preview(error="not a readable point cloud")
    plot = top_down_png(table.column("x").to_numpy(), table.column("y").to_numpy(), px)
    return Preview(plot, "image/png")  # a few coloured dots on white: JPEG would blur them


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


def is_image_bytes(data: bytes) -> bool:
    """PNG or JPEG bytes (what ``thumbnail`` and ``read_blob`` of a picture give)."""
    return data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")


def short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
