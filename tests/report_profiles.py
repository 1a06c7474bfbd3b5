"""Profiles for the report tests, shaped as the issue-9 Profile model, from real files.

The images are written with Pillow (smooth random scenes, and dark, washed-out, blurred, tiny,
thin, grey, duplicated, re-encoded and corrupt variants), the point clouds as KITTI ``.bin``
files; each is measured with the real content functions (``image_stats_from``,
``pointcloud_stats_from``), grouped into duplicate sets with ``duplicates``, and thumbnailed
with Pillow as the profile does. ``ModelProfile`` has the attributes the report reads
(source, column, by, to_arrow(), summary, groups, thumbnails, embeddings), so the report is
tested before, and independently of, the code in ``fedquery/profile.py`` that builds them.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from PIL import Image, ImageFilter

from fedquery.functions import duplicates, image_content, pointcloud_content

NEAR_DUPLICATE_BITS = 6
THUMB_SIDE, THUMB_QUALITY = 128, 70
IMAGE_FIELDS = [f for f in image_content.IMAGE_STATS_ARROW if f.name != "error"]
CLOUD_FIELDS = [f for f in pointcloud_content.POINTCLOUD_STATS_ARROW
                if f.name != "error" and f.name not in image_content.FIELDS]
FLAGS = ("dark", "overexposed", "blurry", "tiny", "odd_aspect", "grayscale")


@dataclass
class ModelProfile:
    """The Profile model's attributes, nothing more."""

    source: str
    column: str | None
    by: list[str]
    files: pa.Table = field(repr=False)
    summary: dict[str, Any] = field(repr=False)
    groups: pa.Table | None = field(repr=False)
    thumbnails: dict[str, bytes] = field(repr=False)
    embeddings: pa.Table | None = field(repr=False)

    def to_arrow(self) -> pa.Table:
        return self.files


# ---------------------------------------------------------------- files


def scene(rng: np.random.Generator, size: tuple[int, int] = (160, 96)) -> Image.Image:
    """A smooth random colour picture with some edges: a photo-like image that is not blurry."""
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(img).astype(np.int16)
    pixels += rng.integers(-40, 41, pixels.shape, dtype=np.int16)  # texture
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def variants(rng: np.random.Generator) -> dict[str, bytes]:
    """One file of every kind the report shows, by name (a name ends with its extension)."""
    base = scene(rng)
    original = jpeg(base)
    pixels = np.asarray(base).astype(np.float32)
    return {
        "plain.jpg": jpeg(scene(rng)),
        "original.jpg": original,
        "copy-of-original.jpg": original,  # an exact duplicate
        "reencoded.jpg": jpeg(base, quality=60),  # a near duplicate
        "dark.jpg": jpeg(Image.fromarray((pixels * 0.08).astype(np.uint8))),
        "washed.png": png(Image.fromarray((235 + pixels * 0.07).clip(0, 255).astype(np.uint8))),
        "blurred.jpg": jpeg(scene(rng).filter(ImageFilter.GaussianBlur(6))),
        "tiny.png": png(scene(rng, (20, 14))),
        "thin.png": png(scene(rng, (400, 40))),
        "grey.png": png(scene(rng).convert("L")),
        "corrupt.jpg": original[:400],
        "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
    }


def cloud(rng: np.random.Generator, points: int) -> bytes:
    """A KITTI sweep: float32 x, y, z, intensity."""
    xyz = rng.normal(0, [20, 12, 1.5], (points, 3))
    return np.column_stack([xyz, rng.random(points)]).astype(np.float32).tobytes()


# ---------------------------------------------------------------- measuring


def measure(path: Path, uri: str) -> dict[str, Any]:
    """The per-file row of the model: kind, status, error and every measure."""
    kind = "pointcloud" if uri.endswith(".bin") else "image"
    if not path.exists():
        row = dict.fromkeys(f.name for f in IMAGE_FIELDS + CLOUD_FIELDS)
        return row | {"uri": uri, "kind": kind, "status": "missing", "error": f"file not found: {uri}"}
    data = path.read_bytes()
    if kind == "image":
        stats = image_content.image_stats_from(data) | dict.fromkeys(f.name for f in CLOUD_FIELDS)
    else:
        stats = dict.fromkeys(f.name for f in IMAGE_FIELDS) | pointcloud_content.pointcloud_stats_from(
            data, path.name) | {"bytes": len(data)}
    status = "ok" if stats["error"] is None else "corrupt"
    return stats | {"uri": uri, "kind": kind, "status": status}


