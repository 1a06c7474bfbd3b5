"""The connector conformance suite, as fsspec's ``tests/abstract`` does it for file systems.

``ConnectorConformance`` holds the tests every connector must pass: schema, projection,
predicates, limit (and top-N), types, NULLs and empty results, asked through the protocol
(``connector.scan(ScanRequest(...))``, ``connector.schema(...)``) of a connector opened by a real
``fedquery.Connection``. A subclass per kind stores the same ``KINDS`` table in its own format
and provides the ``case`` fixture. A known gap of one kind is an ``xfail(strict=True)`` naming the
exception, in that kind's subclass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import fedquery
from fedquery.connectors.base import Capabilities, ScanRequest, TableRef

N_ROWS = 60


def kinds_table(seed: int = 11) -> pa.Table:
    """One column of each common type, with NULLs, duplicates, empty and non-ASCII strings."""
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in rng.permutation(np.arange(1, N_ROWS + 1))]
    names = ["alpha", "beta", "gamma", "", "Zoë", None]
    start = dt.datetime(2024, 2, 28, 23, 0, 0)
    return pa.table({
        "id": pa.array(ids, pa.int32()),
        "name": pa.array([names[i % len(names)] for i in ids], pa.string()),
        "score": pa.array([None if i % 7 == 0 else float(i) / 4 - 5 for i in ids], pa.float64()),
        "amount": pa.array([None if i % 9 == 0 else Decimal(i * 137 % 10_000) / 100 for i in ids],
                           pa.decimal128(10, 2)),
        "flag": pa.array([None if i % 5 == 0 else i % 2 == 0 for i in ids], pa.bool_()),
        "ts": pa.array([start + dt.timedelta(minutes=i * 37) for i in ids], pa.timestamp("us")),
        "day": pa.array([None if i % 11 == 0 else dt.date(2024, 2, 20) + dt.timedelta(days=i % 15)
                         for i in ids], pa.date32()),
        "big": pa.array([i * 10_000_000_000 for i in ids], pa.int64()),
        "tags": pa.array([None if i % 13 == 0 else ["t"] * (i % 3) + [str(i % 4)] for i in ids],
                         pa.list_(pa.string())),
    })


@dataclass
class Case:
    """What a subclass provides: a connection, the source and table under test, and the rows the
    table holds as an Arrow table in the column order the source reports."""

    con: fedquery.Connection
    source: str
    table: TableRef
    expected: pa.Table
    sql_name: str  # the name SQL uses for the table

    @property
    def connector(self):
        return self.con._session.connectors[self.source]

    @property
    def key(self) -> str:
        """The table as plans name it in a scan request: source.schema.table."""
        return f"{self.source}.{self.table.schema}.{self.table.name}"


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("id") if "id" in table.column_names else table


def _rows(table: pa.Table) -> list[dict]:
    return _sorted(table).to_pylist()


def reference(expected: pa.Table, sql: str) -> pa.Table:
    """What plain DuckDB answers over the expected rows (``t``): the oracle for predicates."""
    con = duckdb.connect()
    try:
        con.register("t", expected)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


PREDICATES = {
    "int_compare": "id > 40",
    "int_between": "id BETWEEN 10 AND 20",
    "string_equal": "name = 'beta'",
    "string_empty": "name = ''",
    "string_non_ascii": "name = 'Zoë'",
    "string_in": "name IN ('alpha', 'gamma')",
    "string_like": "name LIKE '%a'",
    "is_null": "name IS NULL",
    "is_not_null": "score IS NOT NULL",
    "double_negative": "score < -2.5",
    "decimal": "amount >= 50.25",
    "boolean": "flag",
    "not_boolean_or_null": "NOT flag OR flag IS NULL",
    "timestamp_range": "ts >= TIMESTAMP '2024-02-29 12:00:00' AND ts < TIMESTAMP '2024-03-01'",
    "date_equal": "day = DATE '2024-02-29'",
    "bigint": "big % 30000000000 = 0",
    "list_length": "len(tags) = 2",
    "or_across_columns": "id < 5 OR name = 'gamma'",
    "expression": "id * 2 + 1 > 100",
}


class ConnectorConformance:
    """Tests every connector passes; subclasses provide the ``case`` fixture."""

    # ------------------------------------------------------------------ description

    def test_capabilities_are_data(self, case: Case) -> None:
        caps = case.connector.capabilities
        assert isinstance(caps, Capabilities)
        assert isinstance(case.connector.kind, str) and case.connector.kind

    def test_lists_the_table(self, case: Case) -> None:
        assert case.table in case.connector.tables()

    def test_schema(self, case: Case) -> None:
        schema = case.connector.schema(case.table)
        assert schema.names == case.expected.column_names
        assert schema.types == case.expected.schema.types

    def test_schema_through_connection(self, case: Case) -> None:
        assert case.con.schema(case.sql_name).names == case.expected.column_names

    def test_describe_is_a_dict_with_kind(self, case: Case) -> None:
        detail = case.connector.describe(case.table)
        assert isinstance(detail, dict) and detail.get("kind") == case.connector.kind

    # ------------------------------------------------------------------ scans

    def scan(self, case: Case, **request) -> pa.Table:
        return case.connector.scan(ScanRequest(table=case.key, **request)).read_all()

    def test_scan_everything(self, case: Case) -> None:
        got = self.scan(case)
        assert got.schema.names == case.expected.column_names
        assert _rows(got) == _rows(case.expected)

    def test_scan_returns_a_record_batch_reader(self, case: Case) -> None:
        reader = case.connector.scan(ScanRequest(table=case.key, columns=("id",)))
        assert isinstance(reader, pa.RecordBatchReader)
        assert sum(b.num_rows for b in reader) == N_ROWS

    @pytest.mark.parametrize("columns", [("id",), ("name", "id"), ("tags", "ts", "amount"), ("big",)],
                             ids=["one", "reordered", "nested_and_temporal", "bigint"])
    def test_projection(self, case: Case, columns: tuple[str, ...]) -> None:
        got = self.scan(case, columns=columns)
        assert got.column_names == list(columns)
        want = case.expected.select(list(columns))
        assert got.schema == want.schema
        assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, want.to_pylist()))

    @pytest.mark.parametrize("condition", PREDICATES.values(), ids=PREDICATES.keys())
    def test_predicate(self, case: Case, condition: str) -> None:
        got = self.scan(case, filter=condition)
        want = reference(case.expected, f"SELECT * FROM t WHERE {condition}")
        assert want.num_rows > 0
        assert _rows(got) == _rows(want)

    def test_predicate_with_projection_of_other_columns(self, case: Case) -> None:
        got = self.scan(case, columns=("id",), filter="name = 'alpha' AND score > 0")
        want = reference(case.expected, "SELECT id FROM t WHERE name = 'alpha' AND score > 0")
        assert got.column_names == ["id"]
        assert _rows(got) == _rows(want)

    def test_limit(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "name"), limit=7)
        assert got.num_rows == 7
        every = {(r["id"], r["name"]) for r in case.expected.to_pylist()}
        assert {(r["id"], r["name"]) for r in got.to_pylist()} <= every

    def test_limit_zero_keeps_schema(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "ts"), limit=0)
        assert got.num_rows == 0
        assert got.schema == case.expected.select(["id", "ts"]).schema

    def test_limit_above_row_count(self, case: Case) -> None:
        assert self.scan(case, columns=("id",), limit=N_ROWS * 10).num_rows == N_ROWS

    def test_limit_with_filter(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "name"), filter="name = 'gamma'", limit=3)
        assert got.num_rows == 3
        assert {r["name"] for r in got.to_pylist()} == {"gamma"}

    def test_top_n(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "score"), order_by=("score DESC NULLS LAST", "id"), limit=5)
        want = reference(case.expected, "SELECT id, score FROM t ORDER BY score DESC NULLS LAST, id LIMIT 5")
        assert got.to_pylist() == want.to_pylist()

    def test_row_count_only(self, case: Case) -> None:
        """No columns asked (``count(*)``): the rows still come, whatever columns they carry."""
        assert self.scan(case, columns=(), filter="id <= 10").num_rows == 10

    # ------------------------------------------------------------------ types and NULLs

    def test_types_match_schema(self, case: Case) -> None:
        assert self.scan(case).schema.types == case.connector.schema(case.table).types

    def test_values_round_trip(self, case: Case) -> None:
        got = _sorted(self.scan(case))
        want = _sorted(case.expected)
        for name in want.column_names:
            assert got[name].to_pylist() == want[name].to_pylist(), name

    def test_nulls_preserved(self, case: Case) -> None:
        got = self.scan(case)
        for name in case.expected.column_names:
            assert got[name].null_count == case.expected[name].null_count, name
        assert case.expected["name"].null_count > 0  # the data does hold NULLs

    def test_null_is_not_empty_string(self, case: Case) -> None:
        empty = self.scan(case, columns=("name",), filter="name = ''")
        missing = self.scan(case, columns=("name",), filter="name IS NULL")
        assert set(empty["name"].to_pylist()) == {""}
        assert set(missing["name"].to_pylist()) == {None}

    # ------------------------------------------------------------------ empty results

    def test_empty_result_keeps_schema(self, case: Case) -> None:
        got = self.scan(case, filter="id < 0")
        assert got.num_rows == 0
        assert got.schema.names == case.expected.column_names
        assert got.schema.types == case.expected.schema.types

    def test_empty_projection_result(self, case: Case) -> None:
        got = self.scan(case, columns=("tags", "amount"), filter="name = 'no such name'")
        assert got.num_rows == 0 and got.column_names == ["tags", "amount"]

    # ------------------------------------------------------------------ through SQL

    def test_sql_answers_the_same(self, case: Case) -> None:
        got = case.con.sql(f"SELECT * FROM {case.sql_name} WHERE score > 0 OR name IS NULL").arrow()
        want = reference(case.expected, "SELECT * FROM t WHERE score > 0 OR name IS NULL")
        assert _rows(got) == _rows(want)

    def test_run_sql_when_the_source_speaks_sql(self, case: Case) -> None:
        if not case.connector.capabilities.dialect:
            pytest.skip("the source runs no SQL of its own")
        relation = ".".join([case.source, case.table.schema, case.table.name])
        got = case.connector.run_sql(f"SELECT id, name FROM {relation} WHERE id <= 5").read_all()
        want = reference(case.expected, "SELECT id, name FROM t WHERE id <= 5")
        assert _rows(got) == _rows(want)
