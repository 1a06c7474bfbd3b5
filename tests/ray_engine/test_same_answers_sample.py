"""The sample drive data set on the local and the Ray engine: the same answers, exactly.

The demo's showcase queries (and its nearest-frames query with the vector it computes), the
``drive`` entity and ``timeline``, vector top-k under filters (ties included), the blob
functions (images, point clouds, the sample's embedder), aggregates, windows, an empty answer
and parameters. Float aggregates are rounded in the SQL: DuckDB sums floats in whatever order
its threads meet the rows, so their last bits differ between two runs of one engine.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any, NamedTuple

import pyarrow as pa
import pytest

import fedquery
from fedquery.demo import NEAREST, SHOWCASE
from tests.ray_engine.same_answers import assert_same, differences


class Case(NamedTuple):
    id: str
    sql: str
    ordered: bool | tuple[str, ...]  # its rows in order totally / not / by these columns
    params: Any = None
    rows: bool = True  # the answer has rows


@pytest.fixture(scope="module")
def engines(sample, ray_cluster):
    """(local connection, Ray connection) to the sample data set."""
    with fedquery.connect(sample) as local, \
            fedquery.connect(sample, engine="ray", ray_address=ray_cluster) as ray:
        yield local, ray


@pytest.fixture(scope="module")
def query_vector(engines) -> list[float]:
    """A rainy frame's image embedded in Python, as ``fedquery demo`` does for ``NEAREST``."""
    local, _ = engines
    probe = ("SELECT embed_image(f.image_uri) FROM frames f JOIN drives d ON d.drive_id = f.drive_id "
             "WHERE d.weather = 'rain' ORDER BY f.frame_id LIMIT 1")
    return local.sql(probe).fetchall()[0][0]


# How each showcase query orders its answer: totally, but for the second (Boston's snowy and
# rainy drives have as many frames: ordered by frames and city only; no tie crosses its LIMIT).
SHOWCASE_ORDERED = [True, ("frames", "city"), True, True, True]


@pytest.mark.parametrize("number", range(len(SHOWCASE)))
def test_showcase(engines, number: int) -> None:
    title, sql = SHOWCASE[number]
    assert_same(*engines, sql, {"city": "Austin"}, ordered=SHOWCASE_ORDERED[number])


def test_nearest_frames_of_the_demo(engines, query_vector) -> None:
    assert_same(*engines, NEAREST, {"q": query_vector, "city": "Austin"}, ordered=True)


# ---------------------------------------------------------------------- entities and timelines

TIMELINE = """
    SELECT t.frame_id, t.drive_id, t.city, t.ts, t.lidar_sweep_id, t.lidar_ts, t.imu_ax
    FROM timeline('drive', 'frames', members := ['lidar', 'imu'],
                  tolerance := INTERVAL '100 milliseconds') t
    WHERE t.city = 'Austin' AND t.ts >= TIMESTAMP '2024-03-05' AND t.ts < TIMESTAMP '2024-03-07'
    ORDER BY t.frame_id"""

ENTITY_CASES = [
    Case("entity_members_of_a_city", """
        SELECT d.drive_id, d.weather, d.frames, d.lidar FROM drive d
        WHERE d.city = 'Boston' ORDER BY d.drive_id""", True),
    Case("entity_member_counts", """
        SELECT d.drive_id, len(d.frames) AS n, len(d.imu) AS imu_rows FROM drive d
        WHERE d.city = 'Austin' AND d.weather = 'rain' ORDER BY d.drive_id""", True),
    Case("entity_null_extended", """
        SELECT v.vehicle_id, d.drive_id FROM drive d RIGHT JOIN vehicles v
        ON d.vehicle_id = v.vehicle_id AND d.city = 'Phoenix' WHERE d.city IS NULL""", False),
    Case("timeline_two_members_with_tolerance", TIMELINE, True),
    Case("timeline_latest_earlier_row", """
        SELECT frame_id, lidar_ts, lidar_sweep_id FROM timeline('drive', 'frames', members := ['lidar'])
        WHERE drive_id = 3 ORDER BY frame_id""", True),
    Case("timeline_aggregated_with_text_bounds", """
        SELECT t.city, count(*) AS frames, count(t.imu_ts) AS with_imu,
               round(avg(t.imu_ax), 9) AS ax
        FROM timeline('drive', 'frames', members := ['imu'], tolerance := INTERVAL '1 second') t
        WHERE t.ts >= '2024-03-05' AND t.ts < '2024-03-08' GROUP BY t.city""", False),
    Case("entity_positional_parameters", """
        SELECT drive_id, len(d.frames) AS n FROM drive d WHERE d.city = ? AND d.weather = ?
        ORDER BY 1""", True, ["Austin", "rain"]),
]


