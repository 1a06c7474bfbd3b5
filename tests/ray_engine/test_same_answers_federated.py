"""A federated world on the local and the Ray engine: PostgreSQL, an S3 lake, LanceDB and blobs
on S3 and on disk; the same answers exactly.

The sample drive data set spread over the project's real services: ``drives``, ``vehicles`` and
``routes`` in PostgreSQL (pgserver), the Parquet lake (``frames``, ``imu``, ``lidar_sweeps``,
hive-partitioned) and the camera images on the S3 server (``moto_server``), the frame
embeddings in a local LanceDB table, the LIDAR sweeps as local files; the ``drive`` entity's
root in PostgreSQL and its members on S3. The Ray engine's workers reach every source
themselves (all on 127.0.0.1 or a local socket): the catalog travels, its ``${VAR}`` values
already read on the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pytest

import fedquery
from fedquery.demo import SHOWCASE
from tests.ray_engine.same_answers import assert_same
from tests.services.s3 import upload_tree

BUCKET = "raydiff"
# A PostgreSQL table of the types a warehouse holds, with their edge values and NULLs.
PG_TYPES = (
    """CREATE TABLE pg_types (id integer PRIMARY KEY, n numeric(12,3), big numeric, u uuid,
         j jsonb, iv interval, ints integer[], texts text[], tz timestamptz, ts timestamp, d date,
         t time, b bytea, f real, dd double precision, flag boolean, s smallint, bi bigint,
         c char(3), vc varchar(10))""",
    """INSERT INTO pg_types VALUES
         (1, 123.456, 12345678901234567890.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
          '{"a": [1, 2]}', '1 day 2 hours 3.5 seconds', '{1,2,3}', '{"x","y"}',
          '2024-03-05 10:00:00+02', '2024-03-05 10:00:00', '2024-03-05', '12:34:56.789',
          '\\xdeadbeef', 1.5, 2.25, true, 7, 9000000000, 'ab', 'hello'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NaN',
          NULL, NULL, NULL, NULL, NULL),
         (3, -0.001, 0, '00000000-0000-0000-0000-000000000000', '[]', '-3 months', '{}', '{NULL}',
          '1970-01-01 00:00:00+00', '0001-01-01 00:00:00', '9999-12-31', '00:00:00', '',
          '-Infinity', 1e300, false, -32768, -9223372036854775808, '', '')""",
)


class Case(NamedTuple):
    id: str
    sql: str
    ordered: bool  # the query orders its rows totally: compare them in order
    params: Any = None


@pytest.fixture(scope="module")
def world(sample: Path, postgres_database, s3_endpoint: str, s3_credentials) -> dict:
    """The catalog of the sample set over PostgreSQL, S3, LanceDB and local files."""
    root = sample.parent
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as warehouse:
        for table in ("drives", "vehicles", "routes"):
            postgres_database.load(table, warehouse.sql(f"SELECT * FROM {table}").to_arrow_table())
    postgres_database.execute(*PG_TYPES)
    upload_tree(root / "lake", BUCKET, "lake", endpoint=s3_endpoint)
    upload_tree(root / "blobs" / "camera", BUCKET, "camera", endpoint=s3_endpoint)
    s3 = {"endpoint_url": s3_endpoint, "key": "${AWS_ACCESS_KEY_ID}",
          "secret": "${AWS_SECRET_ACCESS_KEY}"}
    entity = {"table": "drives", "key": "drive_id", "members": {
        "frames": {"table": "frames", "key": "drive_id", "time": "ts"},
        "lidar": {"table": "lidar_sweeps", "key": "drive_id", "time": "ts"},
        "imu": {"table": "imu", "key": "drive_id", "time": "ts"}}}
    return {
        "sources": {"pg": {"kind": "postgres", "dsn": postgres_database.dsn},
                    "lake": {"kind": "parquet", "root": f"s3://{BUCKET}/lake/", "options": s3},
                    "vectors": {"kind": "lancedb", "uri": str(root / "vectors")},
                    "camera": {"kind": "files", "root": f"s3://{BUCKET}/camera/", "options": s3},
                    "lidar": {"kind": "files", "root": str(root / "blobs" / "lidar")}},
        "tables": {"drives": {"source": "pg", "table": "public.drives"},
                   "vehicles": {"source": "pg", "table": "public.vehicles"},
                   "routes": {"source": "pg", "table": "public.routes"},
                   "pg_types": {"source": "pg", "table": "public.pg_types"},
                   **{t: {"source": "lake", "path": f"{t}/", "partitioning": "hive"}
                      for t in ("frames", "imu", "lidar_sweeps")},
                   "frame_embeddings": {"source": "vectors", "table": "frame_embeddings"}},
        "blobs": {"frames.image_uri": "camera", "lidar_sweeps.uri": "lidar"},
        "entities": {"drive": entity},
    }


@pytest.fixture(scope="module")
def engines(world, ray_cluster):
    """(local connection, Ray connection) to the federated world."""
    with fedquery.connect(world) as local, \
            fedquery.connect(world, engine="ray", ray_address=ray_cluster) as ray:
        yield local, ray


@pytest.fixture(scope="module")
def query_vector(engines) -> list[float]:
    """A rainy frame's image on S3, embedded."""
    local, _ = engines
    return local.sql("SELECT embed_image(f.image_uri) FROM frames f JOIN drives d USING (drive_id) "
                     "WHERE d.weather = 'rain' ORDER BY f.frame_id LIMIT 1").fetchall()[0][0]