def thumbnail(path: Path) -> bytes | None:
    """What the profile keeps for a picture: a JPEG, long side 128, quality 70."""
    try:
        with Image.open(path) as img:
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            return jpeg(img.convert("RGB"), THUMB_QUALITY)
    except (OSError, ValueError):
        return None


def embedding(path: Path) -> list[float] | None:
    """A small real embedding: the picture's 4×4 RGB means, scaled to 0..1."""
    try:
        with Image.open(path) as img:
            return (np.asarray(img.convert("RGB").resize((4, 4), Image.Resampling.BOX))
                    .astype(np.float32).ravel() / 255).tolist()
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- the profile


def build(root: Path, files: list[tuple[str, dict[str, Any]]], by: list[str], *,
          source: str = "frames", thumbs_per_group: int = 12, flagged_shown: int = 60) -> ModelProfile:
    """A profile of the files under ``root`` named in ``files``: (relative uri, its ``by``
    values); a uri may appear with several groups (one row each), as in the model."""
    measured = {u: measure(root / u, u) for u in dict.fromkeys(u for u, _ in files)}
    table = _files_table(measured, files, by)
    return ModelProfile(source, "image_uri", by, table, summarize(table), _groups(table, by),
                        _thumbnails(root, table, by, thumbs_per_group, flagged_shown),
                        _embeddings(root, table))


def _files_table(measured: dict[str, dict], files: list[tuple[str, dict]], by: list[str]) -> pa.Table:
    uris = list(measured)
    exact = dict(zip(uris, duplicates.duplicate_sets([measured[u]["content_hash"] for u in uris]),
                     strict=True))
    near = dict(zip(uris, duplicates.near_duplicate_sets([measured[u]["phash"] for u in uris],
                                                         NEAR_DUPLICATE_BITS), strict=True))
    fixed = {"uri", "kind", "status", "error", *image_content.FIELDS, *pointcloud_content.FIELDS}
    names = [f"by_{b}" if b in fixed else b for b in by]
    columns: dict[str, pa.Array] = {"uri": pa.array([u for u, _ in files], pa.string())}
    for name, b in zip(names, by, strict=True):
        columns[name] = pa.array([values[b] for _, values in files])
    rows = [measured[u] for u, _ in files]
    for name, kind in (("kind", pa.string()), ("status", pa.string()), ("error", pa.string())):
        columns[name] = pa.array([r[name] for r in rows], kind)
    for f in IMAGE_FIELDS + CLOUD_FIELDS:
        columns[f.name] = pa.array([r[f.name] for r in rows], f.type)
    columns["duplicate_set"] = pa.array([exact[u] for u, _ in files], pa.int64())
    columns["near_duplicate_set"] = pa.array([near[u] for u, _ in files], pa.int64())
    return pa.table(columns)


def summarize(files: pa.Table) -> dict[str, Any]:
    """The model's summary dict, counted over distinct files."""
    rows = {r["uri"]: r for r in files.to_pylist()}.values()
    ok = [r for r in rows if r["status"] == "ok"]

    def stats(values: list) -> dict[str, Any]:
        values = [v for v in values if v is not None]
        return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 3)} \
            if values else {"min": None, "max": None, "mean": None}

    images = [r for r in ok if r["kind"] == "image"]
    clouds = [r for r in ok if r["kind"] == "pointcloud"]
    sets = lambda col: {r[col] for r in rows if r[col] is not None}  # noqa: E731
    return {
        "total": len(rows), "rows": files.num_rows, "ok": len(ok),
        **{s: sum(r["status"] == s for r in rows) for s in ("missing", "corrupt", "forbidden")},
        "formats": dict(Counter(r["format"] for r in rows if r["format"])),
        "kinds": dict(Counter(r["kind"] for r in rows)),
        "bytes": {"total": sum(r["bytes"] or 0 for r in ok), **stats([r["bytes"] for r in ok])},
        "images": {"count": len(images), "width": stats([r["width"] for r in images]),
                   "height": stats([r["height"] for r in images]),
                   "modes": dict(Counter(r["mode"] for r in images)),
                   **{m: stats([r[m] for r in images]) for m in
                      ("brightness", "contrast", "sharpness", "colourfulness", "entropy")}},
        "pointclouds": {"count": len(clouds), "points": stats([r["points"] for r in clouds]),
                        "density": stats([r["density"] for r in clouds])},
        "flags": {f: sum(bool(r[f]) for r in rows) for f in FLAGS},
        "duplicates": {"sets": len(sets("duplicate_set")),
                       "files": sum(r["duplicate_set"] is not None for r in rows)},
        "near_duplicates": {"sets": len(sets("near_duplicate_set")),
                            "files": sum(r["near_duplicate_set"] is not None for r in rows)},
        "errors": dict(Counter((r["error"] or "").split(":")[0] for r in rows if r["error"])),
    }


