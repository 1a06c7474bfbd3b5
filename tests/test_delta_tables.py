"""``kind: delta`` on real tables made with deltalake: partitions, several versions (appends,
a delete, an update), time travel; answers compared with plain DuckDB over the same rows."""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fedquery
from fedquery.errors import CatalogError, SourceError

CITIES = ["austin", "boston", "chicago"]


def _trips(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "city": pa.array([CITIES[i % 3] for i in ids], pa.string()),
        "day": pa.array([dt.date(2024, 5, 1) + dt.timedelta(days=i % 4) for i in ids], pa.date32()),
        "fare": pa.array([Decimal(i * 37 % 5000) / 100 for i in ids], pa.decimal128(10, 2)),
        "rider": pa.array([None if i % 11 == 0 else f"r{i % 17}" for i in ids], pa.string()),
    })


class Lake:
    """Version 0: ids 0-119; 1: ids 1000-1119; 2: rider r5 deleted; 3: boston's fares doubled."""

    def __init__(self, root: Path) -> None:
        from deltalake import DeltaTable, write_deltalake

        self.root = root
        path = root / "trips"
        first, second = _trips(0, 120), _trips(1000, 120)
        write_deltalake(path, first, partition_by=["city"])
        self.first_rows = first
        time.sleep(0.01)
        self.after_first = dt.datetime.now(dt.UTC)
        time.sleep(0.01)
        write_deltalake(path, second, partition_by=["city"], mode="append")
        table = DeltaTable(path)
        table.delete("rider = 'r5'")
        table.update(updates={"fare": "fare * 2"}, predicate="city = 'boston'")
        rows = pa.concat_tables([first, second])
        rows = rows.filter(pc.invert(pc.fill_null(pc.equal(rows["rider"], "r5"), False)))
        boston = pc.equal(rows["city"], "boston")
        doubled = pc.if_else(boston, pc.multiply(rows["fare"], 2).cast(rows["fare"].type), rows["fare"])
        self.rows = rows.set_column(3, "fare", doubled)
        self.versions = DeltaTable(path).version()

    def connect(self, **tables) -> fedquery.Connection:
        declared = {"trips": {"source": "dl", "path": "trips"}}
        declared.update({name: {"source": "dl", "path": "trips", **pin} for name, pin in tables.items()})
        return fedquery.connect({"sources": {"dl": {"kind": "delta", "root": str(self.root)}},
                                 "tables": declared})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return Lake(tmp_path_factory.mktemp("delta"))


@pytest.fixture(scope="module")
def con(lake: Lake):
    con = lake.connect()
    yield con
    con.close()


def _duckdb(rows: pa.Table, sql: str) -> list[tuple]:
    reference = duckdb.connect()
    reference.register("trips", rows)
    try:
        return sorted(reference.sql(sql).fetchall(), key=repr)
    finally:
        reference.close()


QUERIES = [
    "SELECT count(*), sum(fare), count(rider) FROM trips",
    "SELECT city, count(*), sum(fare), max(id) FROM trips GROUP BY city",
    "SELECT * FROM trips WHERE city = 'boston' AND id BETWEEN 0 AND 40",
    "SELECT id, fare FROM trips WHERE id >= 1000 AND fare > 10.5 ORDER BY fare DESC, id LIMIT 7",
    "SELECT day, count(*) FROM trips WHERE day >= DATE '2024-05-03' GROUP BY day",
    "SELECT a.id FROM trips a JOIN trips b ON a.id = b.id + 1 WHERE a.city = 'austin'",
    "SELECT * FROM trips WHERE rider IN ('r1', 'r5') OR id < 3",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_answers_like_duckdb(lake: Lake, con: fedquery.Connection, sql: str) -> None:
    assert sorted(con.sql(sql).fetchall(), key=repr) == _duckdb(lake.rows, sql)


def _files(explained: str) -> tuple[int, int]:
    found = re.search(r"(\d+) of (\d+) data files read", explained)
    assert found, explained
    return int(found.group(1)), int(found.group(2))


def _file_count(lake: Lake, **match) -> int:
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(lake.root / "trips").get_add_actions(flatten=True)).to_pylist()
    return sum(all(a[k] == v for k, v in match.items()) for a in actions)


