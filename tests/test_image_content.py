"""Image content measures (`image_content`, `image_exif`, `duplicates`) on real photographs.

The photos are scikit-image's and scikit-learn's sample pictures, at their own size and fitted
to 1920×1080 like a camera frame. Every measure is compared with a reference computed here
another way (float luma in numpy, scipy's Laplacian and DCT, a brute-force pair search).
"""

from __future__ import annotations

import io
import os
import random
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from fedquery.functions import image_content as ic
from fedquery.functions.duplicates import duplicate_sets, hamming, near_duplicate_sets
from fedquery.functions.images import IMAGE_PREFIX_BYTES, IMAGE_TAIL_BYTES, image_info_from

skimage = pytest.importorskip("skimage")
SKIMAGE = Path(os.path.dirname(skimage.__file__), "data")
# photographs with real edges and colour (the smooth or synthetic samples, like `color`,
# `microaneurysms` or an upscaled `chessboard`, are blurry by any Laplacian measure)
PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "rocket.jpg",
          "motorcycle_left.png", "hubble_deep_field.jpg")
FLAGS = ("dark", "overexposed", "blurry", "tiny", "odd_aspect", "grayscale")


def _photo(name: str) -> Image.Image:
    with Image.open(SKIMAGE / name) as img:
        return img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()


def _jpeg(img: Image.Image, quality: int = 90, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, **kw)
    return out.getvalue()


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _frame(img: Image.Image) -> Image.Image:
    return ImageOps.fit(img, (1920, 1080), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: _photo(name) for name in PHOTOS}


# --- flags on clearly damaged copies --------------------------------------------------------


def test_dark_copies_are_dark_and_the_originals_not(photos):
    for name, img in photos.items():
        for encode in (_jpeg, _png):
            original = ic.image_stats_from(encode(img))
            dark = ic.image_stats_from(encode(ImageEnhance.Brightness(img).enhance(0.15)))
            assert original["error"] is None and dark["error"] is None
            assert not original["dark"] and dark["dark"], name
            assert dark["brightness"] < original["brightness"] * 0.2, name


def test_washed_out_copies_are_overexposed(photos):
    for name, img in photos.items():
        white = Image.new(img.mode, img.size, 255 if img.mode == "L" else (255, 255, 255))
        washed = ic.image_stats_from(_jpeg(Image.blend(img, white, 0.8)))
        assert washed["overexposed"] and not ic.image_stats_from(_jpeg(img))["overexposed"], name


@pytest.mark.parametrize("size", ["own", "frame"])
def test_blurred_copies_are_blurry_and_the_originals_not(photos, size):
    for name, img in photos.items():
        img = _frame(img) if size == "frame" else img
        original = ic.image_stats_from(_jpeg(img))
        blurred = ic.image_stats_from(_jpeg(img.filter(ImageFilter.GaussianBlur(4))))
        assert not original["blurry"] and blurred["blurry"], (name, original["sharpness"],
                                                              blurred["sharpness"])
        assert blurred["sharpness"] < original["sharpness"] / 3


def test_shape_and_grayscale_flags():
    camera, coffee = _photo("camera.png"), _photo("coffee.png")
    assert ic.image_stats_from(_png(camera))["grayscale"]  # mode L
    assert ic.image_stats_from(_jpeg(camera.convert("RGB")))["grayscale"]  # grey pixels in RGB
    assert not ic.image_stats_from(_jpeg(coffee))["grayscale"]
    tiny = ic.image_stats_from(_png(coffee.resize((24, 16))))
    strip = ic.image_stats_from(_png(coffee.resize((600, 100))))
    assert (tiny["tiny"], tiny["odd_aspect"]) == (True, False)
    assert (strip["tiny"], strip["odd_aspect"]) == (False, True)
    assert not any(ic.image_stats_from(_jpeg(coffee))[f] for f in FLAGS)


# --- measures equal a reference computed another way ----------------------------------------


def _reference(img: Image.Image) -> dict[str, float]:
    """The measures from the analysis image's RGB in float, by formula (not Pillow's "L")."""
    from scipy import ndimage

    rgb = np.asarray(img.convert("RGB"), np.float64) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    counts, _ = np.histogram(np.round(luma * 255), bins=256, range=(-0.5, 255.5))
    p = counts[counts > 0] / luma.size
    rg, yb = rgb[..., 0] - rgb[..., 1], (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    return {"brightness": luma.mean(), "contrast": luma.std(),
            "sharpness": ndimage.laplace(luma)[1:-1, 1:-1].var(),
            "entropy": -(p * np.log2(p)).sum(),
            "colourfulness": np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)}


