"""The connector conformance suite, as fsspec's ``tests/abstract`` does it for file systems.

``ConnectorConformance`` holds the tests every connector must pass: the contract (a
``Connector`` whose capabilities agree with its mixins, settings it checks itself), listings,
schema, projection, predicates, keys, parameters, limit, top-N with and without ties, estimates,
types, NULLs, empty results and errors, asked through the contract
(``connector.scan(ScanRequest(...))``, ``connector.schema(...)``) of a connector opened by a real
``fedquery.Connection``. A subclass per kind stores the same ``kinds_table`` in its own format
and provides the ``case`` fixture (see ``tests/connectors/``). A known gap of one kind is an
``xfail(strict=True)`` naming the exception, in that kind's subclass. Needs pytest.
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
from fedquery.connectors.base import (
    Capabilities,
    Connector,
    KeySet,
    NativeSource,
    ScanRequest,
    SQLSource,
    TableRef,
)
from fedquery.errors import CatalogError, FedQueryError

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


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


class ContractConformance:
    """The part of the suite that needs no particular table: the contract, settings, listings,
    estimates and errors. A source whose tables have a fixed shape (a files root's listing)
    runs this part; every other source runs ``ConnectorConformance``."""

    # ------------------------------------------------------------------ description

    def test_capabilities_are_data(self, case: Case) -> None:
        caps = case.connector.capabilities
        assert isinstance(caps, Capabilities)
        assert isinstance(case.connector.kind, str) and case.connector.kind

    def test_is_a_connector_whose_capabilities_match_its_mixins(self, case: Case) -> None:
        connector, caps = case.connector, case.connector.capabilities
        assert isinstance(connector, Connector)
        assert (caps.dialect is not None) == isinstance(connector, SQLSource)
        assert caps.native == isinstance(connector, NativeSource)
        for method in ("tables", "schema", "scan"):
            assert getattr(type(connector), method) is not getattr(Connector, method), method
        if isinstance(connector, SQLSource):
            assert type(connector).run_sql is not SQLSource.run_sql
        if isinstance(connector, NativeSource):
            assert type(connector).bind is not NativeSource.bind

    def test_checks_its_own_settings(self, case: Case) -> None:
        """The declared settings pass the class's check; an unknown key is refused by name."""
        kind = type(case.connector)
        given = dict(case.con.catalog.sources[case.source].settings)
        kind.check_settings(given, "<dict>: sources.x")
        with pytest.raises(CatalogError, match=r"^<dict>: sources\.x\.no_such_setting: "):
            kind.check_settings({**given, "no_such_setting": 1}, "<dict>: sources.x")

    def test_repr_and_describe_show_no_secret(self, case: Case) -> None:
        secrets = case.con.catalog.secrets
        for text in (repr(case.connector), repr(case.connector.describe(case.table))):
            assert secrets.redact(text) == text

    def test_lists_the_table(self, case: Case) -> None:
        assert case.table in case.connector.tables()

    def test_listing_is_table_refs_without_duplicates(self, case: Case) -> None:
        listed = case.connector.tables()
        assert all(isinstance(t, TableRef) for t in listed)
        assert len(set(listed)) == len(listed)
        for table in listed:  # each listed table can be described
            assert case.connector.describe(table).get("kind") == case.connector.kind

    # ------------------------------------------------------------------ estimates

    def test_row_estimate_is_a_count_or_unknown(self, case: Case) -> None:
        estimate = case.connector.estimate_rows(case.table)
        assert estimate is None or (isinstance(estimate, int) and estimate >= 0)

    def test_sql_estimate_is_a_count_or_unknown(self, case: Case) -> None:
        if not isinstance(case.connector, SQLSource):
            pytest.skip("the source runs no SQL of its own")
        relation = ".".join([case.source, case.table.schema, case.table.name])
        estimate = case.connector.estimate_sql_rows(f"SELECT id FROM {relation} WHERE id <= 5")
        assert estimate is None or (isinstance(estimate, int) and estimate >= 0)

    # ------------------------------------------------------------------ errors

    def test_missing_table_is_an_error_of_fedquery(self, case: Case) -> None:
        missing = f"{case.source}.{case.table.schema}.no_such_table_xyz"
        column = case.connector.schema(case.table).names[0]
        with pytest.raises(FedQueryError):
            case.connector.schema(TableRef(case.table.schema, "no_such_table_xyz"))
        with pytest.raises(FedQueryError):
            case.connector.scan(ScanRequest(table=missing, columns=(column,))).read_all()



class ConnectorConformance(ContractConformance):
    """Tests every connector passes over ``kinds_table``; subclasses provide the ``case``."""

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

    def test_top_n_with_ties(self, case: Case) -> None:
        """The first rows in order and every row tied with the last of them."""
        for order, limit in ((("day",), 3), (("flag DESC NULLS LAST",), 1), (("name", "day"), 4)):
            got = self.scan(case, columns=("id",), order_by=order, limit=limit, with_ties=True)
            want = reference(case.expected, f"SELECT id FROM t QUALIFY rank() OVER "
                                            f"(ORDER BY {', '.join(order)}) <= {limit}")
            assert want.num_rows > limit or order == ("name", "day")
            assert sorted(got["id"].to_pylist()) == sorted(want["id"].to_pylist()), order

    # ------------------------------------------------------------------ keys

    def keys(self, case: Case, column: str, values: list, **request) -> pa.Table:
        array = pa.array(values, case.expected.schema.field(column).type)
        return self.scan(case, keys=KeySet(column, array), **request)

    def test_keys_keep_only_their_rows(self, case: Case) -> None:
        got = self.keys(case, "id", [3, 7, 7, 11, 10_000], columns=("id", "name"))
        assert sorted(got["id"].to_pylist()) == [3, 7, 11]

    def test_keys_on_a_column_not_asked_for(self, case: Case) -> None:
        got = self.keys(case, "id", [3, 7, 11], columns=("name",))
        want = reference(case.expected, "SELECT name FROM t WHERE id IN (3, 7, 11)")
        assert sorted(map(repr, got["name"].to_pylist())) == sorted(map(repr, want["name"].to_pylist()))

    def test_keys_of_text(self, case: Case) -> None:
        got = self.keys(case, "name", ["beta", "Zoë", "nobody"], columns=("id",))
        want = reference(case.expected, "SELECT id FROM t WHERE name IN ('beta', 'Zoë')")
        assert sorted(got["id"].to_pylist()) == sorted(want["id"].to_pylist())

    def test_keys_with_a_filter(self, case: Case) -> None:
        got = self.keys(case, "id", list(range(1, 31)), columns=("id",), filter="name = 'gamma'")
        want = reference(case.expected, "SELECT id FROM t WHERE id <= 30 AND name = 'gamma'")
        assert sorted(got["id"].to_pylist()) == sorted(want["id"].to_pylist())

    def test_keys_apply_before_the_limit(self, case: Case) -> None:
        """A top-N among the keyed rows, not the keys among a top-N: top-k's exact answer."""
        got = self.keys(case, "id", [3, 7, 11, 50], columns=("id",), order_by=("id DESC",), limit=2)
        assert got["id"].to_pylist() == [50, 11]
        ties = self.keys(case, "id", [3, 7, 11], columns=("id",), order_by=("day",), limit=1,
                         with_ties=True)
        want = reference(case.expected, "SELECT id FROM t WHERE id IN (3, 7, 11) "
                                        "QUALIFY rank() OVER (ORDER BY day) <= 1")
        assert sorted(ties["id"].to_pylist()) == sorted(want["id"].to_pylist())

    def test_no_keys_no_rows(self, case: Case) -> None:
        got = self.keys(case, "id", [], columns=("id", "name"))
        assert got.num_rows == 0 and got.column_names == ["id", "name"]

    def test_many_keys(self, case: Case) -> None:
        """More keys than an IN list holds (``_native.IN_LITERALS_MAX``), most of them absent."""
        values = list(range(-3000, 0)) + [5, 6, 40]
        assert sorted(self.keys(case, "id", values, columns=("id",))["id"].to_pylist()) == [5, 6, 40]

    def test_keys_loaded_lazily(self, case: Case) -> None:
        loaded = []

        def load() -> pa.Array:
            loaded.append(True)
            return pa.array([2, 4, 8], pa.int32())
        got = self.scan(case, columns=("id",), keys=KeySet("id", count=3, load=load))
        assert sorted(got["id"].to_pylist()) == [2, 4, 8] and loaded

    # ------------------------------------------------------------------ parameters

    def test_parameters_in_the_filter(self, case: Case) -> None:
        got = self.scan(case, columns=("id",), filter="id > $low AND name <> $skip",
                        params={"low": 30, "skip": "beta"})
        want = reference(case.expected, "SELECT id FROM t WHERE id > 30 AND name <> 'beta'")
        assert want.num_rows > 0
        assert sorted(got["id"].to_pylist()) == sorted(want["id"].to_pylist())

    def test_parameters_are_values_not_sql(self, case: Case) -> None:
        for value in ("Zoë", "x' OR '1'='1", "a\\b", "--", "$low"):
            got = self.scan(case, columns=("id",), filter="name = $name", params={"name": value})
            want = reference(case.expected, "SELECT id FROM t WHERE name = " + _literal(value))
            assert sorted(got["id"].to_pylist()) == sorted(want["id"].to_pylist()), value

    def test_parameters_of_several_types(self, case: Case) -> None:
        params = {"day": dt.date(2024, 2, 29), "ts": dt.datetime(2024, 3, 1, 6),
                  "amount": Decimal("40.5"), "flag": True}
        condition = "day = $day OR ts < $ts AND amount > $amount AND flag = $flag"
        got = self.scan(case, columns=("id",), filter=condition, params=params)
        with duckdb.connect() as con:
            con.register("t", case.expected)
            want = con.sql(f"SELECT id FROM t WHERE {condition}", params=params).to_arrow_table()
        assert want.num_rows > 0
        assert sorted(got["id"].to_pylist()) == sorted(want["id"].to_pylist())

    def test_unknown_column_is_an_error_of_fedquery(self, case: Case) -> None:
        with pytest.raises(FedQueryError):
            self.scan(case, columns=("id", "no_such_column_xyz"))

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
