"""Image headers and thumbnails over bytes the caller has already read.

Nothing here does I/O. `image_info_from` reads headers only (Pillow's lazy `Image.open`, never
`load()`), so the caller passes just a prefix of the file and the file's size:

    head = read_prefix(uri, IMAGE_PREFIX_BYTES)          # 64 KiB: enough for typical JPEG/PNG
    tail = read_range(uri, max(size - IMAGE_TAIL_BYTES, 0), size) if size > len(head) else None
    while True:
        try:
            info = image_info_from(head, size, tail)
            break
        except NeedMoreBytes as more:                     # header goes on past the prefix
            head = read_prefix(uri, more.n)               # more.n <= size, and grows each time

A file longer than the prefix may have lost its end (a copy cut short): its headers still read
fine, so the caller also passes the file's last `IMAGE_TAIL_BYTES` (`tail=`), read with one
ranged read, and a PNG or GIF whose tail lacks its end marker (the IEND chunk, the trailer
';') is reported "truncated". Without `tail` such a file is reported fine. (Not JPEG: phones
append videos after the image, so a JPEG's last bytes say nothing.)

`NeedMoreBytes` is raised only while `len(head) < size` and the bytes start like a known image
format, so the loop ends: once the whole file is passed the answer is final. Every other
problem is reported in the result's `error` field, never raised. Only `DECODED_FORMATS` are
read (their headers parsed, their pixels decoded); another format Pillow recognises is
reported as "format not supported".
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from fedquery.functions.lazy_pil import Image, ImageOps
from fedquery.functions.rows import struct_array

IMAGE_PREFIX_BYTES = 64 * 1024  # the prefix a caller should read first
IMAGE_TAIL_BYTES = 64  # the end of a file a caller passes as `tail` (end markers, a little padding)
# The formats the image functions read, by Pillow's names (JPEG includes its multi-picture MPO
# variant): decoders in C libraries that run no other program. Others Pillow knows (EPS and PS
# call Ghostscript; PSD, FITS, ICNS, ... are rarely seen and little fuzzed) are "not supported".
DECODED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
SUPPORTED_TEXT = "PNG, JPEG, GIF, WebP, BMP and TIFF"
MAX_THUMBNAIL_PX = 4096
THUMBNAIL_PIXELS = 100_000_000  # pixels a thumbnail decodes at most, unless told otherwise
MAX_SIDE = (1 << 31) - 1  # a width or height an INTEGER holds

IMAGE_INFO_TYPE = (
    "STRUCT(format VARCHAR, width INTEGER, height INTEGER, mode VARCHAR, bytes BIGINT, error VARCHAR)"
)
IMAGE_INFO_ARROW = pa.struct(
    [
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("bytes", pa.int64()),
        ("error", pa.string()),
    ]
)


class NeedMoreBytes(Exception):  # noqa: N818 - a request, not an error
    """The bytes end before the header does: read the first `n` bytes of the file and call again."""

    def __init__(self, n: int):
        super().__init__(f"the header goes on past the bytes given: read the first {n} bytes")
        self.n = n


def image_info_from(head: bytes, size: int | None = None, tail: bytes | None = None) -> dict[str, Any]:
    """Format, size and mode of an image from its first bytes (`size`: the file's byte count;
    `tail`: its last `IMAGE_TAIL_BYTES`, to find a lost end when `head` is only a prefix).

    `size=None` means `head` is the whole file. Raises only `NeedMoreBytes` (see module doc).
    """
    size = len(head) if size is None else size
    if size == 0:
        return image_error("empty file", 0)
    if not head:
        raise NeedMoreBytes(min(size, IMAGE_PREFIX_BYTES))
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_info(head, size)
    info = _pillow_info(head, size)
    if info["error"] is None and tail is not None and len(head) < size:
        info["error"] = _tail_end(info["format"], tail[-IMAGE_TAIL_BYTES:])
    return info


def image_error(reason: str, size: int | None = None) -> dict[str, Any]:
    """The info of a file that is missing or unreadable: only `bytes` (if known) and `error`."""
    return {"format": None, "width": None, "height": None, "mode": None, "bytes": size, "error": reason}


def unsupported(fmt: str, size: int | None = None) -> dict[str, Any]:
    """The info of an image in a format the functions do not read (`DECODED_FORMATS`)."""
    return {**image_error(f"format not supported: {fmt} (the image functions read "
                          f"{SUPPORTED_TEXT})", size), "format": fmt}


def open_image(data: bytes | io.BytesIO) -> Image.Image:
    """Pillow's lazy open of encoded bytes, restricted to `DECODED_FORMATS` (raises on others,
    and on anything that is not an image)."""
    return Image.open(data if isinstance(data, io.BytesIO) else io.BytesIO(data),
                      formats=DECODED_FORMATS)


def image_info_array(rows: list[dict[str, Any] | None]) -> pa.StructArray:
    """One `IMAGE_INFO_ARROW` struct per row (a None row becomes a NULL struct; one that does
    not fit, an error row)."""
    return struct_array(rows, IMAGE_INFO_ARROW)


# --- header parsing -------------------------------------------------------------------------


class _Probe(io.BytesIO):
    """A BytesIO that remembers whether a reader ran off its end or asked for everything."""

    ran_out = False
    read_all = False

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        if n is None or n < 0:
            self.read_all = True
        elif len(data) < n:
            self.ran_out = True
        return data


def _pillow_info(head: bytes, size: int) -> dict[str, Any]:
    """Header fields through Pillow's lazy open, restricted to the format the magic bytes name."""
    fmt = _sniff(head)
    if fmt is not None and fmt not in DECODED_FORMATS:
        return unsupported(fmt, size)
    probe = _Probe(head)
    try:  # the plugin's own factory: its real exception, and no pixel-count limit for a header
        img = Image.OPEN[fmt][0](probe, "") if fmt else open_image(probe)
    except Image.DecompressionBombError as exc:
        return image_error(f"too large: {exc}", size)
    except Exception as exc:  # noqa: BLE001 - decoders raise almost anything on bad input
        if fmt and len(head) < size and (probe.ran_out or probe.read_all):
            grown = size if probe.read_all else max(4 * len(head), IMAGE_PREFIX_BYTES)
            raise NeedMoreBytes(min(size, grown)) from None
        return image_error(_open_failure(fmt, exc, probe), size)
    with img:
        if not (0 < img.width <= MAX_SIDE and 0 < img.height <= MAX_SIDE):
            return image_error(f"corrupt: the {img.format} header says {img.width}×{img.height} "
                               "pixels", size)
        info = {"format": img.format, "width": img.width, "height": img.height, "mode": img.mode}
        info.update(bytes=size, error=_truncation(img, head, size, probe.tell()))
    return info


