"""Speed of `image_stats_from` against a plain full-decode loop, and of near-duplicate sets.

    PYTHONPATH=. python bench/image_content.py [--dir DIR] [--repeat N] [--hashes N]

The photos: every picture of scikit-image's `skimage/data` and scikit-learn's sample images,
fitted (cropped and resized) to 1920×1080 and saved as JPEG quality 90 and as PNG in DIR (a
temporary directory unless given). The reference loop decodes each file whole with Pillow and
computes the same measures with the same numpy code at full resolution (what a user writes
without draft decoding or an analysis image). One thread each; files read into memory first,
so only decoding and measuring are timed.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from fedquery.functions.duplicates import near_duplicate_sets
from fedquery.functions.image_content import content_hash, image_stats_from, measure, perceptual_hash
from fedquery.functions.image_exif import exif_fields


def sources() -> list[Path]:
    """The sample pictures that ship with scikit-image and scikit-learn."""
    import skimage
    import sklearn.datasets

    found = [p for p in Path(os.path.dirname(skimage.__file__), "data").iterdir()
             if p.suffix in (".png", ".jpg")]
    return sorted(found) + sorted(Path(os.path.dirname(sklearn.datasets.__file__), "images").glob("*.jpg"))


def make_photos(out: Path) -> None:
    """Each source fitted to 1920×1080, as `<name>.jpg` (quality 90) and `<name>.png`."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sources():
        with Image.open(path) as img:
            img = img.convert("RGB") if img.mode not in ("L", "RGB") else img.copy()
        if min(img.size) < 64:
            continue
        big = ImageOps.fit(img, (1920, 1080), Image.Resampling.LANCZOS)
        big.save(out / f"{path.stem}.jpg", quality=90)
        big.save(out / f"{path.stem}.png")


def full_decode_stats(data: bytes) -> dict:
    """The reference: the whole image decoded, the same measures at full resolution."""
    with Image.open(io.BytesIO(data)) as img:
        exif = exif_fields(img)
        img.load()
        rgb = img if img.mode in ("RGB", "L") else img.convert("RGB")
        return {**measure(rgb), **exif, "phash": perceptual_hash(img),
                "content_hash": content_hash(data)}


def files_per_second(function, files: list[bytes], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for data in files:
            function(data)
    return repeat * len(files) / (time.perf_counter() - start)


def near_duplicates_time(n: int, distance: int) -> tuple[float, int]:
    """Seconds to find the near-duplicate sets of `n` random hashes with n/10 planted copies
    (each a few bits off), and how many files land in a set."""
    rng = random.Random(0)
    hashes = [rng.getrandbits(64) for _ in range(n - n // 10)]
    for h in rng.sample(hashes, n // 10):
        hashes.append(h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)))
    start = time.perf_counter()
    sets = near_duplicate_sets(hashes, distance)
    return time.perf_counter() - start, sum(s is not None for s in sets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path,
                        help="where the photos are written (default: a temporary directory)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hashes", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        if not any(folder.glob("*.jpg")):
            make_photos(folder)
        for suffix in ("jpg", "png"):
            files = [p.read_bytes() for p in sorted(folder.glob(f"*.{suffix}"))]
            fast = files_per_second(image_stats_from, files, args.repeat)
            full = files_per_second(full_decode_stats, files, max(1, args.repeat // 3))
            print(f"{suffix.upper()}: {len(files)} files of 1920x1080: image_stats_from "
                  f"{fast:.1f} files/s, full decode + same stats {full:.1f} files/s: "
                  f"{fast / full:.1f}x")
    for distance in (4, 8):
        seconds, found = near_duplicates_time(args.hashes, distance)
        print(f"near_duplicate_sets of {args.hashes:,} hashes within {distance} bits: "
              f"{seconds:.2f} s ({found:,} files in a set)")


if __name__ == "__main__":
    main()
