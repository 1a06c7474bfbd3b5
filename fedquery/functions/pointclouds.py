"""Point-cloud summaries and points over bytes the caller has already read.

Formats, chosen by the name's extension and checked against the magic bytes:
LAS/LAZ (`.las`, `.laz`), KITTI (`.bin`: float32 x, y, z, intensity), NumPy (`.npy`: N×3 or
N×4 numbers) and PCD (`.pcd`: ascii or binary). Parsing lives in `pointcloud_formats`.

Nothing here does I/O. For LAS and LAZ, `pointcloud_info_from` reads the public header
block only: give it the first `pointcloud_prefix_bytes(name)` (375) bytes and the file's size.
Every other format needs the whole file. If the bytes given are shorter than that while
`size` says the file is longer, `NeedMoreBytes(n)` is raised: read the first `n` bytes and
call again. Every other problem, corrupt or truncated files and headers that claim more points
than the file can hold included, is reported in the result's `error` field and never raised.

`PointColumns` gathers the points of a batch of files into one set of float64 columns,
allocated once from the header counts (`count_from`) and filled in place, which Arrow (and
DuckDB after it) take without copying: one copy of each point in memory, not several.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from fedquery.functions.images import NeedMoreBytes
from fedquery.functions.pointcloud_formats import (
    HEADER_BYTES,
    LAS_HEADER_BYTES,
    Layout,
    Unreadable,
    blocks,
    decode_bytes,
    las_truncation,
    layout,
)
from fedquery.functions.rows import struct_array

__all__ = [
    "LAS_HEADER_BYTES",
    "POINTCLOUD_INFO_ARROW",
    "POINTCLOUD_INFO_TYPE",
    "POINTS_ARROW",
    "POINTS_TYPE",
    "POINT_ARROW",
    "NeedMoreBytes",
    "PointColumns",
    "count_from",
    "count_prefix_bytes",
    "decode_bytes",
    "pointcloud_error",
    "pointcloud_info_array",
    "pointcloud_info_from",
    "pointcloud_prefix_bytes",
    "points_array",
    "read_pointcloud_from",
]

FORMATS = {".las": "LAS", ".laz": "LAZ", ".bin": "KITTI", ".npy": "NPY", ".pcd": "PCD"}

POINTCLOUD_INFO_TYPE = (
    "STRUCT(format VARCHAR, points BIGINT, min_x DOUBLE, min_y DOUBLE, min_z DOUBLE,"
    " max_x DOUBLE, max_y DOUBLE, max_z DOUBLE, error VARCHAR)"
)
_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")
POINTCLOUD_INFO_ARROW = pa.struct(
    [("format", pa.string()), ("points", pa.int64())]
    + [(name, pa.float64()) for name in _BOUNDS]
    + [("error", pa.string())]
)
POINTS_TYPE = "STRUCT(x DOUBLE, y DOUBLE, z DOUBLE, intensity DOUBLE)[]"
POINT_ARROW = pa.struct([(name, pa.float64()) for name in ("x", "y", "z", "intensity")])
POINTS_ARROW = pa.large_list(POINT_ARROW)  # 64-bit offsets: a batch may hold over 2**31 points


# --- public functions -----------------------------------------------------------------------


def format_of(name: str) -> str | None:
    """The format that the name's extension (case-insensitive) stands for."""
    return FORMATS.get(PurePosixPath(name).suffix.lower())


def pointcloud_prefix_bytes(name: str) -> int | None:
    """Leading bytes `pointcloud_info_from` needs: 375 for LAS/LAZ, None (the whole file) otherwise."""
    return LAS_HEADER_BYTES if format_of(name) in ("LAS", "LAZ") else None


def count_prefix_bytes(name: str) -> int:
    """Leading bytes `count_from` needs: the LAS header, none for KITTI, 64 KiB for NPY and PCD
    (it asks for more with `NeedMoreBytes` when a header goes on)."""
    fmt = format_of(name)
    return LAS_HEADER_BYTES if fmt in ("LAS", "LAZ") else 0 if fmt == "KITTI" else HEADER_BYTES


def count_from(head: bytes, name: str, size: int) -> Layout:
    """How many points a file holds, from its first bytes: checked against its `size`, so a
    caller can allocate before reading the rest. Raises `NeedMoreBytes` or `Unreadable`."""
    fmt = format_of(name)
    if fmt is None:
        raise Unreadable(f"unsupported: {name!r} is not one of {', '.join(FORMATS)}")
    if size == 0:
        raise Unreadable("empty file")
    return layout(fmt, head, size)


def pointcloud_info_from(data: bytes, name: str, size: int | None = None) -> dict[str, Any]:
    """Format, point count and bounds of a point cloud (`size`: the file's byte count).

    `size=None` means `data` is the whole file. Bounds ignore non-finite points and are NULL
    when no point is finite. Raises only `NeedMoreBytes` (see module doc).
    """
    size = len(data) if size is None else size
    try:
        where = count_from(data, name, size)
        if where.fmt in ("LAS", "LAZ"):
            bounds = where.extra["bounds"] if where.count else None
            return _info(where.fmt, where.count, bounds, las_truncation(where, data, size))
        if len(data) < size:
            raise NeedMoreBytes(size)
        return _info(where.fmt, where.count, _bounds(data, where))
    except Unreadable as exc:
        return {**pointcloud_error(str(exc), format_of(name) if exc.count is not None else None),
                "points": exc.count}


def read_pointcloud_from(data: bytes, name: str) -> pa.Table | None:
    """Columns x, y, z, intensity (float64; intensity all NULL when the file has none), or None."""
    try:
        where = count_from(data, name, len(data))
        columns = PointColumns([where.count])
        columns.fill(0, data, where)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - a crafted file may make any reader raise anything
        return None
    return pa.Table.from_struct_array(columns.array().flatten())