def test_measures_equal_a_numpy_reference_on_the_analysis_image(photos):
    for name, img in photos.items():
        for data in (_jpeg(_frame(img)), _png(img)):
            analysis = ic.analysis_image(data)
            assert max(analysis.size) == min(ic.ANALYSIS_SIDE, max(Image.open(io.BytesIO(data)).size))
            stats, ref = ic.image_stats_from(data), _reference(analysis)
            assert stats["brightness"] == pytest.approx(ref["brightness"], abs=1 / 255), name
            assert stats["contrast"] == pytest.approx(ref["contrast"], abs=1 / 255), name
            assert stats["sharpness"] == pytest.approx(ref["sharpness"], rel=0.03), name
            assert stats["entropy"] == pytest.approx(ref["entropy"], abs=0.05), name
            colour = ref["colourfulness"] if analysis.mode == "RGB" else 0.0
            assert stats["colourfulness"] == pytest.approx(colour, abs=1e-9), name


def test_jpeg_is_decoded_at_reduced_scale():
    data = _jpeg(_frame(_photo("astronaut.png")))
    assert ic.stats_pixels(1920, 1080, "JPEG") == 960 * 540  # 1/2: long side still >= 512
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", ic._draft_box(*img.size))
        assert img.size == (960, 540)
    assert ic.stats_pixels(1920, 1080, "PNG") == 1920 * 1080


# --- EXIF -----------------------------------------------------------------------------------


def _with_exif(img: Image.Image, original: str | None = "2021:06:15 14:30:05",
               gps: bool = True, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon\x00", "EOS 5D Mark IV", orientation
    exif[0x0132] = "2022:01:02 03:04:05"
    if original is not None:
        exif.get_ifd(0x8769)[0x9003] = original
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)})
    return _jpeg(img, exif=exif)


def test_exif_fields_from_a_written_jpeg():
    img = _photo("chelsea.png")
    stats = ic.image_stats_from(_with_exif(img))
    assert (stats["camera_make"], stats["camera_model"]) == ("Canon", "EOS 5D Mark IV")
    assert stats["captured_at"] == datetime(2021, 6, 15, 14, 30, 5)
    assert stats["has_gps"] is True and stats["orientation"] == 6
    fallback = ic.image_stats_from(_with_exif(img, original=None, gps=False, orientation=1))
    assert fallback["captured_at"] == datetime(2022, 1, 2, 3, 4, 5)  # DateTime when no original
    assert fallback["has_gps"] is False and fallback["orientation"] == 1
    blank = ic.image_stats_from(_with_exif(img, original="0000:00:00 00:00:00", orientation=9))
    assert blank["captured_at"] == datetime(2022, 1, 2, 3, 4, 5) and blank["orientation"] is None
    none = ic.image_stats_from(_jpeg(img))
    assert [none[f] for f in ("camera_make", "camera_model", "captured_at", "has_gps",
                              "orientation")] == [None, None, None, False, None]


# --- hashes and duplicate sets --------------------------------------------------------------


def _imagehash_phash(img: Image.Image) -> int:
    """imagehash's phash algorithm with scipy's DCT, as imagehash 4.3 writes it."""
    from scipy.fftpack import dct

    pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS))
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    bits = "".join("1" if b else "0" for b in (low > np.median(low)).ravel())
    return int(bits, 2)


def test_phash_is_imagehash_bit_for_bit_on_full_decodes(photos):
    for name, img in photos.items():
        for data in (_jpeg(_frame(img)), _png(img)):
            with Image.open(io.BytesIO(data)) as full:
                full.load()
                mine = ic.perceptual_hash(full)
                assert mine & ic_mask() == _imagehash_phash(full), name
                assert -(2**63) <= mine < 2**63
    imagehash = pytest.importorskip("imagehash")
    for img in photos.values():
        assert ic.perceptual_hash(img) & ic_mask() == int(str(imagehash.phash(img)), 16)


def ic_mask() -> int:
    return (1 << 64) - 1


