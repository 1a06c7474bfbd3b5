"""Built-in embedders that need nothing beyond numpy and Pillow.

They make ``embed_image(uri)``, ``embed_text(text)`` and vector search work out of the box,
without model weights: colour histograms group pictures by weather and lighting, hashed
character trigrams group texts by spelling. Neither is a semantic model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUMPY_IMAGE_DIM = 64
NUMPY_IMAGE_MODEL = "numpy-colorhist-64"
NUMPY_TEXT_DIM = 256
NUMPY_TEXT_MODEL = "numpy-trigram-256"

_SIDE = 32  # every image is reduced to _SIDE x _SIDE pixels before counting colours
_LEVELS = 4  # bins per RGB channel: 4 x 4 x 4 = NUMPY_IMAGE_DIM


def embed_images_numpy(images: Sequence[bytes | None]) -> np.ndarray:
    """Embed encoded images (JPEG, PNG, ...) as L2-normalised 64-bin colour histograms.

    Each image is decoded, reduced to 32x32 and its pixels are counted in a soft 4x4x4 RGB
    grid; the square roots of the bin shares (Hellinger) are L2-normalised, so the cosine
    distance compares colour distributions and scenes of similar weather and lighting lie
    close. Bytes that do not decode, in a format the image functions do not read
    (``images.DECODED_FORMATS``), or None give a row of NaN instead of an error.

    >>> embed_images_numpy([png_bytes, b"not an image"]).shape
    (2, 64)
    """
    out = np.full((len(images), NUMPY_IMAGE_DIM), np.nan, dtype=np.float32)
    decoded = [_decode(data) for data in images]
    ok = [i for i, pixels in enumerate(decoded) if pixels is not None]
    if ok:
        out[ok] = _histograms(np.stack([decoded[i] for i in ok]))
    return out


def _decode(data: bytes | None) -> np.ndarray | None:
    """Pixels of one encoded image as a (_SIDE * _SIDE, 3) uint8 array, or None if corrupt."""
    from PIL import Image  # Pillow is imported by the first image, not by import fedquery

    from fedquery.functions.images import open_image

    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    try:
        with open_image(data) as img:
            img.draft("RGB", (2 * _SIDE, 2 * _SIDE))  # JPEG: decode at reduced scale
            small = img.convert("RGB").resize((_SIDE, _SIDE), Image.Resampling.BOX)
    except Exception:  # noqa: BLE001 - broken files raise almost anything from the decoders
        return None
    return np.asarray(small, dtype=np.uint8).reshape(-1, 3)


def _histograms(pixels: np.ndarray) -> np.ndarray:
    """Hellinger-normalised soft colour histograms of (n, p, 3) uint8 pixels, as float32."""
    n, p, _ = pixels.shape
    lo, w_hi = _soft_bins(pixels)
    base = np.arange(n)[:, None] * NUMPY_IMAGE_DIM
    counts = np.zeros(n * NUMPY_IMAGE_DIM)
    for corner in range(8):  # trilinear voting into the 8 neighbouring bin centres
        pick = [(corner >> c) & 1 for c in range(3)]
        r, g, b = (lo[..., c] + pick[c] for c in range(3))
        weight = np.prod([w_hi[..., c] if pick[c] else 1 - w_hi[..., c] for c in range(3)], 0)
        flat = base + (r * _LEVELS + g) * _LEVELS + b
        counts += np.bincount(flat.ravel(), weight.ravel(), minlength=counts.size)
    hist = np.sqrt(counts.reshape(n, NUMPY_IMAGE_DIM) / p)
    return (hist / np.linalg.norm(hist, axis=1, keepdims=True)).astype(np.float32)


def _soft_bins(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower bin index and the weight of the upper bin for each channel value."""
    pos = pixels.astype(np.float64) * (_LEVELS / 256.0) - 0.5  # bin centres at 0 .. _LEVELS-1
    pos = np.clip(pos, 0.0, _LEVELS - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.intp), _LEVELS - 2)
    return lo, pos - lo


def embed_texts_numpy(texts: Sequence[str | None]) -> np.ndarray:
    """Embed texts as L2-normalised signed hashes of their character trigrams.

    Text is lower-cased and padded with a space on each side; each UTF-8 byte trigram is
    hashed (a fixed multiplicative hash, the same in every process) to one of 256 buckets
    and a sign. Texts sharing words share trigrams, so their cosine distance is small.
    None or an empty text gives a row of NaN.

    >>> embed_texts_numpy(["rain in austin", "rainy austin"]).shape
    (2, 256)
    """
    out = np.full((len(texts), NUMPY_TEXT_DIM), np.nan, dtype=np.float32)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            continue
        data = np.frombuffer(f" {text.lower()} ".encode(), dtype=np.uint8).astype(np.uint64)
        codes = (data[:-2] << np.uint64(16)) | (data[1:-1] << np.uint64(8)) | data[2:]
        hashed = (codes * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
        buckets = (hashed % np.uint64(NUMPY_TEXT_DIM)).astype(np.intp)
        signs = np.where((hashed >> np.uint64(16)) & np.uint64(1), 1.0, -1.0)
        row = np.bincount(buckets, signs, minlength=NUMPY_TEXT_DIM)
        norm = np.linalg.norm(row)
        out[i] = row / norm if norm else np.nan
    return out
