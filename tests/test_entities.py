"""Entities: ``FROM drive`` and ``FROM timeline(...)`` on the sample drive data set, against
plain DuckDB over the same files computing the same thing by hand."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pytest

import fedquery
from tests.explain_text import fragment, line, rows, source_fragment


@pytest.fixture(scope="module")
def pair(sample):
    """(fedquery connection, reference DuckDB with the catalog's table names)."""
    root = sample.parent
    ref = duckdb.connect()
    ref.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS warehouse (READ_ONLY)")
    ref.execute("CREATE VIEW drives AS SELECT * FROM warehouse.drives")
    for table in ("frames", "imu", "lidar_sweeps"):
        files = root / "lake" / table / "**" / "*.parquet"
        ref.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{files}', hive_partitioning = true)")
    with fedquery.connect(sample) as con:
        yield con, ref
    ref.close()


def test_entity_is_one_row_per_root_row_with_its_members(pair) -> None:
    con, ref = pair
    table = con.sql("SELECT * FROM drive ORDER BY drive_id").arrow()
    root_columns = [r[0] for r in ref.execute("DESCRIBE drives").fetchall()]
    assert table.column_names == [*root_columns, "frames", "lidar", "imu"]
    assert table.num_rows == ref.execute("SELECT count(*) FROM drives").fetchall()[0][0]
    counts = dict(ref.execute("SELECT d.drive_id, count(f.frame_id) FROM drives d "
                              "LEFT JOIN frames f USING (drive_id) GROUP BY ALL").fetchall())
    for drive_id, frames in zip(table.column("drive_id").to_pylist(),
                                table.column("frames").to_pylist(), strict=True):
        assert len(frames) == counts[drive_id]
        assert [f["ts"] for f in frames] == sorted(f["ts"] for f in frames)


def test_member_rows_are_the_members_rows(pair) -> None:
    con, ref = pair
    (frames,) = con.sql("SELECT d.frames FROM drive d WHERE d.drive_id = 7").fetchall()[0]
    expected = ref.sql("SELECT * FROM frames WHERE drive_id = 7 ORDER BY ts").to_arrow_table()
    assert frames == expected.to_pylist()


def test_only_read_members_are_joined_and_root_filters_reach_the_root(pair) -> None:
    con, ref = pair
    sql = ("SELECT d.drive_id, len(d.frames) AS n FROM drive d "
           "WHERE d.city = 'Austin' AND d.weather = 'rain' ORDER BY d.drive_id")
    plan = con.explain(sql)
    assert "lidar_sweeps" not in plan and "imu" not in plan and "frames" in plan
    assert re.search(r"filter:  .*city.* = 'Austin'", plan), plan
    expected = ref.execute("SELECT d.drive_id, count(f.frame_id) FROM drives d LEFT JOIN frames f "
                           "USING (drive_id) WHERE d.city = 'Austin' AND d.weather = 'rain' "
                           "GROUP BY ALL ORDER BY 1").fetchall()
    assert con.sql(sql).fetchall() == expected


def test_a_root_row_without_members_has_an_empty_list(pair) -> None:
    con, ref = pair
    rows = con.sql("SELECT d.drive_id, d.lidar FROM drive d ORDER BY d.drive_id").fetchall()
    with_sweeps = {r[0] for r in ref.execute("SELECT DISTINCT drive_id FROM lidar_sweeps").fetchall()}
    assert all((lidar == []) == (drive_id not in with_sweeps) for drive_id, lidar in rows)


TIMELINE = ("SELECT t.frame_id, t.drive_id, t.city, t.ts, t.lidar_sweep_id, t.lidar_ts, t.imu_ax "
            "FROM timeline('drive', 'frames', members := ['lidar', 'imu'], "
            "tolerance := INTERVAL '100 milliseconds') t "
            "WHERE t.city = 'Austin' AND t.ts >= TIMESTAMP '2024-03-05' AND t.ts < TIMESTAMP '2024-03-07' "
            "ORDER BY t.frame_id")
REFERENCE = """
    SELECT f.frame_id, f.drive_id, d.city, f.ts,
           (SELECT l.sweep_id FROM lidar_sweeps l WHERE l.drive_id = f.drive_id AND l.ts <= f.ts
            AND f.ts - l.ts <= INTERVAL '100 milliseconds' ORDER BY l.ts DESC LIMIT 1),
           (SELECT l.ts FROM lidar_sweeps l WHERE l.drive_id = f.drive_id AND l.ts <= f.ts
            AND f.ts - l.ts <= INTERVAL '100 milliseconds' ORDER BY l.ts DESC LIMIT 1),
           (SELECT i.ax FROM imu i WHERE i.drive_id = f.drive_id AND i.ts <= f.ts
            AND f.ts - i.ts <= INTERVAL '100 milliseconds' ORDER BY i.ts DESC LIMIT 1)
    FROM frames f JOIN drives d USING (drive_id)
    WHERE d.city = 'Austin' AND f.ts >= TIMESTAMP '2024-03-05' AND f.ts < TIMESTAMP '2024-03-07'
    ORDER BY f.frame_id"""


def test_timeline_aligns_each_member_as_of_the_base_time(pair) -> None:
    con, ref = pair
    rows = con.sql(TIMELINE).fetchall()
    expected = ref.execute(REFERENCE).fetchall()
    assert rows == expected and rows
    assert any(r[4] is None for r in rows) and any(r[4] is not None for r in rows)


def test_timeline_filters_reach_every_member(pair) -> None:
    con, _ = pair
    plan = con.explain(TIMELINE)
    for table in ("lidar_sweeps", "imu", "frames"):
        assert "2024-03-07" in line(fragment(plan, table), "filter"), plan
    assert re.search(r"filter:  .*city.* = 'Austin'", plan)


def test_timeline_without_tolerance_takes_the_latest_earlier_row(pair) -> None:
    con, ref = pair
    rows = con.sql("SELECT frame_id, lidar_ts FROM timeline('drive', 'frames', members := ['lidar']) "
                   "WHERE drive_id = 3 ORDER BY frame_id").fetchall()
    expected = ref.execute("""
        SELECT f.frame_id, (SELECT max(l.ts) FROM lidar_sweeps l WHERE l.drive_id = f.drive_id
                            AND l.ts <= f.ts) FROM frames f WHERE f.drive_id = 3 ORDER BY 1""").fetchall()
    assert rows == expected and any(isinstance(r[1], dt.datetime) for r in rows)


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM timeline('drivez', 'frames')", "unknown entity 'drivez'"),
    ("SELECT * FROM timeline('drive', 'frame')", "entity 'drive' has no member 'frame'"),
    ("SELECT * FROM timeline('drive', 'frames', members := 'lidar')", "members must be a list"),
    ("SELECT * FROM timeline('drive', 'frames', window := 3)", "unknown option 'window'"),
    ("SELECT * FROM timeline('drive')", "timeline takes two names"),
])
def test_timeline_errors(pair, sql: str, message: str) -> None:
    con, _ = pair
    with pytest.raises(fedquery.PlanError, match=re.escape(message)):
        con.sql(sql)


