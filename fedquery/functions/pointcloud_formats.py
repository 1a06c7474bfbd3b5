"""The point-cloud formats: each header's count checked against the file, points in blocks.

``layout(fmt, head, size)`` reads a format's header from the first bytes of a file (``size``
is the whole file's) and returns how many points it holds, checked against what ``size`` can
hold before anything is allocated: a header that claims more is ``Unreadable`` ("header claims
N points but the file holds at most M"). ``blocks(fmt, data, layout)`` then yields the points
of the whole file as blocks of ``BLOCK`` points, ``(x, y, z, intensity or None)`` arrays that
are views of ``data`` where the format allows (KITTI, NPY, PCD binary, LAS), so a consumer
copies each point once into its own columns or bounds.

Nothing here does I/O; only ``NeedMoreBytes`` and ``Unreadable`` are raised.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedquery.functions.images import NeedMoreBytes

BLOCK = 1 << 20  # points per block
LAS_HEADER_BYTES = 375  # the public header block of LAS 1.4; 1.0-1.2 need 227, 1.3 needs 235
HEADER_BYTES = 64 * 1024  # how far PCD and NPY headers may reach
# laszip compresses constant points about 150 to 1 per byte at best (measured with lazrs on
# formats 0, 3 and 6); a header claiming more points than this per byte of point data lies.
LAZ_POINTS_PER_BYTE = 1024
VLR_HEADER_BYTES, EVLR_HEADER_BYTES = 54, 60  # the fixed part of a (extended) VLR
MAX_COUNT = (1 << 63) - 1  # a count a BIGINT holds; a header claiming more is reported without it
Block = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


class Unreadable(Exception):  # noqa: N818 - its message is the `error` reported for the file
    """A file that cannot be read as its format (``count``: the points its header claims,
    when it got that far)."""

    def __init__(self, message: str, count: int | None = None) -> None:
        super().__init__(message)
        self.count = count if count is not None and 0 <= count <= MAX_COUNT else None


@dataclass(frozen=True)
class Layout:
    """Where a file's points are: their count (checked), and what decoding needs."""

    fmt: str
    count: int
    start: int = 0
    extra: Any = None  # per format: LAS scales and record length, NPY/PCD dtype

    def __post_init__(self) -> None:
        """Every format's count and start passed through one check: whole numbers, none
        negative, the count within a BIGINT (each format checks them against the file too)."""
        for name, value in (("point count", self.count), ("point data offset", self.start)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                raise Unreadable(f"corrupt: the {self.fmt} header's {name} is {value}")


def layout(fmt: str, head: bytes, size: int) -> Layout:
    """The count and place of the points, from the first bytes of a ``size``-byte file."""
    if fmt in ("LAS", "LAZ"):
        return las_layout(head, size)
    if fmt == "KITTI":
        if size % 16:
            raise Unreadable(f"corrupt: {size} bytes is not a whole number of 16-byte KITTI points")
        return Layout("KITTI", size // 16)
    return (_npy_layout if fmt == "NPY" else _pcd_layout)(head, size)


def blocks(data: bytes, where: Layout) -> Iterator[Block]:
    """Every point of a whole file, ``BLOCK`` at a time (see module doc); a file the decoder
    trips on is ``Unreadable``."""
    try:
        if where.fmt == "LAZ":
            yield from _laz_blocks(data, where)
            return
        columns = _COLUMNS[where.fmt](data, where)
        for start in range(0, where.count, BLOCK):
            end = min(start + BLOCK, where.count)
            yield tuple(None if c is None else c[start:end] for c in columns)  # type: ignore[misc]
    except (Unreadable, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - damaged files raise anything from parsers,
        # lazrs a Rust panic (pyo3's PanicException derives from BaseException)
        raise Unreadable(f"corrupt: {type(exc).__name__}: {exc}"[:200]) from exc


def decode_bytes(where: Layout, size: int) -> int:
    """Memory decoding a ``size``-byte file takes beyond its bytes and the columns it fills,
    for the decode budget: a block's float64 columns (LAS scales them, the others convert
    them), plus for LAZ a copy of the file (``io.BytesIO`` of a ``bytearray``) and a chunk of
    raw records, and for ascii PCD the body copied twice (sliced, stripped) and every value
    parsed as a float64."""
    block = min(where.count, BLOCK)
    working = block * 4 * 8
    if where.fmt == "LAZ":
        return working + size + block * where.extra["record_length"]
    if where.fmt == "PCD" and where.extra[1] != "binary":
        return working + 2 * size + where.count * _pcd_width(where.extra[0]) * 8
    return working


def claims(fmt: str, count: int, most: int, state: str = "truncated") -> Unreadable:
    return Unreadable(f"{state}: the {fmt} header claims {count} points but the file holds at "
                      f"most {max(most, 0)}", count)


# --- LAS / LAZ ------------------------------------------------------------------------------


def las_layout(head: bytes, size: int) -> Layout:
    """Count, bounds and record layout from the LAS public header block (ASPRS 1.0-1.4)."""
    if len(head) < min(size, LAS_HEADER_BYTES):
        raise NeedMoreBytes(min(size, LAS_HEADER_BYTES))
    if not head.startswith(b"LASF"):
        raise Unreadable("not a LAS file: no LASF signature")
    major, minor = (head[24], head[25]) if len(head) > 25 else (1, 0)
    if major != 1 or minor > 4:
        raise Unreadable(f"unsupported: LAS version {major}.{minor} (1.0 to 1.4 are read)")
    least = 227 if minor < 3 else 235 if minor == 3 else 375
    if len(head) < least:
        raise Unreadable("truncated: the file ends inside the LAS header")
    (header_size,) = struct.unpack_from("<H", head, 94)
    offset, vlrs, point_format, record_length, count = struct.unpack_from("<IIBHI", head, 96)
    if header_size < least or offset < header_size:
        raise Unreadable(f"corrupt: LAS {major}.{minor} header of {header_size} bytes with its "
                         f"points at byte {offset}")
    _check_records(vlrs, VLR_HEADER_BYTES, header_size, offset, "VLRs")
    evlr_start, evlrs = struct.unpack_from("<QI", head, 235) if minor >= 4 else (size, 0)
    # extended VLRs, which a reader of the points (laspy) looks for
    _check_records(evlrs, EVLR_HEADER_BYTES, evlr_start if evlrs else size, size, "extended VLRs")
    if minor >= 4:
        (count,) = struct.unpack_from("<Q", head, 247)
    fmt = "LAZ" if point_format & 0xC0 else "LAS"  # laszip sets bit 7 (and 6) of the id
    max_x, min_x, max_y, min_y, max_z, min_z = struct.unpack_from("<6d", head, 179)
    extra = {"record_length": record_length, "scales": struct.unpack_from("<3d", head, 131),
             "offsets": struct.unpack_from("<3d", head, 155),
             "bounds": (min_x, min_y, min_z, max_x, max_y, max_z),
             "header_size": header_size, "vlrs": vlrs,
             "points_end": evlr_start if evlrs else size}
    if record_length < 20:
        raise Unreadable(f"corrupt: LAS point records of {record_length} bytes (at least 20)")
    if offset > size:
        raise Unreadable(f"truncated: the LAS points start at byte {offset}, file has {size}",
                         count)
    if fmt == "LAZ":
        most = (size - offset) * LAZ_POINTS_PER_BYTE
        if count > most:
            raise claims("LAZ", count, most, "corrupt")
    elif offset + count * record_length > size:
        raise claims("LAS", count, (size - offset) // record_length)
    return Layout(fmt, count, offset, extra)


def _check_records(number: int, each: int, start: int, end: int, what: str) -> None:
    """``number`` records of at least ``each`` bytes must fit from ``start`` to ``end`` (a
    count of millions in a small file made laspy loop for minutes over 3 GiB)."""
    if number * each > end - start:
        raise Unreadable(f"corrupt: the LAS header says {number} {what} of at least {each} "
                         f"bytes from byte {start}, where only {max(end - start, 0)} bytes are")


def las_truncation(where: Layout, head: bytes, size: int) -> str | None:
    """For LAZ, whether the chunk table the point data starts with lies past the file's end."""
    if where.fmt != "LAZ" or len(head) < where.start + 8:
        return None
    (chunk_table,) = struct.unpack_from("<q", head, where.start)  # laszip: where the table starts
    end = max(where.start, chunk_table + 8)
    return f"truncated: the LAZ points need {end} bytes, file has {size}" if end > size else None


def _las_columns(data: bytes, where: Layout) -> tuple:
    """Scaled x, y, z and intensity of an uncompressed LAS file, as lazy per-block views (every
    point format starts with int32 X, Y, Z and uint16 intensity)."""
    records = np.dtype({"names": ["X", "Y", "Z", "intensity"], "formats": ["<i4", "<i4", "<i4", "<u2"],
                        "offsets": [0, 4, 8, 12], "itemsize": where.extra["record_length"]})
    view = np.frombuffer(data, records, count=where.count, offset=where.start)
    scales, offsets = where.extra["scales"], where.extra["offsets"]
    axes = [_Scaled(view[axis], scale, offset) for axis, scale, offset in zip("XYZ", scales, offsets,
                                                                               strict=True)]
    return (*axes, view["intensity"])


class _Scaled:
    """``raw * scale + offset`` of a slice, computed when sliced (as laspy computes it)."""

    def __init__(self, raw: np.ndarray, scale: float, offset: float) -> None:
        self.raw, self.scale, self.offset = raw, scale, offset

    def __getitem__(self, index: slice) -> np.ndarray:
        return self.raw[index] * self.scale + self.offset


def _laz_blocks(data: bytes, where: Layout) -> Iterator[Block]:
    """LAZ points decompressed by laspy (lazrs) a chunk at a time: x, y, z and intensity only."""
    for chunk in laz_chunks(data, where):
        yield (np.asarray(chunk.x), np.asarray(chunk.y), np.asarray(chunk.z),
               np.asarray(chunk.intensity))


def laz_chunks(data: bytes, where: Layout) -> Iterator[Any]:
    """laspy's chunks of ``BLOCK`` points (x, y, z, intensity and the returns decompressed), the
    file's structure checked first (``laz_checks``: lazrs allocates what it says)."""
    try:
        import laspy
    except ImportError as exc:
        raise Unreadable("unsupported: reading LAZ points needs laspy and lazrs") from exc
    from fedquery.functions.laz_checks import check_laz

    check_laz(data, where)
    fields = laspy.DecompressionSelection
    only = fields.XY_RETURNS_CHANNEL | fields.Z | fields.INTENSITY
    with laspy.open(io.BytesIO(data), laz_backend=laspy.LazBackend.Lazrs,
                    decompression_selection=only) as reader:
        if reader.header.point_count != where.count:
            raise Unreadable("corrupt: laspy reads another point count than the header's")
        yield from reader.chunk_iterator(BLOCK)


# --- KITTI and NumPy ------------------------------------------------------------------------


def _kitti_columns(data: bytes, where: Layout) -> tuple:
    """KITTI velodyne ``.bin``: little-endian float32 x, y, z, intensity per point, no header."""
    points = np.frombuffer(data, "<f4", count=where.count * 4).reshape(-1, 4)
    return points[:, 0], points[:, 1], points[:, 2], points[:, 3]


def _npy_layout(head: bytes, size: int) -> Layout:
    """Shape and dtype from a v1/v2 header: N×3 (x, y, z) or N×4 (with intensity) numbers."""
    if not head.startswith(b"\x93NUMPY"):
        raise Unreadable("not a NPY file: no \\x93NUMPY signature")
    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise Unreadable(f"unsupported: NPY format version {version[0]}.{version[1]}")
        shape, fortran, dtype = readers[version](stream)
    except Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises many kinds
        if len(head) < size and len(head) < HEADER_BYTES:
            raise NeedMoreBytes(min(size, HEADER_BYTES)) from None
        raise Unreadable(f"corrupt: unreadable NPY header ({exc})"[:200]) from None
    if dtype.hasobject:
        raise Unreadable("unsupported: NPY holds Python objects (pickled data is never loaded)")
    if len(shape) != 2 or shape[1] not in (3, 4) or dtype.kind not in "fiu":
        raise Unreadable(f"unsupported: NPY array {dtype} {shape}, expected N×3 or N×4 numbers")
    if shape[0] < 0:
        raise Unreadable(f"corrupt: NPY shape {shape} has a negative dimension")
    start, row = stream.tell(), shape[1] * dtype.itemsize
    if start + shape[0] * row > size:
        raise claims("NPY", shape[0], (size - start) // row)
    return Layout("NPY", shape[0], start, (dtype, shape[1], fortran))


def _npy_columns(data: bytes, where: Layout) -> tuple:
    dtype, width, fortran = where.extra
    flat = np.frombuffer(data, dtype, count=where.count * width, offset=where.start)
    array = flat.reshape(width, where.count).T if fortran else flat.reshape(where.count, width)
    return array[:, 0], array[:, 1], array[:, 2], array[:, 3] if width == 4 else None


# --- PCD ------------------------------------------------------------------------------------

_PCD_TYPES = {"F": "f", "I": "i", "U": "u"}
_PCD_SIZES = {"f": ("2", "4", "8"), "i": ("1", "2", "4", "8"), "u": ("1", "2", "4", "8")}
PCD_MAX_COUNT = 4096  # values of one field per point (PCL's descriptors hold up to a few hundred)
_PCD_INTENSITY = ("intensity", "i")


def _pcd_layout(head: bytes, size: int) -> Layout:
    """A PCD v0.5-0.7 header: fields x, y, z [, intensity], DATA ascii or binary."""
    if not head.startswith((b"# .PCD", b"VERSION")):
        raise Unreadable("not a PCD file: does not start with '# .PCD' or 'VERSION'")
    header, start = _pcd_header(head, size)
    dtype, count = _pcd_dtype(header), _pcd_count(header)
    kind = (header.get("DATA") or ["?"])[0].lower()
    body = size - start
    if kind == "binary":
        most = body // dtype.itemsize
    elif kind == "ascii":  # at least a digit and a separator per value
        most = (body + 1) // (2 * _pcd_width(dtype))
    else:
        raise Unreadable(f"unsupported: PCD DATA {kind}")
    if count > most:
        raise claims("PCD", count, most)
    return Layout("PCD", count, start, (dtype, kind))


def _pcd_header(head: bytes, size: int) -> tuple[dict[str, list[str]], int]:
    """The header's keywords and their values, and where the point data starts."""
    header: dict[str, list[str]] = {}
    pos = 0
    while pos < min(len(head), HEADER_BYTES):
        end = head.find(b"\n", pos)
        if end < 0 and len(head) < min(size, HEADER_BYTES):
            raise NeedMoreBytes(min(size, HEADER_BYTES))
        end = len(head) if end < 0 else end
        line, pos = head[pos:end].decode("ascii", "replace").strip(), end + 1
        if line and not line.startswith("#"):
            key, *values = line.split()
            header[key.upper()] = values
            if key.upper() == "DATA":
                return header, min(pos, size)
    if len(head) < min(size, HEADER_BYTES):
        raise NeedMoreBytes(min(size, HEADER_BYTES))
    raise Unreadable("corrupt: PCD header has no DATA line")


def _pcd_dtype(header: dict[str, list[str]]) -> np.dtype:
    """One little-endian record per point from FIELDS, SIZE, TYPE and COUNT ('_' is padding)."""
    fields, sizes, types = header.get("FIELDS", []), header.get("SIZE", []), header.get("TYPE", [])
    counts = header.get("COUNT", ["1"] * len(fields))
    if not fields or not len(fields) == len(sizes) == len(types) == len(counts):
        raise Unreadable("corrupt: PCD FIELDS, SIZE, TYPE and COUNT do not line up")
    if not {"x", "y", "z"} <= set(fields):
        raise Unreadable(f"unsupported: PCD fields {' '.join(fields)} have no x, y, z")
    parts = []
    for i, (name, size, kind, count) in enumerate(zip(fields, sizes, types, counts, strict=True)):
        code = _PCD_TYPES.get(kind.upper())
        if code is None or size not in _PCD_SIZES[code]:
            raise Unreadable(f"corrupt: PCD field {name} has TYPE {kind} and SIZE {size}"[:200])
        repeat = _pcd_number(count, "COUNT")
        if not 1 <= repeat <= PCD_MAX_COUNT:
            raise Unreadable(f"unsupported: PCD field {name} of COUNT {repeat} (1 to "
                             f"{PCD_MAX_COUNT} are read)")
        parts.append((f"_{i}" if name == "_" else name, f"<{code}{size}",
                      (repeat,) if repeat > 1 else ()))
    try:
        return np.dtype(parts)
    except (TypeError, ValueError) as exc:
        raise Unreadable(f"corrupt: PCD field types ({exc})"[:200]) from None


def _pcd_count(header: dict[str, list[str]]) -> int:
    """POINTS, or WIDTH × HEIGHT for old files without it: whole numbers, none negative."""
    if "POINTS" in header:
        return _pcd_number((header["POINTS"] or ["?"])[0], "POINTS")
    width = _pcd_number(header.get("WIDTH", ["0"])[0], "WIDTH")
    return width * _pcd_number(header.get("HEIGHT", ["1"])[0], "HEIGHT")


def _pcd_number(text: str, key: str) -> int:
    """A count written in ASCII digits, at most 19 of them (a BIGINT)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise Unreadable(f"corrupt: PCD header says {key} {text[:40]}, not a count")
    return int(text)


def _pcd_width(dtype: np.dtype) -> int:
    """Values per point in an ascii line."""
    return sum(max(1, math.prod(dtype[name].shape)) for name in dtype.names)


def _pcd_columns(data: bytes, where: Layout) -> tuple:
    dtype, kind = where.extra
    if kind == "binary":
        records = np.frombuffer(data, dtype, count=where.count, offset=where.start)
    else:
        records = _pcd_ascii(data, where.start, dtype, where.count)

    def first(name: str) -> np.ndarray:
        column = records[name]
        return column[:, 0] if column.ndim > 1 else column

    name = next((n for n in _PCD_INTENSITY if n in dtype.names), None)
    return first("x"), first("y"), first("z"), None if name is None else first(name)


def _pcd_ascii(data: bytes, start: int, dtype: np.dtype, count: int) -> np.ndarray:
    """Whitespace-separated numbers, one point a line, as a float64 record array (parsed by
    numpy in C: no Python object per value)."""
    width = _pcd_width(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            # stripped: numpy reads a body of only whitespace as [-1.0]
            values = np.fromstring(bytes(data[start:]).strip(), sep=" ")
        except (ValueError, DeprecationWarning) as exc:
            raise Unreadable(f"corrupt: PCD ascii data is not numbers ({exc})"[:200]) from None
    if len(values) != count * width:
        state = "truncated" if len(values) < count * width else "corrupt"
        raise Unreadable(f"{state}: PCD header says {count} points of {width} values, "
                         f"found {len(values)} values")
    floats = [(name, "<f8", dtype[name].shape) for name in dtype.names]
    return values.reshape(count, width).view(np.dtype(floats)).reshape(count)


_COLUMNS = {"LAS": _las_columns, "KITTI": _kitti_columns, "NPY": _npy_columns, "PCD": _pcd_columns}
