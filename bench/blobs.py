"""Measure ``image_info`` against a plain Pillow loop that fully decodes each image.

A few thousand JPEG and PNG images of varied sizes (about a tenth of them 1-3 megapixels) are
generated deterministically with Pillow into ``bench/.data/blobs/`` and uploaded to an
S3-compatible server (``bench/services.py``: ``moto_server`` unless ``FEDQUERY_BENCH_S3_ENDPOINT``
is set). Four ways are timed, best of N runs each:

* fedquery, local:  ``SELECT count(*), sum(...) FROM (SELECT image_info(uri) AS i FROM imgs)``
  with ``imgs.uri`` a blob column into a local ``files`` source;
* fedquery, S3:     the same query, the ``files`` source on ``s3://bucket/prefix/``;
* loop, local:      ``Image.open(path).load()`` for every file, one after another;
* loop, S3:         each object read whole with pyarrow's ``S3FileSystem``, then loaded.

Images per second, the ratio fedquery/loop and the bytes fedquery read from S3 per image (its
counting filesystem) are printed; both ways must agree on format, size and mode of every image.

    python bench/blobs.py [--count 2500] [--runs 3] [--json FILE] [--no-s3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from PIL import Image
from services import S3_CREDENTIALS, s3

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
import fedquery  # noqa: E402

SEED = 20261126
BUCKET, PREFIX = "fedquery-bench-blobs", "camera/v1"
QUERY = ("SELECT count(*), sum(i.width::BIGINT * i.height), sum(i.bytes), count(i.error) "
         "FROM (SELECT image_info(uri) AS i FROM imgs)")
INFO_QUERY = "SELECT uri, image_info(uri) AS i FROM imgs"
UPLOAD_THREADS = 16


# --------------------------------------------------------------------------- data


def data_dir(count: int) -> Path:
    return BENCH_DIR / ".data" / "blobs" / f"n{count}-seed{SEED}"


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A 2048x1536 RGB picture (smooth gradients, blobs and mild noise) to crop images from."""
    h, w = 1536, 2048
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, phase = rng.uniform(0.002, 0.02, 2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 128 + 90 * np.sin(x * fx + phase) * np.cos(y * fy)
    for _ in range(40):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 200)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _size(rng: np.random.Generator) -> tuple[int, int]:
    if rng.random() < 0.1:  # 1-3 megapixels
        megapixels = rng.uniform(1.0, 3.0)
        aspect = rng.choice([4 / 3, 3 / 2, 16 / 9])
        height = int(np.sqrt(megapixels * 1e6 / aspect))
        return int(height * aspect), height
    return int(rng.integers(160, 1025)), int(rng.integers(120, 769))


def _image(texture: np.ndarray, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    th, tw = texture.shape[:2]
    cw, ch = min(width, tw), min(height, th)
    x0, y0 = int(rng.integers(0, tw - cw + 1)), int(rng.integers(0, th - ch + 1))
    crop = Image.fromarray(texture[y0:y0 + ch, x0:x0 + cw])
    return crop if (cw, ch) == (width, height) else crop.resize((width, height))


def ensure_data(count: int) -> tuple[Path, float]:
    """Generate ``count`` images unless already there; return the folder and build seconds."""
    root = data_dir(count)
    if (root / "BUILD_OK").exists():
        return root, 0.0
    start = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    rng = np.random.default_rng(SEED)
    texture = _texture(rng)
    for i in range(count):
        width, height = _size(rng)
        img = _image(texture, rng, width, height)
        kind = rng.random()
        folder = staging / f"d{i // 500:02d}"
        folder.mkdir(exist_ok=True)
        if kind < 0.6:
            img.save(folder / f"img{i:05d}.jpg", "JPEG", quality=int(rng.integers(70, 96)))
        elif kind < 0.7:
            img.convert("L").save(folder / f"img{i:05d}.jpg", "JPEG", quality=85)
        elif kind < 0.9:
            img.save(folder / f"img{i:05d}.png", "PNG", compress_level=3)
        elif kind < 0.95:
            rgba = img.convert("RGBA")
            rgba.putalpha(128)
            rgba.save(folder / f"img{i:05d}.png", "PNG", compress_level=3)
        else:
            img.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / f"img{i:05d}.png", "PNG")
    (staging / "BUILD_OK").write_text(f"{count} images, seed {SEED}\n")
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root, time.perf_counter() - start


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".jpg", ".png"))


