"""``kind: iceberg`` on real tables made with pyiceberg (a SQL catalog on SQLite): partitions,
several snapshots, positional and equality delete files. Answers are compared with plain
DuckDB over the rows the table holds (kept in Arrow as they were written and deleted)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fedquery
from fedquery.errors import CatalogError, SourceError
from tests.lakes import delete_equal, delete_positions, iceberg_catalog, iceberg_source

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
    """The table, the snapshots it went through and the rows it holds now."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.catalog = iceberg_catalog(root)
        first, second = _trips(0, 120), _trips(1000, 120)
        table = self.catalog.create_table("ns.trips", schema=first.schema)
        with table.update_spec() as spec:
            spec.add_identity("city")
        table.append(first)
        self.first = table.current_snapshot()
        self.first_rows = first
        table.append(second)
        table = self.catalog.load_table("ns.trips")
        # a positional delete: the first two rows of one data file of the second append
        data = next(t.file for t in table.scan(row_filter="id >= 1000").plan_files())
        file_rows = _file_ids(data.file_path)
        delete_positions(table, data, [0, 1], root / "pos-delete.parquet")
        # an equality delete scoped to boston's partition (id 2 is chicago's: kept), and a
        # global one by rider (NULL matches NULL)
        table = self.catalog.load_table("ns.trips")
        boston = next(t.file for t in table.scan(row_filter="city = 'boston'").plan_files())
        delete_equal(table, pa.table({"id": pa.array([2, 1003], pa.int64())}),
                     root / "eq-boston.parquet", boston.partition, boston.spec_id)
        delete_equal(self.catalog.load_table("ns.trips"),
                     pa.table({"rider": pa.array(["r5", None], pa.string())}),
                     root / "eq-rider.parquet")
        rows = pa.concat_tables([first, second])
        gone = set(file_rows[:2]) | {1003}
        keep = pc.invert(pc.is_in(rows["id"], pa.array(sorted(gone), pa.int64())))
        keep = pc.and_(keep, pc.invert(pc.fill_null(pc.equal(rows["rider"], "r5"), False)))
        keep = pc.and_(keep, pc.is_valid(rows["rider"]))
        self.rows = rows.filter(keep)
        self.table = self.catalog.load_table("ns.trips")

    def connect(self, **tables) -> fedquery.Connection:
        declared = {"trips": {"source": "ice", "table": "ns.trips"}}
        declared.update({name: {"source": "ice", "table": "ns.trips", **pin}
                         for name, pin in tables.items()})
        return fedquery.connect({"sources": {"ice": iceberg_source(self.root)}, "tables": declared})


def _file_ids(uri: str) -> list[int]:
    import pyarrow.parquet as pq

    return pq.read_table(uri.removeprefix("file://"), columns=["id"])["id"].to_pylist()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return Lake(tmp_path_factory.mktemp("iceberg"))


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
    "SELECT city, count(*), min(id), max(id) FROM trips GROUP BY city",
    "SELECT * FROM trips WHERE city = 'boston' AND id BETWEEN 0 AND 40",
    "SELECT id, fare FROM trips WHERE id >= 1000 AND fare > 10.5 ORDER BY fare DESC, id LIMIT 7",
    "SELECT day, count(*) FROM trips WHERE day >= DATE '2024-05-03' GROUP BY day",
    "SELECT a.id FROM trips a JOIN trips b ON a.id = b.id + 1 WHERE a.city = 'austin'",
    "SELECT * FROM trips WHERE rider IN ('r1', 'r2') OR id < 3",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_answers_like_duckdb(lake: Lake, con: fedquery.Connection, sql: str) -> None:
    assert sorted(con.sql(sql).fetchall(), key=repr) == _duckdb(lake.rows, sql)


def test_delete_files_are_honoured(lake: Lake, con: fedquery.Connection) -> None:
    """The rows the positional and both equality delete files remove are gone (and only them)."""
    ids = {r[0] for r in con.sql("SELECT id FROM trips").fetchall()}
    assert ids == set(lake.rows["id"].to_pylist())
    assert 1003 not in ids and 2 in ids  # 1003 is in boston's partition, 2 is not
    assert con.sql("SELECT count(*) FROM trips WHERE rider = 'r5' OR rider IS NULL").fetchall() == [(0,)]


def _files(explained: str) -> tuple[int, int]:
    found = re.search(r"(\d+) of (\d+) data files read", explained)
    assert found, explained
    return int(found.group(1)), int(found.group(2))


