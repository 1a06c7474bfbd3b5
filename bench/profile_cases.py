"""One measured run of `bench/profile.py`, in a fresh process so its peak RSS is its own.

    PYTHONPATH=. python bench/profile_cases.py CASE DATA OUT [--limit N]

CASE: `pillow_full` (one thread: the whole image decoded, the statistics at full resolution
with numpy, md5 and an imagehash-style phash), `pillow_header` (one thread: `Image.open` and
`size`), `fedquery_content` (`con.profile(SELECT ..., by='weather')`), `fedquery_layer` (the content
layer the profile is built on, driven directly: the same SELECT, `image_stats_from` in a
thread pool, duplicate sets; the figure to have before the content profile is in),
`fedquery_header` (`image_info` in SQL over the same SELECT). OUT gets a JSON object:
seconds, cpu_seconds, rss_start_mb, rss_peak_mb, and per-file results for the comparison.
Only the work is timed (for fedquery: connecting, planning and running); imports are not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import sqlglot
from PIL import Image
from sqlglot import exp

BY = "weather"
BATCH = 512
NEAR_BITS = 4  # fedquery_layer: near-duplicates within this many phash bits (the profile's
#               fedquery.profile_measure.NEAR_DUPLICATE_BITS)


def select(limit: int | None, *extra: str) -> str:
    """The profiled query: each photo with its shoot's weather (the first `limit` by file_id),
    and the `extra` expressions."""
    query = (sqlglot.select("p.uri", "s.weather", *extra).from_("photos AS p")
             .join("shoots AS s", on="p.shoot_id = s.shoot_id"))
    if limit is not None:
        query = query.where(exp.LT(this=exp.column("file_id", "p"),
                                   expression=exp.Literal.number(limit)))
    return query.sql(dialect="duckdb")


def listed(data: Path, limit: int | None) -> list[str]:
    """The files of the run, as URIs relative to `data/files` (the manifest's order)."""
    rows = json.loads((data / "manifest.json").read_text())["files"]
    return [r["uri"] for r in rows if limit is None or r["file_id"] < limit]


# --- (a) Pillow, full decode ----------------------------------------------------------------

_DCT = 2.0 * np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)


def full_decode(data: bytes) -> dict:
    """What a user writes: decode it all, the statistics at full resolution, md5 and phash."""
    import io

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        rgb = np.asarray(img.convert("RGB"), np.float32) / 255.0
        grey = img.convert("L")
    luma = np.asarray(grey, np.float32) / 255.0
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1]
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    hist = np.bincount(np.asarray(grey).ravel(), minlength=256) / luma.size
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = _DCT @ small @ _DCT.T
    return {"brightness": float(luma.mean()), "contrast": float(luma.std()),
            "sharpness": float(lap.var()),
            "colourfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
            "entropy": float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum()),
            "md5": hashlib.md5(data).hexdigest(),  # noqa: S324 - a content hash, not security
            "phash": "".join("1" if b else "0" for b in (low > np.median(low)).ravel())}


def pillow_full(data: Path, limit: int | None) -> dict:
    root, ok = data / "files", 0
    for uri in listed(data, limit):
        try:
            full_decode((root / uri).read_bytes())
            ok += 1
        except Exception:  # noqa: BLE001, S112 - a corrupt file is counted, as everywhere
            continue
    return {"ok": ok}


def pillow_header(data: Path, limit: int | None) -> dict:
    root, ok = data / "files", 0
    for uri in listed(data, limit):
        try:
            with Image.open(root / uri) as img:
                img.size  # noqa: B018 - the header is what is measured
            ok += 1
        except Exception:  # noqa: BLE001, S112
            continue
    return {"ok": ok}


# --- fedquery -------------------------------------------------------------------------------


def fedquery_header(data: Path, limit: int | None) -> dict:
    import fedquery

    with fedquery.connect(data / "catalog.yaml") as con:
        table = con.sql(select(limit, "image_info(p.uri) AS info")).arrow()
    errors = sum(e is not None for e in table.column("info").combine_chunks().field("error").to_pylist())
    return {"ok": table.num_rows - errors, "groups": dict(Counter(table.column(BY).to_pylist()))}