def test_explain_analyze_shows_partition_skipping(lake: Lake, con: fedquery.Connection) -> None:
    explained = con.explain("SELECT count(*) FROM trips WHERE city = 'chicago'", analyze=True)
    read, total = _files(explained)
    assert total == _file_count(lake)
    assert read == _file_count(lake, **{"partition.city": "chicago"}) < total


def test_explain_analyze_shows_statistics_skipping(lake: Lake) -> None:
    """In version 1, ids 0-119 and 1000-1119 lie in files of different commits: min/max skip
    the first's (the later delete and update rewrote them together)."""
    from deltalake import DeltaTable

    con = lake.connect(v1={"version": 1})
    try:
        explained = con.explain("SELECT count(*) FROM v1 WHERE id > 1100", analyze=True)
    finally:
        con.close()
    actions = pa.table(DeltaTable(lake.root / "trips", version=1).get_add_actions(flatten=True))
    assert _files(explained) == (sum(m > 1100 for m in actions["max.id"].to_pylist()), 6)
    assert _files(explained)[0] == 3


def test_older_versions_by_number_and_time(lake: Lake) -> None:
    con = lake.connect(v0={"version": 0}, early={"as_of": lake.after_first.isoformat()},
                       v1={"version": 1})
    try:
        want = _duckdb(lake.first_rows, "SELECT count(*), sum(fare) FROM trips")
        assert sorted(con.sql("SELECT count(*), sum(fare) FROM v0").fetchall()) == want
        assert sorted(con.sql("SELECT count(*), sum(fare) FROM early").fetchall()) == want
        assert con.sql("SELECT count(*) FROM v1").fetchall() == [(240,)]
        assert con.sql("SELECT count(*) FROM trips").fetchall() == [(lake.rows.num_rows,)]
        assert "version=0" in con.explain("SELECT * FROM v0")
    finally:
        con.close()


def test_missing_version_is_a_source_error(lake: Lake) -> None:
    con = lake.connect(future={"version": 99})
    try:
        with pytest.raises(SourceError, match="has no version 99"):
            con.sql("SELECT * FROM future").fetchall()
    finally:
        con.close()


def test_one_version_per_query(tmp_path: Path, monkeypatch) -> None:
    """A commit between a query's two scans of one table is not seen by the second scan."""
    from deltalake import write_deltalake

    from fedquery.connectors.delta import DeltaConnector
    from fedquery.control import current

    write_deltalake(tmp_path / "trips", _trips(0, 120))
    con = fedquery.connect({"sources": {"dl": {"kind": "delta", "root": str(tmp_path)}},
                            "tables": {"trips": {"source": "dl", "path": "trips"}}})
    opened, committed = DeltaConnector._open, []

    def open_then_commit(self, name):
        table = opened(self, name)
        if current() is not None and not committed:  # a query's first scan: a writer commits
            write_deltalake(tmp_path / "trips", _trips(5000, 10), mode="append")
            committed.append(True)
        return table

    monkeypatch.setattr(DeltaConnector, "_open", open_then_commit)
    sql = "SELECT (SELECT count(*) FROM trips) AS a, (SELECT count(*) FROM trips WHERE id >= 0) AS b"
    try:
        assert con.sql(sql).fetchall() == [(120, 120)]
        assert con.sql(sql).fetchall() == [(130, 130)]  # the next query sees the commit
    finally:
        con.close()