@pytest.mark.parametrize("case", ENTITY_CASES, ids=lambda c: c.id)
def test_entities_and_timelines(engines, case: Case) -> None:
    assert_same(*engines, case.sql, case.params, ordered=case.ordered, rows=case.rows)


# ---------------------------------------------------------------------- vector top-k

VECTOR_CASES = [
    Case("topk_under_metadata_filters", """
        SELECT f.frame_id, d.city, array_cosine_distance(e.embedding, $q) AS distance
        FROM frame_embeddings e JOIN frames f USING (frame_id) JOIN drives d ON d.drive_id = f.drive_id
        WHERE d.weather IN ('rain', 'snow') AND f.camera = 'left'
        ORDER BY array_cosine_distance(e.embedding, $q), f.frame_id LIMIT 7""", True),
    Case("topk_with_the_vector_tables_own_filter", """
        SELECT e.frame_id, array_distance(e.embedding, $q) AS distance FROM frame_embeddings e
        WHERE e.drive_id BETWEEN 10 AND 30 ORDER BY distance LIMIT 5""", True),
    # Each frame matches four sweeps: the k-th row is tied with others (equal rows, so the
    # answer is one whichever tied rows an engine keeps).
    Case("topk_ties_one_to_many", """
        SELECT e.frame_id, array_cosine_distance(e.embedding, $q) AS distance
        FROM frame_embeddings e JOIN lidar_sweeps l ON l.drive_id = e.drive_id
        WHERE l.day >= DATE '2024-03-06' ORDER BY distance LIMIT 6""", True),
    Case("topk_ties_broken_by_key", """
        SELECT e.frame_id, l.sweep_id, array_negative_inner_product(e.embedding, $q) AS score
        FROM frame_embeddings e JOIN lidar_sweeps l ON l.drive_id = e.drive_id
        ORDER BY score, l.sweep_id LIMIT 9""", True),
    Case("vector_search_function", """
        SELECT v.frame_id, v.drive_id, v._distance FROM vector_search('frame_embeddings', $q, 6) v
        ORDER BY v._distance, v.frame_id""", True),
    Case("topk_none_qualify", """
        SELECT f.frame_id, array_cosine_distance(e.embedding, $q) AS distance
        FROM frame_embeddings e JOIN frames f USING (frame_id)
        WHERE f.camera = 'rear' ORDER BY distance LIMIT 5""", True, rows=False),
]


@pytest.mark.parametrize("case", VECTOR_CASES, ids=lambda c: c.id)
def test_vector_top_k(engines, query_vector, case: Case) -> None:
    assert_same(*engines, case.sql, {"q": query_vector}, ordered=case.ordered, rows=case.rows)


# ---------------------------------------------------------------------- blob functions

