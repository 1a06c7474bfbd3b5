"""Point-cloud content measures (`pointcloud_content`) against numpy and laspy truth.

laspy's own sample files (`tests/data/laspy`) and clouds written here in every format with
known points, intensities and returns; a small block size runs the block-by-block folding.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fedquery.functions import pointcloud_content as pc
from fedquery.functions import pointcloud_formats

DATA = Path(__file__).parent / "data"
LASPY_FILES = sorted((DATA / "laspy").glob("*.la[sz]"))


def _truth(x, y, z, intensity=None, returns=None) -> dict:
    """The expected fields from plain numpy arrays."""
    x, y, z = (np.asarray(a, np.float64) for a in (x, y, z))
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    fx, fy, fz = x[finite], y[finite], z[finite]
    area = (fx.max() - fx.min()) * (fy.max() - fy.min())
    out = {"min_x": fx.min(), "min_y": fy.min(), "min_z": fz.min(), "max_x": fx.max(),
           "max_y": fy.max(), "max_z": fz.max(), "density": finite.sum() / area if area else None,
           "intensity_mean": None, "intensity_min": None, "intensity_max": None,
           "max_return": None, "multi_return_share": None}
    if intensity is not None:
        i = np.asarray(intensity, np.float64)
        i = i[np.isfinite(i)]
        out.update(intensity_mean=i.mean(), intensity_min=i.min(), intensity_max=i.max())
    if returns is not None:
        r = np.asarray(returns)
        out.update(max_return=int(r.max()), multi_return_share=float((r > 1).mean()))
    return out


def _check(stats: dict, fmt: str, points: int, truth: dict) -> None:
    assert stats["error"] is None, stats["error"]
    assert (stats["format"], stats["points"]) == (fmt, points)
    for key, value in truth.items():
        if value is None or isinstance(value, int):
            assert stats[key] == value, key
        else:
            assert stats[key] == pytest.approx(value, rel=1e-12), key


# --- LAS and LAZ ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", LASPY_FILES, ids=lambda p: p.name)
def test_laspy_sample_files_equal_laspy(path):
    laspy = pytest.importorskip("laspy")
    las = laspy.read(path)
    stats = pc.pointcloud_stats_from(path.read_bytes(), path.name)
    _check(stats, path.suffix[1:].upper(), len(las.points),
           _truth(las.x, las.y, las.z, las.intensity, las.number_of_returns))
    assert 0 < stats["multi_return_share"] < 1  # the samples mix single and multiple returns


def _las(point_format: int, version: str, suffix: str, n: int, seed: int) -> tuple[bytes, dict]:
    """A LAS/LAZ file with known points, intensities and returns, and its truth."""
    laspy = pytest.importorskip("laspy")
    rng = np.random.default_rng(seed)
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales, header.offsets = np.array([0.001, 0.001, 0.01]), np.array([500_000.0, 4e6, 100.0])
    las = laspy.LasData(header)
    las.x, las.y = 500_000 + rng.uniform(-200, 200, n), 4e6 + rng.uniform(0, 50, n)
    las.z = rng.uniform(90, 140, n)
    las.intensity = rng.integers(0, 65535, n, dtype=np.uint16)
    top = 15 if point_format >= 6 else 7  # 4 bits in formats 6-10, 3 bits before
    returns = rng.integers(1, top + 1, n)
    las.number_of_returns = returns
    las.return_number = np.minimum(rng.integers(1, top + 1, n), returns)
    out = io.BytesIO()
    las.write(out, do_compress=suffix == ".laz")
    back = laspy.read(io.BytesIO(out.getvalue()))  # the values as stored (scaled, rounded)
    return out.getvalue(), _truth(back.x, back.y, back.z, back.intensity, back.number_of_returns)


@pytest.mark.parametrize("point_format,version", [(0, "1.2"), (1, "1.2"), (3, "1.3"), (6, "1.4"),
                                                  (8, "1.4")])
@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_written_las_and_laz_equal_numpy(point_format, version, suffix, monkeypatch):
    data, truth = _las(point_format, version, suffix, 3000, seed=point_format)
    assert truth["max_return"] == (15 if point_format >= 6 else 7)
    _check(pc.pointcloud_stats_from(data, "cloud" + suffix), suffix[1:].upper(), 3000, truth)
    monkeypatch.setattr(pointcloud_formats, "BLOCK", 700)  # several blocks, ragged last one
    _check(pc.pointcloud_stats_from(data, "cloud" + suffix), suffix[1:].upper(), 3000, truth)


# --- KITTI, NPY, PCD ------------------------------------------------------------------------


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.normal([10, -2, -1.5], [20, 8, 1], size=(n, 3))
    return np.column_stack([xyz, rng.uniform(0, 1, n)]).astype(np.float32)


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _pcd(points: np.ndarray, data: str, intensity: bool = True) -> bytes:
    names = ["x", "y", "z"] + (["intensity"] if intensity else [])
    columns = points[:, : len(names)]
    header = (f"VERSION 0.7\nFIELDS {' '.join(names)}\nSIZE {' '.join('4' for _ in names)}\n"
              f"TYPE {' '.join('F' for _ in names)}\nCOUNT {' '.join('1' for _ in names)}\n"
              f"WIDTH {len(points)}\nHEIGHT 1\nPOINTS {len(points)}\nDATA {data}\n").encode()
    if data == "binary":
        return header + np.ascontiguousarray(columns, "<f4").tobytes()
    return header + "\n".join(" ".join(repr(float(v)) for v in row) for row in columns).encode()


def test_kitti_npy_and_pcd_equal_numpy(monkeypatch):
    points = _points(5000)
    points[7, 0] = np.nan  # left out of the extent and the density
    points[9, 3] = np.inf  # left out of the intensity statistics
    x, y, z, i = points.T
    with_intensity, without = _truth(x, y, z, i), _truth(x, y, z)
    files = {"s.bin": (points.tobytes(), "KITTI", with_intensity),
             "s.npy": (_npy(points[:, :3]), "NPY", without),
             "s4.npy": (_npy(points.astype(np.float64)), "NPY", with_intensity),
             "a.pcd": (_pcd(points, "ascii"), "PCD", with_intensity),
             "b.pcd": (_pcd(points, "binary"), "PCD", with_intensity),
             "n.pcd": (_pcd(points, "binary", intensity=False), "PCD", without)}
    for block in (pointcloud_formats.BLOCK, 999):
        monkeypatch.setattr(pointcloud_formats, "BLOCK", block)
        for name, (data, fmt, truth) in files.items():
            _check(pc.pointcloud_stats_from(data, name), fmt, 5000, truth)



def test_flat_extent_has_no_density_and_no_points_no_extent():
    line = np.zeros((10, 4), np.float32)
    line[:, 0] = np.arange(10)  # all on the x axis: no area
    stats = pc.pointcloud_stats_from(line.tobytes(), "line.bin")
    assert stats["error"] is None and stats["density"] is None and stats["max_x"] == 9.0
    empty = pc.pointcloud_stats_from(_npy(np.zeros((0, 3), np.float32)), "empty.npy")
    assert empty["error"] is None and empty["points"] == 0
    assert empty["min_x"] is None and empty["density"] is None and empty["intensity_mean"] is None
    nan = pc.pointcloud_stats_from(np.full((4, 4), np.nan, np.float32).tobytes(), "nan.bin")
    assert nan["points"] == 4 and nan["min_x"] is None and nan["intensity_mean"] is None


# --- bad files ------------------------------------------------------------------------------


def test_bad_files_give_errors_not_exceptions():
    points = _points(300)
    laz, _ = _las(3, "1.3", ".laz", 300, seed=1)
    las, _ = _las(1, "1.2", ".las", 300, seed=1)
    cases = {"cut.bin": points.tobytes()[:1000], "cut.las": las[: len(las) - 100],
             "cut.laz": laz[: len(laz) // 2], "garbage.laz": b"LASF" + bytes(600),
             "empty.pcd": b"", "text.npy": b"not numpy", "x.xyz": points.tobytes(),
             "cut.pcd": _pcd(points, "ascii")[:-500]}
    for name, data in cases.items():
        stats = pc.pointcloud_stats_from(data, name)
        assert stats["error"], name
        assert stats["density"] is None and stats["max_return"] is None, name
    assert pc.pointcloud_stats_from(las, "a.las")["error"] is None
    given = pc.pointcloud_stats_from(las[:375], "a.las", size=len(las))
    assert given["error"].startswith("truncated") and given["format"] == "LAS"
    claims = pc.pointcloud_stats_from(las[: len(las) - 100], "a.las")
    assert claims["points"] == 300 and claims["format"] == "LAS"  # the header's count, kept


def test_arrow_struct_and_duckdb_type_agree():
    rows = [pc.pointcloud_stats_from(LASPY_FILES[0].read_bytes(), LASPY_FILES[0].name), None,
            pc.pointcloud_stats_error("missing")]
    array = pc.pointcloud_stats_array(rows)
    assert array.type == pc.POINTCLOUD_STATS_ARROW and array.null_count == 1
    assert list(rows[0]) == list(pc.FIELDS)
    typed = duckdb.sql(f"SELECT NULL::{pc.POINTCLOUD_STATS_TYPE}").to_arrow_table().schema.field(0).type
    assert typed == pc.POINTCLOUD_STATS_ARROW
