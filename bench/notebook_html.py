"""Measure the notebook table's size with JPEG thumbnails against the PNG ones it used to hold.

Photos (scikit-image's sample photos when installed, saved as JPEG at quality 90 like a camera
would; else generated ones) go into a files source; a query lists their URIs, and the table
``Result._repr_html_`` renders is measured, with the bytes of each thumbnail as a JPEG (now)
and as the PNG ``thumbnail()`` gives (before). Sizes only; nothing here is timed.

    python bench/notebook_html.py [--rows 20]
"""

from __future__ import annotations

import argparse
import base64
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import fedquery
from fedquery.functions.images import thumbnail_png
from fedquery.notebook_previews import THUMB_PX

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field",
          "retina", "immunohistochemistry", "colorwheel", "camera", "grass", "gravel", "brick")


def photos(folder: Path, count: int) -> list[str]:
    """``count`` JPEGs in ``folder`` (scikit-image's photos, repeated; else noise-textured)."""
    images = []
    try:
        import skimage.data as data

        for name in PHOTOS:
            try:
                images.append(np.asarray(getattr(data, name)()))
            except Exception:  # noqa: BLE001, S112 - a photo that needs a download is skipped
                continue
    except ImportError:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    uris = []
    for i in range(count):
        pixels = images[i % len(images)]
        name = f"p{i:03d}.jpg"
        Image.fromarray(pixels).convert("RGB").save(folder / name, "JPEG", quality=90)
        uris.append(name)
    return uris


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        root.mkdir()
        uris = photos(root, args.rows)
        catalog = {"sources": {"photos": {"kind": "files", "root": str(root)}}}
        with fedquery.connect(catalog) as con:
            res = con.sql("SELECT unnest($uris) AS uri", params={"uris": uris})
            page = res._repr_html_()
        jpegs = [base64.b64decode(m) for m in
                 re.findall(r'data:image/jpeg;base64,([A-Za-z0-9+/=]+)', page)]
        pngs = [thumbnail_png((root / u).read_bytes(), THUMB_PX) for u in uris]
        sources = [(root / u).stat().st_size for u in uris]
        png_page = len(page) + sum(4 * -(-len(p) // 3) for p in pngs) - sum(
            4 * -(-len(j) // 3) for j in jpegs)
    print(f"{len(uris)} photos, {sum(sources) / len(sources) / 1024:.1f} KiB each on average "
          f"(JPEG q90); thumbnails {THUMB_PX} px")
    print(f"thumbnail bytes: PNG {sum(map(len, pngs)):,} -> JPEG {sum(map(len, jpegs)):,} "
          f"({sum(map(len, pngs)) / sum(map(len, jpegs)):.1f}x smaller)")
    print(f"HTML of the table: with PNG {png_page:,} B -> with JPEG {len(page):,} B")


if __name__ == "__main__":
    main()