def test_explain_analyze_shows_partition_pruning(lake: Lake, con: fedquery.Connection) -> None:
    explained = con.explain("SELECT count(*) FROM trips WHERE city = 'chicago'", analyze=True)
    read, total = _files(explained)
    chicago = [f for f in lake.table.inspect.files().to_pylist() if f["content"] == 0
               and f["partition"]["city"] == "chicago"]
    assert (read, total) == (len(chicago), 6)
    assert "4 skipped" in explained and "delete files applied" in explained


def test_explain_analyze_shows_statistics_pruning(con: fedquery.Connection) -> None:
    """Each append wrote its own files (ids 0-119, then 1000-1119): min/max skip the first's."""
    explained = con.explain("SELECT count(*) FROM trips WHERE id > 1100", analyze=True)
    assert _files(explained) == (3, 6)


def test_unpruned_scan_reads_every_file(con: fedquery.Connection) -> None:
    explained = con.explain("SELECT count(*) FROM trips WHERE fare > 1", analyze=True)
    assert _files(explained) == (6, 6)


def test_older_snapshot_by_id_as_of_and_ref(lake: Lake) -> None:
    first = lake.first
    when = dt.datetime.fromtimestamp(first.timestamp_ms / 1000, dt.UTC).isoformat()
    lake.table.manage_snapshots().create_tag(first.snapshot_id, "v1").commit()
    con = lake.connect(by_id={"snapshot_id": first.snapshot_id}, by_time={"as_of": when},
                       by_ref={"ref": "v1"})
    try:
        want = _duckdb(lake.first_rows, "SELECT count(*), sum(fare) FROM trips")
        for name in ("by_id", "by_time", "by_ref"):
            assert sorted(con.sql(f"SELECT count(*), sum(fare) FROM {name}").fetchall()) == want
        assert con.sql("SELECT count(*) FROM trips").fetchall() == [(lake.rows.num_rows,)]
        assert "snapshot_id=" in con.explain("SELECT * FROM by_id")
    finally:
        con.close()


def test_missing_snapshot_is_a_source_error(lake: Lake) -> None:
    con = lake.connect(gone={"snapshot_id": 12345}, early={"as_of": "2001-01-01T00:00:00"})
    try:
        with pytest.raises(SourceError, match="has no snapshot_id 12345"):
            con.sql("SELECT * FROM gone").fetchall()
        with pytest.raises(SourceError, match="no a snapshot at or before|has no a snapshot"):
            con.sql("SELECT * FROM early").fetchall()
    finally:
        con.close()


def test_one_snapshot_per_query(lake: Lake, tmp_path: Path, monkeypatch) -> None:
    """A commit between a query's two scans of one table is not seen by the second scan."""
    from fedquery.connectors.iceberg import IcebergConnector
    from fedquery.control import current

    catalog = iceberg_catalog(tmp_path)
    catalog.create_table("ns.trips", schema=lake.first_rows.schema).append(lake.first_rows)
    con = fedquery.connect({"sources": {"ice": iceberg_source(tmp_path)},
                            "tables": {"trips": {"source": "ice", "table": "ns.trips"}}})
    loaded, committed = IcebergConnector._load, []

    def load_then_commit(self, name):
        table = loaded(self, name)
        if current() is not None and not committed:  # a query's first scan: a writer commits
            catalog.load_table("ns.trips").append(_trips(5000, 10))
            committed.append(True)
        return table

    monkeypatch.setattr(IcebergConnector, "_load", load_then_commit)
    sql = "SELECT (SELECT count(*) FROM trips) AS a, (SELECT count(*) FROM trips WHERE id >= 0) AS b"
    try:
        assert con.sql(sql).fetchall() == [(120, 120)]
        assert con.sql(sql).fetchall() == [(130, 130)]  # the next query sees the commit
    finally:
        con.close()


# ---------------------------------------------------------------------- errors and settings


def test_missing_table_is_a_source_error(lake: Lake) -> None:
    con = fedquery.connect({"sources": {"ice": iceberg_source(lake.root)},
                            "tables": {"nope": {"source": "ice", "table": "ns.nope"}}})
    try:
        with pytest.raises(SourceError, match="'ns.nope' does not exist"):
            con.sql("SELECT * FROM nope").fetchall()
    finally:
        con.close()


def test_corrupt_metadata_is_a_source_error(tmp_path: Path) -> None:
    catalog = iceberg_catalog(tmp_path)
    table = catalog.create_table("ns.t", schema=_trips(0, 3).schema)
    table.append(_trips(0, 3))
    Path(catalog.load_table("ns.t").metadata_location.removeprefix("file://")).write_text("{not json")
    con = fedquery.connect({"sources": {"ice": iceberg_source(tmp_path)},
                            "tables": {"t": {"source": "ice", "table": "ns.t"}}})
    try:
        with pytest.raises(SourceError, match="cannot load Iceberg table 'ns.t'"):
            con.sql("SELECT * FROM t").fetchall()
    finally:
        con.close()