def _groups(files: pa.Table, by: list[str]) -> pa.Table | None:
    if not by:
        return None
    names = [n for n in files.column_names[1:1 + len(by)]]
    con = duckdb.connect()
    con.register("files", files)
    keys = ", ".join(f'"{n}"' for n in names)  # test-made column names, not user input
    table = con.sql(f"""SELECT {keys}, count(*) AS files, count(*) FILTER (status = 'ok') AS ok,
        count(*) FILTER (status = 'missing') AS missing, count(*) FILTER (status = 'corrupt') AS corrupt,
        sum(bytes) FILTER (status = 'ok')::BIGINT AS bytes, count(*) FILTER (dark) AS dark,
        count(*) FILTER (blurry) AS blurry FROM files GROUP BY ALL ORDER BY ALL""").to_arrow_table()
    con.close()
    return table


def _thumbnails(root: Path, files: pa.Table, by: list[str], per_group: int, flagged: int) -> dict[str, bytes]:
    """Up to ``per_group`` files per group and ``flagged`` flagged/duplicate files, as the model."""
    rows = files.to_pylist()
    names = files.column_names[1:1 + len(by)]
    chosen: dict[str, None] = {}
    taken: Counter = Counter()
    for r in rows:
        key = tuple(r[n] for n in names)
        if r["status"] == "ok" and r["kind"] == "image" and taken[key] < per_group:
            taken[key] += 1
            chosen[r["uri"]] = None
    marked = [r["uri"] for r in rows if r["kind"] == "image" and r["status"] != "missing" and (
        any(r[f] for f in FLAGS) or r["duplicate_set"] is not None
        or r["near_duplicate_set"] is not None or r["status"] == "corrupt")]
    chosen.update(dict.fromkeys(list(dict.fromkeys(marked))[:flagged]))
    thumbs = {u: thumbnail(root / u) for u in chosen}
    return {u: t for u, t in thumbs.items() if t is not None}


def _embeddings(root: Path, files: pa.Table) -> pa.Table | None:
    ok = [r["uri"] for r in files.to_pylist() if r["status"] == "ok" and r["kind"] == "image"]
    pairs = [(u, embedding(root / u)) for u in dict.fromkeys(ok)]
    pairs = [(u, v) for u, v in pairs if v is not None]
    if not pairs:
        return None
    return pa.table({"uri": pa.array([u for u, _ in pairs], pa.string()),
                     "vector": pa.array([v for _, v in pairs], pa.list_(pa.float32()))})


# ---------------------------------------------------------------- ready-made sets


def write(root: Path, name: str, data: bytes) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


def weather_set(root: Path, seed: int = 3) -> list[tuple[str, dict[str, Any]]]:
    """Every variant in each of three weathers (one of them hostile), two point clouds, a
    missing file, a file named with markup, and a file in two groups."""
    rng = np.random.default_rng(seed)
    files: list[tuple[str, dict[str, Any]]] = []
    for weather in ("rain", "clear", "<script>alert('w')</script>"):
        folder = "hostile" if weather.startswith("<") else weather
        for name, data in variants(rng).items():
            files.append((write(root, f"{folder}/{name}", data), {"weather": weather}))
        files.append((write(root, f"{folder}/sweep.bin", cloud(rng, 3000)), {"weather": weather}))
        files.append((f"{folder}/gone.jpg", {"weather": weather}))
    files.append((write(root, "rain/<script>alert(1)</script>.jpg", jpeg(scene(rng))), {"weather": "rain"}))
    files.append(("rain/plain.jpg", {"weather": None}))  # one file, a second group
    return files


def many_set(root: Path, n: int, groups: int, seed: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """``n`` small pictures (every tenth one dark, every 25th a copy of the one before) in
    ``groups`` cities."""
    rng = np.random.default_rng(seed)
    files, previous = [], b""
    for i in range(n):
        img = scene(rng, (96, 64))
        if i % 10 == 0:
            img = Image.fromarray((np.asarray(img) * 0.08).astype(np.uint8))
        data = previous if i % 25 == 24 else jpeg(img)
        files.append((write(root, f"img/{i:05d}.jpg", data), {"city": f"city-{i % groups:02d}"}))
        previous = data
    return files