def test_entity_name_must_not_be_a_table_name(tmp_path) -> None:
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path)}},
               "tables": {"drives": {"source": "lake", "path": "d/"}},
               "entities": {"Drives": {"table": "drives", "key": "drive_id"}}}
    with pytest.raises(fedquery.CatalogError, match="entities.Drives: an entity needs a name"):
        fedquery.connect(catalog)


def test_filters_stay_outside_when_the_entity_is_null_extended(pair) -> None:
    con, ref = pair
    ref.execute("CREATE OR REPLACE VIEW vehicles AS SELECT * FROM warehouse.vehicles")
    sql = ("SELECT v.vehicle_id, d.drive_id FROM drive d RIGHT JOIN vehicles v "
           "ON d.vehicle_id = v.vehicle_id AND d.city = 'Austin' WHERE d.city IS NULL ORDER BY 1")
    reference = sql.replace("FROM drive d", "FROM drives d")
    assert con.sql(sql).fetchall() == ref.execute(reference).fetchall()


def test_positional_parameters_and_text_time_bounds(pair) -> None:
    con, ref = pair
    rows = con.sql("SELECT drive_id, len(d.frames) FROM drive d WHERE d.city = ? AND d.weather = ? "
                   "ORDER BY 1", params=["Austin", "rain"]).fetchall()
    assert rows == ref.execute(
        "SELECT d.drive_id, count(*) FROM drives d JOIN frames f USING (drive_id) "
        "WHERE d.city = 'Austin' AND d.weather = 'rain' GROUP BY 1 ORDER BY 1").fetchall()
    text = con.sql("SELECT count(*) FROM timeline('drive', 'frames', tolerance := INTERVAL '1 second') t "
                   "WHERE t.ts >= '2024-03-05' AND t.ts < '2024-03-07'").fetchall()
    assert text == ref.execute("SELECT count(*) FROM frames WHERE ts >= '2024-03-05' "
                               "AND ts < '2024-03-07'").fetchall()


def test_the_whole_row_and_columns_patterns_read_every_member(pair) -> None:
    con, _ = pair
    (row,) = con.sql("SELECT to_json(d) FROM drive d WHERE d.drive_id = 2").fetchall()[0:1]
    assert all(f'"{m}":' in row[0] for m in ("frames", "lidar", "imu"))
    columns = con.sql("SELECT COLUMNS('frames|lidar') FROM drive LIMIT 1").arrow().column_names
    assert columns == ["frames", "lidar"]


