"""The seeded sample data set: what `fedquery.sample_data.generate.build` writes, and the embedder."""

from __future__ import annotations

import io
import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from fedquery.functions.embedders import NUMPY_IMAGE_DIM, embed_images_numpy
from fedquery.sample_data import generate
from fedquery.sample_data.scenes import IMAGE_SIZE, LIDAR_POINTS

N_DRIVES, PER_DRIVE = 50, 8
LAKE_TABLES = ("frames", "imu", "lidar_sweeps")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default sample set (what `fedquery demo` uses), built once for this module."""
    catalog = generate.build(tmp_path_factory.mktemp("sample") / "fleet")
    return catalog.parent


@pytest.fixture(scope="module")
def con(root: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse, read-only, with the lake tables as views (day read as text)."""
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    day = ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive")
    for table in LAKE_TABLES:
        lake = ds.dataset(root / "lake" / table, format="parquet", partitioning=day)
        con.register(f"lake_{table}", lake.to_table())
    yield con
    con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def lance_table(root: Path):
    import lancedb

    return lancedb.connect(str(root / "vectors")).open_table("frame_embeddings")


# ---------------------------------------------------------------- catalog


def test_catalog_is_the_template_and_follows_the_design(root: Path) -> None:
    text = (root / "catalog.yaml").read_text()
    assert text == generate.TEMPLATE.read_text()
    cat = yaml.safe_load(text)
    kinds = {name: src["kind"] for name, src in cat["sources"].items()}
    assert kinds == {
        "warehouse": "duckdb",
        "lake": "parquet",
        "vectors": "lancedb",
        "camera": "files",
        "lidar": "files",
    }
    assert cat["tables"]["frames"] == {"source": "lake", "path": "frames/", "partitioning": "hive"}
    assert cat["blobs"] == {"frames.image_uri": "camera", "lidar_sweeps.uri": "lidar"}
    members = cat["entities"]["drive"]["members"]
    assert {m["table"] for m in members.values()} == set(LAKE_TABLES)


def test_catalog_paths_resolve_relative_to_the_file(root: Path) -> None:
    cat = yaml.safe_load((root / "catalog.yaml").read_text())
    for src in cat["sources"].values():
        where = src.get("path") or src.get("root") or src.get("uri")
        assert (root / where).exists(), where
    for table in cat["tables"].values():
        if "path" in table:
            assert (root / cat["sources"][table["source"]]["root"] / table["path"]).is_dir()


# ---------------------------------------------------------------- warehouse


def test_warehouse_tables_have_the_documented_types(con: duckdb.DuckDBPyConnection) -> None:
    types = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE drives)"))
    assert types == {
        "drive_id": "INTEGER",
        "vehicle_id": "INTEGER",
        "city": "VARCHAR",
        "weather": "VARCHAR",
        "started_at": "TIMESTAMP",
        "ended_at": "TIMESTAMP",
        "distance_km": "DOUBLE",
    }
    vehicles = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE vehicles)"))
    assert vehicles["commissioned"] == "DATE"
    assert rows(con, "SELECT count(*) FROM vehicles") == [(generate.N_VEHICLES,)]
    assert rows(con, "SELECT count(*), count(DISTINCT city) FROM routes") == [(10, 5)]


def test_drives_have_weather_cities_and_some_null_weather(con: duckdb.DuckDBPyConnection) -> None:
    [(n, nulls, bad_weather, bad_city)] = rows(
        con,
        "SELECT count(*), count(*) - count(weather),"
        " count(*) FILTER (weather NOT IN ('clear', 'rain', 'fog', 'snow')),"
        " count(*) FILTER (city NOT IN ('Austin', 'Boston', 'Phoenix', 'Seattle', 'Pittsburgh'))"
        " FROM drives",
    )
    assert (n, bad_weather, bad_city) == (N_DRIVES, 0, 0)
    assert 1 <= nulls <= 5
    assert rows(con, "SELECT count(DISTINCT weather) FROM drives") == [(4,)]
    [(shortest, longest)] = rows(
        con, "SELECT min(ended_at - started_at), max(ended_at - started_at) FROM drives"
    )
    assert 60 <= shortest.total_seconds() <= longest.total_seconds() <= 120
    orphans = "SELECT count(*) FROM drives WHERE vehicle_id NOT IN (SELECT vehicle_id FROM vehicles)"
    assert rows(con, orphans) == [(0,)]


# ---------------------------------------------------------------- lake


def test_lake_is_hive_partitioned_by_day_without_a_day_column(root: Path) -> None:
    for table in LAKE_TABLES:
        parts = sorted((root / "lake" / table).iterdir())
        assert parts and all(re.fullmatch(r"day=\d{4}-\d{2}-\d{2}", p.name) for p in parts)
        for part in parts:
            assert [f.name for f in part.iterdir()] == ["part-0.parquet"]
            assert "day" not in pq.read_schema(part / "part-0.parquet").names


