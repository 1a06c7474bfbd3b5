"""Golden before/after pairs for each rewrite rule alone, and for the whole planner.

``tests/fixtures/rules/<rule>.sql`` holds one pair a block, blocks separated by blank lines, as
sqlglot's optimizer fixtures do: header lines (``-- name: ...``, ``-- why: ...``, ``-- execute``,
``-- xfail: reason``, ``-- raises: BinderException``), then the input and the expected output,
each ending with ``;``. A block of comment lines only describes the file. Inputs are qualified
SQL over bound names (``lake.main.frames AS f``), so each rule runs alone, with the catalog
below; ``-- execute`` pairs also run input and output in DuckDB over the small ``TABLES`` and
compare the answers. An ``-- xfail`` pair expects what a correct rule gives; today the rule
gives a wrong answer (or SQL that does not run, named by ``-- raises``).

``plan.sql`` pairs user SQL (catalog names) with the plan of the sample drive data set: the
residual, then each fragment as ``__f0 lake scan: SELECT ...;``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

import fedquery
from fedquery import rules
from fedquery.bind import SOURCE
from fedquery.connectors.base import Capabilities

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
DIALECT = "duckdb"
HEADER_KEYS = {"name", "why", "execute", "xfail", "raises"}
RULES = ("isolate_tables", "pushdown_predicates", "pushdown_projections", "pushdown_limit")

CAPABILITIES = {
    "warehouse": Capabilities(dialect="duckdb", native=True, subtrees=True),
    "lake": Capabilities(native=True, subtrees=False),
    "vectors": Capabilities(native=True, subtrees=False),
}


def _ts(minute: int) -> dt.datetime:
    return dt.datetime(2024, 3, 4, 9, minute)


# Drive 6 has no frames, frame 10 belongs to no drive, vehicle 4 is unknown, vehicle 5 unused,
# drive 3 has no weather; frames are in a different order by ts than by frame_id.
TABLES = {
    "warehouse.main.drives": pa.table({
        "drive_id": pa.array([1, 2, 3, 4, 5, 6], pa.int32()),
        "vehicle_id": pa.array([1, 2, 1, 3, 4, 2], pa.int32()),
        "city": ["Austin", "Boston", "Austin", "Phoenix", "Boston", "Austin"],
        "weather": ["clear", "rain", None, "clear", "fog", "rain"],
    }),
    "warehouse.main.vehicles": pa.table({
        "vehicle_id": pa.array([1, 2, 3, 5], pa.int32()),
        "model": ["Chrysler Pacifica", "Ford Fusion", "Toyota Prius", "Kia Niro"],
    }),
    "lake.main.frames": pa.table({
        "frame_id": pa.array(range(1, 11), pa.int64()),
        "drive_id": pa.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 99], pa.int32()),
        "ts": pa.array([_ts(m) for m in (5, 3, 8, 1, 9, 2, 7, 4, 10, 6)], pa.timestamp("us")),
        "camera": ["front", "left", "front", "right", "left", "front", "front", "left", "right",
                   "front"],
    }),
    "vectors.main.frame_embeddings": pa.table({
        "frame_id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "label": ["car", "car", "truck", None, "bike", "car"],
    }),
}


class Catalog:
    """The ``RuleCatalog`` the rules see: capabilities per source, columns per table."""

    def capabilities(self, source: str) -> Capabilities:
        return CAPABILITIES[source]

    def columns(self, table: exp.Table) -> list[str]:
        return TABLES[".".join(p.name for p in table.parts)].column_names

    def estimate_rows(self, table: exp.Table) -> None:
        return None

    def estimate_query(self, source: str, sql: str) -> None:
        return None


# ------------------------------------------------------------------ fixture files


def fixture_pairs(filename: str) -> list:
    """One ``pytest.param(stem, input, expected statements, header)`` per pair of a fixture file."""
    path = FIXTURES / filename
    params = []
    for block in re.split(r"\n[ \t]*\n", path.read_text().strip()):
        header, body = _split_block(block)
        statements = [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", body) if s.strip()]
        if not statements:
            continue  # a comment block about the file
        unknown = set(header) - HEADER_KEYS
        if unknown or "name" not in header or len(statements) < 2:
            raise ValueError(f"{filename}: bad pair {header.get('name', block[:60])!r}")
        marks = []
        if "xfail" in header:
            raises = getattr(duckdb, header.get("raises", ""), AssertionError)
            marks.append(pytest.mark.xfail(strict=True, reason=header["xfail"], raises=raises))
        params.append(pytest.param(path.stem, statements[0], statements[1:], header,
                                   id=f"{path.stem}:{header['name']}", marks=marks))
    return params


def _split_block(block: str) -> tuple[dict[str, str], str]:
    """Header (``-- key: value`` or ``-- flag`` lines) and the SQL text of one block."""
    header, body = {}, []
    for line in block.splitlines():
        if line.startswith("--"):
            key, _, value = line[2:].partition(":")
            header[key.strip()] = value.strip()
        else:
            body.append(line)
    return header, "\n".join(body)


# ------------------------------------------------------------------ running SQL


@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    """DuckDB with ``TABLES`` under their bound names, each source an attached database."""
    con = duckdb.connect()
    for source in CAPABILITIES:
        con.execute(f"ATTACH ':memory:' AS {source}")
    for name, table in TABLES.items():
        con.from_arrow(table).create(name)
    yield con
    con.close()


def bound(sql: str) -> exp.Expr:
    """Parse qualified SQL and mark each ``source.schema.table`` as ``fedquery.bind`` does."""
    tree = sqlglot.parse_one(sql, read=DIALECT)
    for table in tree.find_all(exp.Table):
        if table.catalog:
            table.meta[SOURCE] = table.catalog
    return tree


def answer(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[pa.Schema, list[tuple]]:
    """Schema and rows (sorted, NULLs last) of a query."""
    table = pa.table(con.sql(sql).arrow())
    rows = zip(*(column.to_pylist() for column in table.columns), strict=True)
    return table.schema, sorted(rows, key=lambda row: [(v is None, v) for v in row])


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize(("rule", "sql", "expected", "header"),
                         [p for rule in RULES for p in fixture_pairs(f"{rule}.sql")])
def test_rule(rule: str, sql: str, expected: list[str], header: dict[str, str],
              duck: duckdb.DuckDBPyConnection) -> None:
    output = getattr(rules, rule)(bound(sql), catalog=Catalog()).sql(DIALECT)
    if "execute" in header:
        assert answer(duck, output) == answer(duck, sql), output
    assert [output] == expected


@pytest.fixture(scope="module")
def planner(sample: Path):
    """The planner of a connection to the sample drive data set."""
    with fedquery.connect(sample) as con:
        yield con._planner


@pytest.mark.parametrize(("stem", "sql", "expected", "header"), fixture_pairs("plan.sql"))
def test_plan(stem: str, sql: str, expected: list[str], header: dict[str, str], planner) -> None:
    plan = planner.plan(sql)
    assert [plan.residual, *_fragment_lines(plan)] == expected


def _fragment_lines(plan, prefix: str = "") -> list[str]:
    """``__f0 lake scan: SELECT ...`` a fragment; a top-k scan's keys plan below it."""
    lines = []
    for f in plan.fragments:
        lines.append(f"{prefix}{f.name} {f.source} {f.kind}: {f.sql}")
        if f.vector_keys is not None:
            keys = f.vector_keys.plan
            lines.append(f"{prefix}{f.name} keys {f.vector_keys.column}: {keys.residual}")
            lines += _fragment_lines(keys, prefix + f"{f.name} keys ")
    return lines
