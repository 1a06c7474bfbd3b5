"""Size caps per blob function: settings of a files source, checked before a byte is read.

``limits`` caps the bytes each function reads whole, the pixels a thumbnail decodes and the
points a cloud holds; past a cap the row's value is an error (NULL for scalar results, the
``error`` field for structs; ``SourceError`` when strict) and nothing of the file is read.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fedquery
from fedquery.functions.limits import DEFAULTS, parse_size

GIB, MIB = 1 << 30, 1 << 20


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "green").save(out, "PNG")
    return out.getvalue()


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "small.bin").write_bytes(b"x" * 100)
    (tmp_path / "twice.bin").write_bytes(b"y" * 200)
    with open(tmp_path / "big.bin", "wb") as f:
        f.truncate(3 * GIB)  # sparse: no disk blocks, reads as zeros
    (tmp_path / "wide.png").write_bytes(_png(2000, 1500))
    points = np.random.default_rng(1).random((256, 4), dtype=np.float32)
    (tmp_path / "sweep.bin").write_bytes(points.tobytes())  # 4096 bytes, 256 points
    return tmp_path


def _connect(root: Path, strict: bool = False, **settings) -> fedquery.Connection:
    source = {"kind": "files", "root": str(root), **settings}
    return fedquery.connect({"sources": {"cam": source}}, strict=strict)


def _bytes_read(con: fedquery.Connection) -> dict[str, int]:
    return con._session.functions.blobs.roots["cam"].filesystem.handler.stats.snapshot()


@pytest.mark.parametrize(("text", "size"), [
    ("256MiB", 256 << 20), ("1 GiB", GIB), ("1.5KiB", 1536), ("500MB", 500_000_000),
    ("64kb", 64_000), ("12", 12), (4096, 4096), ("2TiB", 2 << 40), ("7B", 7),
])
def test_sizes_parse(text, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("settings", "keypath"), [
    ({"limits": {"read_blob": "lots"}}, "sources.cam.limits.read_blob"),
    ({"limits": {"read_blob": -1}}, "sources.cam.limits.read_blob"),
    ({"limits": {"read_blob": 0}}, "sources.cam.limits.read_blob"),
    ({"limits": {"read_blob": True}}, "sources.cam.limits.read_blob"),
    ({"limits": {"read_blob": "1.5"}}, "sources.cam.limits.read_blob"),
    ({"limits": {"read_blob": "12 parsecs"}}, "sources.cam.limits.read_blob"),
    ({"limits": {"thumbnail_pixels": "many"}}, "sources.cam.limits.thumbnail_pixels"),
    ({"limits": {"read_blobs": "1MiB"}}, "sources.cam.limits.read_blobs"),
    ({"limits": "256MiB"}, "sources.cam.limits"),
    ({"allow_hard_links": "yes"}, "sources.cam.allow_hard_links"),
    ({"read_attempts": 0}, "sources.cam.read_attempts"),
    ({"read_atempts": 3}, "sources.cam.read_atempts"),
    ({"read_timeout": 0}, "sources.cam.read_timeout"),
    ({"read_timeout": -5}, "sources.cam.read_timeout"),
    ({"read_timeout": "2 minutes"}, "sources.cam.read_timeout"),
    ({"read_timeout": True}, "sources.cam.read_timeout"),
    ({"read_timeout": float("inf")}, "sources.cam.read_timeout"),
    ({"limits": {"batch_memory": "lots"}}, "sources.cam.limits.batch_memory"),
])
def test_bad_settings_are_catalog_errors_naming_the_key(root: Path, settings: dict,
                                                          keypath: str) -> None:
    with pytest.raises(fedquery.CatalogError) as info:
        _connect(root, **settings)
    assert keypath in str(info.value)


def test_the_defaults_are_documented() -> None:
    catalog_doc = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text()
    for key in DEFAULTS:
        assert f"`{key}`" in catalog_doc, key


def test_read_blob_of_a_3_gib_file_is_refused_before_reading(root: Path) -> None:
    with _connect(root) as con:
        rows = con.sql("SELECT u, read_blob(u) FROM (VALUES ('big.bin'), ('small.bin')) t(u) "
                       "ORDER BY u").fetchall()
        assert rows == [("big.bin", None), ("small.bin", b"x" * 100)]
        assert not any(path.endswith("big.bin") for path in _bytes_read(con))
    with _connect(root, strict=True) as con, pytest.raises(fedquery.SourceError) as info:
        con.sql("SELECT read_blob('big.bin')").fetchall()
    assert "limits.read_blob" in str(info.value) and "big.bin" in str(info.value)
    assert info.value.source == "cam"


def test_a_cap_admits_a_file_of_exactly_its_size(root: Path) -> None:
    with _connect(root, limits={"read_blob": 100}) as con:
        rows = con.sql("SELECT read_blob('small.bin'), read_blob('twice.bin')").fetchall()
        assert rows == [(b"x" * 100, None)]
        assert _bytes_read(con) == {str(root / "small.bin"): 100}


def test_thumbnail_pixels_cap(root: Path) -> None:
    with _connect(root, limits={"thumbnail_pixels": 1_000_000}) as con:
        thumb, info = con.sql("SELECT thumbnail('wide.png', 64), image_info('wide.png')").fetchall()[0]
    assert thumb is None and (info["width"], info["height"], info["error"]) == (2000, 1500, None)
    with (_connect(root, strict=True, limits={"thumbnail_pixels": 1_000_000}) as con,
          pytest.raises(fedquery.SourceError, match="limits.thumbnail_pixels")):
        con.sql("SELECT thumbnail('wide.png', 64)").fetchall()
    with _connect(root) as con:
        thumb = con.sql("SELECT thumbnail('wide.png', 64)").fetchall()[0][0]
    assert Image.open(io.BytesIO(thumb)).size == (64, 48)


def test_thumbnail_and_image_info_byte_caps(root: Path) -> None:
    size = (root / "wide.png").stat().st_size
    with _connect(root, limits={"thumbnail": size - 1, "image_info": 1024}) as con:
        thumb, info = con.sql("SELECT thumbnail('wide.png', 64), image_info('wide.png')").fetchall()[0]
    assert thumb is None
    assert info["width"] == 2000  # the header lies in the first 1 KiB


def test_point_cloud_caps(root: Path) -> None:
    (root / "sweep.npy").write_bytes(b"\x93NUMPY" + bytes(8000))  # its header is never read
    with _connect(root, limits={"read_pointcloud": 4095}) as con:
        assert con.sql("SELECT read_pointcloud('sweep.npy')").fetchall() == [(None,)]
        assert _bytes_read(con) == {}
    with _connect(root, limits={"read_pointcloud": 4095, "pointcloud_info": 4095}) as con:
        points, info = con.sql("SELECT read_pointcloud('sweep.bin'), pointcloud_info('sweep.bin')"
                               ).fetchall()[0]
        assert points is None and "limits.pointcloud_info" in info["error"]
        assert _bytes_read(con) == {}
    with _connect(root, limits={"pointcloud_points": 255}) as con:
        points, info = con.sql("SELECT read_pointcloud('sweep.bin'), pointcloud_info('sweep.bin')"
                               ).fetchall()[0]
        assert points is None and info["points"] == 256
    with _connect(root, limits={"pointcloud_points": 256}) as con:
        assert con.sql("SELECT len(read_pointcloud('sweep.bin'))").fetchall() == [(256,)]


def test_embed_image_cap(root: Path) -> None:
    size = (root / "wide.png").stat().st_size
    with _connect(root, limits={"embed_image": size - 1}) as con:
        assert con.sql("SELECT embed_image('wide.png')").fetchall() == [(None,)]
    with _connect(root, limits={"embed_image": size}) as con:
        assert con.sql("SELECT embed_image('wide.png') IS NOT NULL").fetchall() == [(True,)]


def test_big_decodes_wait_for_the_decode_budget(tmp_path: Path) -> None:
    """Twelve 5000 x 5000 PNGs (100 MB each once decoded) thumbnailed in one query: with
    ``decode_memory: 120MiB`` they decode one at a time, and their memory is given back. The
    peak is measured in a subprocess (``VmHWM``) over what one decode took before the query;
    decoding them all at once, as before the budget, took 340 MB more."""
    ramp = np.linspace(0, 255, 5000, dtype=np.float32)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.float32(99)), axis=-1)
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "big-0.png", compress_level=1)
    for i in range(1, 12):
        (tmp_path / f"big-{i}.png").write_bytes((tmp_path / "big-0.png").read_bytes())
    catalog = {"sources": {"pics": {"kind": "files", "root": str(tmp_path),
                                    "limits": {"decode_memory": "120MiB"}}},
               "tables": {"l": {"source": "pics"}}}
    script = textwrap.dedent(f"""
        import json, fedquery
        from tests.peak_memory import peak_rss_bytes as peak
        with fedquery.connect({catalog!r}) as con:
            con.sql("SELECT thumbnail('big-0.png', 4)").fetchall()  # warm: imports, first decode
            before = peak()
            rows = con.sql("SELECT count(thumbnail(uri, 64)) FROM l").fetchall()
        print(json.dumps({{"rows": rows, "grew": peak() - before}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == [[12]]
    assert result["grew"] < 150 * MIB, result