def test_copies_are_near_and_different_photos_far(photos):
    originals, copies = [], []
    for img in photos.values():
        frame = _frame(img)
        originals.append(ic.image_stats_from(_jpeg(frame)))
        copies.append([ic.image_stats_from(_jpeg(frame, quality=60)),
                       ic.image_stats_from(_png(frame.resize((1600, 900)))),
                       ic.image_stats_from(_jpeg(frame))])
    for original, (reencoded, resized, same) in zip(originals, copies, strict=True):
        assert hamming(original["phash"], reencoded["phash"]) <= 4
        assert hamming(original["phash"], resized["phash"]) <= 4
        assert same["content_hash"] == original["content_hash"]  # the same bytes
        assert reencoded["content_hash"] != original["content_hash"]
    for i, a in enumerate(originals):
        for b in originals[i + 1:]:
            assert hamming(a["phash"], b["phash"]) >= 16
    hashes = [o["phash"] for o in originals] + [c["phash"] for group in copies for c in group]
    sets = near_duplicate_sets(hashes, 6)
    n = len(originals)
    assert sets[:n] == list(range(n))
    assert sets[n:] == [i for i in range(n) for _ in range(3)]
    exact = duplicate_sets([o["content_hash"] for o in originals]
                           + [c["content_hash"] for group in copies for c in group])
    assert exact[:n] == list(range(n)) and exact[n:] == [x for i in range(n) for x in (None, None, i)]


def _brute_sets(hashes: list[int | None], distance: int) -> list[int | None]:
    n, parent = len(hashes), list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if None not in (hashes[i], hashes[j]) and hamming(hashes[i], hashes[j]) <= distance:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    roots = [root(i) for i in range(n)]
    return [roots[i] if hashes[i] is not None and sum(roots[k] == roots[i] and hashes[k] is not None
                                                     for k in range(n)) > 1 else None
            for i in range(n)]


def test_near_duplicate_sets_equal_a_brute_force_search():
    rng = random.Random(7)
    for trial in range(20):
        base = [rng.getrandbits(64) - (1 << 63) for _ in range(40)]
        noise = [rng.getrandbits(64) & rng.getrandbits(64) & rng.getrandbits(64) for _ in range(25)]
        hashes = base + [b ^ x for b, x in zip(rng.sample(base, 25), noise, strict=True)]
        hashes += [None, base[0], base[0] ^ 1]
        for distance in (0, 2, 5, 9, 14):
            assert near_duplicate_sets(hashes, distance) == _brute_sets(hashes, distance), trial


def test_duplicate_sets_and_bad_distances():
    assert duplicate_sets(["a", "b", "a", None, "b", "c"]) == [0, 1, 0, None, 1, None]
    assert near_duplicate_sets([], 4) == [] and near_duplicate_sets([None, 5], 4) == [None, None]
    assert hamming(-1, 0) == 64 and hamming(2**63 - 1, -(2**63)) == 64
    for bad in (-1, 33, True):
        with pytest.raises(ValueError, match="max_distance"):
            near_duplicate_sets([1, 2], bad)


# --- bad files give an error, never an exception --------------------------------------------


