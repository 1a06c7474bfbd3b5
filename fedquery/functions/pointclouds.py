"""Point-cloud summaries and points over bytes the caller has already read.

Formats, chosen by the name's extension and checked against the magic bytes:
LAS/LAZ (`.las`, `.laz`), KITTI (`.bin`: float32 x, y, z, intensity), NumPy (`.npy`: N×3 or
N×4 numbers) and PCD (`.pcd`: ascii or binary).

Nothing here does I/O. For LAS and LAZ, `pointcloud_info_from` reads the public header
block only: give it the first `pointcloud_prefix_bytes(name)` (375) bytes and the file's size.
Every other format needs the whole file. If the bytes given are shorter than that while
`size` says the file is longer, `NeedMoreBytes(n)` is raised: read the first `n` bytes and
call again. Every other problem, corrupt or truncated files included, is reported in the
result's `error` field and never raised. `read_pointcloud_from` always needs the whole file
and returns None for a file it cannot read.
"""

from __future__ import annotations

import io
import struct
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from fedquery.functions.images import NeedMoreBytes

__all__ = [
    "LAS_HEADER_BYTES",
    "POINTCLOUD_INFO_ARROW",
    "POINTCLOUD_INFO_TYPE",
    "POINTS_ARROW",
    "POINTS_TYPE",
    "POINT_ARROW",
    "NeedMoreBytes",
    "pointcloud_error",
    "pointcloud_info_array",
    "pointcloud_info_from",
    "pointcloud_prefix_bytes",
    "points_array",
    "read_pointcloud_from",
]

LAS_HEADER_BYTES = 375  # the public header block of LAS 1.4; 1.0-1.2 need 227, 1.3 needs 235
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
POINTS_ARROW = pa.list_(POINT_ARROW)


class _Unreadable(Exception):
    """A file this module cannot read; the message is the `error` reported for it."""


# --- public functions -----------------------------------------------------------------------


def pointcloud_prefix_bytes(name: str) -> int | None:
    """Leading bytes `pointcloud_info_from` needs: 375 for LAS/LAZ, None (the whole file) otherwise."""
    return LAS_HEADER_BYTES if _format_of(name) in ("LAS", "LAZ") else None


def pointcloud_info_from(data: bytes, name: str, size: int | None = None) -> dict[str, Any]:
    """Format, point count and bounds of a point cloud (`size`: the file's byte count).

    `size=None` means `data` is the whole file. Bounds ignore non-finite points and are NULL
    when no point is finite. Raises only `NeedMoreBytes` (see module doc).
    """
    fmt, size = _format_of(name), len(data) if size is None else size
    if fmt is None:
        return pointcloud_error(f"unsupported: {name!r} is not one of {', '.join(FORMATS)}")
    if size == 0:
        return pointcloud_error("empty file")
    if fmt in ("LAS", "LAZ"):
        return _las_info(data, size)
    if len(data) < size:
        raise NeedMoreBytes(size)
    try:
        xyz, _ = _decode(fmt, data)
    except _Unreadable as exc:
        return pointcloud_error(str(exc))
    return _info(fmt, len(xyz), _bounds(xyz))


def read_pointcloud_from(data: bytes, name: str) -> pa.Table | None:
    """Columns x, y, z, intensity (float64; intensity all NULL when the file has none), or None."""
    fmt = _format_of(name)
    if fmt is None or not data:
        return None
    try:
        xyz, intensity = _decode(fmt, data)
    except _Unreadable:
        return None
    columns = {axis: pa.array(xyz[:, i], pa.float64()) for i, axis in enumerate("xyz")}
    columns["intensity"] = (
        pa.nulls(len(xyz), pa.float64()) if intensity is None else pa.array(intensity, pa.float64())
    )
    return pa.table(columns)


def pointcloud_error(reason: str, fmt: str | None = None) -> dict[str, Any]:
    """The info of a file that is missing or unreadable: everything NULL but `error`."""
    return _info(fmt, None, None, reason)


