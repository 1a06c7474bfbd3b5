"""The 99 TPC-DS queries (scale 0.1) through fedquery, each answer equal to plain DuckDB's.

Two layouts: the dimension tables in a DuckDB warehouse or in PostgreSQL, the seven fact tables
in a Parquet lake beside it. The reference is DuckDB reading the same Parquet files directly.
TPC-DS joins a fact table with many dimensions, nests subqueries that reuse aliases, and
correlates them: the shapes that planner scoping errors turn into wrong answers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

import fedquery
from tests.fuzz_check import rows_of
from tests.services import unavailable
from tests.services.launch import ServiceError
from tests.services.tpcds import FACTS, queries, tpcds

SCALE = float(os.environ.get("FEDQUERY_TPCDS_SCALE", "0.1"))  # 1 for the full-size check


@pytest.fixture(scope="module")
def tpcds_data() -> Path:
    try:
        return tpcds(SCALE)
    except ServiceError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="module")
def tpcds_reference(tpcds_data: Path):
    ref = duckdb.connect()
    for table in _tables(tpcds_data):
        ref.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{tpcds_data / table}.parquet')")
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def layouts(tpcds_data: Path, tmp_path_factory, postgres_database):
    """name -> connection: dimensions in DuckDB or in PostgreSQL, facts in a local lake."""
    root = tmp_path_factory.mktemp("tpcds")
    dimensions = [t for t in _tables(tpcds_data) if t not in FACTS]
    with duckdb.connect(str(root / "warehouse.duckdb")) as warehouse:
        for table in dimensions:
            warehouse.execute(f"CREATE TABLE {table} AS SELECT * FROM "
                              f"read_parquet('{tpcds_data / table}.parquet')")
            postgres_database.load(f"public.{table}", warehouse.sql(f"FROM {table}").to_arrow_table())
    postgres_database.execute("ANALYZE")
    for table in FACTS:
        (root / "lake" / table).mkdir(parents=True)
        shutil.copy(tpcds_data / f"{table}.parquet", root / "lake" / table / "part-0.parquet")
    made = {}
    for name, warehouse in (("duckdb", {"kind": "duckdb", "path": str(root / "warehouse.duckdb")}),
                            ("postgres", {"kind": "postgres", "dsn": postgres_database.dsn})):
        catalog = {"sources": {"wh": warehouse, "lake": {"kind": "parquet", "root": str(root / "lake")}},
                   "tables": {t: {"source": "lake", "path": f"{t}/"} for t in FACTS}}
        catalog["tables"].update({t: {"source": "wh", "table": t} for t in dimensions})
        made[name] = fedquery.connect(catalog)
    yield made
    for con in made.values():
        con.close()


def _tables(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.parquet"))


def _query_numbers() -> list[int]:
    return list(range(1, 100))


@pytest.mark.timeout(60)  # the bound: no query of the suite past a minute
@pytest.mark.parametrize("layout", ["duckdb", "postgres"])
@pytest.mark.parametrize("number", _query_numbers())
def test_tpcds_query_answers_as_duckdb(layouts, tpcds_reference, tpcds_data, layout: str,
                                       number: int) -> None:
    sql = dict(queries(tpcds_data))[number]
    want = tpcds_reference.sql(sql).to_arrow_table()
    got = layouts[layout].sql(sql).arrow()
    assert got.column_names == want.column_names
    assert rows_of(got) == rows_of(want)


def test_tpcds_reference_answers_are_not_empty(tpcds_reference, tpcds_data) -> None:
    """The comparison means something: most queries return rows at this scale."""
    answered = sum(tpcds_reference.sql(sql).to_arrow_table().num_rows > 0
                   for _, sql in queries(tpcds_data))
    assert answered >= 80, answered
