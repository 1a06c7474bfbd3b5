"""Helpers of the Iceberg and Delta tests: a pyiceberg SQL catalog on a SQLite file in a
test's folder, and the fedquery source that reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CATALOG_NAME = "lake"


def iceberg_catalog(root: Path, namespace: str = "ns") -> Any:
    """A pyiceberg SQL catalog (``root/catalog.db``, warehouse ``root/warehouse``)."""
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog(CATALOG_NAME, type="sql", uri=f"sqlite:///{root}/catalog.db",
                           warehouse=(root / "warehouse").as_uri())
    catalog.create_namespace(namespace)
    return catalog


def iceberg_source(root: Path) -> dict[str, Any]:
    """The catalog entry of a source reading ``iceberg_catalog(root)``."""
    return {"kind": "iceberg", "catalog": {"type": "sql", "name": CATALOG_NAME,
                                           "uri": f"sqlite:///{root}/catalog.db",
                                           "warehouse": (root / "warehouse").as_uri()}}


def delete_positions(table: Any, data_file: Any, positions: list[int], path: Path) -> None:
    """Commit a positional delete file removing rows ``positions`` of one data file."""
    import pyarrow as pa

    rows = pa.table({"file_path": pa.array([data_file.file_path] * len(positions), pa.string()),
                     "pos": pa.array(positions, pa.int64())},
                    schema=pa.schema([_field("file_path", pa.string(), 2147483546),
                                      _field("pos", pa.int64(), 2147483545)]))
    _commit_delete(table, rows, path, data_file.partition, data_file.spec_id, equality_ids=None)


def delete_equal(table: Any, rows: Any, path: Path, partition: Any = None, spec_id: int = 0) -> None:
    """Commit an equality delete file: rows of the table whose columns named in ``rows`` equal
    one of its rows are deleted (``partition``: the partition the file applies to)."""
    import pyarrow as pa

    schema = table.schema()
    ids = [schema.find_field(name).field_id for name in rows.column_names]
    rows = rows.cast(pa.schema([_field(n, rows.schema.field(n).type, i)
                                for n, i in zip(rows.column_names, ids, strict=True)]))
    _commit_delete(table, rows, path, partition, spec_id, equality_ids=ids)


def _field(name: str, arrow_type: Any, field_id: int) -> Any:
    import pyarrow as pa

    required = field_id >= 2**31 - 200  # a position delete file's columns
    return pa.field(name, arrow_type, nullable=not required,
                    metadata={"PARQUET:field_id": str(field_id)})


def _commit_delete(table: Any, rows: Any, path: Path, partition: Any, spec_id: int,
                   equality_ids: list[int] | None) -> None:
    """Write ``rows`` as a delete file and commit it in a delete manifest (pyiceberg writes
    no delete files itself: its deletes rewrite data files)."""
    import pyarrow.parquet as pq
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    pq.write_table(rows, path)
    content = DataFileContent.POSITION_DELETES if equality_ids is None else DataFileContent.EQUALITY_DELETES
    delete = DataFile.from_args(content=content, file_path=path.as_uri(),
                                file_format=FileFormat.PARQUET,
                                partition=partition if partition is not None else Record(),
                                record_count=rows.num_rows, file_size_in_bytes=path.stat().st_size,
                                equality_ids=equality_ids)
    delete.spec_id = spec_id
    with table.transaction() as tx, _DeleteAppend(tx, table.io, spec_id) as producer:
        producer.append_data_file(delete)


def _delete_append_class() -> type:
    from pyiceberg.manifest import ManifestContent, ManifestWriterV2
    from pyiceberg.table.snapshots import Operation
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self) -> ManifestContent:
            return ManifestContent.DELETES

        @property
        def _meta(self) -> dict[str, str]:
            return {**super()._meta, "content": "deletes"}

    class DeleteAppend(_FastAppendFiles):
        """A fast append whose new manifest is a delete manifest."""

        def __init__(self, transaction: Any, io: Any, spec_id: int) -> None:
            super().__init__(operation=Operation.OVERWRITE, transaction=transaction, io=io)
            self.spec_id = spec_id

        def new_manifest_writer(self, spec: Any) -> Any:
            spec = self._transaction.table_metadata.specs()[self.spec_id]  # the delete file's
            return DeleteManifestWriter(spec, self.schema(), self.new_manifest_output(),
                                        self._snapshot_id, self._compression)

    return DeleteAppend


def _DeleteAppend(transaction: Any, io: Any, spec_id: int) -> Any:  # noqa: N802 - a class made on first use
    return _delete_append_class()(transaction, io, spec_id)
