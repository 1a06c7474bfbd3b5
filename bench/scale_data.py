"""Data for bench/scale.py: many small camera images, and a TPC-H lake split into files.

Images are JPEGs of 160x120 pixels drawn from a seed (a sky, a road, a few boxes, noise), a few
hundred of them exact copies (the profile's duplicate sets have work to do); built once in
``bench/.data/scale/images-N`` with a process pool. The TPC-H lake is tpchgen-cli's Parquet,
``lineitem`` and ``orders`` in ``FILES`` files each, strings as plain strings.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / ".data" / "scale"
FILES = 8  # files per big TPC-H table: a scan splits into up to this many parts
DONE = "BUILD_OK"


def images(count: int) -> Path:
    """A folder of ``count`` JPEG images (built once)."""
    root = DATA / f"images-{count}"
    if (root / DONE).exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    chunks = [(root, start, min(start + 1000, count)) for start in range(0, count, 1000)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_images, chunks))
    (root / DONE).write_text(f"{count}\n")
    return root


def _write_images(job: tuple[Path, int, int]) -> None:
    from PIL import Image, ImageDraw

    root, start, end = job
    folder = root / f"{start // 1000:03d}"
    folder.mkdir(exist_ok=True)
    for i in range(start, end):
        rng = np.random.default_rng(i if i % 50 or i == 0 else i - 25)  # every 50th: a copy
        sky = rng.integers(60, 230, 3)
        pixels = np.empty((120, 160, 3), np.uint8)
        pixels[:60] = sky
        pixels[60:] = rng.integers(40, 120)
        pixels = np.clip(pixels + rng.normal(0, rng.uniform(2, 20), pixels.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 5))):
            x, y = int(rng.integers(0, 140)), int(rng.integers(50, 110))
            draw.rectangle([x, y, x + int(rng.integers(8, 30)), y + int(rng.integers(6, 20))],
                           fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=int(rng.integers(60, 95)))
        (folder / f"{i:06d}.jpg").write_bytes(out.getvalue())


def tpch(scale: float) -> Path:
    """A local TPC-H lake at ``scale``: ``<table>/<table>.<part>.parquet`` (built once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = DATA / f"tpch-{scale:g}"
    if (root / DONE).exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    raw = root.with_name(root.name + "-raw")
    shutil.rmtree(raw, ignore_errors=True)
    tool = Path(sys.executable).parent / "tpchgen-cli"
    subprocess.run([str(tool) if tool.exists() else "tpchgen-cli", "parquet", "-s", f"{scale:g}",
                    "--parts", str(FILES), "-o", str(raw), "--quiet"], check=True)
    for table in sorted(p for p in raw.iterdir() if p.is_dir()):
        (root / table.name).mkdir(parents=True)
        for part in sorted(table.glob("*.parquet")):
            data = pq.read_table(part)
            plain = pa.schema([f.with_type(pa.string()) if f.type == pa.string_view() else f
                               for f in data.schema])
            pq.write_table(data.cast(plain), root / table.name / part.name)
    shutil.rmtree(raw)
    (root / DONE).write_text(f"{scale:g}\n")
    return root