def pointcloud_info_array(rows: list[dict[str, Any] | None]) -> pa.StructArray:
    """One `POINTCLOUD_INFO_ARROW` struct per row (a None row becomes a NULL struct)."""
    return pa.array(rows, type=POINTCLOUD_INFO_ARROW)


def points_array(tables: list[pa.Table | None]) -> pa.ListArray:
    """One `POINTS_ARROW` list per input table (from `read_pointcloud_from`; None gives NULL)."""
    present = [t.select(["x", "y", "z", "intensity"]) for t in tables if t is not None]
    lengths = [0 if t is None else t.num_rows for t in tables]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("too many points for one batch of LIST values (more than 2**31 - 1)")
    values = (
        pa.concat_tables(present).to_struct_array().combine_chunks() if present else pa.array([], POINT_ARROW)
    )
    mask = pa.array([t is None for t in tables], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=POINTS_ARROW, mask=mask)


# --- helpers --------------------------------------------------------------------------------


def _format_of(name: str) -> str | None:
    """The format that the name's extension (case-insensitive) stands for."""
    return FORMATS.get(PurePosixPath(name).suffix.lower())


def _info(fmt: str | None, points: int | None, bounds: tuple | None, error: str | None = None) -> dict:
    """An info dict in `POINTCLOUD_INFO_TYPE` field order."""
    values = bounds if bounds is not None else (None,) * 6
    return {"format": fmt, "points": points, **dict(zip(_BOUNDS, values, strict=True)), "error": error}


def _bounds(xyz: np.ndarray) -> tuple[float, ...] | None:
    """(min_x, min_y, min_z, max_x, max_y, max_z) over the finite points, None if there are none."""
    finite = xyz[np.isfinite(xyz).all(axis=1)]
    if not len(finite):
        return None
    return tuple(float(v) for v in (*finite.min(axis=0), *finite.max(axis=0)))


