"""What is inside an image: pixel statistics, EXIF, hashes and quality flags, from its bytes.

Nothing here does I/O: the caller reads the whole file and passes it. Every measure but the
hashes and EXIF is taken on the *analysis image*: the picture decoded at reduced size and
shrunk (area average, `Resampling.BOX`) so its long side is `ANALYSIS_SIDE` pixels (smaller
images are used as they are, never enlarged). JPEGs are decoded at 1/2, 1/4 or 1/8 scale
straight from the DCT (Pillow's `draft`), the largest scale that still leaves the long side at
least `ANALYSIS_SIDE`, so a photo costs a fraction of a full decode; other formats are decoded
whole and then shrunk.

    stats = image_stats_from(data)      # never raises: a bad file gives an `error`
    stats["brightness"], stats["blurry"], stats["phash"]

Measures, on luma Y = 0.299 R + 0.587 G + 0.114 B (Pillow's "L") scaled to 0..1:
brightness (mean Y), contrast (standard deviation of Y), sharpness (variance of the
4-neighbour Laplacian of Y over the interior pixels: edges give large values, blur small
ones), colourfulness (Hasler and Süsstrunk 2003 on RGB in 0..1: std and mean of
rg = R - G and yb = (R + G) / 2 - B, sqrt(σrg² + σyb²) + 0.3 sqrt(μrg² + μyb²)), entropy
(bits of the 256-bin histogram of Y). content_hash is the BLAKE2b (16 bytes, hex) of the whole
file: equal hashes, equal files. phash is imagehash's 64-bit `phash` (see `perceptual_hash`),
as a signed BIGINT; two pictures of the same scene differ in a few bits (`duplicates.hamming`).
The flags, and the constants they use, are described at `_flags`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa

from fedquery.functions.image_exif import EXIF_FIELDS, exif_fields, no_exif
from fedquery.functions.images import (
    THUMBNAIL_PIXELS,
    NeedMoreBytes,
    _stretch_to_l,
    _to_resizable,
    image_info_from,
    open_image,
)
from fedquery.functions.lazy_pil import Image
from fedquery.functions.rows import struct_array

# Long side, in pixels, of the image the statistics are taken on. 512, not less: a Gaussian blur
# of radius 4 on a 1920×1080 photo is still a blur of about one pixel there (at 256 it all but
# vanishes), and a JPEG decoded at 1/2 scale instead of 1/4 costs only ~15% more (the entropy
# decoding, which no scale skips, dominates).
ANALYSIS_SIDE = 512
STATS_PIXELS = THUMBNAIL_PIXELS  # pixels a decode may take at most, unless told otherwise
HASH_SIDE, HASH_BITS_SIDE = 32, 8  # phash: grey resized to 32×32, DCT, top-left 8×8

# Flags (each documented at `_flags`):
DARK_BRIGHTNESS = 0.2  # dark: mean luma below this ...
DARK_P99 = 0.5  # ... and 99% of pixels below this luma (a dark scene with no bright part)
OVEREXPOSED_BRIGHTNESS = 0.8  # overexposed: mean luma above this ...
OVEREXPOSED_P5 = 0.5  # ... and 95% of pixels above this luma (washed out, no dark part)
BLURRY_SHARPNESS = 0.0015  # blurry: Laplacian variance of the analysis image below this ...
BLURRY_RELATIVE = 0.15  # ... and below this share of the luma variance (contrast squared)
TINY_SIDE = 32  # tiny: width or height below this many pixels
ODD_ASPECT = 4.0  # odd_aspect: long side over short side above this
GRAYSCALE_COLOURFULNESS = 0.01  # grayscale: a grey mode, or colourfulness below this
GREY_MODES = ("1", "L", "LA", "La", "I", "F") + tuple(f"I;16{e}" for e in ("", "B", "L", "N"))

_HEADER = ("format", "width", "height", "mode", "bytes")
_MEASURES = ("brightness", "contrast", "sharpness", "colourfulness", "entropy")
_FLAGS = ("dark", "overexposed", "blurry", "tiny", "odd_aspect", "grayscale")
IMAGE_STATS_ARROW = pa.struct(
    [("format", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
     ("mode", pa.string()), ("bytes", pa.int64())]
    + [(name, pa.float64()) for name in _MEASURES]
    + [("camera_make", pa.string()), ("camera_model", pa.string()),
       ("captured_at", pa.timestamp("us")), ("has_gps", pa.bool_()), ("orientation", pa.int8()),
       ("content_hash", pa.string()), ("phash", pa.int64())]
    + [(name, pa.bool_()) for name in _FLAGS]
    + [("error", pa.string())]
)
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
                 pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT",
                 pa.timestamp("us"): "TIMESTAMP"}
IMAGE_STATS_TYPE = "STRUCT(" + ", ".join(f"{f.name} {_DUCKDB_TYPES[f.type]}"
                                         for f in IMAGE_STATS_ARROW) + ")"
FIELDS = tuple(f.name for f in IMAGE_STATS_ARROW)


class TooLarge(Exception):  # noqa: N818 - its message is the row's error
    """The decode would take more pixels than allowed."""


def image_stats_from(data: bytes, size: int | None = None,
                     max_pixels: int = STATS_PIXELS) -> dict[str, Any]:
    """Every `IMAGE_STATS_ARROW` field of one image file (`data`: the whole file).

    `size`: the file's byte count, if `data` might be shorter (then only the header fields and
    an error are given). A file that does not decode (truncated, corrupt, not an image, or
    more than `max_pixels` pixels to decode even at reduced size) gives the fields it could
    and `error`; nothing is raised.
    """
    size = len(data) if size is None else size
    try:
        info = image_info_from(data, size)
    except NeedMoreBytes:
        info = {"error": None}
    row = dict.fromkeys(FIELDS) | {k: info.get(k) for k in _HEADER} | {"bytes": size}
    row["content_hash"] = content_hash(data) if data else None
    if len(data) < size:
        return row | {"error": f"truncated: {len(data)} of the file's {size} bytes were given"}
    if info["error"] is not None or info["width"] is None:
        return row | _exif_of(data) | {"error": info["error"]} | _shape_flags(row)
    pixels = stats_pixels(row["width"], row["height"], row["format"])
    if pixels > max_pixels:  # before Pillow allocates anything
        return row | no_exif(None) | {"error": _too_large(pixels, max_pixels)} | _shape_flags(row)
    try:
        with open_image(data) as img:
            row |= exif_fields(img)
            analysis, hashed = _decode(img, max_pixels)
    except (TooLarge, Image.DecompressionBombError) as exc:
        return row | {"error": f"too large: {exc}" if "too large" not in str(exc) else str(exc)
                      } | _shape_flags(row)
    except Exception as exc:  # noqa: BLE001 - decoders raise almost anything on bad input
        return row | {"error": f"corrupt: the {row['format']} image does not decode ({exc})"[:200]
                      } | _shape_flags(row)
    measures = measure(analysis)
    row |= {k: measures[k] for k in _MEASURES} | {"phash": perceptual_hash(hashed)}
    return row | _flags(row, measures) | {"error": None}


def analysis_image(data: bytes, max_pixels: int = STATS_PIXELS) -> Image.Image:
    """The image the measures are taken on (RGB or L, long side `ANALYSIS_SIDE` at most);
    raises what Pillow raises on a bad file, `TooLarge` over `max_pixels`."""
    with open_image(data) as img:
        return _decode(img, max_pixels)[0]


def image_stats_array(rows: list[dict[str, Any] | None]) -> pa.StructArray:
    """One `IMAGE_STATS_ARROW` struct per row (None: a NULL struct; a row that does not fit
    its types: an error row)."""
    return struct_array(rows, IMAGE_STATS_ARROW)


def image_stats_error(reason: str, size: int | None = None) -> dict[str, Any]:
    """The row of a file that is missing or unreadable: only `bytes` (if known) and `error`."""
    return dict.fromkeys(FIELDS) | {"bytes": size, "error": reason}


def content_hash(data: bytes) -> str:
    """Hex BLAKE2b-128 of the bytes: files with equal hashes are byte-for-byte equal."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def stats_pixels(width: int, height: int, fmt: str | None) -> int:
    """Pixels `image_stats_from` decodes for an image of this header size (for a decode budget
    reserved before reading): JPEGs at the scale `_draft_box` picks, others whole."""
    if fmt in ("JPEG", "MPO"):
        bw, bh = _draft_box(width, height)
        ratio = min(width // bw, height // bh)
        scale = next(s for s in (8, 4, 2, 1) if ratio >= s)
        width, height = -(-width // scale), -(-height // scale)
    return width * height


# --- decoding at reduced size ---------------------------------------------------------------


def _decode(img: Image.Image, max_pixels: int) -> tuple[Image.Image, Image.Image]:
    """(analysis image in RGB or L, the image the phash is taken from) of a lazily opened file.

    The phash is taken from the shrunk image before its mode is changed (as imagehash takes it
    from the decoded image): a LANCZOS resize from the full decode would cost as much again."""
    img.draft(img.mode if img.mode in ("RGB", "L") else None, _draft_box(*img.size))
    pixels = img.width * img.height
    if pixels > max_pixels:
        raise TooLarge(_too_large(pixels, max_pixels))
    img.load()
    small = _shrink(_to_resizable(img))
    return _to_analysis_mode(small), small


def _too_large(pixels: int, max_pixels: int) -> str:
    return f"too large: {pixels:,} pixels to decode is over the cap of {max_pixels:,}"


def _draft_box(width: int, height: int) -> tuple[int, int]:
    """The smallest size (same shape) whose long side is `ANALYSIS_SIDE`: `draft` then picks
    the largest DCT scale that still covers it."""
    long = max(width, height, 1)
    side = min(ANALYSIS_SIDE, long)
    return max(1, width * side // long), max(1, height * side // long)


def _shrink(img: Image.Image) -> Image.Image:
    """Area-averaged so the long side is `ANALYSIS_SIDE` (an integer `reduce` first, which is
    cheap); an image already that small is kept as it is."""
    long = max(img.size)
    if long <= ANALYSIS_SIDE:
        return img
    factor = long // ANALYSIS_SIDE
    if factor >= 2 and img.mode in ("L", "RGB", "RGBA", "I", "F", "CMYK"):
        img = img.reduce(factor)
    size = _draft_box(*img.size)
    return img if img.size == size else img.resize(size, Image.Resampling.BOX)


def _to_analysis_mode(img: Image.Image) -> Image.Image:
    """RGB or L, 8 bits: deep greys stretched to 0..255, alpha dropped, CMYK and others to RGB."""
    if img.mode in ("RGB", "L"):
        return img
    if img.mode in ("I", "F"):
        return _stretch_to_l(img)
    return img.convert("L" if img.mode in ("LA", "La", "1") else "RGB")


# --- measures -------------------------------------------------------------------------------


def measure(img: Image.Image) -> dict[str, float]:
    """The five measures of an RGB or L image (the analysis image), plus the 1st, 5th and 99th
    luma percentiles the flags use."""
    grey = np.asarray(img if img.mode == "L" else img.convert("L"))
    hist = np.bincount(grey.ravel(), minlength=256)
    luma = grey.astype(np.float64) / 255.0
    rgb = np.asarray(img, np.float64) / 255.0 if img.mode == "RGB" else None
    share = np.cumsum(hist) / grey.size
    level = lambda q: float(np.searchsorted(share, q)) / 255.0  # noqa: E731
    return {"brightness": float(luma.mean()), "contrast": float(luma.std()),
            "sharpness": laplacian_variance(luma), "colourfulness": colourfulness(rgb),
            "entropy": entropy(hist), "p5": level(0.05), "p99": level(0.99)}


def laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior (0.0 when there is none)."""
    if luma.shape[0] < 3 or luma.shape[1] < 3:
        return 0.0
    lap = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
           - 4.0 * luma[1:-1, 1:-1])
    return float(lap.var())


def colourfulness(rgb: np.ndarray | None) -> float:
    """Hasler–Süsstrunk colourfulness of an H×W×3 array in 0..1 (0.0 for a grey image: None)."""
    if rgb is None:
        return 0.0
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def entropy(hist: np.ndarray) -> float:
    """Shannon entropy, in bits, of a histogram's counts."""
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no -0.0 for a flat image


# --- perceptual hash ------------------------------------------------------------------------

_N = np.arange(HASH_SIDE)
# scipy.fftpack.dct's unnormalised DCT-II rows 0..7: y[k] = 2 Σ x[n] cos(π k (2n + 1) / 2N)
_DCT = 2.0 * np.cos(np.pi * np.arange(HASH_BITS_SIDE)[:, None] * (2 * _N[None, :] + 1)
                    / (2 * HASH_SIDE))
_WEIGHTS = np.left_shift(np.uint64(1), np.arange(63, -1, -1, dtype=np.uint64))


def perceptual_hash(img: Image.Image) -> int:
    """imagehash's `phash(img)` as a signed 64-bit integer: grey, 32×32 LANCZOS, DCT-II along
    both axes, the top-left 8×8 coefficients above their median, first bit the highest
    (`int(str(imagehash.phash(img)), 16)`, wrapped to a signed BIGINT)."""
    grey = np.asarray(img.convert("L").resize((HASH_SIDE, HASH_SIDE),
                                              Image.Resampling.LANCZOS), np.float64)
    low = _DCT @ grey @ _DCT.T
    bits = (low > np.median(low)).ravel()
    return int(_WEIGHTS[bits].sum(dtype=np.uint64).astype(np.int64))


# --- flags ----------------------------------------------------------------------------------


def _flags(row: dict[str, Any], m: dict[str, float]) -> dict[str, bool]:
    """dark: mean luma < DARK_BRIGHTNESS and the 99th percentile < DARK_P99 (dim everywhere:
    a night scene with lit windows is not dark). overexposed: mean > OVEREXPOSED_BRIGHTNESS and
    the 5th percentile > OVEREXPOSED_P5 (bright everywhere). blurry: see `blurry`. grayscale:
    a grey mode or colourfulness < GRAYSCALE_COLOURFULNESS. tiny and odd_aspect: see `_shape_flags`."""
    return _shape_flags(row) | {
        "dark": m["brightness"] < DARK_BRIGHTNESS and m["p99"] < DARK_P99,
        "overexposed": m["brightness"] > OVEREXPOSED_BRIGHTNESS and m["p5"] > OVEREXPOSED_P5,
        "blurry": blurry(m["sharpness"], m["contrast"]),
        "grayscale": row["mode"] in GREY_MODES or m["colourfulness"] < GRAYSCALE_COLOURFULNESS}


def blurry(sharpness: float, contrast: float) -> bool:
    """Weak edges (sharpness at ANALYSIS_SIDE < BLURRY_SHARPNESS) that are also weak for the
    picture's own contrast (sharpness < BLURRY_RELATIVE x contrast squared). The Laplacian's
    variance scales with the square of the contrast, so a darkened copy of a sharp photo has
    weak edges in absolute terms; relative to its contrast they are as strong as the original's
    (23 scikit-image photos at their size and at 1920x1080, JPEG q90: 44 of 46 copies blurred
    with radius 4 flagged, 18 of 46 darkened to 15%, where the absolute test alone flagged
    nearly all of them; a lower share spares more dark copies but misses blurred sparse
    pictures, such as a star field)."""
    return sharpness < BLURRY_SHARPNESS and sharpness < BLURRY_RELATIVE * contrast * contrast


def _shape_flags(row: dict[str, Any]) -> dict[str, bool | None]:
    """From the header alone: tiny (a side < TINY_SIDE), odd_aspect (long / short > ODD_ASPECT)."""
    width, height = row["width"], row["height"]
    if not width or not height:
        return {"tiny": None, "odd_aspect": None}
    return {"tiny": min(width, height) < TINY_SIDE,
            "odd_aspect": max(width, height) / min(width, height) > ODD_ASPECT}


def _exif_of(data: bytes) -> dict[str, Any]:
    """EXIF of a file whose pixels are not decoded (truncated, say): from its headers."""
    try:
        with open_image(data) as img:
            return exif_fields(img)
    except Exception:  # noqa: BLE001 - the header did not open: nothing is known
        return no_exif(None)


__all__ = ["ANALYSIS_SIDE", "EXIF_FIELDS", "FIELDS", "IMAGE_STATS_ARROW", "IMAGE_STATS_TYPE",
           "analysis_image", "content_hash", "image_stats_array", "image_stats_error",
           "image_stats_from", "perceptual_hash", "stats_pixels"]