def upload(root: Path, files: list[Path], endpoint: str) -> list[str]:
    """Every image to ``s3://BUCKET/PREFIX/...`` (in parallel); return the relative URIs."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["region"],
                          aws_access_key_id=S3_CREDENTIALS["key"],
                          aws_secret_access_key=S3_CREDENTIALS["secret"])
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                             client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=BUCKET)
    uris = [p.relative_to(root).as_posix() for p in files]
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(lambda item: client.upload_file(str(item[0]), BUCKET, f"{PREFIX}/{item[1]}"),
                      zip(files, uris, strict=True)))
    return uris


# --------------------------------------------------------------------------- the ways


def connect(files_root: str, options: dict | None, uris: list[str], lake: Path) -> Any:
    """fedquery over a local Parquet table ``imgs(uri)`` whose ``uri`` is a blob column."""
    (lake / "imgs").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"uri": uris}), lake / "imgs" / "part-0.parquet")
    store = {"kind": "files", "root": files_root}
    if options:
        store["options"] = options
    return fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": str(lake)},
                                         "store": store},
                             "tables": {"imgs": {"source": "lake", "path": "imgs/"}},
                             "blobs": {"imgs.uri": "store"}})


def fedquery_run(con: Any) -> tuple:
    return tuple(con.sql(QUERY).fetchall()[0])


def fedquery_infos(con: Any) -> dict[str, tuple]:
    return {uri: (i["format"], i["width"], i["height"], i["mode"], i["error"])
            for uri, i in con.sql(INFO_QUERY).fetchall()}


def _loaded(image: Image.Image) -> tuple:
    with image:
        image.load()
        return image.format, image.width, image.height, image.mode, None


def loop_local(root: Path, uris: list[str]) -> dict[str, tuple]:
    return {uri: _loaded(Image.open(root / uri)) for uri in uris}


def loop_s3(fs: pafs.S3FileSystem, uris: list[str]) -> dict[str, tuple]:
    out = {}
    for uri in uris:
        with fs.open_input_stream(f"{BUCKET}/{PREFIX}/{uri}") as stream:
            data = stream.read()
        out[uri] = _loaded(Image.open(io.BytesIO(data)))
    return out


def best_of(runs: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def check_agree(way: str, fed: dict[str, tuple], loop: dict[str, tuple]) -> int:
    """How many images differ (printed); format, size and mode must match, no error."""
    bad = [(u, fed.get(u), loop[u]) for u in loop if fed.get(u) != loop[u]]
    for uri, got, want in bad[:5]:
        print(f"  MISMATCH {way} {uri}: fedquery {got} vs Pillow {want}", file=sys.stderr)
    return len(bad)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2500, help="images to generate")
    p.add_argument("--runs", type=int, default=3, help="runs per way (best kept)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--no-s3", action="store_true", help="local files only")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root, build_s = ensure_data(args.count)
    files = image_files(root)
    uris = [p.relative_to(root).as_posix() for p in files]
    total_bytes = sum(p.stat().st_size for p in files)
    n = len(files)
    print(f"{n} images ({total_bytes / n / 1024:.0f} KiB average, {total_bytes / 2**20:.0f} MiB) "
          f"in {root}" + (f" (generated in {build_s:.1f} s)" if build_s else ""))
    rows: list[dict[str, Any]] = []
    mismatches = 0
    lake = Path(tempfile.mkdtemp(prefix="fedquery-bench-blobs-"))
    try:
        with connect(str(root), None, uris, lake / "local") as con:
            fed_s, answer = best_of(args.runs, lambda: fedquery_run(con))
            fed_infos = fedquery_infos(con)
        loop_s, loop_infos = best_of(args.runs, lambda: loop_local(root, uris))
        mismatches += check_agree("local", fed_infos, loop_infos)
        rows.append(_row("local", n, fed_s, loop_s, None, answer))
        if not args.no_s3:
            with s3() as endpoint:
                start = time.perf_counter()
                upload(root, files, endpoint)
                print(f"uploaded to {endpoint} in {time.perf_counter() - start:.1f} s")
                options = {"endpoint_url": endpoint, "key": S3_CREDENTIALS["key"],
                           "secret": S3_CREDENTIALS["secret"], "region": S3_CREDENTIALS["region"]}
                with connect(f"s3://{BUCKET}/{PREFIX}/", options, uris, lake / "s3") as con:
                    stats = con._session.functions.blobs.roots["store"].filesystem.handler.stats
                    before, files_before = stats.bytes, stats.snapshot()
                    fed_infos = fedquery_infos(con)
                    per_image = (stats.bytes - before) / n
                    most = max(v - files_before.get(k, 0) for k, v in stats.snapshot().items())
                    print(f"S3 bytes read by image_info: {per_image:,.0f} per image on average, "
                          f"{most:,} at most (files: {total_bytes / n:,.0f} on average)")
                    fed_s, answer = best_of(args.runs, lambda: fedquery_run(con))
                fs = pafs.S3FileSystem(access_key=S3_CREDENTIALS["key"],
                                       secret_key=S3_CREDENTIALS["secret"],
                                       region=S3_CREDENTIALS["region"],
                                       endpoint_override=endpoint.split("://", 1)[1],
                                       scheme=endpoint.split("://", 1)[0])
                loop_s, loop_infos = best_of(args.runs, lambda: loop_s3(fs, uris))
                mismatches += check_agree("s3", fed_infos, loop_infos)
                rows.append(_row("s3", n, fed_s, loop_s, per_image, answer))
                rows[-1]["s3_max_bytes_per_image"] = most
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    print_table(rows, args.runs)
    print(f"fedquery and Pillow agree on format, size and mode of every image: "
          f"{'yes' if not mismatches else f'NO ({mismatches} differ)'}")
    if args.json:
        meta = {"images": n, "total_bytes": total_bytes, "runs": args.runs, "seed": SEED,
                "cpus": os.cpu_count(), "mismatches": mismatches}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    return 1 if mismatches else 0


def _row(where: str, n: int, fed_s: float, loop_s: float, per_image: float | None,
         answer: tuple) -> dict[str, Any]:
    count, _, _, errors = answer
    if count != n or errors:
        raise SystemExit(f"{where}: fedquery saw {count} images, {errors} errors; expected {n}, 0")
    return {"where": where, "images": n, "fedquery_s": fed_s, "loop_s": loop_s,
            "fedquery_images_per_s": n / fed_s, "loop_images_per_s": n / loop_s,
            "ratio": loop_s / fed_s, "s3_bytes_per_image": per_image}


def print_table(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"\nimage_info vs Pillow open+load, best of {runs}")
    header = (f"{'where':<6} {'images':>7} {'fedquery img/s':>15} {'loop img/s':>11} "
              f"{'fedquery/loop':>14} {'S3 bytes/img':>13}")
    print(header)
    print("-" * len(header))
    for r in rows:
        per = f"{r['s3_bytes_per_image']:,.0f}" if r["s3_bytes_per_image"] is not None else "-"
        print(f"{r['where']:<6} {r['images']:>7} {r['fedquery_images_per_s']:>15,.0f} "
              f"{r['loop_images_per_s']:>11,.0f} {r['ratio']:>13.1f}x {per:>13}")


if __name__ == "__main__":
    sys.exit(main())
