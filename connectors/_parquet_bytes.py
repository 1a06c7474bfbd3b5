"""The bytes a pyarrow scan of one Parquet file fetches, computed from the file's metadata.

A lake on S3 is read by pyarrow's C++ threads with no Python in the I/O path, so nothing can
count the bytes as they pass; they are computed instead, the way pyarrow's reader fetches them:
the footer (the last 64 KiB of the file, or the whole footer when longer), then, for the row
groups the scan's filter keeps, the column chunks of the columns it reads, with gaps of up to
8 KiB between chunks read through and runs merged up to 32 MiB (pre-buffering's defaults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

FOOTER_READ = 64 * 1024  # parquet-cpp's first read from the end of a file
HOLE_LIMIT = 8 * 1024  # CacheOptions.hole_size_limit
RANGE_LIMIT = 32 * 1024 * 1024  # CacheOptions.range_size_limit


def footer_bytes(size: int, metadata: pq.FileMetaData) -> int:
    """Bytes read to open a file of ``size`` bytes: one read from its end, a second one when
    the footer is longer than the first read."""
    first = min(size, FOOTER_READ)
    return max(first, metadata.serialized_size + 8)


def chunk_bytes(fragment: ds.ParquetFileFragment, columns: set[str], row_groups: list[int]) -> int:
    """Bytes of the coalesced ranges holding ``columns`` (top-level names) in ``row_groups``."""
    return sum(length for _, length in chunk_ranges(fragment, columns, row_groups))


def chunk_ranges(fragment: ds.ParquetFileFragment, columns: set[str],
                 row_groups: list[int]) -> list[tuple[int, int]]:
    """The coalesced (offset, length) ranges holding ``columns`` (top-level names) in
    ``row_groups``: one ranged GET each, all requested at once (pre-buffering)."""
    if not columns or not row_groups:
        return []
    metadata = fragment.metadata
    leaves = _leaf_columns(metadata.schema.to_arrow_schema(), columns)
    ranges = []
    for index in row_groups:
        group = metadata.row_group(index)
        ranges.extend(_chunk_range(group.column(leaf)) for leaf in leaves)
    return coalesce(ranges)


def coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(offset, length) ranges merged as arrow's ``CoalesceReadRanges`` merges them."""
    ordered = sorted((o, n) for o, n in set(ranges) if n > 0)
    merged: list[tuple[int, int]] = []
    for offset, length in ordered:
        if merged:
            start, run = merged[-1]
            end = max(start + run, offset + length)
            if offset - (start + run) <= HOLE_LIMIT and end - start <= RANGE_LIMIT:
                merged[-1] = (start, end - start)
                continue
        merged.append((offset, length))
    return merged


def _chunk_range(column: pq.ColumnChunkMetaData) -> tuple[int, int]:
    """Where a column chunk starts (its dictionary page, if any) and how long it is."""
    start = column.data_page_offset
    dictionary = column.dictionary_page_offset
    if column.has_dictionary_page and dictionary and 0 < dictionary < start:
        start = dictionary
    return start, column.total_compressed_size


def _leaf_columns(schema: pa.Schema, names: set[str]) -> list[int]:
    """The Parquet leaf column indexes of the named top-level fields (nested fields have one
    leaf per primitive inside them, in schema order)."""
    out, index = [], 0
    for field in schema:
        count = _leaves(field.type)
        if field.name in names:
            out.extend(range(index, index + count))
        index += count
    return out


def _leaves(kind: pa.DataType) -> int:
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    return 1
