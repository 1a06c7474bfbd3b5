"""How a lake's files make a table: hive partitions, the table's columns, the Parquet format.

Partitions and partition key types follow DuckDB's ``read_parquet``, so a lake on S3 reads as
the same lake in a local folder does.
"""

from __future__ import annotations

import datetime
import posixpath
import re
from collections.abc import Callable
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


class PartitionMismatch(ValueError):
    """Files of a ``partitioning: hive`` table under different partition keys (DuckDB's
    ``read_parquet`` refuses them: "Hive partition mismatch")."""

    def __init__(self, path: str, other: str, key: str) -> None:
        super().__init__(f"{path} has no folder for the partition key {key!r}, which {other} has")
        self.path, self.other, self.key = path, other, key


def hive_keys(path: str, base_dir: str) -> dict[str, str]:
    """The ``key=value`` folders of a file below ``base_dir`` (other folders are skipped, as
    DuckDB skips them; a key given twice keeps its first value)."""
    out: dict[str, str] = {}
    for folder in posixpath.relpath(posixpath.dirname(path), base_dir).split("/"):
        match = _HIVE_SEGMENT.match(folder)
        if match and match.group(1) not in out:
            out[match.group(1)] = match.group(2)
    return out


def partitioning_for(mode: str | None, paths: list[str], base_dir: str) -> Any:
    """Hive partitioning as DuckDB's ``read_parquet`` infers it: the keys (in name order) of
    ``key=value`` folders, typed BIGINT, DATE or VARCHAR from every folder's value.

    ``hive`` always (files under other keys raise ``PartitionMismatch``), ``none`` never,
    unset when every file sits under folders of the same keys.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    if mode == "none" or not paths:
        return None
    keyed = [(path, hive_keys(path, base_dir)) for path in paths]
    first_path, first = keyed[0]
    for path, keys in keyed[1:]:
        if keys.keys() != first.keys():
            if mode is None:
                return None
            if missing := sorted(set(first) - set(keys)):
                raise PartitionMismatch(path, first_path, missing[0])
            raise PartitionMismatch(first_path, path, sorted(set(keys) - set(first))[0])
    fields = [pa.field(key, _partition_type({k[key] for _, k in keyed} - {_HIVE_NULL}))
              for key in sorted(first)]
    return ds.HivePartitioning(pa.schema(fields), null_fallback=_HIVE_NULL) if fields else None


def partition_change(table: Any, mode: str | None, paths: list[str], base_dir: str,
                     url: Callable[[str], str] = str) -> str | None:
    """How the files listed now would change a table's partition columns (``table``: its
    partitioning from the connection's first listing), in words naming the folder or file
    that shows it (``url`` shows a path); None when nothing changes."""
    now = partitioning_for(mode, paths, base_dir)
    before = {f.name: f.type for f in table.schema} if table else {}
    after = {f.name: f.type for f in now.schema} if now else {}
    if before == after:
        return None
    if before.keys() == after.keys():
        key = next(k for k in before if before[k] != after[k])
        misfit = next((p for p in paths if not _fits(hive_keys(p, base_dir)[key], before[key])), None)
        where = (f"the folder {url(folder_of(misfit, base_dir, key))}/ makes it" if misfit
                 else "the values of its folders now make it")
        return (f"partition column {key!r} was {type_name(before[key])} when the connection "
                f"first listed the table, but {where} {type_name(after[key])}")
    if not after:
        odd = next(p for p in paths if hive_keys(p, base_dir).keys() != before.keys())
        return (f"{url(odd)} is not under folders of the table's partition keys "
                f"({', '.join(before)}) as its other files are, which leaves the table no "
                f"partition columns")
    return (f"its files are now all under folders of the partition keys ({', '.join(after)}), "
            f"partition columns the table did not have when the connection first listed it")


def folder_of(path: str, base_dir: str, key: str) -> str:
    """The folder of ``path`` named ``key=...`` (the first one)."""
    parts = path.split("/")
    depth = len(base_dir.split("/")) if base_dir not in ("", ".") else 0
    for i in range(depth, len(parts) - 1):
        if parts[i].startswith(f"{key}="):
            return "/".join(parts[:i + 1])
    return posixpath.dirname(path)


def type_name(kind: pa.DataType) -> str:
    """A partition key's type as DuckDB names it."""
    return {"int64": "BIGINT", "date32[day]": "DATE", "string": "VARCHAR"}.get(str(kind), str(kind))


def _partition_type(values: set[str]) -> pa.DataType:
    import pyarrow as pa

    for kind in (pa.int64(), pa.date32()):
        if values and all(_fits(v, kind) for v in values):
            return kind
    return pa.string()


def _fits(value: str, kind: pa.DataType) -> bool:
    """Whether a folder's value reads as a key of type ``kind`` (as DuckDB reads it: no
    leading zeros on a positive integer, a real calendar date)."""
    import pyarrow as pa

    if value == _HIVE_NULL or kind == pa.string():
        return True
    if kind == pa.int64():
        return bool(re.fullmatch(r"-\d+|0|[1-9]\d*", value)) and -(2**63) <= int(value) < 2**63
    if kind == pa.date32() and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return False
