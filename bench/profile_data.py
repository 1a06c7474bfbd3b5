"""The data set of `bench/profile.py`: distinct photos, planted copies, a warehouse and a catalog.

    PYTHONPATH=. python bench/profile_data.py DIR [--files N] [--small]

Every picture is a collage of 2 to 9 tiles, each a random crop of one of the photos that ship
with scikit-image (`skimage/data`) and scikit-learn (`sklearn/datasets/images`), flipped or
turned at random, its channels scaled by 0.85-1.15; the whole collage gets a colour shift too.
A seed per file makes them distinct: a base whose perceptual hash is within `DISTINCT_BITS` of
another base's is drawn again. Sizes are 1280x720..1920x1080 (`--small`: 480x270..640x360, for
the 10x memory run). 15% of the bases are PNG, the rest JPEG (quality 85-95).

Planted, each from a random base: exact duplicates (byte copies), near duplicates (re-encoded
at another quality, or resized by 2-5%), dark copies (`ImageEnhance.Brightness` 0.1-0.2),
blurred copies (`GaussianBlur`, radius 4-8, of a base with edges: Laplacian variance of its
512-px grey image above `EDGES`), corrupt files (a truncated base, random bytes). File names
say nothing of what a file is; `manifest.json` does: a row per file with `kind` (base, exact,
near, dark, blurry, truncated, random) and `of` (the base it was made from).

The warehouse (`warehouse.duckdb`): `photos(file_id, uri, shoot_id)` and
`shoots(shoot_id, site, weather)`; `catalog.yaml` declares it, the files root `images` and
`photos.uri` as a blob column, so a profile can group the files by `shoots.weather`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
from multiprocessing import Pool
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

SOURCES = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png",
           "coins.png", "grass.png", "gravel.png", "ihc.png", "motorcycle_left.png",
           "motorcycle_right.png", "rocket.jpg", "china.jpg", "flower.jpg")  # photos, not masks
LAYOUTS = ((2, 1), (1, 2), (2, 2), (3, 2), (2, 3), (3, 3))
SHARES = {"exact": 0.03, "near": 0.05, "dark": 0.03, "blurry": 0.03, "truncated": 0.005,
          "random": 0.005}  # of the files; the rest are bases
PNG_SHARE = 0.15
DISTINCT_BITS = 12  # bases are at least this many phash bits apart
EDGES = 0.004  # a base is blurred only when its 512-px grey Laplacian variance is above this
WEATHER = ("clear", "cloudy", "rain", "fog", "snow", "night")
SHOOTS = 40
VERSION = 1  # bump when the generator changes: a cached data set is rebuilt


def source_paths() -> list[Path]:
    import skimage
    import sklearn.datasets

    folders = (Path(os.path.dirname(skimage.__file__), "data"),
               Path(os.path.dirname(sklearn.datasets.__file__), "images"))
    return [folder / name for name in SOURCES for folder in folders if (folder / name).exists()]


_PHOTOS: list[Image.Image] = []


def _photos() -> list[Image.Image]:
    if not _PHOTOS:
        for path in source_paths():
            with Image.open(path) as img:
                _PHOTOS.append(img.convert("RGB"))
    return _PHOTOS


# --- bases ----------------------------------------------------------------------------------


def picture_size(rng: random.Random, small: bool) -> tuple[int, int]:
    low, high = (480, 640) if small else (1280, 1920)
    width = rng.randrange(low, high + 1)
    height = round(width / rng.choice((16 / 9, 3 / 2, 4 / 3)))
    return width, min(max(height, low * 9 // 16), high * 9 // 16)


def tile(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A random crop of a random photo, fitted to `size`, flipped or turned, channels scaled."""
    photo = rng.choice(_photos())
    w, h = photo.size
    cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
    x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
    img = ImageOps.fit(photo.crop((x, y, x + cw, y + ch)), size, Image.Resampling.LANCZOS)
    img = img.transpose(rng.choice(list(Image.Transpose))) if rng.random() < 0.6 else img
    if img.size != size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    gains = [rng.uniform(0.85, 1.15) for _ in range(3)]
    return Image.merge("RGB", [band.point(lambda v, g=g: min(255, int(v * g)))
                               for band, g in zip(img.split(), gains, strict=True)])


