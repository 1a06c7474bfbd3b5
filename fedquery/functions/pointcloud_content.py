"""What is inside a point cloud: extent, density, intensity and return statistics, from its bytes.

Nothing here does I/O: the caller reads the whole file and passes it. The formats and their
header checks are `pointclouds`' (LAS, LAZ, KITTI `.bin`, `.npy`, `.pcd`); the points are read
`pointcloud_formats.BLOCK` at a time from views of the bytes and folded into running sums, so
memory stays at one block whatever the file's size:

    stats = pointcloud_stats_from(data, "scan.laz")    # never raises: a bad file gives `error`

Fields: format; points (the header's count); min/max x, y, z over the finite points (the
points themselves, not the header's bounds); density (finite points per square unit of the XY
extent, m² for metric data; None when the extent has no area); intensity_mean / _min / _max
over the finite intensities (None when the format has none: `.npy` N×3, PCD without an
intensity field); max_return (the largest number_of_returns) and multi_return_share (the share
of points with number_of_returns > 1), for LAS and LAZ only; error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from fedquery.functions import pointcloud_formats
from fedquery.functions.images import NeedMoreBytes
from fedquery.functions.pointcloud_formats import Layout, Unreadable, blocks
from fedquery.functions.pointclouds import count_from, format_of
from fedquery.functions.rows import struct_array

_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")
_INTENSITY = ("intensity_mean", "intensity_min", "intensity_max")
POINTCLOUD_STATS_ARROW = pa.struct(
    [("format", pa.string()), ("points", pa.int64())]
    + [(name, pa.float64()) for name in (*_BOUNDS, "density", *_INTENSITY)]
    + [("max_return", pa.int16()), ("multi_return_share", pa.float64()), ("error", pa.string())]
)
POINTCLOUD_STATS_TYPE = (
    "STRUCT(format VARCHAR, points BIGINT, " + ", ".join(f"{n} DOUBLE" for n in _BOUNDS)
    + ", density DOUBLE, " + ", ".join(f"{n} DOUBLE" for n in _INTENSITY)
    + ", max_return SMALLINT, multi_return_share DOUBLE, error VARCHAR)"
)
FIELDS = tuple(f.name for f in POINTCLOUD_STATS_ARROW)


def pointcloud_stats_from(data: bytes, name: str, size: int | None = None) -> dict[str, Any]:
    """Every `POINTCLOUD_STATS_ARROW` field of one file (`data`: the whole file; `name`: its
    path, whose extension names the format; `size`: its byte count, if `data` may be shorter)."""
    size = len(data) if size is None else size
    fmt = format_of(name)
    if len(data) < size:
        return pointcloud_stats_error(f"truncated: {len(data)} of the file's {size} bytes were "
                                      "given", fmt)
    try:
        where = count_from(data, name, size)
        row = _Sums().of(data, where).row()
    except NeedMoreBytes:  # a whole file never asks for more; a header that claims to is bad
        return pointcloud_stats_error("corrupt: the header goes on past the file's end", fmt)
    except Unreadable as exc:
        return {**pointcloud_stats_error(str(exc), fmt if exc.count is not None else None),
                "points": exc.count}
    return {"format": where.fmt, "points": where.count, **row, "error": None}


def pointcloud_stats_error(reason: str, fmt: str | None = None) -> dict[str, Any]:
    """The row of a file that is missing or unreadable: everything None but `format` and `error`."""
    return dict.fromkeys(FIELDS) | {"format": fmt, "error": reason}


def pointcloud_stats_array(rows: list[dict[str, Any] | None]) -> pa.StructArray:
    """One `POINTCLOUD_STATS_ARROW` struct per row (None: a NULL struct; a row that does not
    fit its types: an error row)."""
    return struct_array(rows, POINTCLOUD_STATS_ARROW)


class _Sums:
    """Running bounds, counts and sums over the blocks of one file."""

    def __init__(self) -> None:
        self.low, self.high = np.full(3, np.inf), np.full(3, -np.inf)
        self.finite = self.seen = 0
        self.i_sum, self.i_count, self.i_low, self.i_high = 0.0, 0, np.inf, -np.inf
        self.has_intensity = self.has_returns = False
        self.max_return, self.multi = 0, 0

    def of(self, data: bytes, where: Layout) -> _Sums:
        """Fold every point of the file in; `Unreadable` if they are not the header's count."""
        source = _las_blocks(data, where) if where.fmt in ("LAS", "LAZ") else (
            (*block, None) for block in blocks(data, where))
        with np.errstate(all="ignore"):  # a file's values are what they are: NaN, inf, huge
            for x, y, z, intensity, returns in source:
                self._points(x, y, z)
                if intensity is not None:
                    self._intensity(np.asarray(intensity, np.float64))
                if returns is not None:
                    self._returns(returns)
        if self.seen != where.count:
            raise Unreadable(f"truncated: {self.seen} of the header's {where.count} points")
        return self

    def _points(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        self.seen += len(x)
        finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
        if not finite.all():
            x, y, z = x[finite], y[finite], z[finite]
        if len(x):
            self.finite += len(x)
            for axis, values in enumerate((x, y, z)):
                self.low[axis] = min(self.low[axis], float(values.min()))
                self.high[axis] = max(self.high[axis], float(values.max()))

    def _intensity(self, values: np.ndarray) -> None:
        self.has_intensity = True
        values = values[np.isfinite(values)]
        if len(values):
            self.i_sum += float(values.sum())
            self.i_count += len(values)
            self.i_low, self.i_high = min(self.i_low, values.min()), max(self.i_high, values.max())

    def _returns(self, returns: np.ndarray) -> None:
        self.has_returns = True
        if len(returns):
            self.max_return = max(self.max_return, int(returns.max()))
            self.multi += int(np.count_nonzero(returns > 1))

    def row(self) -> dict[str, Any]:
        """The fields from the sums (None where nothing was seen)."""
        bounds = dict.fromkeys(_BOUNDS)
        density = None
        if self.finite:
            bounds = dict(zip(_BOUNDS, [*map(float, self.low), *map(float, self.high)], strict=True))
            area = (self.high[0] - self.low[0]) * (self.high[1] - self.low[1])
            density = self.finite / float(area) if np.isfinite(area) and area > 0 else None
        intensity = dict.fromkeys(_INTENSITY)
        if self.i_count:
            intensity = {"intensity_mean": self.i_sum / self.i_count,
                         "intensity_min": float(self.i_low), "intensity_max": float(self.i_high)}
        returns = {"max_return": None, "multi_return_share": None}
        if self.has_returns:
            returns = {"max_return": self.max_return,
                       "multi_return_share": self.multi / self.seen if self.seen else None}
        return {**bounds, "density": density, **intensity, **returns}


# --- LAS and LAZ, with their returns ---------------------------------------------------------


def _las_blocks(data: bytes, where: Layout) -> Iterator[tuple]:
    """(x, y, z, intensity, number_of_returns) blocks: LAS from views of the records (the
    coordinates by `pointcloud_formats.blocks`), LAZ decompressed by laspy a chunk at a time."""
    try:
        if where.fmt == "LAZ":
            yield from _laz_blocks(data, where)
            return
        returns, start = _las_returns(data, where), 0
        for block in blocks(data, where):
            yield (*block, returns(start, start + len(block[0])))
            start += len(block[0])
    except (Unreadable, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - damaged files raise anything; lazrs panics
        raise Unreadable(f"corrupt: {type(exc).__name__}: {exc}"[:200]) from exc


def _las_returns(data: bytes, where: Layout):
    """A function of (start, end) giving those points' number_of_returns: bits 3-5 of byte 14
    in point formats 0-5, bits 4-7 in formats 6-10 (ASPRS LAS 1.4, table 7 and 15)."""
    point_format = data[104] & 0x3F
    flags = np.frombuffer(data, np.dtype({"names": ["f"], "formats": ["u1"], "offsets": [14],
                                          "itemsize": where.extra["record_length"]}),
                          count=where.count, offset=where.start)["f"]
    shift, mask = (4, 0x0F) if point_format >= 6 else (3, 0x07)
    return lambda start, end: (flags[start:end] >> shift) & mask


def _laz_blocks(data: bytes, where: Layout) -> Iterator[tuple]:
    """LAZ points with their returns (the structure checked first, as `pointcloud_formats` does:
    lazrs allocates what a file says)."""
    for chunk in pointcloud_formats.laz_chunks(data, where):
        yield (np.asarray(chunk.x), np.asarray(chunk.y), np.asarray(chunk.z),
               np.asarray(chunk.intensity), np.asarray(chunk.number_of_returns))