def test_missing_table_and_corrupt_log_are_source_errors(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    write_deltalake(tmp_path / "broken", _trips(0, 3))
    next((tmp_path / "broken" / "_delta_log").glob("*.json")).write_text("{not json\n")
    con = fedquery.connect({"sources": {"dl": {"kind": "delta", "root": str(tmp_path)}},
                            "tables": {"nope": {"source": "dl", "path": "nope"},
                                       "broken": {"source": "dl", "path": "broken"}}})
    try:
        with pytest.raises(SourceError, match="no Delta table at"):
            con.sql("SELECT * FROM nope").fetchall()
        with pytest.raises(SourceError, match="cannot open Delta table"):
            con.sql("SELECT * FROM broken").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize(("source", "table", "message"), [
    ({"root": None}, {}, r"sources\.dl\.root: required for kind 'delta'"),
    ({"options": {"endpoint": "x"}}, {}, r"sources\.dl\.options\.endpoint: unknown S3 option"),
    ({}, {"version": -1}, r"tables\.t\.version: expected a table version"),
    ({}, {"as_of": "soon"}, r"tables\.t\.as_of: expected a timestamp"),
    ({}, {"version": 1, "as_of": "2024-01-01"}, r"tables\.t\.as_of: give one of"),
    ({}, {"snapshot_id": 3}, r"tables\.t\.snapshot_id"),
], ids=["no-root", "bad-option", "bad-version", "bad-as-of", "two-pins", "unknown-key"])
def test_settings_errors_name_the_key_path(tmp_path: Path, source, table, message) -> None:
    settings = {"kind": "delta", "root": str(tmp_path), **source}
    with pytest.raises(CatalogError, match=message):
        fedquery.connect({"sources": {"dl": settings},
                          "tables": {"t": {"source": "dl", "path": "t", **table}}})


def test_table_on_s3(tmp_path: Path, s3_endpoint: str, s3_credentials) -> None:
    """A Delta table in a bucket of the S3 test server, read with the catalog's options."""
    from deltalake import write_deltalake

    from tests.services.s3 import s3_client

    bucket = "delta-lake-test"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    storage = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true",
               "AWS_ACCESS_KEY_ID": s3_credentials["AWS_ACCESS_KEY_ID"],
               "AWS_SECRET_ACCESS_KEY": s3_credentials["AWS_SECRET_ACCESS_KEY"],
               "AWS_REGION": "us-east-1"}
    write_deltalake(f"s3://{bucket}/trips", _trips(0, 30), partition_by=["city"],
                    storage_options=storage)
    write_deltalake(f"s3://{bucket}/trips", _trips(100, 30), partition_by=["city"],
                    storage_options=storage, mode="append")
    source = {"kind": "delta", "root": f"s3://{bucket}/", "options": {
        "endpoint_url": s3_endpoint, "region": "us-east-1",
        "key": "${AWS_ACCESS_KEY_ID}", "secret": "${AWS_SECRET_ACCESS_KEY}"}}
    with fedquery.connect({"sources": {"dl": source},
                           "tables": {"trips": {"source": "dl", "path": "trips"},
                                      "old": {"source": "dl", "path": "trips", "version": 0}}}) as con:
        rows = pa.concat_tables([_trips(0, 30), _trips(100, 30)])
        sql = "SELECT city, count(*), sum(fare) FROM trips WHERE id > 5 GROUP BY city"
        assert sorted(con.sql(sql).fetchall(), key=repr) == _duckdb(rows, sql)
        assert con.sql("SELECT count(*) FROM old").fetchall() == [(30,)]
        explained = con.explain("SELECT count(*) FROM trips WHERE city = 'austin'", analyze=True)
        assert _files(explained) == (2, 6)
        assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in explained


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM trips WHERE fare > 3000000000",
    "SELECT count(*) FROM trips WHERE fare IN (12.5, 123456789.5) OR fare < -99999999999",
], ids=["greater", "in_or_less"])
def test_a_decimal_literal_wider_than_the_column_prunes_nothing(lake: Lake, con: fedquery.Connection,
                                                                sql: str) -> None:
    """Found by tests/predfuzz.py: a literal with more digits than a DECIMAL(10, 2) column was
    cast to the column's type for the log's statistics, which deltalake's engine refused."""
    assert sorted(con.sql(sql).fetchall(), key=repr) == _duckdb(lake.rows, sql)