def test_frames_belong_to_their_drive_and_day(con: duckdb.DuckDBPyConnection) -> None:
    [(n, distinct_ids, cameras)] = rows(
        con, "SELECT count(*), count(DISTINCT frame_id), count(DISTINCT camera) FROM lake_frames"
    )
    assert (n, distinct_ids, cameras) == (N_DRIVES * PER_DRIVE, N_DRIVES * PER_DRIVE, 3)
    outside = (
        "SELECT count(*) FROM lake_frames f JOIN drives d USING (drive_id)"
        " WHERE f.ts NOT BETWEEN d.started_at AND d.ended_at"
        " OR f.day <> strftime(d.started_at, '%Y-%m-%d')"
        " OR f.image_uri <> printf('%04d/%06d.jpg', f.drive_id, f.frame_id)"
    )
    assert rows(con, outside) == [(0,)]
    assert rows(con, "SELECT count(DISTINCT drive_id) FROM lake_frames") == [(N_DRIVES,)]


def test_lake_column_types(con: duckdb.DuckDBPyConnection) -> None:
    frames = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE lake_frames)"))
    assert frames["frame_id"] == "BIGINT" and frames["ts"] == "TIMESTAMP"
    assert frames["drive_id"] == "INTEGER"
    sweeps = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE lake_lidar_sweeps)"))
    assert sweeps["sweep_id"] == "BIGINT" and sweeps["uri"] == "VARCHAR"
    imu = dict(rows(con, "SELECT column_name, column_type FROM (DESCRIBE lake_imu)"))
    assert {imu[axis] for axis in ("ax", "ay", "az", "gx", "gy", "gz")} == {"DOUBLE"}


def test_imu_is_sampled_at_ten_hertz_over_each_drive(con: duckdb.DuckDBPyConnection) -> None:
    mismatched = (
        "SELECT count(*) FROM drives d JOIN (SELECT drive_id, count(*) AS n, min(ts) AS first,"
        " max(ts) - min(ts) AS span FROM lake_imu GROUP BY drive_id) i USING (drive_id)"
        " WHERE i.n <> epoch(d.ended_at - d.started_at) * 10 OR i.first <> d.started_at"
        " OR i.span <> (i.n - 1) * INTERVAL '100 milliseconds'"
    )
    assert rows(con, mismatched) == [(0,)]
    [(gravity,)] = rows(con, "SELECT avg(az) FROM lake_imu")
    assert gravity == pytest.approx(9.81, abs=0.05)


def test_every_sweep_comes_shortly_before_a_frame(con: duckdb.DuckDBPyConnection) -> None:
    lonely = (
        "SELECT count(*) FROM lake_lidar_sweeps s WHERE NOT EXISTS (SELECT 1 FROM lake_frames f"
        " WHERE f.drive_id = s.drive_id AND f.ts - s.ts BETWEEN INTERVAL '10 milliseconds'"
        " AND INTERVAL '80 milliseconds')"
    )
    assert rows(con, lonely) == [(0,)]
    per_drive = "SELECT DISTINCT count(*) FROM lake_lidar_sweeps GROUP BY drive_id"
    assert rows(con, per_drive) == [(generate.SWEEPS_PER_DRIVE,)]


# ---------------------------------------------------------------- blobs


def test_every_frame_has_a_jpeg_of_the_expected_size(con, root: Path) -> None:
    uris = [uri for (uri,) in rows(con, "SELECT image_uri FROM lake_frames")]
    for uri in uris:
        with Image.open(root / "blobs" / "camera" / uri) as img:
            assert (img.format, img.size, img.mode) == ("JPEG", IMAGE_SIZE, "RGB")
    on_disk = list((root / "blobs" / "camera").glob("*/*.jpg"))
    assert len(on_disk) == len(uris) == N_DRIVES * PER_DRIVE


def test_night_frames_are_darker_than_day_frames(con, root: Path) -> None:
    def mean_brightness(where: str) -> float:
        sql = f"SELECT image_uri FROM lake_frames JOIN drives USING (drive_id) WHERE {where}"
        pics = [Image.open(root / "blobs/camera" / u).convert("L") for (u,) in rows(con, sql)]
        return float(np.mean([np.asarray(p).mean() for p in pics]))

    night = mean_brightness("hour(started_at) < 5 OR hour(started_at) >= 20")
    day = mean_brightness("hour(started_at) BETWEEN 7 AND 16")
    assert night < day / 2


def test_lidar_sweeps_are_kitti_or_las_point_clouds(con, root: Path) -> None:
    uris = [uri for (uri,) in rows(con, "SELECT uri FROM lake_lidar_sweeps")]
    kitti = [u for u in uris if u.endswith(".bin")]
    assert kitti and all(u.endswith((".bin", ".las")) for u in uris)
    points = np.fromfile(root / "blobs" / "lidar" / kitti[0], dtype=np.float32).reshape(-1, 4)
    assert points.shape == (LIDAR_POINTS, 4) and np.isfinite(points).all()
    assert np.median(points[:, 2]) == pytest.approx(-1.73, abs=0.1)  # mostly ground
    las = [u for u in uris if u.endswith(".las")]
    if generate._has_laspy():
        import laspy

        assert len(las) == generate.SWEEPS_PER_DRIVE
        cloud = laspy.read(root / "blobs" / "lidar" / las[0])
        assert len(cloud.points) == LIDAR_POINTS