BLOB_CASES = [
    Case("image_info_over_one_fragment", """
        SELECT f.frame_id, image_info(f.image_uri) AS info FROM frames f WHERE f.camera = 'front'""",
         False),
    Case("image_info_fields_joined", """
        SELECT d.city, count(*) AS frames, sum(image_info(f.image_uri).bytes) AS bytes,
               max(image_info(f.image_uri).width) AS width
        FROM frames f JOIN drives d USING (drive_id) GROUP BY d.city""", False),
    Case("thumbnail_bytes", """
        SELECT frame_id, thumbnail(image_uri, 24) AS png FROM frames WHERE drive_id <= 6""", False),
    Case("image_stats", """
        SELECT frame_id, image_stats(image_uri) AS stats FROM frames WHERE drive_id IN (2, 7, 11)""",
         False),
    Case("pointcloud_info_bin_and_las", """
        SELECT sweep_id, uri, pointcloud_info(uri) AS info FROM lidar_sweeps""", False),
    Case("read_pointcloud_points", """
        SELECT sweep_id, read_pointcloud(uri) AS points FROM lidar_sweeps
        WHERE drive_id IN (15, 50)""", False),
    Case("read_pointcloud_unnested", """
        SELECT l.drive_id, count(*) AS points, max(p.x) AS max_x, min(p.z) AS min_z
        FROM lidar_sweeps l, unnest(read_pointcloud(l.uri)) AS u(p)
        WHERE l.drive_id BETWEEN 40 AND 50 GROUP BY l.drive_id""", False),
    Case("embed_image_vectors", """
        SELECT frame_id, embed_image(image_uri) AS v FROM frames
        WHERE camera = 'front' AND drive_id <= 12""", False),
    Case("embed_image_in_a_distance", """
        SELECT f.frame_id,
               array_cosine_distance(embed_image(f.image_uri), e.embedding) AS self_distance
        FROM frames f JOIN frame_embeddings e USING (frame_id) WHERE f.drive_id IN (4, 5)""", False),
]


@pytest.mark.parametrize("case", BLOB_CASES, ids=lambda c: c.id)
def test_blob_functions(engines, case: Case) -> None:
    assert_same(*engines, case.sql, case.params, ordered=case.ordered, rows=case.rows)


# ---------------------------------------------------------------------- SQL at large

SQL_CASES = [
    Case("aggregates_per_camera", """
        SELECT camera, count(*) AS n, count(DISTINCT drive_id) AS drives, min(ts) AS first,
               max(ts) AS last, min(day) AS first_day, string_agg(DISTINCT CAST(day AS VARCHAR), ','
               ORDER BY CAST(day AS VARCHAR)) AS days
        FROM frames GROUP BY camera""", False),
    Case("aggregates_over_imu", """
        SELECT drive_id, count(*) AS n, round(avg(ax), 9) AS ax, round(stddev_samp(ay), 9) AS ay,
               max(az) AS az, min(gx) AS gx, arg_max(ts, gz) AS at_max_gz
        FROM imu WHERE drive_id % 5 = 0 GROUP BY drive_id""", False),
    Case("grouping_sets", """
        SELECT d.city, d.weather, count(*) AS drives, round(sum(d.distance_km), 6) AS km
        FROM drives d GROUP BY GROUPING SETS ((d.city, d.weather), (d.city), ())""", False),
    Case("having_and_join", """
        SELECT v.model, count(DISTINCT d.drive_id) AS drives, count(*) AS frames
        FROM vehicles v JOIN drives d USING (vehicle_id) JOIN frames f ON f.drive_id = d.drive_id
        GROUP BY v.model HAVING count(*) > 20""", False),
    Case("window_running_and_lag", """
        SELECT drive_id, ts, ax,
               avg(ax) OVER (PARTITION BY drive_id ORDER BY ts
                             ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS run,
               lag(ts) OVER (PARTITION BY drive_id ORDER BY ts) AS prev_ts,
               row_number() OVER (PARTITION BY drive_id ORDER BY ts) AS n
        FROM imu WHERE drive_id IN (3, 17) AND ts < (SELECT min(ts) FROM imu WHERE drive_id = 17)
                                                      + INTERVAL '20 seconds'""", False),
    Case("window_rank_across_sources", """
        SELECT d.city, f.frame_id, f.ts,
               dense_rank() OVER (PARTITION BY d.city ORDER BY f.ts) AS r,
               ntile(3) OVER (PARTITION BY d.city ORDER BY f.frame_id) AS third,
               count(*) OVER (PARTITION BY d.city) AS in_city
        FROM frames f JOIN drives d USING (drive_id) WHERE f.camera = 'right'
        QUALIFY r <= 3""", False),
    Case("semi_and_anti_joins", """
        SELECT d.drive_id, d.city FROM drives d
        WHERE EXISTS (SELECT 1 FROM lidar_sweeps l WHERE l.drive_id = d.drive_id)
          AND d.drive_id NOT IN (SELECT drive_id FROM frames WHERE ts < TIMESTAMP '2024-03-06')""", False),
    Case("union_and_distinct", """
        SELECT DISTINCT city FROM drives UNION ALL SELECT DISTINCT camera FROM frames""", False),
    Case("zero_rows_filter", """
        SELECT f.frame_id, f.ts, f.image_uri, d.city FROM frames f JOIN drives d USING (drive_id)
        WHERE f.camera = 'front' AND d.city = 'Nowhere'""", False, rows=False),
    Case("zero_rows_aggregate_groups", """
        SELECT camera, count(*) AS n, max(ts) AS last FROM frames WHERE day > DATE '2030-01-01'
        GROUP BY camera""", False, rows=False),
    Case("named_parameters", """
        SELECT f.frame_id, f.ts, d.city FROM frames f JOIN drives d USING (drive_id)
        WHERE d.city = $city AND f.ts >= $since AND f.camera = $camera ORDER BY f.frame_id""", True,
         {"city": "Pittsburgh", "since": dt.datetime(2024, 3, 7), "camera": "front"}),
    Case("parameters_of_many_types", """
        SELECT f.frame_id, $blob AS blob, $none AS none, $amount AS amount FROM frames f
        JOIN drives d USING (drive_id)
        WHERE f.day = $day AND d.distance_km > $km AND f.drive_id IN (SELECT unnest($ids))
          AND (d.weather = 'rain' OR $all)""", False,
         {"blob": b"\x00\xff", "none": None, "amount": decimal.Decimal("12.50"),
          "day": dt.date(2024, 3, 5), "km": 1.5, "ids": list(range(1, 30)), "all": True}),
    Case("positional_parameters", """
        SELECT drive_id, count(*) AS n FROM imu WHERE drive_id BETWEEN ? AND ? AND ax > ?
        GROUP BY drive_id""", False, [5, 9, 0.5]),
    Case("files_listing_joined_to_the_lake", """
        SELECT c.uri, c.size, c.modified, c.extension, f.frame_id FROM camera_files c
        JOIN frames f ON f.image_uri = c.uri WHERE f.drive_id BETWEEN 20 AND 24""", False),
    Case("registered_name_of_the_source", """
        SELECT r.city, r.name, r.length_km FROM warehouse.routes r ORDER BY r.route_id""", True),
]


