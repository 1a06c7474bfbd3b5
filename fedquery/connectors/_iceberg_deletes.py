"""Iceberg equality deletes, which pyiceberg 0.12 does not apply (it refuses such tables).

An equality delete file holds rows of some columns (its ``equality_ids``); it deletes every
row of a data file whose values in those columns equal one of its rows (NULL equals NULL),
when the data file is older (a lower data sequence number) and in the same partition, or
anywhere if the delete file is unpartitioned. Files are planned by pyiceberg's own manifest
planner (partition and statistics pruning, positional deletes matched to data files), with
the equality delete entries set aside and matched here; each data file is then read by
pyiceberg (positional deletes applied) with the equality columns, and the rows they delete
are removed by an anti-join in DuckDB.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class EqualityDeletes:
    """The equality delete files each data file (by path) must honour."""

    by_data_file: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def file_count(self) -> int:
        return len({d.file_path for files in self.by_data_file.values() for d in files})


def plan_with_equality_deletes(scan: Any) -> tuple[list, EqualityDeletes]:
    """The scan's file tasks (positional deletes attached) and their equality deletes."""
    from pyiceberg.manifest import DataFileContent
    from pyiceberg.table import ManifestGroupPlanner

    snapshot = scan.snapshot()
    if snapshot is None:
        return [], EqualityDeletes()
    planner = ManifestGroupPlanner(table_metadata=scan.table_metadata, io=scan.io,
                                   row_filter=scan.row_filter, case_sensitive=scan.case_sensitive,
                                   options=scan.options)
    manifests = snapshot.manifests(scan.io)
    data_sequence: dict[str, int] = {}
    equality: list[Any] = []
    for entries in planner.plan_manifest_entries(manifests):
        for entry in entries:
            content = entry.data_file.content
            if content == DataFileContent.DATA:
                data_sequence[entry.data_file.file_path] = entry.sequence_number or 0
            elif content == DataFileContent.EQUALITY_DELETES:
                equality.append(entry)
    tasks = list(planner.plan_files(
        manifests, manifest_entry_filter=lambda e: e.data_file.content != DataFileContent.EQUALITY_DELETES))
    specs = scan.table_metadata.specs()
    deletes = EqualityDeletes()
    for task in tasks:
        data = task.file
        applying = [e.data_file for e in equality
                    if (e.sequence_number or 0) > data_sequence.get(data.file_path, 0)
                    and (specs[e.data_file.spec_id].is_unpartitioned()
                         or (e.data_file.spec_id == data.spec_id
                             and e.data_file.partition == data.partition))]
        if applying:
            deletes.by_data_file[data.file_path] = applying
    return tasks, deletes


def read_with_equality_deletes(scan: Any, tasks: list, deletes: EqualityDeletes) -> pa.RecordBatchReader:
    """The tasks' rows, positional and equality deletes applied, in the scan's projection."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    projected = scan.projection()
    target = schema_to_pyarrow(projected)

    def batches():
        cache: dict[str, pa.Table] = {}
        for task in tasks:
            table = _read_task(scan, task, deletes.by_data_file.get(task.file.file_path, []), cache)
            yield from table.select(target.names).cast(target).to_batches()

    return pa.RecordBatchReader.from_batches(target, batches())


def _read_task(scan: Any, task: Any, applying: list[Any], cache: dict[str, pa.Table]) -> pa.Table:
    from pyiceberg.io.pyarrow import ArrowScan

    schema = scan.table_metadata.schema()
    names = {schema.find_column_name(i) for d in applying for i in d.equality_ids}
    wanted = list(dict.fromkeys([*scan.projection().column_names, *sorted(names)]))
    projected = schema.select(*wanted, case_sensitive=True)
    table = ArrowScan(scan.table_metadata, scan.io, projected, scan.row_filter,
                      scan.case_sensitive, None).to_table([task])
    groups: dict[tuple[int, ...], list[Any]] = defaultdict(list)
    for delete in applying:
        groups[tuple(sorted(delete.equality_ids))].append(delete)
    for ids, files in groups.items():
        columns = [schema.find_column_name(i) for i in ids]
        rows = pa.concat_tables([_read_delete(scan.io, f, columns, cache) for f in files])
        table = _anti_join(table, rows, columns)
    return table


def _read_delete(io: Any, delete: Any, columns: list[str], cache: dict[str, pa.Table]) -> pa.Table:
    """An equality delete file's rows (its columns named as the table names them)."""
    import pyarrow.parquet as pq

    if delete.file_path not in cache:
        with io.new_input(delete.file_path).open() as stream:
            cache[delete.file_path] = pq.read_table(stream)
    return cache[delete.file_path].select(columns)


def _anti_join(table: pa.Table, deleted: pa.Table, columns: list[str]) -> pa.Table:
    """The rows of ``table`` whose ``columns`` match no row of ``deleted`` (NULL = NULL)."""
    import duckdb
    from sqlglot import exp

    if table.num_rows == 0 or deleted.num_rows == 0:
        return table
    match = exp.and_(*(exp.NullSafeEQ(this=exp.column(c, "r", quoted=True),
                                      expression=exp.column(c, "d", quoted=True))
                       for c in columns))
    query = (exp.select("r.*").from_("rows_ AS r")
             .where(exp.not_(exp.Exists(this=exp.select("1").from_("deleted_ AS d").where(match)))))
    con = duckdb.connect()
    try:
        con.register("rows_", table)
        con.register("deleted_", deleted)
        return con.sql(query.sql("duckdb")).to_arrow_table()
    finally:
        con.close()