def test_unreachable_catalog_hides_the_password() -> None:
    source = {"kind": "iceberg", "catalog": {
        "type": "sql", "uri": "postgresql+psycopg://fq:Sup3rSecretPw@127.0.0.1:1/iceberg"}}
    con = fedquery.connect({"sources": {"ice": source},
                            "tables": {"t": {"source": "ice", "table": "ns.t"}}})
    try:
        refused = "cannot load Iceberg table 'ns.t'.*(refused|connect)"
        with pytest.raises(SourceError, match=refused) as caught:
            con.sql("SELECT * FROM t").fetchall()
        assert "Sup3rSecretPw" not in str(caught.value)
        assert "Sup3rSecretPw" not in repr(con._session.connectors["ice"])
        assert "Sup3rSecretPw" not in str(con._session.connectors["ice"].describe(
            con._session.connectors["ice"].tables()[0]))
    finally:
        con.close()


@pytest.mark.parametrize(("source", "table", "message"), [
    ({"catalog": {"type": "sql"}}, {}, r"sources\.ice\.catalog\.uri: required for a sql catalog"),
    ({"catalog": {"type": "nessie", "uri": "x"}}, {}, r"sources\.ice\.catalog\.type: expected one of"),
    ({"catalog": None}, {}, r"sources\.ice\.catalog: required for kind 'iceberg'"),
    ({"catalog": {"type": "sql", "uri": "mysql://h/db"}}, {}, r"sources\.ice\.catalog\.uri: expected"),
    ({"catalog": {"type": "rest", "uri": "http://h", "props": {"a": 1}}}, {},
     r"sources\.ice\.catalog\.props: expected a single value"),
    ({}, {"snapshot_id": "abc"}, r"tables\.t\.snapshot_id: expected a snapshot id"),
    ({}, {"as_of": "yesterday"}, r"tables\.t\.as_of: expected a timestamp"),
    ({}, {"snapshot_id": 1, "as_of": "2024-01-01"}, r"tables\.t\.as_of: give one of"),
    ({}, {"colour": "red"}, r"tables\.t\.colour"),
], ids=["no-uri", "bad-type", "no-catalog", "not-sql-url", "nested", "bad-snapshot",
        "bad-as-of", "two-pins", "unknown-table-key"])
def test_settings_errors_name_the_key_path(tmp_path: Path, source, table, message) -> None:
    catalog = iceberg_catalog(tmp_path)
    catalog.create_table("ns.t", schema=_trips(0, 1).schema)
    settings = {**iceberg_source(tmp_path), **source}
    with pytest.raises(CatalogError, match=message):
        fedquery.connect({"sources": {"ice": settings},
                          "tables": {"t": {"source": "ice", "table": "ns.t", **table}}})


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    source = {"kind": "iceberg", "catalog": {"type": "sql", "uri": "sqlite:///missing.db"}}
    with pytest.raises(SourceError, match="SQLite file does not exist"):
        fedquery.connect({"sources": {"ice": source}, "tables": {}})
    assert not (Path.cwd() / "missing.db").exists()


@pytest.mark.parametrize("clause", ["AT (VERSION => 1)", "AT (TIMESTAMP => TIMESTAMP '2024-05-01')",
                                    "FOR SYSTEM_TIME AS OF TIMESTAMP '2024-05-01'"])
def test_time_travel_in_sql_says_how_to_declare_it(con: fedquery.Connection, clause: str) -> None:
    with pytest.raises(fedquery.PlanError, match="time travel in SQL .* declare a catalog table"):
        con.sql(f"SELECT count(*) FROM trips {clause}").fetchall()


def test_an_or_over_a_partition_with_nulls_is_planned(tmp_path: Path) -> None:
    """Found by tests/predfuzz.py: pyiceberg's planning compared a NULL partition value with a
    string under an OR (TypeError); the scan now prunes by the conjuncts without OR."""
    rows = pa.table({"s": pa.array(["a", None, "c", None], pa.string()),
                     "n": pa.array([1, 2, 3, 4], pa.int64())})
    table = iceberg_catalog(tmp_path, "p").create_table("p.parts", schema=rows.schema)
    with table.update_spec() as spec:
        spec.add_identity("s")
    table.append(rows)
    sql = "SELECT n FROM parts WHERE (s < 'b' OR n > 3) AND n > 0"
    with fedquery.connect({"sources": {"ice": iceberg_source(tmp_path)},
                           "tables": {"parts": {"source": "ice", "table": "p.parts"}}}) as con:
        assert sorted(con.sql(sql).fetchall()) == _duckdb(rows, sql.replace("parts", "trips"))