# ---------------------------------------------------------------- vectors and embedder


def test_lance_table_has_one_embedding_per_frame(con, root: Path) -> None:
    table = lance_table(root).to_arrow()
    assert table.num_rows == N_DRIVES * PER_DRIVE
    assert str(table.schema.field("embedding").type) == "fixed_size_list<item: float>[64]"
    assert str(table.schema.field("frame_id").type) == "int64"
    frame_ids = sorted(f for (f,) in rows(con, "SELECT frame_id FROM lake_frames"))
    assert sorted(table["frame_id"].to_pylist()) == frame_ids
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedder_puts_rain_closer_to_rain_than_to_clear_days(con, root: Path) -> None:
    table = lance_table(root).to_arrow()
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    labels = dict(
        rows(
            con,
            "SELECT drive_id, CASE WHEN weather = 'clear' AND hour(started_at) BETWEEN 7 AND 16"
            " THEN 'clear-day' ELSE weather END FROM drives",
        )
    )
    label = np.array([labels[d] for d in table["drive_id"].to_pylist()], dtype=object)
    rain, clear_day = label == "rain", label == "clear-day"
    assert rain.sum() >= 2 and clear_day.sum() >= 1
    distance = 1.0 - vectors @ vectors.T
    rain_rain = distance[np.ix_(rain, rain)][~np.eye(rain.sum(), dtype=bool)].mean()
    rain_clear = distance[np.ix_(rain, clear_day)].mean()
    assert rain_rain < rain_clear


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, format="JPEG")
    return out.getvalue()


def test_embedder_gives_nan_rows_for_corrupt_bytes() -> None:
    good = _jpeg((200, 30, 30))
    out = embed_images_numpy([good, b"not an image", good[: len(good) // 3], None])
    assert out.shape == (4, NUMPY_IMAGE_DIM) and out.dtype == np.float32
    assert np.linalg.norm(out[0]) == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(out[1:]).all()


def test_embedder_is_deterministic_and_reads_png_and_grey() -> None:
    grey = io.BytesIO()
    Image.new("L", (64, 64), 90).save(grey, format="PNG")
    images = [_jpeg((20, 60, 200)), grey.getvalue()]
    first, second = embed_images_numpy(images), embed_images_numpy(images)
    assert np.array_equal(first, second) and np.isfinite(first).all()
    assert float(first[0] @ first[1]) < 0.5  # blue and grey share few colour bins
    assert embed_images_numpy([]).shape == (0, NUMPY_IMAGE_DIM)


# ---------------------------------------------------------------- building


def _contents(root: Path) -> dict[str, object]:
    """Everything a build produced, as comparable values."""
    found: dict[str, object] = {}
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        for table in ("drives", "vehicles", "routes"):
            found[table] = con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    for path in sorted(root.rglob("*")):
        if path.suffix == ".parquet":
            found[str(path.relative_to(root))] = pq.read_table(path)
        elif path.suffix in (".jpg", ".bin"):
            found[str(path.relative_to(root))] = path.read_bytes()
    found["vectors"] = lance_table(root).to_arrow().sort_by("frame_id")
    return found


def test_build_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    def small(name: str, seed: int) -> dict[str, object]:
        catalog = generate.build(tmp_path / name, seed=seed, n_drives=6, frames_per_drive=3)
        return _contents(catalog.parent)

    first, again, other = small("a", 11), small("b", 11), small("c", 12)
    assert first.keys() == again.keys()
    for key, value in first.items():
        assert value == again[key], key
    assert first["drives"] != other["drives"]


def test_build_is_idempotent_and_force_rebuilds(tmp_path: Path) -> None:
    dest = tmp_path / "fleet"
    options = {"n_drives": 3, "frames_per_drive": 2}
    catalog = generate.build(dest, **options)
    marker = (dest / generate.MARKER).stat()
    assert generate.build(dest, **options) == catalog
    assert (dest / generate.MARKER).stat().st_ino == marker.st_ino  # not rebuilt
    generate.build(dest, force=True, **options)
    assert (dest / generate.MARKER).stat().st_ino != marker.st_ino
    generate.build(dest, seed=8, **options)  # other parameters: rebuilt, not reused
    assert '"seed": 8' in (dest / generate.MARKER).read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["fleet"]  # no temporary folders left


def test_build_refuses_to_replace_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate.build(tmp_path, n_drives=2, frames_per_drive=1, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_command_line_builds_and_prints_the_catalog(tmp_path: Path, capsys) -> None:
    assert generate.main([str(tmp_path / "cli"), "--n-drives", "2", "--seed", "3"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "cli" / "catalog.yaml" and printed.is_file()