CASES = [
    Case("all_sources_topk_with_s3_image_headers", """
        SELECT f.frame_id, d.city, v.model, image_info(f.image_uri).width AS width,
               image_info(f.image_uri).bytes AS bytes,
               array_cosine_distance(e.embedding, $q) AS distance
        FROM frames f JOIN drives d USING (drive_id) JOIN vehicles v ON v.vehicle_id = d.vehicle_id
        JOIN frame_embeddings e ON e.frame_id = f.frame_id
        WHERE d.weather IN ('rain', 'snow') AND f.camera = 'front'
        ORDER BY distance, f.frame_id LIMIT 10""", True),
    Case("all_sources_aggregated_with_local_point_clouds", """
        SELECT d.city, v.model, count(DISTINCT f.frame_id) AS frames,
               count(DISTINCT e.frame_id) AS embedded,
               sum(pointcloud_info(l.uri).points) AS points, max(image_info(f.image_uri).height) AS h
        FROM drives d JOIN vehicles v USING (vehicle_id) JOIN frames f ON f.drive_id = d.drive_id
        JOIN frame_embeddings e ON e.frame_id = f.frame_id
        JOIN lidar_sweeps l ON l.drive_id = d.drive_id AND l.day = f.day
        WHERE d.city IN ('Phoenix', 'Seattle')
        GROUP BY ALL""", False),
    Case("s3_blobs_over_one_s3_fragment", """
        SELECT frame_id, image_info(image_uri) AS info, thumbnail(image_uri, 16) AS png
        FROM frames WHERE day = DATE '2024-03-05'""", False),
    Case("image_stats_over_s3", """
        SELECT f.frame_id, (image_stats(f.image_uri)).brightness AS brightness,
               (image_stats(f.image_uri)).content_hash AS hash
        FROM frames f JOIN drives d USING (drive_id) WHERE d.city = 'Phoenix'""", False),
    Case("local_point_clouds_joined_to_postgres", """
        SELECT d.city, l.sweep_id, read_pointcloud(l.uri) AS points
        FROM lidar_sweeps l JOIN drives d USING (drive_id) WHERE d.drive_id IN (15, 50)""", False),
    Case("timeline_root_in_postgres_members_on_s3", """
        SELECT t.frame_id, t.drive_id, t.city, t.ts, t.lidar_sweep_id, t.lidar_ts, t.imu_ax
        FROM timeline('drive', 'frames', members := ['lidar', 'imu'],
                      tolerance := INTERVAL '100 milliseconds') t
        WHERE t.city = 'Austin' AND t.ts >= TIMESTAMP '2024-03-05' AND t.ts < TIMESTAMP '2024-03-07'
        ORDER BY t.frame_id""", True),
    Case("entity_members_on_s3", """
        SELECT d.drive_id, d.weather, d.lidar, len(d.imu) AS imu_rows FROM drive d
        WHERE d.city = $city ORDER BY d.drive_id""", True, {"city": "Seattle"}),
    Case("postgres_and_s3_with_parameters_and_a_window", """
        SELECT d.city, f.frame_id, f.ts, rank() OVER (PARTITION BY d.city ORDER BY f.ts, f.frame_id) AS rk
        FROM frames f JOIN drives d USING (drive_id) JOIN routes r ON r.city = d.city
        WHERE r.length_km > ? AND f.camera = ? QUALIFY rk <= 2""", False, [5.0, "left"]),
    Case("postgres_types", "SELECT * FROM pg_types", False),
    Case("postgres_types_joined_to_s3", """
        SELECT p.*, f.frame_id, f.ts AS frame_ts FROM pg_types p JOIN frames f ON f.frame_id = p.id""",
         False),
]


def test_every_source_answers_its_share(engines, query_vector) -> None:
    """The plan reads PostgreSQL, the S3 lake and LanceDB (the world is what it claims)."""
    local, _ = engines
    plan = local.explain(CASES[0].sql, params={"q": query_vector})
    for kind in ("postgres", "parquet", "lancedb"):
        assert f"({kind}," in plan, plan


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_federated(engines, query_vector, case: Case) -> None:
    params = case.params if case.params is not None or "$q" not in case.sql else {"q": query_vector}
    assert_same(*engines, case.sql, params, ordered=case.ordered)


def test_the_demos_embedded_probe_over_every_source(engines) -> None:
    """The demo's third query: an S3 image embedded in the query, a LanceDB top-k, the S3 lake
    and PostgreSQL."""
    assert_same(*engines, SHOWCASE[2][1], ordered=True)
