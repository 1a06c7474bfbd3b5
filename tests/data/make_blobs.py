"""Write the small sample blobs in tests/data/blobs/ (deterministic; run from the repo root).

    .venv/bin/python tests/data/make_blobs.py

One good file per format the blob functions read, plus damaged ones, for tests of a `files`
source that need real bytes on disk. tests/test_blob_formats.py checks them against Pillow
and numpy.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).parent / "blobs"


def _picture(width: int, height: int) -> np.ndarray:
    """Gradients, a disc and a little noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((xx - width / 3) ** 2 + (yy - height / 2) ** 2) < (min(width, height) / 4) ** 2
    rgb = np.stack([xx * 255 / width, yy * 255 / height, 128 + 100 * disc], axis=-1)
    return np.clip(rgb + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)


def _sweep(n: int) -> np.ndarray:
    """N×4 float32 x, y, z, intensity."""
    rng = np.random.default_rng(11)
    xyz = rng.normal([10, -2, -1.5], [20, 8, 1], size=(n, 3))
    return np.column_stack([xyz, rng.uniform(0, 1, n)]).astype(np.float32)


def _pcd_header(n: int, data: str) -> bytes:
    return (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\n"
        f"SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\n"
        f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    ).encode()


def main() -> None:
    OUT.mkdir(exist_ok=True)
    img = Image.fromarray(_picture(128, 96))
    img.save(OUT / "frame.jpg", quality=85)
    img.save(OUT / "frame.png")
    img.convert("RGBA").save(OUT / "frame.webp", lossless=True)
    png = (OUT / "frame.png").read_bytes()
    (OUT / "truncated.png").write_bytes(png[:100])
    jpeg = (OUT / "frame.jpg").read_bytes()
    (OUT / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (OUT / "corrupt.jpg").write_bytes(np.random.default_rng(3).bytes(2048))
    (OUT / "empty.png").write_bytes(b"")
    sweep = _sweep(256)
    (OUT / "sweep.bin").write_bytes(sweep.tobytes())
    buffer = io.BytesIO()
    np.save(buffer, sweep[:, :3])
    (OUT / "sweep.npy").write_bytes(buffer.getvalue())
    rows = "\n".join(" ".join(repr(float(v)) for v in row) for row in sweep)
    (OUT / "sweep_ascii.pcd").write_bytes(_pcd_header(len(sweep), "ascii") + rows.encode() + b"\n")
    (OUT / "sweep_binary.pcd").write_bytes(_pcd_header(len(sweep), "binary") + sweep.tobytes())
    (OUT / "truncated.bin").write_bytes(sweep.tobytes()[:1000])


if __name__ == "__main__":
    main()