def fedquery_content(data: Path, limit: int | None) -> dict:
    """`con.profile(SELECT ..., by='weather')`; {"unavailable": why} when this fedquery's
    profile cannot take a SELECT yet."""
    import fedquery

    phases = _timing_phases()
    with fedquery.connect(data / "catalog.yaml") as con:
        try:
            profile = con.profile(select(limit), by=BY)
        except fedquery.PlanError as exc:
            if "unknown table" not in str(exc):
                raise
            return {"unavailable": str(exc).splitlines()[0][:200]}
        return _from_profile(profile) | {"phases": phases}


PHASES = (("fedquery.profile", "measure"), ("fedquery.profile_media", "thumbnails"),
          ("fedquery.profile_media", "embeddings"))


def _timing_phases() -> dict[str, float]:
    """Seconds con.profile spends in each of its passes over the files (the functions of
    `PHASES` that this fedquery has are wrapped with a clock; the others are left out)."""
    import importlib

    spent: dict[str, float] = {}
    for module_name, name in PHASES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        function = getattr(module, name, None)
        if callable(function):
            setattr(module, name, _clocked(function, name, spent))
    return spent


def _clocked(function, name: str, spent: dict[str, float]):
    def clocked(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
    return clocked


def fedquery_layer(data: Path, limit: int | None) -> dict:
    import fedquery

    with fedquery.connect(data / "catalog.yaml") as con:
        return _from_layer(con, limit)


def _from_profile(profile) -> dict:
    table = profile.to_arrow()
    cols = {name: table.column(name).to_pylist() for name in
            ("uri", BY, "status", "dark", "blurry", "duplicate_set", "near_duplicate_set")}
    return {"ok": cols["status"].count("ok"),
            "groups": dict(Counter(cols[BY])), "per_file": _per_file(cols)}


def _from_layer(con, limit: int | None) -> dict:
    """The content layer as the profile uses it: the SELECT run by fedquery, each file read
    through the confined, capped blob reads, `image_stats_from` in a pool of one thread per
    core, kept as Arrow batch by batch; then exact and near-duplicate sets."""
    import pyarrow as pa

    from fedquery.functions.duplicates import duplicate_sets, near_duplicate_sets
    from fedquery.functions.image_content import image_stats_array

    rows = con.sql(select(limit)).arrow()
    uris = rows.column("uri").to_pylist()
    blobs = con._session.functions.blobs
    batches = []
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for start in range(0, len(uris), BATCH):
            stats = list(pool.map(lambda u: _stats(blobs, u), uris[start:start + BATCH]))
            batches.append(image_stats_array(stats))
    stats = pa.chunked_array(batches).combine_chunks()
    cols = {"uri": uris, BY: rows.column(BY).to_pylist(),
            "status": ["ok" if e is None else "corrupt" for e in stats.field("error").to_pylist()],
            "dark": stats.field("dark").to_pylist(), "blurry": stats.field("blurry").to_pylist(),
            "duplicate_set": duplicate_sets(stats.field("content_hash").to_pylist()),
            "near_duplicate_set": near_duplicate_sets(stats.field("phash").to_pylist(), NEAR_BITS)}
    return {"ok": cols["status"].count("ok"), "groups": dict(Counter(cols[BY])),
            "per_file": _per_file(cols)}


def _stats(blobs, uri: str) -> dict:
    from fedquery.errors import FedQueryError
    from fedquery.functions.image_content import image_stats_error, image_stats_from

    try:
        data, size = blobs.read(blobs.resolve(uri, "images"), limit="read_blob")
    except FedQueryError as exc:
        return image_stats_error(str(exc))
    return image_stats_from(data, size)


def _per_file(cols: dict) -> dict:
    """uri -> [status, dark, blurry, duplicate_set, near_duplicate_set] (set ids as text)."""
    name = lambda s: None if s is None else str(s)  # noqa: E731
    return {u: [st, d, b, name(e), name(n)] for u, st, d, b, e, n in zip(
        cols["uri"], cols["status"], cols["dark"], cols["blurry"], cols["duplicate_set"],
        cols["near_duplicate_set"], strict=True)}


CASES = {f.__name__: f for f in (pillow_full, pillow_header, fedquery_content, fedquery_layer,
                                  fedquery_header)}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=CASES)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    import fedquery  # noqa: F401 - imported before the clock starts, as in a session

    start_rss, cpu, start = rss_mb(), time.process_time(), time.perf_counter()
    result = CASES[args.case](args.data, args.limit)
    result |= {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
               "rss_start_mb": start_rss, "rss_peak_mb": rss_mb(),
               "files": len(listed(args.data, args.limit))}
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
