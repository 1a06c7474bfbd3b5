"""One query over four kinds of source: a SQLite warehouse through ADBC, PostgreSQL, an Iceberg
table (partitioned, with a delete and two snapshots) and a LanceDB vector table, answering as
plain DuckDB does over the same rows held in Arrow.

The drive data set in small: drives (SQLite) in cities, routes (PostgreSQL) with a weather label,
frames (Iceberg, partitioned by day; one frame deleted after the first snapshot) and frame
embeddings (Lance). The queries join all four, filter each, aggregate, and take a vector top-k
among the rows every other source keeps.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fedquery
from tests.lakes import iceberg_catalog, iceberg_source

DIM = 8
N_FRAMES = 240
CITIES = ["austin", "boston", "denver"]


def _tables() -> dict[str, pa.Table]:
    rng = np.random.default_rng(13)
    drives = pa.table({"drive_id": pa.array(range(1, 13), pa.int64()),
                       "city": [CITIES[i % 3] for i in range(12)],
                       "vehicle": [f"v{i % 4}" for i in range(12)]})
    routes = pa.table({"drive_id": pa.array(range(1, 13), pa.int64()),
                       "weather": ["rain" if i % 3 == 0 else "clear" for i in range(12)],
                       "km": pa.array([float(10 + 3 * i) for i in range(12)], pa.float64())})
    frames = pa.table({
        "frame_id": pa.array(range(N_FRAMES), pa.int64()),
        "drive_id": pa.array([1 + i % 12 for i in range(N_FRAMES)], pa.int64()),
        "day": pa.array([dt.date(2024, 5, 1) + dt.timedelta(days=i % 3) for i in range(N_FRAMES)],
                        pa.date32()),
        "speed": pa.array(rng.uniform(0, 30, N_FRAMES).round(2), pa.float64()),
    })
    vectors = rng.standard_normal((N_FRAMES, DIM)).astype(np.float32)
    embeddings = pa.table({
        "frame_id": pa.array(range(N_FRAMES), pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
    })
    return {"drives": drives, "routes": routes, "frames": frames, "embeddings": embeddings}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, postgres_database) -> dict:
    """The four sources written with each one's own client, and the rows they hold now."""
    import lancedb

    root = tmp_path_factory.mktemp("four-sources")
    tables = _tables()
    with sqlite3.connect(root / "warehouse.db") as sqlite:
        sqlite.execute("CREATE TABLE drives (drive_id INTEGER, city TEXT, vehicle TEXT)")
        sqlite.executemany("INSERT INTO drives VALUES (?, ?, ?)",
                           [tuple(r.values()) for r in tables["drives"].to_pylist()])
    postgres_database.load("routes", tables["routes"])
    (root / "iceberg").mkdir()
    catalog = iceberg_catalog(root / "iceberg")
    frames = catalog.create_table("ns.frames", schema=tables["frames"].schema)
    with frames.update_spec() as spec:
        spec.add_identity("day")
    frames.append(tables["frames"])
    first = frames.current_snapshot().snapshot_id
    frames.delete("frame_id = 7")  # a second snapshot without frame 7
    lancedb.connect(str(root / "vectors")).create_table("embeddings", tables["embeddings"])
    now = dict(tables)
    now["frames"] = tables["frames"].filter(pc.not_equal(tables["frames"]["frame_id"], 7))
    sources = {"wh": {"kind": "adbc", "driver": "sqlite", "uri": str(root / "warehouse.db")},
               "pg": {"kind": "postgres", "dsn": postgres_database.dsn},
               "ice": iceberg_source(root / "iceberg"),
               "vec": {"kind": "lancedb", "uri": str(root / "vectors")}}
    declared = {"drives": {"source": "wh", "table": "drives"},
                "routes": {"source": "pg", "table": "public.routes"},
                "frames": {"source": "ice", "table": "ns.frames"},
                "frames_first": {"source": "ice", "table": "ns.frames", "snapshot_id": first},
                "embeddings": {"source": "vec", "table": "embeddings"}}
    return {"catalog": {"sources": sources, "tables": declared}, "rows": now,
            "first_frames": tables["frames"]}


def _plain(rows: dict[str, pa.Table], sql: str, params: dict | None = None) -> list[tuple]:
    with duckdb.connect() as con:
        for name, table in rows.items():
            con.register(name, table)
        return con.sql(sql, params=params).fetchall()


QUERIES = {
    "join_all_four": """
        SELECT d.city, r.weather, count(*) AS frames, round(avg(f.speed), 6) AS speed,
               count(e.frame_id) AS embedded
        FROM drives d JOIN routes r USING (drive_id) JOIN frames f USING (drive_id)
        JOIN embeddings e ON e.frame_id = f.frame_id
        WHERE d.city IN ('austin', 'denver') AND r.km > 12 AND f.day >= DATE '2024-05-02'
        GROUP BY ALL ORDER BY ALL""",
    "top_k_among_rainy_austin": """
        SELECT f.frame_id, d.vehicle, round(array_cosine_distance(e.embedding, $q::FLOAT[8]), 6) AS dist
        FROM embeddings e JOIN frames f ON f.frame_id = e.frame_id
        JOIN drives d ON d.drive_id = f.drive_id JOIN routes r ON r.drive_id = d.drive_id
        WHERE r.weather = 'rain' AND d.city = 'austin'
        ORDER BY array_cosine_distance(e.embedding, $q::FLOAT[8]), f.frame_id LIMIT 5""",
    "semi_join_and_anti_join": """
        SELECT d.drive_id, d.city FROM drives d
        WHERE EXISTS (SELECT 1 FROM frames f WHERE f.drive_id = d.drive_id AND f.speed > 29)
          AND d.drive_id NOT IN (SELECT drive_id FROM routes WHERE weather = 'clear' AND km > 40)
        ORDER BY 1""",
}


@pytest.mark.parametrize("name", QUERIES)
def test_four_sources_answer_like_duckdb(world: dict, name: str) -> None:
    sql = QUERIES[name]
    params = {"q": [float(x) for x in np.linspace(-1, 1, DIM)]} if "$q" in sql else None
    with fedquery.connect(world["catalog"]) as con:
        got = con.sql(sql, params=params).fetchall()
        plan = con.explain(sql, params=params) if params else con.explain(sql)
    want = _plain(world["rows"], sql, params)
    assert got == want and len(want) > 0
    kinds = {"drives": "adbc", "routes": "postgres", "frames": "iceberg", "embeddings": "lancedb"}
    for table, kind in kinds.items():
        if f" {table} " in sql:
            assert f"({kind}," in plan, kind  # each source answers its share


def test_an_older_iceberg_snapshot_joins_the_same_way(world: dict) -> None:
    sql = ("SELECT d.city, count(*) FROM drives d JOIN frames_first f USING (drive_id) "
           "WHERE f.frame_id < 20 GROUP BY 1 ORDER BY 1")
    with fedquery.connect(world["catalog"]) as con:
        got = con.sql(sql).fetchall()
    rows = {**world["rows"], "frames_first": world["first_frames"]}
    assert got == _plain(rows, sql)
    now = _plain(world["rows"], sql.replace("frames_first", "frames"))
    assert got != now  # frame 7 is in the first snapshot only