def _sniff(head: bytes) -> str | None:
    """The Pillow plugin whose magic-byte check accepts `head`, those of `DECODED_FORMATS`
    asked first (plugins without a check are skipped)."""
    Image.init()
    for fmt in sorted(Image.ID, key=lambda f: f not in DECODED_FORMATS):
        accept = Image.OPEN[fmt][1]
        try:
            found = accept is not None and accept(head[:16])
        except Exception:  # noqa: BLE001, S112 - a plugin's check tripping on odd bytes means "no"
            continue
        if found and not isinstance(found, str):  # a str: recognised but unsupported here
            return fmt
    return None


def _open_failure(fmt: str | None, exc: Exception, probe: _Probe) -> str:
    """A short reason why a whole file (or a prefix that should have sufficed) did not open."""
    if fmt is None:
        return "not an image: cannot identify image file"
    if probe.ran_out:
        return f"truncated: the file ends inside the {fmt} header"
    return f"corrupt: unreadable {fmt} header ({exc})"[:200]


def _webp_info(head: bytes, size: int) -> dict[str, Any]:
    """WEBP canvas size and mode from the first chunk (Pillow's WEBP open decodes the whole file)."""
    parsed = _webp_header(head)
    if parsed is None:
        if len(head) < min(size, 30):
            raise NeedMoreBytes(min(size, 30))
        return image_error("corrupt: unreadable WEBP header", size)
    width, height, mode = parsed
    if not (width and height):
        return image_error(f"corrupt: the WEBP header says {width}×{height} pixels", size)
    riff_end = int.from_bytes(head[4:8], "little") + 8
    error = f"truncated: WEBP header says {riff_end} bytes, file has {size}" if riff_end > size else None
    return {"format": "WEBP", "width": width, "height": height, "mode": mode, "bytes": size, "error": error}


