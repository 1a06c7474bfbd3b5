"""Crafted files are one row's error: never a failed query, profile, or process.

Each file here is a few hundred bytes whose header lies in a way a reader once trusted: an NPY
shape too large for a BIGINT or negative, a LAS header of 0xFF bytes, counts of VLRs and of
extended VLRs in the billions, a LAZ chunk table listing 2^32 chunks (lazrs asked for 64 GiB
and aborted the process), a LAZ layer of 3 GiB (lazrs filled 3 GiB), LAZ points that make lazrs
panic (a ``BaseException``, not an ``Exception``), a PCD count of thousands
of digits, a PNG 4 billion pixels wide. Every function gives the file's row an error, the other
rows their values, and ``con.profile`` counts the file as corrupt. Cases that could abort or
exhaust the process run in a child process whose exit status and peak memory are checked.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fedquery
from fedquery.functions.pointclouds import pointcloud_info_array
from tests.blob_fuzz import originals

LASPY = Path(__file__).parent / "data" / "laspy"
WORKTREE = Path(__file__).parent.parent


def _npy(shape: str, body: bytes = b"") -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (128 - 10 - len(header) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def _laz_sample() -> bytearray:
    return bytearray((LASPY / "1_4_w_evlr.laz").read_bytes())


def _laz_with(offset_of, fmt: str, value: int) -> bytes:
    data = _laz_sample()
    struct.pack_into(fmt, data, offset_of(data), value)
    return bytes(data)


def _chunk_table(data: bytearray) -> int:
    start = struct.unpack_from("<I", data, 96)[0]
    return struct.unpack_from("<q", data, start)[0]


def _first_layer_sizes(data: bytearray) -> int:
    start = struct.unpack_from("<I", data, 96)[0]
    return start + 8 + 30 + 4  # the chunk table offset, the raw first point, the count


def _laz_panicking() -> bytes:
    """A LAZ file written by laspy with 8 bytes of its points set to 0xFF: lazrs panics (a
    Rust panic reaches Python as a BaseException, not an Exception)."""
    data = bytearray(originals()["laz"])
    data[834:842] = b"\xff" * 8
    return bytes(data)


def _png_wide() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    data = bytearray(out.getvalue())
    struct.pack_into(">I", data, 16, 0xFFFFFFFF)  # IHDR width
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


CRAFTED = {
    "huge.npy": _npy("(99999999999999999999999999, 4)"),
    "negative.npy": _npy("(-1, 4)", b"\0" * 64),
    "ff.laz": b"LASF" + b"\xff" * 400,
    "ff.las": b"LASF" + b"\xff" * 400,
    "vlrs.laz": _laz_with(lambda d: 100, "<I", 2_264_924_161),
    "evlrs.laz": _laz_with(lambda d: 243, "<I", 12_976_128),
    "chunks.laz": _laz_with(lambda d: _chunk_table(d) + 4, "<I", 0xFFFFFFFF),
    "layer.laz": _laz_with(_first_layer_sizes, "<I", 3_000_000_000),
    "panic.laz": _laz_panicking(),
    "digits.pcd": (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                   b"POINTS " + b"9" * 5000 + b"\nDATA binary\n" + b"\0" * 120),
    "fieldcount.pcd": (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 999999999999\n"
                       b"POINTS 1\nDATA binary\n" + b"\0" * 120),
    "wide.png": _png_wide(),
}
GOOD = ("good.npy", "good.laz")


@pytest.fixture()
def shelf(tmp_path: Path) -> Path:
    for name, data in CRAFTED.items():
        (tmp_path / name).write_bytes(data)
    out = io.BytesIO()
    np.save(out, np.arange(12, dtype="<f4").reshape(3, 4))
    (tmp_path / "good.npy").write_bytes(out.getvalue())
    (tmp_path / "good.laz").write_bytes(bytes(_laz_sample()))
    return tmp_path


def _connect(root: Path, strict: bool = False) -> fedquery.Connection:
    return fedquery.connect({"sources": {"cam": {"kind": "files", "root": str(root)}},
                             "tables": {"cam_files": {"source": "cam"}}}, strict=strict)


CLOUDS = sorted(n for n in CRAFTED if not n.endswith(".png"))


def test_crafted_point_clouds_are_row_errors(shelf: Path) -> None:
    with _connect(shelf) as con:
        rows = con.sql("SELECT u, pointcloud_info(u), read_pointcloud(u) IS NULL "
                       "FROM unnest($names) t(u) ORDER BY u",
                       params={"names": [*CLOUDS, *GOOD]}).fetchall()
    found = {name: (info, missing) for name, info, missing in rows}
    for name in GOOD:
        assert found[name][0]["error"] is None and found[name][1] is False, found[name]
    for name in ("huge.npy", "negative.npy", "ff.laz", "ff.las", "vlrs.laz", "evlrs.laz",
                 "digits.pcd", "fieldcount.pcd"):
        info, missing = found[name]
        assert info["error"] and info["points"] is None and missing, (name, info)
    for name in ("chunks.laz", "layer.laz", "panic.laz"):  # sound headers, unsound points
        info, missing = found[name]
        assert info["error"] is None and info["points"] in (60, 1000) and missing, (name, info)


@pytest.mark.parametrize("name, message", [
    ("huge.npy", "the NPY header claims"),
    ("negative.npy", "corrupt: NPY shape (-1, 4) has a negative dimension"),
    ("ff.laz", "unsupported: LAS version 255.255"),
    ("vlrs.laz", "2264924161 VLRs"),
    ("evlrs.laz", "12976128 extended VLRs"),
    ("digits.pcd", "not a count"),
    ("fieldcount.pcd", "of COUNT 999999999999"),
])
def test_crafted_headers_say_what_is_wrong(shelf: Path, name: str, message: str) -> None:
    with _connect(shelf) as con:
        info = con.sql("SELECT pointcloud_info($u)", params={"u": name}).fetchall()[0][0]
    assert message in info["error"], info["error"]


def test_strict_gives_a_source_error_naming_the_file(shelf: Path) -> None:
    with _connect(shelf, strict=True) as con:
        for name in CRAFTED:
            call = "image_info($u)" if name.endswith(".png") else "read_pointcloud($u)"
            with pytest.raises(fedquery.SourceError) as info:
                con.sql(f"SELECT {call}", params={"u": name}).fetchall()
            assert info.value.source == "cam" and name in str(info.value)


def test_a_png_wider_than_an_integer_is_a_row_error(shelf: Path) -> None:
    with _connect(shelf) as con:
        info, thumb = con.sql("SELECT image_info('wide.png'), thumbnail('wide.png', 8)").fetchall()[0]
    assert info["width"] is None and "header says 4294967295×4 pixels" in info["error"], info
    assert thumb is None


def test_a_profile_counts_crafted_files_as_corrupt(shelf: Path) -> None:
    with _connect(shelf) as con:
        profile = con.profile("cam")
    assert profile.summary["total"] == len(CRAFTED) + len(GOOD)
    # the profile reads every point (pointcloud_stats): the LAZ files whose headers are sound
    # but whose chunk table, layer or points are not (one makes lazrs panic) are corrupt too
    assert profile.summary["ok"] == len(GOOD)
    assert profile.summary["corrupt"] == len(CRAFTED)
    errors = {r["uri"]: r["error"] for r in profile.to_arrow().to_pylist()}
    assert all(errors[name] for name in ("chunks.laz", "layer.laz", "panic.laz")), errors


def test_an_out_of_range_value_is_one_row_error() -> None:
    """The last guard: a value a reader let through that does not fit its column."""
    rows = [{"format": "LAS", "points": 2**64, "error": None}, {"format": "NPY", "points": 3}]
    array = pointcloud_info_array(rows).to_pylist()
    assert array[0]["points"] is None and "points 18446744073709551616" in array[0]["error"]
    assert array[1]["points"] == 3 and array[1]["error"] is None


CHILD = """
import json, sys
import fedquery
from tests.peak_memory import peak_rss_bytes
con = fedquery.connect({"sources": {"cam": {"kind": "files", "root": sys.argv[1]}}})
rows = con.sql("SELECT u, read_pointcloud(u) IS NULL FROM unnest($n) t(u) ORDER BY u",
               params={"n": sys.argv[2:]}).fetchall()
print(json.dumps({"rows": rows, "rss": peak_rss_bytes()}))
"""


def test_laz_counts_that_made_lazrs_abort_or_fill_gigabytes(shelf: Path) -> None:
    """In a child process: a 2^32-chunk table aborted it (SIGABRT), a 3 GB layer grew it by 3 GB,
    a panic failed the query."""
    names = ["chunks.laz", "good.laz", "layer.laz", "panic.laz"]
    done = subprocess.run([sys.executable, "-c", CHILD, str(shelf), *names], cwd=WORKTREE,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == [["chunks.laz", True], ["good.laz", False], ["layer.laz", True],
                              ["panic.laz", True]]
    assert report["rss"] < 1 << 30, report["rss"]
