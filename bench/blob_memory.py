"""Peak memory of the blob functions on big files, each case in a fresh process.

The data is generated once into ``bench/.data/blob_memory/`` (or ``--data DIR``):

* ``big.bin``: a 3 GiB sparse file (no disk blocks, reads as zeros);
* ``mid-N.bin``: eight 300 MiB sparse files;
* ``huge-NN.png``: 16 copies of one 9400 x 9400 RGB PNG (a smooth gradient, small on disk);
* ``clouds/*.las|laz``: 200 point clouds from laspy (100 LAS, 100 LAZ, 540,000 points each:
  108 million points in all).

Each case runs in its own subprocess and reports its peak resident memory (``VmHWM``; a child's
``ru_maxrss`` carries its parent's), its
wall time and its answer:

* ``read_blob_3gib``: ``SELECT octet_length(read_blob('big.bin'))``;
* ``read_blob_8x300``: ``SELECT read_blob(uri)`` of the eight 300 MiB files, fetched (one
  batch: ``limits.batch_memory`` must hold twice 2.3 GiB, or the query fails before reading);
* ``thumbnail_16``: ``thumbnail(uri, 256)`` of the 16 PNGs in one query;
* ``read_pointcloud_200``: ``sum(len(read_pointcloud(uri)))`` over the 200 clouds;
* ``laspy_loop``: the same count with ``laspy.read`` one file after another (the floor).

    python bench/blob_memory.py [--data DIR] [--cases a,b] [--json FILE]
    python bench/blob_memory.py --limits '{"read_blob": "4GiB"}'   # the files source's limits
    python bench/blob_memory.py --cases read_blob_8x300 \
        --limits '{"read_blob": "512MiB", "batch_memory": "1GiB"}'
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SIDE, PNG_COPIES = 9400, 16
CLOUDS, POINTS = 200, 540_000
MIDS, MID_BYTES = 8, 300 << 20
CASES = ("read_blob_3gib", "read_blob_8x300", "thumbnail_16", "read_pointcloud_200", "laspy_loop")


# --------------------------------------------------------------------------- data


def make_data(folder: Path) -> None:
    """Write the files the cases read (once: existing files are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    big = folder / "big.bin"
    if not big.exists():
        with open(big, "wb") as f:
            f.truncate(3 << 30)
    for i in range(MIDS):
        mid = folder / f"mid-{i}.bin"
        if not mid.exists():
            with open(mid, "wb") as f:
                f.truncate(MID_BYTES)
    _pngs(folder)
    _clouds(folder / "clouds")


def _pngs(folder: Path) -> None:
    import shutil

    import numpy as np
    from PIL import Image

    first = folder / "huge-00.png"
    if not first.exists():
        ramp = np.linspace(0, 255, SIDE, dtype=np.float32)
        pixels = np.empty((SIDE, SIDE, 3), np.uint8)
        pixels[..., 0] = ramp[None, :]
        pixels[..., 1] = ramp[:, None]
        pixels[..., 2] = 128
        Image.fromarray(pixels).save(first, compress_level=1)
    for i in range(1, PNG_COPIES):
        copy = folder / f"huge-{i:02d}.png"
        if not copy.exists():
            shutil.copy(first, copy)


def _clouds(folder: Path) -> None:
    import laspy
    import numpy as np

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(CLOUDS):
        path = folder / f"cloud-{i:03d}.{'laz' if i % 2 else 'las'}"
        if path.exists():
            continue
        header = laspy.LasHeader(point_format=1, version="1.2")
        header.scales = [0.01, 0.01, 0.01]
        las = laspy.LasData(header)
        las.x = rng.uniform(0, 1000, POINTS)
        las.y = rng.uniform(0, 1000, POINTS)
        las.z = rng.uniform(0, 50, POINTS)
        las.intensity = rng.integers(0, 65535, POINTS, dtype=np.uint16)
        las.write(path, laz_backend=laspy.LazBackend.Lazrs if i % 2 else None)


# --------------------------------------------------------------------------- cases


def run_case(case: str, folder: Path, limits: dict | None) -> dict:
    """One case in this process: its answer, seconds and peak RSS in MiB."""
    sys.path.insert(0, str(BENCH_DIR.parent))
    from tests.peak_memory import peak_rss_bytes

    started = time.perf_counter()
    if case == "laspy_loop":
        import laspy

        answer = sum(len(laspy.read(p).points) for p in sorted((folder / "clouds").iterdir()))
    else:
        import fedquery

        source = {"kind": "files", "root": str(folder)}
        if limits:
            source["limits"] = limits
        catalog = {"sources": {"blobs": source}, "tables": {"listing": {"source": "blobs"}}}
        with fedquery.connect(catalog) as con:
            try:
                answer = con.sql(_SQL[case]).fetchall()
                if case == "read_blob_8x300":  # the values were fetched: report their sizes
                    answer = [None if v is None else len(v) for (v,) in answer]
            except fedquery.FedQueryError as exc:  # the peak up to the failure counts too
                answer = f"{type(exc).__name__}: {exc}"[:200]
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes() / 2**20
    return {"case": case, "answer": repr(answer)[:200], "seconds": round(seconds, 2),
            "peak_rss_mib": round(peak)}


_SQL = {
    "read_blob_3gib": "SELECT octet_length(read_blob('big.bin'))",
    "read_blob_8x300": "SELECT read_blob(uri) FROM listing WHERE uri LIKE 'mid-%.bin'",
    "thumbnail_16": "SELECT count(*), sum(octet_length(thumbnail(uri, 256))) FROM listing "
                    "WHERE uri LIKE 'huge-%.png'",
    "read_pointcloud_200": "SELECT count(*), sum(len(read_pointcloud(uri))) FROM listing "
                           "WHERE uri LIKE 'clouds/%'",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=BENCH_DIR / ".data" / "blob_memory")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--limits", type=json.loads, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_case(args.run, args.data, args.limits)))
        return
    make_data(args.data)
    results = []
    for case in args.cases.split(","):
        command = [sys.executable, __file__, "--run", case, "--data", str(args.data)]
        if args.limits:
            command += ["--limits", json.dumps(args.limits)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            result = {"case": case, "failed": done.stderr.strip().splitlines()[-1:]}
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