@pytest.mark.parametrize("case", SQL_CASES, ids=lambda c: c.id)
def test_sql(engines, case: Case) -> None:
    assert_same(*engines, case.sql, case.params, ordered=case.ordered, rows=case.rows)


def test_streamed_batches_and_declared_types(engines) -> None:
    """``Result.batches()`` streams the Ray engine's answer in Arrow batches: the same rows and
    schema as the local engine's stream; both declare the same DuckDB types."""
    local, ray = engines
    sql = ("SELECT i.drive_id, i.ts, i.ax, d.city, c.camera FROM imu i JOIN drives d USING (drive_id), "
           "(SELECT DISTINCT camera FROM frames) c")
    expected, actual = local.sql(sql), ray.sql(sql)
    assert actual.types == expected.types and actual.columns == expected.columns
    streams = [result.batches() for result in (expected, actual)]
    assert streams[1].schema == streams[0].schema
    batches = [list(stream) for stream in streams]
    assert len(batches[1]) > 1  # more rows than a batch holds
    tables = [pa.Table.from_batches(b, schema=s.schema) for b, s in zip(batches, streams, strict=True)]
    assert not differences(tables[0], tables[1], ordered=False)
    assert tables[0].num_rows > 100_000


def test_registered_table_joined_to_the_catalog(engines) -> None:
    """A table registered on the connection (the driver's own data) joined to catalog tables
    and a blob function."""
    picked = pa.table({"frame_id": pa.array([3, 7, 150, 151, 399, 1000], pa.int64()),
                       "label": ["a", "b", None, "d", "e", "f"],
                       "tag": pa.array([uuid.UUID(int=i).bytes for i in range(6)], pa.uuid())})
    for con in engines:
        con.register("picked", picked)
    assert_same(*engines, """
        SELECT p.label, p.tag, f.frame_id, f.camera, d.city, image_info(f.image_uri).width AS width
        FROM picked p JOIN frames f USING (frame_id) JOIN drives d USING (drive_id)""", ordered=False)

