"""Header counts are checked against the file's size before anything is allocated.

A point cloud's header says how many points follow; a damaged or hostile file can say anything
(``POINTS -5``, 2**40 points in a few kilobytes). Each count is checked against what the file
can hold, and a lie is a per-row error naming both numbers, never a wrong count or a huge
allocation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import fedquery
from fedquery.functions.pointclouds import pointcloud_info_from, read_pointcloud_from

LASPY = Path(__file__).parent / "data" / "laspy"


def _pcd(points: int, data: bytes, kind: str = "binary") -> bytes:
    header = (f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {points}\n"
              f"HEIGHT 1\nPOINTS {points}\nDATA {kind}\n")
    return header.encode() + data


TEN = np.arange(30, dtype="<f4").tobytes()  # ten points of x, y, z


def _las14_claiming(points: int) -> bytes:
    """laspy's LAS 1.4 LAZ sample with its 64-bit point count set to ``points``."""
    data = bytearray((LASPY / "1_4_w_evlr.laz").read_bytes())
    struct.pack_into("<I", data, 107, 0)  # the legacy 32-bit count is 0 when the 1.4 one is used
    struct.pack_into("<Q", data, 247, points)
    return bytes(data)


def _las12_claiming(name: str, points: int) -> bytes:
    data = bytearray((LASPY / name).read_bytes())
    struct.pack_into("<I", data, 107, points)
    return bytes(data)


@pytest.mark.parametrize("count", ["-5", "-1", "0x10", "ten", "1e3"])
def test_a_pcd_point_count_that_is_not_a_count_is_an_error(count: str) -> None:
    data = _pcd(10, TEN).replace(b"POINTS 10", f"POINTS {count}".encode())
    info = pointcloud_info_from(data, "bad.pcd")
    assert info["error"] and info["error"].startswith("corrupt: PCD"), info
    assert info["points"] is None
    assert read_pointcloud_from(data, "bad.pcd") is None


def test_a_pcd_claiming_more_points_than_it_holds_is_an_error() -> None:
    for kind, body in (("binary", TEN), ("ascii", b"1 2 3\n" * 10)):
        data = _pcd(10**12, body, kind)
        info = pointcloud_info_from(data, "liar.pcd")
        assert "header claims 1000000000000 points but the file holds at most" in info["error"], info
        assert read_pointcloud_from(data, "liar.pcd") is None


def test_a_pcd_width_times_height_is_checked_too() -> None:
    data = (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH -2\nHEIGHT -5\n"
            b"DATA binary\n" + TEN)
    assert pointcloud_info_from(data, "old.pcd")["error"].startswith("corrupt: PCD")


def test_a_laz_header_claiming_2_to_the_40_points_is_flagged() -> None:
    data = _las14_claiming(2**40)
    info = pointcloud_info_from(data[:375], "liar.laz", len(data))
    assert info["error"] == (f"corrupt: the LAZ header claims {2**40} points but the file holds "
                             f"at most {info['error'].rsplit(' ', 1)[1]}"), info
    assert int(info["error"].rsplit(" ", 1)[1]) < 2**32
    assert read_pointcloud_from(data, "liar.laz") is None


def test_a_las_header_claiming_more_records_than_the_file_holds_is_an_error() -> None:
    data = _las12_claiming("autzen.las", 10**9)
    info = pointcloud_info_from(data[:375], "liar.las", len(data))
    assert info["error"].startswith("truncated: the LAS header claims 1000000000 points but the "
                                    "file holds at most 106"), info


def test_a_npy_shape_that_overflows_is_an_error() -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.ljust(117).encode() + b"\n" + TEN
    info = pointcloud_info_from(data, "liar.npy")
    assert info["error"] and "header claims 4611686018427387904 points" in info["error"], info
    assert read_pointcloud_from(data, "liar.npy") is None


def test_lies_are_per_row_errors_in_sql(tmp_path: Path) -> None:
    (tmp_path / "neg.pcd").write_bytes(_pcd(10, TEN).replace(b"POINTS 10", b"POINTS -5"))
    (tmp_path / "liar.laz").write_bytes(_las14_claiming(2**40))
    (tmp_path / "good.pcd").write_bytes(_pcd(10, TEN))
    with fedquery.connect({"sources": {"c": {"kind": "files", "root": str(tmp_path)}}}) as con:
        rows = con.sql("SELECT u, pointcloud_info(u), len(read_pointcloud(u)) FROM "
                       "(VALUES ('neg.pcd'), ('liar.laz'), ('good.pcd')) t(u) ORDER BY u").fetchall()
    by_uri = {uri: (info, points) for uri, info, points in rows}
    assert by_uri["good.pcd"][0]["points"] == 10 and by_uri["good.pcd"][1] == 10
    for uri in ("neg.pcd", "liar.laz"):
        info, points = by_uri[uri]
        assert info["error"] and points is None, (uri, info)