def _webp_header(s: bytes) -> tuple[int, int, str] | None:
    """(width, height, mode) from a VP8 / VP8L / VP8X chunk header, as libwebp reports them."""
    chunk, le = s[12:16], int.from_bytes
    if chunk == b"VP8 " and len(s) >= 30 and s[23:26] == b"\x9d\x01\x2a":
        return le(s[26:28], "little") & 0x3FFF, le(s[28:30], "little") & 0x3FFF, "RGB"
    if chunk == b"VP8L" and len(s) >= 25 and s[20] == 0x2F:
        bits = le(s[21:25], "little")
        alpha = (bits >> 28) & 1
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "RGBA" if alpha else "RGB"
    if chunk == b"VP8X" and len(s) >= 30:
        alpha = s[20] & 0x10
        return le(s[24:27], "little") + 1, le(s[27:30], "little") + 1, "RGBA" if alpha else "RGB"
    return None


# --- truncation that the headers (or the file's end) give away, without decoding -------------


def _truncation(img: Image.Image, head: bytes, size: int, header_end: int) -> str | None:
    """A "truncated: ..." reason if the headers promise more bytes than the file has."""
    whole = len(head) >= size
    offsets = [tile.offset for tile in getattr(img, "tile", [])]
    if whole and offsets and max(offsets) >= size:
        return f"truncated: image data starts at byte {max(offsets)}, file has {size} bytes"
    check = _FORMAT_CHECKS.get(img.format or "")
    return check(img, head, size, header_end, whole) if check else _raw_extent(img, size)


def _jpeg_end(img: Image.Image, head: bytes, size: int, header_end: int, whole: bool) -> str | None:
    """A whole JPEG has an end-of-image marker after its first scan (entropy data never has FF D9)."""
    if whole and head.find(b"\xff\xd9", header_end) < 0:
        return "truncated: JPEG has no end-of-image marker"
    return None


def _png_end(img: Image.Image, head: bytes, size: int, header_end: int, whole: bool) -> str | None:
    """A whole PNG has an IEND chunk after its image data."""
    if whole and head.rfind(b"IEND", header_end) < 0:
        return "truncated: PNG has no IEND chunk"
    return None


def _gif_end(img: Image.Image, head: bytes, size: int, header_end: int, whole: bool) -> str | None:
    """A whole GIF ends with the trailer byte ';'."""
    if whole and not head[-16:].rstrip(b"\0").endswith(b";"):
        return "truncated: GIF has no trailer"
    return None


def _tiff_strips(img: Image.Image, head: bytes, size: int, header_end: int, whole: bool) -> str | None:
    """Strip or tile offsets plus byte counts (from the IFD) must lie inside the file."""
    tags = getattr(img, "tag_v2", {})
    offsets, counts = tags.get(273) or tags.get(324) or (), tags.get(279) or tags.get(325) or ()
    end = max((o + c for o, c in zip(offsets, counts, strict=False)), default=0)
    return f"truncated: TIFF header says {end} bytes, file has {size}" if end > size else None


def _raw_extent(img: Image.Image, size: int) -> str | None:
    """Uncompressed rows with a known stride (BMP, ...) must fit in the file."""
    for tile in getattr(img, "tile", []):
        args = tile.args if isinstance(tile.args, tuple) else ()
        if tile.codec_name == "raw" and len(args) >= 2 and isinstance(args[1], int) and args[1] > 0:
            end = tile.offset + abs(args[1]) * (tile.extents[3] - tile.extents[1])
            if end > size:
                return f"truncated: pixel data needs {end} bytes, file has {size}"
    return None


# What a whole file's last bytes hold (a little padding after it is allowed). Not JPEG: phones
# append whole videos after the image (motion photos), so its end says nothing.
_END_MARKERS = {"PNG": (b"IEND\xaeB`\x82", "IEND chunk"), "GIF": (b";", "trailer")}


def _tail_end(fmt: str | None, tail: bytes) -> str | None:
    """A "truncated: ..." reason if a file's last bytes lack its format's end marker."""
    marker, name = _END_MARKERS.get(fmt or "", (None, ""))
    if marker is None or marker in (tail if fmt != "GIF" else tail.rstrip(b"\0")[-1:]):
        return None
    return f"truncated: {fmt} has no {name} at its end"


