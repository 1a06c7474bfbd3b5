"""Blob functions over one fragment, run on the workers as Daft UDFs before the residual.

A call of a blob function (``__fq_image_info(uri, 'camera', run)``, a thumbnail, a point
cloud, an embedder) whose arguments are columns of the one fragment a SELECT reads (no join,
no LIMIT: every row it sees needs the value) becomes a column of that fragment, computed by a
Daft batch UDF in the worker processes, split over the cluster; the residual reads the
column. Other calls run where the residual runs. Values are the local engine's: the UDF calls
the same ``BlobFunctions`` method, opened from the catalog in the worker.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from fedquery.errors import FedQueryError
from fedquery.functions import image_content, images, pointcloud_content, pointclouds
from fedquery.ray import worker

if TYPE_CHECKING:
    import daft

    from fedquery.functions.embedding import Embedder
    from fedquery.ray.reads import Opening

HOISTED_PREFIX = "__fq_b"
# function name -> (BlobFunctions method, DuckDB type of its value)
FUNCTIONS = {
    "image_info": ("image_info", images.IMAGE_INFO_TYPE),
    "image_stats": ("image_stats", image_content.IMAGE_STATS_TYPE),
    "thumbnail": ("thumbnail", "BLOB"),
    "read_blob": ("read_blob", "BLOB"),
    "pointcloud_info": ("pointcloud_info", pointclouds.POINTCLOUD_INFO_TYPE),
    "read_pointcloud": ("read_pointcloud", pointclouds.POINTS_TYPE),
    "pointcloud_stats": ("pointcloud_stats", pointcloud_content.POINTCLOUD_STATS_TYPE),
}


@dataclass(frozen=True)
class Call:
    """What a worker computes for one hoisted call: which function, its argument columns and
    constants (in order: a column name or ``('value', v)``)."""

    function: str
    arguments: tuple[Any, ...]
    embedder: Embedder | None = None

    def __call__(self, opening: Opening, *columns: Any) -> pa.Array:
        from fedquery.functions import embed_udfs

        functions = opening.connection()._session.functions
        arrays = iter(columns)
        n = len(columns[0]) if columns else 0
        values = [next(arrays).to_arrow() if not isinstance(a, tuple) else pa.array([a[1]] * n)
                  for a in self.arguments]
        values = [v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v for v in values]
        if self.embedder is not None:
            udf = (embed_udfs.image_udf if self.embedder.kind == "image"
                   else embed_udfs.text_udf)(functions, self.embedder)
            return udf(*values, None)
        return getattr(functions, FUNCTIONS[self.function][0])(*values, None)


def hoist(residual: exp.Expr, frames: dict[str, daft.DataFrame], opening: Opening,
          embedders: dict[str, Embedder], partitions: int, gpus: bool = False) -> exp.Expr:
    """``residual`` with hoistable calls replaced by columns added to ``frames`` (in place)."""
    tree = residual.copy()
    spread: set[str] = set()
    made: dict[tuple, str] = {}  # one column per distinct call of a fragment: each file read once
    for select in list(tree.find_all(exp.Select)):
        fragment, alias = _single_fragment(select, frames)
        if fragment is None:
            continue
        for call in list(_calls(select)):
            hoisted = _call_of(call, alias, embedders)
            if hoisted is None:
                continue
            key = (fragment, hoisted.function, hoisted.arguments)
            name = made.get(key)
            if name is None:
                name = made[key] = f"{HOISTED_PREFIX}{len(made)}"
                if fragment not in spread:  # the UDF's work spread over the workers
                    frames[fragment] = frames[fragment].into_partitions(partitions)
                    spread.add(fragment)
                frames[fragment] = _with_udf(frames[fragment], name, hoisted, opening, gpus)
            call.replace(exp.column(name, table=alias) if alias else exp.column(name))
    return tree


def _single_fragment(select: exp.Select, frames: dict) -> tuple[str | None, str | None]:
    """The fragment a SELECT reads alone (and the name it goes by), if it does."""
    source = select.args.get("from_")
    if source is None or select.args.get("joins") or select.args.get("limit"):
        return None, None
    table = source.this
    if not isinstance(table, exp.Table) or table.name not in frames or table.args.get("db"):
        return None, None
    return table.name, table.alias_or_name


def _calls(select: exp.Select):
    """Function calls of this SELECT itself (not of its subqueries)."""
    for node in select.walk(bfs=False, prune=lambda n: n is not select and isinstance(n, exp.Select)):
        if isinstance(node, exp.Anonymous | exp.Func) and node.parent is not None:
            yield node


def _call_of(call: exp.Expr, alias: str | None, embedders: dict[str, Embedder]) -> Call | None:
    name = (call.name if isinstance(call, exp.Anonymous) else call.sql_name()).lower()
    embedder = embedders.get(name)
    if embedder is None and not (name.startswith("__fq_") and name[5:] in FUNCTIONS):
        return None
    args = list(call.expressions)
    if not args or not _is_run(args[-1]):
        return None
    arguments: list[Any] = []
    for arg in args[:-1]:
        if isinstance(arg, exp.Column) and (not arg.table or arg.table == alias):
            arguments.append(arg.name)
        elif isinstance(arg, exp.Literal):
            arguments.append(("value", arg.to_py()))
        else:
            return None
    if not isinstance(arguments[0], str):
        return None
    return Call(name[5:] if embedder is None else embedder.function_name, tuple(arguments), embedder)


def _is_run(node: exp.Expr) -> bool:
    return "getvariable" in node.sql("duckdb").lower()


def _with_udf(df: daft.DataFrame, name: str, call: Call, opening: Opening, gpus: bool) -> daft.DataFrame:
    import daft

    dtype = daft.DataType.from_arrow_type(arrow_type(_type_of(call)))

    def run(*columns: daft.Series) -> daft.Series:
        try:
            return daft.Series.from_arrow(call(opening, *columns), name=name)
        except FedQueryError as exc:
            raise worker.CarriedError(exc) from None

    columns = [df[a] for a in call.arguments if not isinstance(a, tuple)]
    # Daft reads a function's parameters from its signature: one per column
    fixed = {1: lambda a: run(a), 2: lambda a, b: run(a, b), 3: lambda a, b, c: run(a, b, c)}
    udf = daft.func.batch(return_dtype=dtype, gpus=1 if gpus and call.embedder else 0)(
        fixed[len(columns)])
    return df.with_column(name, udf(*columns))


def _type_of(call: Call) -> str:
    if call.embedder is not None:
        return call.embedder.sql_type
    return FUNCTIONS[call.function][1]


@functools.lru_cache(maxsize=64)
def arrow_type(duckdb_type: str) -> pa.DataType:
    """The Arrow type DuckDB gives a value of ``duckdb_type``."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.sql(f"SELECT NULL::{duckdb_type} AS v").to_arrow_table().schema.field("v").type
    finally:
        con.close()