def test_bad_files_give_errors_with_what_the_header_told():
    data = _jpeg(_photo("coffee.png"))
    png = _png(_photo("coffee.png"))
    cases = {"empty": b"", "text": b"hello, world", "corrupt": bytes(range(256)) * 40,
             "truncated jpeg": data[: len(data) // 2], "truncated png": png[: len(png) // 2],
             "header only": png[:100], "garbage body": png[:200] + bytes(len(png) - 200)}
    for what, bad in cases.items():
        stats = ic.image_stats_from(bad)
        assert stats["error"], what
        assert stats["brightness"] is None and stats["phash"] is None and stats["blurry"] is None
        assert stats["bytes"] == len(bad)
        if what not in ("empty", "text", "corrupt"):
            assert (stats["format"], stats["width"], stats["height"]) in (("JPEG", 600, 400),
                                                                          ("PNG", 600, 400)), what
            assert stats["content_hash"] == ic.content_hash(bad)
    assert ic.image_stats_from(b"")["error"] == "empty file"
    assert ic.image_stats_from(data[:1000], size=len(data))["error"].startswith("truncated")


def test_decompression_bombs_are_too_large_not_decoded():
    bomb = _png(Image.new("L", (12_000, 12_000)))  # 144 M pixels in 140 KB
    stats = ic.image_stats_from(bomb)
    assert stats["error"].startswith("too large") and (stats["width"], stats["height"]) == (12_000, 12_000)
    capped = ic.image_stats_from(_jpeg(_frame(_photo("coffee.png"))), max_pixels=960 * 540 - 1)
    assert capped["error"].startswith("too large") and capped["brightness"] is None
    ok = ic.image_stats_from(_jpeg(_frame(_photo("coffee.png"))), max_pixels=960 * 540)
    assert ok["error"] is None  # the cap counts the pixels decoded at reduced scale


def test_every_mode_and_format_is_measured():
    coffee = _photo("coffee.png").resize((200, 120))
    images = {mode: coffee.convert(mode) for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "CMYK")}
    images["I;16"] = Image.fromarray(np.asarray(coffee.convert("L"), np.uint16) * 257)
    for mode, img in images.items():
        for fmt in ("PNG", "TIFF", "WEBP", "GIF", "BMP", "JPEG"):
            out = io.BytesIO()
            try:
                img.save(out, fmt)
            except (OSError, ValueError, KeyError):
                continue  # a mode this format cannot hold
            if mode == "I;16" and fmt not in ("PNG", "TIFF"):
                continue  # Pillow's other writers clip 16-bit grey to white
            stats = ic.image_stats_from(out.getvalue())
            assert stats["error"] is None, (mode, fmt, stats["error"])
            assert 0.2 < stats["brightness"] < 0.8 and stats["sharpness"] > 0, (mode, fmt)
            assert stats["grayscale"] == (stats["mode"] in ic.GREY_MODES
                                          or stats["colourfulness"] < ic.GRAYSCALE_COLOURFULNESS)
    assert ic.image_stats_from(_png(images["L"]))["grayscale"]


# --- the Arrow struct and its DuckDB type ---------------------------------------------------


def test_arrow_struct_and_duckdb_type_agree():
    rows = [ic.image_stats_from(_with_exif(_photo("chelsea.png"))), None, ic.image_stats_from(b"")]
    array = ic.image_stats_array(rows)
    assert array.type == ic.IMAGE_STATS_ARROW and array.null_count == 1
    assert list(rows[0]) == list(ic.FIELDS)  # every field, in the struct's order
    stats_table = pa.table({"s": array})  # noqa: F841 - read by DuckDB below
    con = duckdb.connect()
    typed = con.sql(f"SELECT NULL::{ic.IMAGE_STATS_TYPE}").to_arrow_table().schema.field(0).type
    assert typed == ic.IMAGE_STATS_ARROW
    got = con.execute("SELECT s.camera_make, s.captured_at, s.has_gps, s.error FROM stats_table").fetchall()
    assert got == [("Canon", datetime(2021, 6, 15, 14, 30, 5), True, None), (None, None, None, None),
                   (None, None, None, "empty file")]


# --- image_info_from's tail: a truncated PNG longer than the prefix -------------------------


def test_truncated_png_past_the_prefix_is_found_from_its_tail():
    png = _png(_frame(_photo("coffee.png")))
    assert len(png) > 4 * IMAGE_PREFIX_BYTES
    cut = png[: len(png) * 2 // 3]
    head = cut[:IMAGE_PREFIX_BYTES]
    assert image_info_from(head, len(cut))["error"] is None  # headers alone cannot tell
    assert image_info_from(head, len(cut), cut[-IMAGE_TAIL_BYTES:])["error"].startswith("truncated")
    assert image_info_from(png[:IMAGE_PREFIX_BYTES], len(png), png[-IMAGE_TAIL_BYTES:])["error"] is None
    gif = io.BytesIO()
    _frame(_photo("coffee.png")).convert("P").save(gif, "GIF")
    gif = gif.getvalue()
    assert image_info_from(gif[:IMAGE_PREFIX_BYTES], len(gif), gif[-IMAGE_TAIL_BYTES:])["error"] is None
    short = gif[: len(gif) - 200]
    assert image_info_from(short[:IMAGE_PREFIX_BYTES], len(short),
                           short[-IMAGE_TAIL_BYTES:])["error"].startswith("truncated")
    jpeg = _jpeg(_frame(_photo("coffee.png"))) + b"motion photo video" * 100  # appended data
    assert image_info_from(jpeg[:IMAGE_PREFIX_BYTES], len(jpeg), jpeg[-IMAGE_TAIL_BYTES:])["error"] is None