_FORMAT_CHECKS = {"JPEG": _jpeg_end, "MPO": _jpeg_end, "PNG": _png_end, "GIF": _gif_end, "TIFF": _tiff_strips}


# --- thumbnails -----------------------------------------------------------------------------


def thumbnail_png(data: bytes, max_px: int, max_pixels: int = THUMBNAIL_PIXELS) -> bytes | None:
    """PNG of the image shrunk so its longer side is at most `max_px`, EXIF-rotated; None if
    corrupt or if it would decode more than `max_pixels` pixels.

    JPEGs are decoded at a reduced scale (`draft`: libjpeg's DCT scaling by 1/2, 1/4 or 1/8) so
    a large photo is never decoded at full size. Raises ValueError for `max_px` outside 1..4096.
    """
    check_max_px(max_px)
    try:
        with open_image(data) as img:
            img.draft(None, (max_px, max_px))  # JPEG: DCT-scaled decode, still >= max_px a side
            if img.width * img.height > max_pixels:  # the header's size, before any pixel
                return None
            small = _to_resizable(img)
            small.thumbnail((max_px, max_px))
            small = ImageOps.exif_transpose(_to_png_mode(small))
            out = io.BytesIO()
            small.save(out, "PNG", compress_level=1)  # thumbnails are small: favour speed
    except Exception:  # noqa: BLE001 - corrupt input raises almost anything from the decoders
        return None
    return out.getvalue()


def decoded_pixels(info: dict[str, Any], max_px: int) -> int:
    """Pixels a thumbnail of `max_px` decodes for an image with this `image_info`: JPEGs are
    decoded at 1/2, 1/4 or 1/8 scale when that still leaves `max_px` a side (Pillow's `draft`)."""
    width, height = info["width"], info["height"]
    if info["format"] in ("JPEG", "MPO"):
        ratio = min(width // max_px, height // max_px)
        scale = next(s for s in (8, 4, 2, 1) if ratio >= s or s == 1)
        width, height = -(-width // scale), -(-height // scale)
    return width * height


def decode_bytes(pixels: int, mode: str | None) -> int:
    """Memory a decode of `pixels` takes in Pillow (at least 4 bytes a pixel for most modes;
    deep greys are stretched through float64), for the decode budget."""
    return pixels * (16 if mode in ("I", "F") or (mode or "").startswith("I;16") else 4)


def check_max_px(max_px: int) -> None:
    """Refuse sizes that are not a pixel count in 1..MAX_THUMBNAIL_PX."""
    if isinstance(max_px, bool) or not isinstance(max_px, int | np.integer):
        raise ValueError(f"thumbnail max_px must be an integer, got {max_px!r}")
    if not 1 <= max_px <= MAX_THUMBNAIL_PX:
        raise ValueError(f"thumbnail max_px must be between 1 and {MAX_THUMBNAIL_PX}, got {max_px}")


def _to_resizable(img: Image.Image) -> Image.Image:
    """A mode that resizes smoothly: palettes and bilevel expanded, 16-bit to 32-bit integers."""
    if img.mode in ("P", "PA"):
        transparent = "A" in img.mode or "transparency" in img.info
        return img.convert("RGBA" if transparent else "RGB")
    if img.mode == "1":
        return img.convert("L")
    if img.mode.startswith("I;16"):
        return img.convert("I")
    return img


def _to_png_mode(img: Image.Image) -> Image.Image:
    """An 8-bit mode for display: deep grey stretched to 0..255, CMYK and others to RGB(A)."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode in ("I", "F"):
        return _stretch_to_l(img)
    return img.convert("RGBA" if "A" in img.mode or "a" in img.mode else "RGB")


def _stretch_to_l(img: Image.Image) -> Image.Image:
    """Deep greyscale (depth maps, 16-bit scans) linearly stretched from its min..max to 0..255."""
    pixels = np.asarray(img, dtype=np.float64)
    finite = pixels[np.isfinite(pixels)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    scaled = (np.nan_to_num(pixels, nan=low) - low) * (255.0 / (high - low) if high > low else 0.0)
    out = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    out.info = dict(img.info)
    return out