def collage(seed: int, small: bool) -> Image.Image:
    rng = random.Random(seed)
    width, height = picture_size(rng, small)
    cols, rows = rng.choice(LAYOUTS)
    canvas = Image.new("RGB", (width, height))
    xs = [width * i // cols for i in range(cols + 1)]
    ys = [height * j // rows for j in range(rows + 1)]
    for i in range(cols):
        for j in range(rows):
            canvas.paste(tile(rng, (xs[i + 1] - xs[i], ys[j + 1] - ys[j])), (xs[i], ys[j]))
    return ImageEnhance.Color(canvas).enhance(rng.uniform(0.8, 1.2))


def grey_sharpness(img: Image.Image) -> float:
    """Laplacian variance of the grey image shrunk to a 512-px long side (numpy, for `EDGES`)."""
    grey = img.convert("L")
    grey.thumbnail((512, 512), Image.Resampling.BOX)
    y = np.asarray(grey, np.float64) / 255.0
    return float((y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]).var())


def make_base(task: tuple[str, int, bool, str, int]) -> tuple[int, float]:
    """Write one base picture; its phash (as imagehash computes it) and its sharpness."""
    from fedquery.functions.image_content import perceptual_hash

    path, seed, small, fmt, quality = task
    img = collage(seed, small)
    save(img, path, fmt, quality)
    return perceptual_hash(img), grey_sharpness(img)


def save(img: Image.Image, path: str, fmt: str, quality: int) -> None:
    if fmt == "PNG":
        img.save(path, "PNG")
    else:
        img.save(path, "JPEG", quality=quality)


# --- planted copies -------------------------------------------------------------------------


def make_copy(task: tuple[str, str, str, int, str]) -> None:
    """Write `path` as a `kind` copy of the base at `base`."""
    path, kind, base, seed, fmt = task
    rng = random.Random(seed)
    data = Path(base).read_bytes()
    if kind == "exact":
        shutil.copyfile(base, path)
    elif kind == "truncated":
        Path(path).write_bytes(data[: int(len(data) * rng.uniform(0.3, 0.7))])
    elif kind == "random":
        Path(path).write_bytes(rng.randbytes(rng.randrange(20_000, 400_000)))
    else:
        with Image.open(io.BytesIO(data)) as img:
            save(transformed(img.convert("RGB"), kind, rng), path, fmt, _copy_quality(kind, rng))


def transformed(img: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    if kind == "dark":
        return ImageEnhance.Brightness(img).enhance(rng.uniform(0.1, 0.2))
    if kind == "blurry":
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(4, 8)))
    if rng.random() < 0.5:  # near: resized by a few percent (else only re-encoded)
        scale = rng.choice((-1, 1)) * rng.uniform(0.02, 0.05) + 1
        return img.resize((round(img.width * scale), round(img.height * scale)),
                          Image.Resampling.LANCZOS)
    return img


def _copy_quality(kind: str, rng: random.Random) -> int:
    return rng.randrange(60, 76) if kind == "near" else rng.randrange(85, 96)


# --- the plan -------------------------------------------------------------------------------


