"""Tables altered in PostgreSQL after fedquery read their schema: found before a fragment runs.

fedquery reads a table's column types once per connection; the planner describes queries with
them and answers are cast to them. A table altered afterwards (``ALTER COLUMN ... TYPE``, a
column dropped, the table dropped and made again) would answer in its new types cast to the
old ones: an integer 5 read as ``true``, a double rounded through ``real``. So, before each
fragment's statement and on the same session (one more round trip), the types of the columns
the fragment reads are read again from ``pg_catalog`` and compared with those the plan was made
with; a change is a ``SourceError`` naming the table, the column, the old and the new type.
Scans also compare the types the result itself reports. fedquery keeps the types it read: the
plans made with them stay wrong until the user reconnects, which the message says.

A type modifier counts only where it changes the answer's type (``numeric(p, s)``); a column
added to a table changes nothing fedquery sends (stars are expanded when planning).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import sqlglot
from sqlglot import exp

from fedquery.connectors._postgres_types import numeric_type, target_type
from fedquery.connectors.base import TableRef

DEFINITIONS_SQL = """
SELECT n.nspname, c.relname, a.attname, a.atttypmod, t.typname,
       pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped
ORDER BY n.nspname, c.relname, a.attnum"""
NUMERIC_TYPES = ("numeric", "_numeric")  # whose type modifier decides the Arrow type
RECONNECT = ("the table changed since fedquery read its schema; reconnect (fedquery.connect) "
             "to query it as it is now")
_BASE = sqlglot.parse_one(DEFINITIONS_SQL, read="postgres")


@dataclass(frozen=True)
class PgColumn:
    """A column as ``pg_catalog`` describes it; ``shown`` is PostgreSQL's own type name."""

    name: str
    typname: str
    typmod: int
    shown: str

    def same_type(self, other: PgColumn) -> bool:
        modifier = self.typname in NUMERIC_TYPES
        return (self.typname, self.typmod if modifier else -1) == \
            (other.typname, other.typmod if modifier else -1)


Definitions = dict[TableRef, dict[str, PgColumn]]


def definitions_sql(tables: Iterable[TableRef]) -> str:
    """The query of the columns of ``tables``: names as literals made by sqlglot."""
    pairs = [exp.Tuple(expressions=[exp.Literal.string(t.schema), exp.Literal.string(t.name)])
             for t in tables]
    key = exp.Tuple(expressions=[exp.column("nspname", "n"), exp.column("relname", "c")])
    return _BASE.copy().where(key.isin(*pairs)).sql("postgres")


def definitions(rows: Iterable[tuple]) -> Definitions:
    """Rows of ``definitions_sql`` by table, in column order."""
    found: Definitions = {}
    for schema, name, column, typmod, typname, shown in rows:
        found.setdefault(TableRef(schema, name), {})[column] = PgColumn(column, typname, typmod,
                                                                         shown)
    return found


def changes(planned: Mapping[TableRef, Mapping[str, PgColumn]], now: Definitions,
            reads: Mapping[TableRef, set[str] | None]) -> str | None:
    """What changed in the columns each table's fragment ``reads`` (lower-case names; None:
    every column), in words; None when nothing did."""
    for table, wanted in reads.items():
        if table not in now:
            return f"table {table} no longer exists: {RECONNECT}"
        for column in planned.get(table, {}).values():
            if wanted is not None and column.name.lower() not in wanted:
                continue
            current = now[table].get(column.name)
            if current is None:
                return (f"column {column.name!r} of table {table} ({column.shown}) no longer "
                        f"exists: {RECONNECT}")
            if not current.same_type(column):
                return (f"column {column.name!r} of table {table} is now {current.shown}, it was "
                        f"{column.shown}: {RECONNECT}")
    return None


def result_changes(table: TableRef, raw: pa.Schema, planned: pa.Schema) -> str | None:
    """A scan's result as the server describes it against the types planned for its columns;
    the first difference in words, None when there is none."""
    for field, want in zip(raw, planned, strict=True):
        typmod = (field.metadata or {}).get(b"POSTGRESQL:typmod")
        numeric = numeric_type(int(typmod)) if typmod is not None else _decimal_in(want.type)
        now = target_type(field.type, numeric)
        if now != want.type:
            return (f"column {want.name!r} of table {table} now reads as {now}, it was "
                    f"{want.type}: {RECONNECT}")
    return None


def _decimal_in(kind: pa.DataType) -> pa.DataType | None:
    """The decimal type planned for a column or its list's elements: a result's arrays carry
    no type modifier (the check before the statement compares those)."""
    while pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return kind if pa.types.is_decimal(kind) else None
