"""How a lake's files make a table: hive partitions, the table's columns, the Parquet format.

Partitions and partition key types follow DuckDB's ``read_parquet``, so a lake on S3 reads as
the same lake in a local folder does.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

_HIVE_SEGMENT = re.compile(r"^([^=/]+)=([^/]*)$")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def parquet_format() -> ds.ParquetFileFormat:
    """Parquet reads that coalesce nearby column chunks into few ranged GETs (pre-buffering)."""
    import pyarrow.dataset as ds

    return ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))


def table_schema(physical: pa.Schema, partitioning: Any) -> pa.Schema:
    """The first file's columns, then the partition keys (as DuckDB's ``read_parquet`` does)."""
    import pyarrow as pa

    keys = [f for f in (partitioning.schema if partitioning else []) if f.name not in physical.names]
    return pa.schema(list(physical) + keys)


def partition_dir(path: str) -> str:
    """The folder hive partitions are parsed below: the table's folder, or a glob's fixed part."""
    head = re.split(r"[*?\[]", path, maxsplit=1)[0]
    if head == path and not path.endswith("/"):
        return posixpath.dirname(path) if path.endswith(".parquet") else path
    return head.rstrip("/") if head.endswith("/") else posixpath.dirname(head)


def partitioning_for(mode: str | None, paths: list[str], base_dir: str) -> Any:
    """Hive partitioning as DuckDB's ``read_parquet`` infers it: BIGINT, DATE or VARCHAR keys.

    ``hive`` always, ``none`` never, unset when every file sits under ``key=value`` folders.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    if mode == "none":
        return None
    values: dict[str, set[str]] = {}
    for path in paths:
        folders = posixpath.relpath(posixpath.dirname(path), base_dir).split("/")
        pairs = [_HIVE_SEGMENT.match(f) for f in folders if f != "."]
        if mode is None and (not pairs or not all(pairs)):
            return None
        for match in filter(None, pairs):
            values.setdefault(match.group(1), set()).add(match.group(2))
    if not values:
        return None
    fields = [pa.field(key, _partition_type(seen - {_HIVE_NULL})) for key, seen in values.items()]
    return ds.HivePartitioning(pa.schema(fields), null_fallback=_HIVE_NULL)


def _partition_type(values: set[str]) -> pa.DataType:
    import pyarrow as pa

    if values and all(re.fullmatch(r"-?\d{1,18}", v) for v in values):
        return pa.int64()
    if values and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in values):
        return pa.date32()
    return pa.string()
