"""A fragment a warehouse would not answer as DuckDB does, evaluated by DuckDB over the rows the
warehouse sends (``kind: adbc``): exact, at the price of reading the tables whole."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
from sqlglot import exp

from fedquery.connectors import _sql_render as render
from fedquery.connectors.base import TableRef


def run_in_duckdb(tree: exp.Expr, reads: Mapping[TableRef, pa.RecordBatchReader], params: Any,
                  schema: pa.Schema | None) -> pa.RecordBatchReader:
    """Run ``tree`` (DuckDB's dialect, local ``schema.table`` names) in a private in-memory
    DuckDB where each table is its reader; the result streams (cast to ``schema`` if given)."""
    import duckdb

    con = duckdb.connect()
    names: dict[TableRef, str] = {}
    uses = Counter(TableRef(node.db, node.name) for node in tree.find_all(exp.Table))
    for table, reader in reads.items():
        names[table] = f"__fq_read_{len(names)}"
        # a reader is scanned once: a table read twice (a self-join) is read into memory
        con.register(names[table], reader.read_all() if uses[table] > 1 else reader)
    tree = tree.copy()
    for node in tree.find_all(exp.Table):
        ref = TableRef(node.db, node.name)
        if ref in names:
            node.replace(exp.to_table(names[ref]).as_(node.alias or node.name, quoted=True))
    tree = render.bind_values(tree, params, _literal, "DuckDB")
    try:
        result = con.sql(tree.sql("duckdb")).to_arrow_reader()
    except BaseException:
        con.close()
        raise
    out = schema or result.schema

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in result:
                yield batch.cast(out) if batch.schema != out else batch
        finally:
            con.close()

    return pa.RecordBatchReader.from_batches(out, batches())


def _literal(value: Any) -> exp.Expr:
    plain = render.plain_literal(value)
    if plain is not None:
        return plain
    if isinstance(value, bytes | bytearray | memoryview):
        return exp.cast(exp.Literal.string(bytes(value).hex()), "BLOB")
    return exp.convert(render.plain_time(value) if hasattr(value, "year") else value)