def plan(n: int, seed: int) -> list[dict]:
    """Every file's row of the manifest, in file_id order (bases and copies shuffled)."""
    rng = random.Random(seed)
    counts = {kind: max(1, round(n * share)) for kind, share in SHARES.items()}
    bases = n - sum(counts.values())
    kinds = ["base"] * bases + [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(kinds)
    rows = []
    for file_id, kind in enumerate(kinds):
        png = kind == "base" and rng.random() < PNG_SHARE
        uri = f"{file_id // 1000:03d}/img_{file_id:06d}.{'png' if png else 'jpg'}"
        rows.append({"file_id": file_id, "uri": uri, "kind": kind, "of": None,
                     "format": "PNG" if png else "JPEG", "seed": rng.getrandbits(32),
                     "quality": rng.randrange(85, 96), "shoot_id": rng.randrange(SHOOTS)})
    return rows


def build(folder: Path, n: int, small: bool = False, seed: int = 0, workers: int | None = None) -> dict:
    """The data set in `folder` (made once; found again when its parameters match)."""
    manifest_path = folder / "manifest.json"
    params = {"files": n, "small": small, "seed": seed, "version": VERSION}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["params"] == params:
            return manifest
    if folder.exists():
        shutil.rmtree(folder)
    files = folder / "files"
    for shard in range((n + 999) // 1000):
        (files / f"{shard:03d}").mkdir(parents=True, exist_ok=True)
    rows = plan(n, seed)
    with Pool(workers or os.cpu_count()) as pool:
        sharpness = _write_bases(pool, files, [r for r in rows if r["kind"] == "base"], small)
        _write_copies(pool, files, rows, sharpness, random.Random(seed + 1))
    manifest = {"params": params, "files": rows, "groups": _warehouse(folder, rows, seed)}
    (folder / "catalog.yaml").write_text(CATALOG)
    manifest_path.write_text(json.dumps(manifest))
    return manifest


def _write_bases(pool, files: Path, bases: list[dict], small: bool) -> dict[str, float]:
    """Write the bases; redraw those too close (in phash) to another until all are distinct."""
    from fedquery.functions.duplicates import near_duplicate_sets

    todo, hashes, sharpness = bases, {}, {}
    for _attempt in range(6):
        tasks = [(str(files / r["uri"]), r["seed"], small, r["format"], r["quality"])
                 for r in todo]
        for row, (phash, sharp) in zip(todo, pool.imap(make_base, tasks, chunksize=8), strict=True):
            hashes[row["uri"]], sharpness[row["uri"]] = phash, sharp
        uris = [r["uri"] for r in bases]
        sets = near_duplicate_sets([hashes[u] for u in uris], DISTINCT_BITS)
        redraw = {uris[i] for i, s in enumerate(sets) if s is not None and s != i}
        todo = [r for r in bases if r["uri"] in redraw]
        if not todo:
            break
        for row in todo:
            row["seed"] += 1_000_003
    return sharpness


def _write_copies(pool, files: Path, rows: list[dict], sharpness: dict[str, float],
                  rng: random.Random) -> None:
    bases = [r for r in rows if r["kind"] == "base"]
    edged = [r for r in bases if sharpness[r["uri"]] > EDGES] or bases
    tasks = []
    for row in rows:
        if row["kind"] == "base":
            continue
        base = rng.choice(edged if row["kind"] == "blurry" else bases)
        row["of"] = base["uri"]
        fmt = base["format"] if row["kind"] in ("exact", "truncated") else "JPEG"
        if fmt != row["format"] or row["kind"] in ("exact", "truncated"):
            row["format"] = fmt
            row["uri"] = row["uri"].rsplit(".", 1)[0] + (".png" if fmt == "PNG" else ".jpg")
        tasks.append((str(files / row["uri"]), row["kind"], str(files / base["uri"]),
                      row["seed"], fmt))
    for _ in pool.imap_unordered(make_copy, tasks, chunksize=8):
        pass


def _warehouse(folder: Path, rows: list[dict], seed: int) -> dict[str, int]:
    """warehouse.duckdb with `photos` and `shoots`; the number of files per weather."""
    rng = random.Random(seed + 2)
    shoots = [(i, f"site-{i % 7}", rng.choice(WEATHER)) for i in range(SHOOTS)]
    con = duckdb.connect(str(folder / "warehouse.duckdb"))
    con.execute("CREATE TABLE shoots (shoot_id INTEGER PRIMARY KEY, site VARCHAR, weather VARCHAR)")
    con.executemany("INSERT INTO shoots VALUES (?, ?, ?)", shoots)
    photos = pa.table({"file_id": pa.array([r["file_id"] for r in rows], pa.int32()),
                       "uri": [r["uri"] for r in rows],
                       "shoot_id": pa.array([r["shoot_id"] for r in rows], pa.int32())})
    con.register("new_photos", photos)  # one bulk insert: executemany goes row by row
    con.execute("CREATE TABLE photos (file_id INTEGER PRIMARY KEY, uri VARCHAR, shoot_id INTEGER)")
    con.execute("INSERT INTO photos SELECT * FROM new_photos")
    con.close()
    weather = {shoot_id: w for shoot_id, _, w in shoots}
    counts: dict[str, int] = {}
    for r in rows:
        counts[weather[r["shoot_id"]]] = counts.get(weather[r["shoot_id"]], 0) + 1
    return counts


CATALOG = """\
# The bench/profile.py data set: photos linked to shoots in a warehouse.
sources:
  warehouse: {kind: duckdb, path: warehouse.duckdb}
  images:    {kind: files, root: files/}
tables:
  photos: {source: warehouse, table: photos}
  shoots: {source: warehouse, table: shoots}
blobs:
  photos.uri: images
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    manifest = build(args.folder, args.files, args.small)
    kinds: dict[str, int] = {}
    for row in manifest["files"]:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    print(args.folder, kinds, manifest["groups"])


if __name__ == "__main__":
    main()
