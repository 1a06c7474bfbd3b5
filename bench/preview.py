"""Measure what a notebook display of a blob query costs against fetching it whole.

Writes ``--images`` distinct JPEGs (``--px`` pixels square, noise over a gradient so they do
not compress to nothing) under a temporary folder, a Parquet table of their URIs, and times on
one connection:

* preview:  ``Result._repr_html_()`` of ``SELECT id, uri, embed_image(uri) FROM images`` (no
  LIMIT), the first display of a fresh result;
* again:    the same result displayed a second time;
* arrow:    ``arrow()`` of that result afterwards (the whole query, once);
* limit 20: ``arrow()`` of the query with ``LIMIT 20`` written in it, for reference.

Each is the best of ``--runs`` runs on fresh results (image vectors are cached per run only).

    python bench/preview.py [--images 3000] [--px 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
QUERY = "SELECT id, uri, embed_image(uri) AS v FROM images"


def write_images(root: Path, count: int, px: int) -> dict:
    """``count`` JPEGs and their table; the catalog over them."""
    rng = np.random.default_rng(7)
    (root / "blobs").mkdir()
    ramp = np.linspace(0, 255, px, dtype=np.float32)
    for i in range(count):
        noise = rng.normal(0, 40, (px, px, 3)).astype(np.float32)
        pixels = np.clip(noise + ramp[None, :, None] + (i % 97), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=85)
        (root / "blobs" / f"{i:05d}.jpg").write_bytes(out.getvalue())
    (root / "lake").mkdir()
    pq.write_table(pa.table({"id": pa.array(range(count), pa.int64()),
                             "uri": [f"{i:05d}.jpg" for i in range(count)]}),
                   root / "lake" / "images.parquet")
    return {"sources": {"lake": {"kind": "parquet", "root": str(root / "lake")},
                        "pics": {"kind": "files", "root": str(root / "blobs")}},
            "tables": {"images": {"source": "lake", "path": "images.parquet"}},
            "blobs": {"images.uri": "pics"}}


def best(runs: int, work: Callable[[object], object], setup: Callable[[], object] = lambda: None
         ) -> float:
    """The shortest of ``runs`` timings of ``work(setup())`` (``setup`` untimed)."""
    times = []
    for _ in range(runs):
        prepared = setup()
        start = time.perf_counter()
        work(prepared)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--px", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import fedquery

    with tempfile.TemporaryDirectory(prefix="fq-preview-") as tmp:
        catalog = write_images(Path(tmp), args.images, args.px)
        megabytes = sum(f.stat().st_size for f in (Path(tmp) / "blobs").iterdir()) / 1e6
        with fedquery.connect(catalog) as con:
            con.sql(QUERY + " LIMIT 1").arrow()  # warm: the embedder, the plan cache
            fresh = lambda: con.sql(QUERY)  # noqa: E731
            shown = lambda: _shown(con.sql(QUERY))  # noqa: E731
            figures = {
                "preview (first display)": best(args.runs, lambda r: r._repr_html_(), fresh),
                "display again": best(args.runs, lambda r: r._repr_html_(), shown),
                "arrow() after a display": best(args.runs, lambda r: r.arrow(), shown),
                "LIMIT 20 written in the query": best(
                    args.runs, lambda _: con.sql(QUERY + " LIMIT 20").arrow()),
            }
    print(f"{args.images} JPEGs of {args.px}x{args.px} px ({megabytes:.0f} MB), "
          f"best of {args.runs}:")
    for name, seconds in figures.items():
        print(f"  {name:32s} {seconds * 1000:9.1f} ms")


def _shown(result):
    result._repr_html_()
    return result


if __name__ == "__main__":
    main()
