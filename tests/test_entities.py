"""Entities: ``FROM drive`` and ``FROM timeline(...)`` on the sample drive data set, against
plain DuckDB over the same files computing the same thing by hand."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pytest

import fedquery


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
    blocks = {b.split("\n", 1)[0]: b for b in re.split(r"\n(?=\[__f)", plan)}
    for table in ("lidar_sweeps", "imu", "frames"):
        block = next(b for b in blocks.values() if f"table:   {table}" in b)
        assert "2024-03-07" in block.split("filter:", 1)[1].splitlines()[0], block
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