def pointcloud_error(reason: str, fmt: str | None = None) -> dict[str, Any]:
    """The info of a file that is missing or unreadable: everything NULL but `error`."""
    return _info(fmt, None, None, reason)


def pointcloud_info_array(rows: list[dict[str, Any] | None]) -> pa.StructArray:
    """One `POINTCLOUD_INFO_ARROW` struct per row (a None row becomes a NULL struct; one that
    does not fit, an error row)."""
    return struct_array(rows, POINTCLOUD_INFO_ARROW)


def points_array(tables: list[pa.Table | None]) -> pa.LargeListArray:
    """One `POINTS_ARROW` list per input table (from `read_pointcloud_from`; None gives NULL)."""
    columns = PointColumns([None if t is None else t.num_rows for t in tables])
    for row, table in enumerate(tables):
        if table is not None:
            columns.put(row, *(table.column(c).to_numpy() for c in ("x", "y", "z", "intensity")))
    return columns.array()


# --- a batch of clouds in one set of columns ------------------------------------------------


class PointColumns:
    """The x, y, z and intensity of a batch of clouds, allocated once from their counts (None:
    a NULL row) and filled row by row (threads may fill different rows at once)."""

    def __init__(self, counts: list[int | None]) -> None:
        self.counts = [c or 0 for c in counts]
        self.starts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        total = int(self.starts[-1])
        self.columns = [np.empty(total, np.float64) for _ in range(4)]
        self.filled = [False] * len(counts)
        self.intensity = [False] * len(counts)

    def fill(self, row: int, data: bytes, where: Layout) -> None:
        """Decode a whole file's points into its row; `Unreadable` if they are not the count."""
        position, end = int(self.starts[row]), int(self.starts[row + 1])
        x, y, z, intensity = self.columns
        with np.errstate(all="ignore"):  # a file's values are what they are: NaN, inf, huge
            for block in blocks(data, where):
                n = len(block[0])
                if position + n > end:
                    raise Unreadable(f"corrupt: more points than the header's {self.counts[row]}")
                for column, values in zip((x, y, z), block[:3], strict=True):
                    column[position:position + n] = values
                if block[3] is not None:
                    intensity[position:position + n] = block[3]
                    self.intensity[row] = True
                position += n
        if position != end:
            raise Unreadable(f"truncated: {position - int(self.starts[row])} of the header's "
                             f"{self.counts[row]} points")
        self.filled[row] = True

    def put(self, row: int, x: np.ndarray, y: np.ndarray, z: np.ndarray,
            intensity: np.ndarray) -> None:
        """A row's points given as columns (NaN intensities where it has none)."""
        start, end = int(self.starts[row]), int(self.starts[row + 1])
        for column, values in zip(self.columns, (x, y, z, intensity), strict=True):
            column[start:end] = values
        self.intensity[row] = not np.isnan(intensity).all() if len(intensity) else False
        self.filled[row] = True

    def array(self) -> pa.LargeListArray:
        """A `POINTS_ARROW` list per row, NULL where a row was not filled; the columns are
        compacted in place (rows that failed leave no gap) and handed to Arrow uncopied."""
        write, offsets, valid = 0, [0], []
        for row, count in enumerate(self.counts):
            start = int(self.starts[row])
            n = count if self.filled[row] else 0
            if n and start != write:
                for column in self.columns:
                    column[write:write + n] = column[start:start + n]
            if n and self.intensity[row]:
                valid.append((write, write + n))
            write += n
            offsets.append(write)
        arrays = [_float64(column[:write]) for column in self.columns[:3]]
        arrays.append(_float64(self.columns[3][:write], valid))
        values = pa.StructArray.from_arrays(arrays, fields=list(POINT_ARROW))
        missing = pa.array([not f for f in self.filled], pa.bool_())
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values, mask=missing)


def _float64(values: np.ndarray, valid: list[tuple[int, int]] | None = None) -> pa.Array:
    """A float64 Arrow array over `values`' memory (no copy); only the `valid` ranges are
    non-NULL when given."""
    bitmap = None
    if valid is not None and valid != [(0, len(values))]:
        mask = np.zeros(len(values), bool)
        for start, end in valid:
            mask[start:end] = True
        bitmap = pa.py_buffer(np.packbits(mask, bitorder="little"))
    return pa.Array.from_buffers(pa.float64(), len(values), [bitmap, pa.py_buffer(values)])


# --- helpers --------------------------------------------------------------------------------


def _info(fmt: str | None, points: int | None, bounds: tuple | None, error: str | None = None) -> dict:
    """An info dict in `POINTCLOUD_INFO_TYPE` field order."""
    values = bounds if bounds is not None else (None,) * 6
    return {"format": fmt, "points": points, **dict(zip(_BOUNDS, values, strict=True)), "error": error}


def _bounds(data: bytes, where: Layout) -> tuple[float, ...] | None:
    """(min_x, min_y, min_z, max_x, max_y, max_z) over the finite points, None if there are
    none; a block at a time, so no copy of the whole cloud is made."""
    low, high, seen = [np.inf] * 3, [-np.inf] * 3, False
    with np.errstate(all="ignore"):  # scaled LAS values may overflow to inf: left out below
        for block in blocks(data, where):
            xyz = block[:3]
            finite = np.isfinite(xyz[0]) & np.isfinite(xyz[1]) & np.isfinite(xyz[2])
            if not finite.all():
                xyz = [axis[finite] for axis in xyz]
            if len(xyz[0]):
                seen = True
                low = [min(lo, float(axis.min())) for lo, axis in zip(low, xyz, strict=True)]
                high = [max(hi, float(axis.max())) for hi, axis in zip(high, xyz, strict=True)]
    return (*low, *high) if seen else None