@pytest.fixture()
def trips(tmp_path):
    """Root trips(trip_id, city, weather, ts); base rd(trip_id, rid, ts) whose time column has
    the root's name ts; member wx linked by city; member weather named like a root column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = tmp_path / "lake"
    for name in ("trips", "rd", "wx"):
        (lake / name).mkdir(parents=True)
    base = dt.datetime(2024, 1, 1)
    pq.write_table(pa.table({"trip_id": [1, 2], "city": ["a", "b"], "weather": ["rain", "sun"],
                             "ts": [base, base]}), lake / "trips" / "p.parquet")
    pq.write_table(pa.table({"trip_id": [1, 1, 1, 2], "rid": [10, 11, 12, 20],
                             "ts": [base + dt.timedelta(hours=h) for h in (1, 5, 9, 3)]}),
                   lake / "rd" / "p.parquet")
    pq.write_table(pa.table({"city": ["a", "a", "a", "b"], "obs_id": [1, 2, 3, 4],
                             "observed_at": [base + dt.timedelta(hours=h) for h in (0, 4, 8, 2)]}),
                   lake / "wx" / "p.parquet")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(lake)}},
               "tables": {t: {"source": "lake", "path": f"{t}/"} for t in ("trips", "rd", "wx")},
               "entities": {"trip": {"table": "trips", "key": "trip_id", "members": {
                   "rd": {"table": "rd", "time": "ts"},
                   "wx": {"table": "wx", "key": "city", "root_key": "city", "time": "observed_at"},
                   "weather": {"table": "wx", "key": "city", "root_key": "city"}}}}}
    with fedquery.connect(catalog) as con:
        yield con


def test_base_column_named_like_a_root_column_is_prefixed(trips) -> None:
    rows = trips.sql("SELECT x.rid, x.ts, x.rd_ts, x.wx_obs_id "
                     "FROM timeline('trip', 'rd', members := ['wx']) x "
                     "WHERE x.rd_ts <= TIMESTAMP '2024-01-01 06:00' ORDER BY x.rid").fetchall()
    start = dt.datetime(2024, 1, 1)
    assert rows == [(10, start, start + dt.timedelta(hours=1), 1),
                    (11, start, start + dt.timedelta(hours=5), 2),
                    (20, start, start + dt.timedelta(hours=3), 4)]


def test_member_named_like_a_root_column_is_refused_when_read(trips) -> None:
    assert trips.sql("SELECT t.trip_id, len(t.wx) FROM trip t ORDER BY 1").fetchall() == [(1, 3), (2, 1)]
    with pytest.raises(fedquery.PlanError, match="member 'weather' has the name of a column"):
        trips.sql("SELECT * FROM trip")


def test_timeline_base_must_link_by_the_root_key(trips) -> None:
    with pytest.raises(fedquery.PlanError, match="links to 'trips' by 'city', not by its key"):
        trips.sql("SELECT * FROM timeline('trip', 'wx')")


@pytest.fixture(scope="module")
def remote_client(postgres_database, unseen, unseen_root, s3_endpoint, s3_credentials):
    """The shop's clients in PostgreSQL, its orders on S3, and an entity tying them."""
    from tests.services.postgres import shop_on_postgres_and_s3

    remote = shop_on_postgres_and_s3(postgres_database, unseen, unseen_root, s3_endpoint,
                                     s3_credentials, "entities")
    remote["entities"] = {"client": {"table": "clients", "key": "customer_id", "members": {
        "orders": {"table": "orders", "time": "ordered_at"}}}}
    ref = unseen[1]
    with fedquery.connect(remote) as con:
        yield con, ref


def test_members_on_s3_are_read_for_the_filtered_roots_only(remote_client) -> None:
    con, ref = remote_client
    sql = "SELECT c.customer_id, len(c.orders) AS n FROM client c WHERE c.country = 'JP' ORDER BY 1"
    expected = ref.execute("SELECT c.customer_id, count(o.order_id) FROM clients c LEFT JOIN orders o "
                           "USING (customer_id) WHERE c.country = 'JP' GROUP BY 1 ORDER BY 1").fetchall()
    assert con.sql(sql).fetchall() == expected
    analyzed = con.explain(sql, analyze=True)
    lake = source_fragment(analyzed, "lake")
    moved = rows(lake)
    assert moved == sum(n for _, n in expected), lake
    total = ref.execute("SELECT count(*) FROM orders").fetchall()[0][0]
    assert moved * 5 < total and "keys sent: customer_id IN" in lake


def test_schema_and_describe_of_an_entity(pair) -> None:
    con, _ = pair
    schema = con.schema("drive")
    assert schema.names[-3:] == ["frames", "lidar", "imu"]
    assert pa_list_of_struct(schema.field("frames").type)
    described = dict(con.sql("DESCRIBE drive").fetchall())
    assert described["drive_id"] == "INTEGER" and described["lidar"].startswith("STRUCT(")


def pa_list_of_struct(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_list(arrow_type) and pa.types.is_struct(arrow_type.value_type)
