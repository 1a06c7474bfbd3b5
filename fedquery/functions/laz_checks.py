"""A LAZ file's structure checked before lazrs decompresses it.

lazrs trusts the counts and sizes a file gives and allocates what they say: a chunk table
claiming 2^32 chunks makes it ask for 64 GiB and abort the whole process (a Rust allocation
failure is not an exception), and a layer size of 3 GiB in a layered chunk (LAS 1.4 point
formats 6 to 10) makes it fill 3 GiB, both from a 1 KiB file. ``check_laz`` reads what lazrs
would and checks it against the file first: the laszip VLR, the chunk table's count of chunks
(each chunk holds at least one raw point), and for layered chunks every chunk's layer sizes
(walked from the first chunk until the header's points are seen or the chunk table is reached:
a chunk is its raw first point, its count of points, one size per layer and the layers). Only
``Unreadable`` is raised.
"""

from __future__ import annotations

import struct

from fedquery.functions.pointcloud_formats import VLR_HEADER_BYTES, Layout, Unreadable

LASZIP_USER, LASZIP_RECORD = b"laszip encoded", 22204
POINTWISE_CHUNKED, LAYERED_CHUNKED = 2, 3
# layers of each item type of a layered chunk (laszip's v3 items); BYTE14 has one per byte
LAYERS = {10: 9, 11: 1, 12: 2, 13: 1}
BYTE14 = 14


def check_laz(data: bytes, where: Layout) -> None:
    """``Unreadable`` unless the LAZ file in ``data`` can be handed to lazrs (see module doc)."""
    compressor, items = _laszip_items(data, where)
    record = sum(size for _, size in items)
    if record < 1:
        raise Unreadable("corrupt: the laszip VLR describes points of 0 bytes")
    end = _chunks_end(data, where.start, record, where.extra["points_end"])
    if compressor == LAYERED_CHUNKED:
        _check_layers(data, where.start + 8, end, record, _layers(items), where.count)


def _laszip_items(data: bytes, where: Layout) -> tuple[int, list[tuple[int, int]]]:
    """The compressor and the (type, size) items of the laszip VLR."""
    pos, header_end = where.extra["header_size"], where.start
    for _ in range(where.extra["vlrs"]):
        if pos + VLR_HEADER_BYTES > header_end:
            break
        user, record_id, length = data[pos + 2:pos + 18].rstrip(b"\0"), *struct.unpack_from(
            "<HH", data, pos + 18)
        body = data[pos + VLR_HEADER_BYTES:pos + VLR_HEADER_BYTES + length]
        if user == LASZIP_USER and record_id == LASZIP_RECORD:
            return _parse_laszip(bytes(body))
        pos += VLR_HEADER_BYTES + length
    raise Unreadable("corrupt: a LAZ file without its laszip VLR")


def _parse_laszip(body: bytes) -> tuple[int, list[tuple[int, int]]]:
    if len(body) < 34:
        raise Unreadable("corrupt: the laszip VLR is cut short")
    (compressor,), (count,) = struct.unpack_from("<H", body, 0), struct.unpack_from("<H", body, 32)
    if len(body) < 34 + 6 * count:
        raise Unreadable(f"corrupt: the laszip VLR lists {count} items in {len(body)} bytes")
    items = [struct.unpack_from("<HH", body, 34 + 6 * i) for i in range(count)]
    return compressor, items


def _chunks_end(data: bytes, start: int, record: int, points_end: int) -> int:
    """Where the chunks end: the chunk table, found as lazrs finds it (the offset before the
    points, else the file's last 8 bytes), with a count of chunks the points can hold; where
    the points end (the extended VLRs, or the file's end) when there is no table."""
    size = len(data)
    table = struct.unpack_from("<q", data, start)[0] if start + 8 <= size else -1
    if table <= start and size >= 8:
        table = struct.unpack_from("<q", data, size - 8)[0]
    if table <= start or table + 8 > size:  # lazrs reads on without a table, as we walk
        return points_end
    (chunks,) = struct.unpack_from("<I", data, table + 4)
    most = max(table - start - 8, 0) // record
    if chunks > most:
        raise Unreadable(f"corrupt: the LAZ chunk table lists {chunks} chunks where at most "
                         f"{most} fit")
    return table


def _layers(items: list[tuple[int, int]]) -> int:
    """Layers a layered chunk has for these items."""
    total = 0
    for kind, size in items:
        if kind not in LAYERS and kind != BYTE14:
            raise Unreadable(f"unsupported: LAZ item type {kind} in a layered (1.4) file")
        total += size if kind == BYTE14 else LAYERS[kind]
    return total


def _check_layers(data: bytes, pos: int, end: int, record: int, layers: int,
                  points: int) -> None:
    """The layered chunks from ``pos`` holding the file's ``points`` (each says how many it
    holds): their layers lie before ``end``."""
    seen = 0
    while pos < end and seen < points:
        sizes_at = pos + record + 4
        if sizes_at + 4 * layers > end:
            raise Unreadable(f"truncated: a LAZ chunk at byte {pos} ends inside its layer sizes")
        seen += struct.unpack_from("<I", data, sizes_at - 4)[0]
        layer_bytes = sum(struct.unpack_from(f"<{layers}I", data, sizes_at))
        pos = sizes_at + 4 * layers + layer_bytes
        if pos > end:
            raise Unreadable(f"corrupt: a LAZ chunk's layers claim {layer_bytes} bytes, past "
                             f"the end of the points at byte {end}")
