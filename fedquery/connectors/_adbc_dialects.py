"""What ``kind: adbc`` knows about each warehouse: the driver package of a short driver name, the
SQL dialect it speaks, and how far fragments may be pushed into it.

SQLite is tested here for real, so its profile pushes filters, top-N, joins and aggregates with
the rewrites of ``_sqlite_semantics``. Every other dialect (Snowflake, BigQuery, a Flight SQL
server, PostgreSQL reached through ``kind: adbc``) gets the conservative profile: scans send
column comparisons with literals, ``AND``/``OR``/``NOT``, ``IN``, ``IS NULL`` and a top-N;
joins, aggregates and every function stay in DuckDB (see docs/catalog.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from fedquery.connectors import _sql_render as render
from fedquery.connectors import _sqlite_semantics as sqlite

# short driver name -> (Python package, pip package, default dialect)
DRIVERS = {
    "sqlite": ("adbc_driver_sqlite", "adbc-driver-sqlite", "sqlite"),
    "postgresql": ("adbc_driver_postgresql", "adbc-driver-postgresql", "postgres"),
    "snowflake": ("adbc_driver_snowflake", "adbc-driver-snowflake", "snowflake"),
    "bigquery": ("adbc_driver_bigquery", "adbc-driver-bigquery", "bigquery"),
    "flightsql": ("adbc_driver_flightsql", "adbc-driver-flightsql", None),
}
IDENTIFIER_LENGTH = {"postgres": 63, "snowflake": 255, "bigquery": 300}
DEFAULT_SCHEMA = {"sqlite": "main", "postgres": "public", "snowflake": "PUBLIC"}
# Conservative: what every SQL engine evaluates as DuckDB does for plain values.
PORTABLE = frozenset({
    "Column", "Identifier", "Literal", "Boolean", "Null", "Placeholder", "Var", "Paren", "Tuple",
    "And", "Or", "Not", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Is", "In", "Between",
    "Select", "From", "Where", "Order", "Ordered", "Limit", "Table", "Star", "Alias",
})


def driver_package(driver: str) -> tuple[str, str] | None:
    """(Python module, pip package) of a driver name (``sqlite`` or ``adbc_driver_sqlite``);
    None for a path to a driver library."""
    short = driver.removeprefix("adbc_driver_").removeprefix("adbc-driver-")
    if short in DRIVERS:
        return DRIVERS[short][0], DRIVERS[short][1]
    if "/" in driver or "\\" in driver or driver.endswith((".so", ".dylib", ".dll")):
        return None
    return driver.replace("-", "_"), driver.replace("_", "-")


def default_dialect(driver: str) -> str | None:
    short = driver.removeprefix("adbc_driver_").removeprefix("adbc-driver-")
    return DRIVERS.get(short, (None, None, None))[2]


@dataclass(frozen=True)
class Profile:
    """How one dialect is spoken: which expressions are exact, whole subtrees or not, the
    rewrite of a DuckDB tree (``localize``), literals, and result types."""

    dialect: str
    expressions: frozenset[str]
    subtrees: bool
    localize: Callable[[exp.Expr, Mapping[str, pa.DataType]], exp.Expr]
    literal: Callable[[Any], exp.Expr]
    convert: Callable[[pa.RecordBatch, pa.Schema], pa.RecordBatch]
    declared: bool  # column types come from declared type names (SQLite), not the driver


def profile(dialect: str) -> Profile:
    if dialect == "sqlite":
        return Profile("sqlite", sqlite.EXPRESSIONS, True, sqlite.localize, sqlite.literal,
                       sqlite.convert_batch, True)
    return Profile(dialect, PORTABLE, False, _generic_localize, _generic_literal, convert_batch,
                   False)


def _generic_localize(tree: exp.Expr, types: Mapping[str, pa.DataType]) -> exp.Expr:
    tree = render.match_names(tree, types)
    for node in tree.walk():
        if type(node).__name__ not in PORTABLE and not isinstance(node, exp.Cast | exp.DataType):
            raise sqlite.NotExact(f"{node.key.upper()} is not pushed to this warehouse")
    return tree


def _generic_literal(value: Any) -> exp.Expr:
    plain = render.plain_literal(value)
    if plain is not None:
        return plain
    import datetime as dt

    if isinstance(value, dt.datetime | dt.date):
        return exp.convert(render.plain_time(value))
    raise TypeError(f"a {type(value).__name__} value cannot be sent to this warehouse")


def target_type(kind: pa.DataType) -> pa.DataType:
    """A driver's Arrow type as scans report it: extension types as their storage."""
    if isinstance(kind, pa.BaseExtensionType):
        return target_type(kind.storage_type)
    return kind


def convert_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        if isinstance(column.type, pa.BaseExtensionType):
            column = column.storage
        columns.append(column if column.type == field.type else pc.cast(column, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