def _decode(fmt: str, data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """(N×3 float64 xyz, N intensities or None) of a whole file; raises _Unreadable."""
    try:
        return _DECODERS[fmt](data)
    except _Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged files raise almost anything from parsers
        raise _Unreadable(f"corrupt: {type(exc).__name__}: {exc}"[:200]) from exc


# --- LAS / LAZ ------------------------------------------------------------------------------


def _las_info(data: bytes, size: int) -> dict[str, Any]:
    """Point count and bounds from the LAS public header block (laspy is not needed)."""
    if len(data) < min(size, LAS_HEADER_BYTES):
        raise NeedMoreBytes(min(size, LAS_HEADER_BYTES))
    try:
        header = _las_header(data)
    except _Unreadable as exc:
        return pointcloud_error(str(exc))
    fmt, count = header["format"], header["points"]
    end = _las_data_end(header, data)
    error = f"truncated: the {fmt} points need {end} bytes, file has {size}" if end > size else None
    return _info(fmt, count, header["bounds"] if count else None, error)


def _las_data_end(header: dict[str, Any], data: bytes) -> int:
    """Bytes the points need: every record for LAS; for LAZ, up to the chunk table if `data` shows it."""
    offset = header["offset"]
    if header["format"] == "LAS":
        return offset + header["points"] * header["record_length"]
    if len(data) >= offset + 8:
        (chunk_table,) = struct.unpack_from("<q", data, offset)  # laszip: where the chunk table starts
        return max(offset, chunk_table + 8)
    return offset


def _las_header(data: bytes) -> dict[str, Any]:
    """The fields of a LAS 1.0-1.4 public header block that the info needs (ASPRS layout)."""
    if not data.startswith(b"LASF"):
        raise _Unreadable("not a LAS file: no LASF signature")
    minor = data[25] if len(data) > 25 else 0
    end = 227 if minor < 3 else 235 if minor == 3 else 375
    if len(data) < end:
        raise _Unreadable("truncated: the file ends inside the LAS header")
    offset, _vlrs, point_format, record_length, count = struct.unpack_from("<IIBHI", data, 96)
    if minor >= 4:
        (count,) = struct.unpack_from("<Q", data, 247)
    max_x, min_x, max_y, min_y, max_z, min_z = struct.unpack_from("<6d", data, 179)
    return {
        "format": "LAZ" if point_format & 0xC0 else "LAS",  # laszip sets bit 7 (and 6) of the id
        "points": count,
        "bounds": (min_x, min_y, min_z, max_x, max_y, max_z),
        "offset": offset,
        "record_length": record_length,
    }


def _las_points(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Scaled x, y, z and intensity of every point, decoded by laspy (LAZ through lazrs)."""
    info = _las_info(data, len(data))
    if info["error"]:
        raise _Unreadable(info["error"])
    try:
        import laspy
    except ImportError as exc:
        raise _Unreadable("unsupported: reading LAS/LAZ points needs laspy and lazrs") from exc
    fields = laspy.DecompressionSelection
    only = fields.XY_RETURNS_CHANNEL | fields.Z | fields.INTENSITY
    backend = laspy.LazBackend.Lazrs  # one thread a file: the caller runs files in parallel
    las = laspy.read(io.BytesIO(data), laz_backend=backend, decompression_selection=only)
    xyz = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)])
    return xyz.astype(np.float64, copy=False), np.asarray(las.intensity, dtype=np.float64)


# --- KITTI and NumPy ------------------------------------------------------------------------


def _kitti_points(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """KITTI velodyne `.bin`: little-endian float32 x, y, z, intensity per point, no header."""
    if len(data) % 16:
        raise _Unreadable(f"corrupt: {len(data)} bytes is not a whole number of 16-byte KITTI points")
    points = np.frombuffer(data, "<f4").reshape(-1, 4).astype(np.float64)
    return points[:, :3], points[:, 3]


def _npy_points(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """A `.npy` N×3 (x, y, z) or N×4 (x, y, z, intensity) array of numbers; pickles refused."""
    if not data.startswith(b"\x93NUMPY"):
        raise _Unreadable("not a NPY file: no \\x93NUMPY signature")
    _npy_check_header(data)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise _Unreadable(_npy_failure(exc)) from exc
    _npy_check_shape(array.shape, array.dtype)
    points = array.astype(np.float64)
    return points[:, :3], points[:, 3] if array.shape[1] == 4 else None


def _npy_check_header(data: bytes) -> None:
    """Shape, dtype and length from a v1/v2 header, before np.load allocates anything."""
    stream = io.BytesIO(data)
    readers = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}
    read = readers.get(np.lib.format.read_magic(stream)[0])
    if read is None:  # v3 headers (utf-8 field names) are left to np.load
        return
    shape, _, dtype = read(stream)
    _npy_check_shape(shape, dtype)
    need = stream.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < need:
        raise _Unreadable(f"truncated: NPY header says {need} bytes, file has {len(data)}")


def _npy_check_shape(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Only N×3 and N×4 arrays of numbers are point clouds; object arrays would need pickle."""
    if dtype.hasobject:
        raise _Unreadable("unsupported: NPY holds Python objects (pickled data is never loaded)")
    if len(shape) != 2 or shape[1] not in (3, 4) or dtype.kind not in "fiu":
        raise _Unreadable(f"unsupported: NPY array {dtype} {shape}, expected N×3 or N×4 numbers")


def _npy_failure(exc: ValueError) -> str:
    """A short reason for an `np.load` failure."""
    message = str(exc)
    if "allow_pickle" in message:
        return "unsupported: NPY holds Python objects (pickled data is never loaded)"
    if "EOF" in message or "reshape" in message:
        return f"truncated: {message}"
    return f"corrupt: {message}"


# --- PCD ------------------------------------------------------------------------------------

_PCD_TYPES = {"F": "f", "I": "i", "U": "u"}
_PCD_INTENSITY = ("intensity", "i")


def _pcd_points(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """A PCD v0.5-0.7 file with DATA ascii or binary and fields x, y, z [, intensity]."""
    if not data.startswith((b"# .PCD", b"VERSION")):
        raise _Unreadable("not a PCD file: does not start with '# .PCD' or 'VERSION'")
    header, start = _pcd_header(data)
    dtype, count = _pcd_dtype(header), _pcd_count(header)
    kind = (header.get("DATA") or ["?"])[0].lower()
    if kind == "binary":
        records = _pcd_binary(data[start:], dtype, count)
    elif kind == "ascii":
        records = _pcd_ascii(data[start:], dtype, count)
    else:
        raise _Unreadable(f"unsupported: PCD DATA {kind}")
    return _pcd_columns(records, dtype)


def _pcd_header(data: bytes) -> tuple[dict[str, list[str]], int]:
    """The header's keywords and their values, and where the point data starts."""
    header: dict[str, list[str]] = {}
    pos = 0
    while pos < min(len(data), 65536):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line, pos = data[pos:end].decode("ascii", "replace").strip(), end + 1
        if line and not line.startswith("#"):
            key, *values = line.split()
            header[key.upper()] = values
            if key.upper() == "DATA":
                return header, min(pos, len(data))
    raise _Unreadable("corrupt: PCD header has no DATA line")


def _pcd_dtype(header: dict[str, list[str]]) -> np.dtype:
    """One little-endian record per point from FIELDS, SIZE, TYPE and COUNT ('_' is padding)."""
    fields, sizes, types = header.get("FIELDS", []), header.get("SIZE", []), header.get("TYPE", [])
    counts = header.get("COUNT", ["1"] * len(fields))
    if not fields or not len(fields) == len(sizes) == len(types) == len(counts):
        raise _Unreadable("corrupt: PCD FIELDS, SIZE, TYPE and COUNT do not line up")
    if not {"x", "y", "z"} <= set(fields):
        raise _Unreadable(f"unsupported: PCD fields {' '.join(fields)} have no x, y, z")
    parts = []
    for i, (name, size, kind, count) in enumerate(zip(fields, sizes, types, counts, strict=True)):
        base = f"<{_PCD_TYPES.get(kind.upper(), '?')}{size}"
        parts.append((f"_{i}" if name == "_" else name, base, (int(count),) if int(count) > 1 else ()))
    return np.dtype(parts)


def _pcd_count(header: dict[str, list[str]]) -> int:
    """POINTS, or WIDTH × HEIGHT for old files without it."""
    if "POINTS" in header:
        return int(header["POINTS"][0])
    return int(header.get("WIDTH", ["0"])[0]) * int(header.get("HEIGHT", ["1"])[0])


def _pcd_binary(body: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    """Packed little-endian records."""
    if len(body) < count * dtype.itemsize:
        raise _Unreadable(
            f"truncated: PCD header says {count} points ({count * dtype.itemsize} bytes),"
            f" the file has {len(body)} bytes of point data"
        )
    return np.frombuffer(body, dtype, count=count)


def _pcd_ascii(body: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    """Whitespace-separated numbers, one point a line, as a float64 record array."""
    width = sum(max(1, int(np.prod(dtype[name].shape))) for name in dtype.names)
    values = np.array(body.split(), dtype=np.float64)
    if len(values) != count * width:
        state = "truncated" if len(values) < count * width else "corrupt"
        found = f"found {len(values)} values"
        raise _Unreadable(f"{state}: PCD header says {count} points of {width} values, {found}")
    floats = [(name, "<f8", dtype[name].shape) for name in dtype.names]
    return values.reshape(count, width).view(np.dtype(floats)).reshape(count)


def _pcd_columns(records: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """x, y, z (first element of each) and intensity (or 'i') of the records, as float64."""

    def first(name: str) -> np.ndarray:
        column = records[name]
        return (column[:, 0] if column.ndim > 1 else column).astype(np.float64)

    xyz = np.column_stack([first(axis) for axis in "xyz"]) if len(records) else np.empty((0, 3))
    name = next((n for n in _PCD_INTENSITY if n in dtype.names), None)
    return xyz, None if name is None else first(name)


_DECODERS = {
    "LAS": _las_points,
    "LAZ": _las_points,
    "KITTI": _kitti_points,
    "NPY": _npy_points,
    "PCD": _pcd_points,
}
