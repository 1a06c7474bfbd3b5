"""Build the seeded sample drive data set that the demo, the docs and the tests query.

    python -m fedquery.sample_data.generate DEST [--seed N] [--force]

Everything follows from `numpy.random.default_rng(seed)`: a DuckDB warehouse (drives,
vehicles, routes), a hive-partitioned Parquet lake (frames, imu, lidar_sweeps), camera
JPEGs whose look follows each drive's weather and time of day, LIDAR sweeps (KITTI `.bin`,
and LAS for the last drive when laspy is installed), a LanceDB table of frame embeddings,
and the `catalog.yaml` that ties them together.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedquery.functions.embedders import NUMPY_IMAGE_DIM, embed_images_numpy
from fedquery.sample_data.scenes import pointcloud, render_frame, write_las

__all__ = ["build"]

FORMAT_VERSION = 1  # bump when the generator's output changes; older builds are rebuilt
TEMPLATE = Path(__file__).with_name("catalog.yaml")
MARKER = ".complete"

CITIES = ("Austin", "Boston", "Phoenix", "Seattle", "Pittsburgh")
WEATHERS = ("clear", "rain", "fog", "snow")
CITY_WEATHER = {  # chances of clear, rain, fog, snow
    "Austin": (0.5, 0.35, 0.1, 0.05),
    "Boston": (0.4, 0.25, 0.15, 0.2),
    "Phoenix": (0.8, 0.1, 0.05, 0.05),
    "Seattle": (0.3, 0.45, 0.2, 0.05),
    "Pittsburgh": (0.35, 0.25, 0.15, 0.25),
}
MODELS = ("Chrysler Pacifica", "Ford Fusion", "Jaguar I-PACE", "Toyota Prius", "Kia Niro")
SENSOR_KITS = ("kit-a/v1", "kit-a/v2", "kit-b/v1")
ROUTE_NAMES = {
    "Austin": ("Congress Ave loop", "MoPac commute"),
    "Boston": ("Back Bay loop", "Seaport run"),
    "Phoenix": ("Camelback loop", "I-10 airport run"),
    "Seattle": ("Capitol Hill loop", "SR-99 tunnel run"),
    "Pittsburgh": ("Strip District loop", "Fort Pitt bridges"),
}
CAMERAS = ("front", "left", "right")
N_VEHICLES = 8
FIRST_DAY = np.datetime64("2024-03-04", "us")
N_DAYS = 7
SWEEPS_PER_DRIVE = 4
IMU_HZ = 10
SECOND_US = 1_000_000

# Column lists in SQL types: the warehouse DDL and the Arrow schemas both come from here.
TABLES = {
    "drives": "drive_id INTEGER, vehicle_id INTEGER, city VARCHAR, weather VARCHAR,"
    " started_at TIMESTAMP, ended_at TIMESTAMP, distance_km DOUBLE",
    "vehicles": "vehicle_id INTEGER, model VARCHAR, sensor_kit VARCHAR, commissioned DATE",
    "routes": "route_id INTEGER, city VARCHAR, name VARCHAR, length_km DOUBLE",
    "frames": "drive_id INTEGER, frame_id BIGINT, ts TIMESTAMP, camera VARCHAR,"
    " image_uri VARCHAR, day VARCHAR",
    "imu": "drive_id INTEGER, ts TIMESTAMP, ax DOUBLE, ay DOUBLE, az DOUBLE, gx DOUBLE,"
    " gy DOUBLE, gz DOUBLE, day VARCHAR",
    "lidar_sweeps": "drive_id INTEGER, sweep_id BIGINT, ts TIMESTAMP, uri VARCHAR, day VARCHAR",
}
ARROW_TYPES = {
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}

Columns = dict[str, np.ndarray]


# ---------------------------------------------------------------- building, atomically


def build(
    dest: str | os.PathLike[str],
    *,
    seed: int = 7,
    n_drives: int = 50,
    frames_per_drive: int = 8,
    force: bool = False,
) -> Path:
    """Build the sample data set into `dest` and return the path of its `catalog.yaml`.

    A finished build (marker file `.complete` with the same parameters) is reused unless
    `force`. The set is written to a temporary folder beside `dest` and renamed into place,
    so `dest` is never half built. A non-empty `dest` that is not a previous build is
    refused rather than deleted.

    >>> catalog = build("/tmp/fleet")  # doctest: +SKIP
    """
    if n_drives < 1 or frames_per_drive < 1:
        raise ValueError("n_drives and frames_per_drive must be at least 1")
    dest = Path(dest)
    params = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "n_drives": n_drives,
        "frames_per_drive": frames_per_drive,
    }
    if not force and _is_built(dest, params):
        return dest / "catalog.yaml"
    _check_replaceable(dest)
    dest.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.absolute().parent))
    try:
        _write_all(tmp, params)
        if force or not _is_built(dest, params):  # else a concurrent build finished first
            _swap_in(tmp, dest, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest / "catalog.yaml"


def _is_built(dest: Path, params: dict[str, int]) -> bool:
    """Whether `dest` holds a finished build made with these parameters."""
    try:
        recorded = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return recorded == params and (dest / "catalog.yaml").is_file()


def _check_replaceable(dest: Path) -> None:
    """Refuse to replace anything but a missing or empty folder or a previous build."""
    if not dest.exists() and not dest.is_symlink():
        return
    if not dest.is_dir() or (any(dest.iterdir()) and not (dest / MARKER).exists()):
        raise FileExistsError(f"{dest} exists and is not a sample data set; give a new or empty folder")


def _swap_in(tmp: Path, dest: Path, params: dict[str, int]) -> None:
    """Rename the finished build `tmp` to `dest`, moving any previous build out of the way."""
    tmp.chmod(0o755)  # mkdtemp makes it private
    old = None
    if dest.exists():
        old = dest.with_name(f"{tmp.name}.old")
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        if not _is_built(dest, params):  # a concurrent build that finished first is fine
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_all(root: Path, params: dict[str, int]) -> None:
    """Write every part of the data set into `root`, the marker file last."""
    fleet, trips, motion, camera, lidar = np.random.default_rng(params["seed"]).spawn(5)
    drives, truth = _drives(trips, params["n_drives"])
    frames = _frames(drives, params["frames_per_drive"])
    sweeps = _sweeps(lidar, drives)
    _write_warehouse(root / "warehouse.duckdb", drives, _vehicles(fleet), _routes(fleet))
    _write_hive(root / "lake" / "frames", _table(frames, "frames"))
    _write_hive(root / "lake" / "imu", _table(_imu(motion, drives), "imu"))
    _write_hive(root / "lake" / "lidar_sweeps", _table(sweeps, "lidar_sweeps"))
    images = _write_images(camera, root / "blobs" / "camera", frames, drives, truth)
    _write_pointclouds(lidar, root / "blobs" / "lidar", sweeps, truth)
    _write_vectors(root / "vectors", frames, images)
    shutil.copyfile(TEMPLATE, root / "catalog.yaml")
    (root / MARKER).write_text(json.dumps(params) + "\n")


# ---------------------------------------------------------------- metadata tables


def _vehicles(rng: np.random.Generator) -> Columns:
    """The fleet: N_VEHICLES vehicles with a model, a sensor kit and a commissioning date."""
    days = rng.integers(0, 700, N_VEHICLES).astype("timedelta64[D]")
    return {
        "vehicle_id": np.arange(1, N_VEHICLES + 1),
        "model": rng.choice(MODELS, N_VEHICLES),
        "sensor_kit": rng.choice(SENSOR_KITS, N_VEHICLES),
        "commissioned": np.datetime64("2022-01-01", "D") + days,
    }


def _routes(rng: np.random.Generator) -> Columns:
    """Two named routes per city."""
    pairs = [(city, name) for city, names in ROUTE_NAMES.items() for name in names]
    return {
        "route_id": np.arange(1, len(pairs) + 1),
        "city": np.array([city for city, _ in pairs]),
        "name": np.array([name for _, name in pairs]),
        "length_km": np.round(rng.uniform(3.0, 25.0, len(pairs)), 2),
    }


def _drives(rng: np.random.Generator, n: int) -> tuple[Columns, np.ndarray]:
    """Drives in start order, and the true weather (the table hides a few values as NULL)."""
    starts = _start_times(rng, n)
    seconds = rng.integers(60, 121, n)
    cities = rng.choice(CITIES, n)
    weather = _weather(rng, cities)
    drives = {
        "drive_id": np.arange(1, n + 1),
        "vehicle_id": rng.integers(1, N_VEHICLES + 1, n),
        "city": cities,
        "weather": _hide_some(rng, weather),
        "started_at": starts,
        "ended_at": starts + (seconds * SECOND_US).astype("timedelta64[us]"),
        "distance_km": np.round(seconds * rng.uniform(4.0, 18.0, n) / 1000.0, 3),
    }
    return drives, weather


def _start_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sorted whole-second starts over N_DAYS, mostly by day; none runs past midnight."""
    hour_weight = np.array([1.0] * 5 + [1.5] * 2 + [3.0] * 10 + [1.5] * 3 + [1.0] * 4)
    hours = rng.choice(24, n, p=hour_weight / hour_weight.sum())
    minutes = np.where(hours == 23, rng.integers(0, 56, n), rng.integers(0, 60, n))
    seconds = ((rng.integers(0, N_DAYS, n) * 24 + hours) * 60 + minutes) * 60
    seconds += rng.integers(0, 60, n)
    return np.sort(FIRST_DAY + (seconds * SECOND_US).astype("timedelta64[us]"))


def _weather(rng: np.random.Generator, cities: np.ndarray) -> np.ndarray:
    """Weather drawn by city; the first drives cover every kind, so small sets have all."""
    chances = np.cumsum([CITY_WEATHER[c] for c in cities], axis=1)
    kind = (rng.random(len(cities))[:, None] > chances[:, :-1]).sum(axis=1)
    first = min(len(WEATHERS), len(cities))
    kind[:first] = rng.permutation(len(WEATHERS))[:first]
    return np.array(WEATHERS)[kind]


def _hide_some(rng: np.random.Generator, weather: np.ndarray) -> np.ndarray:
    """A copy of `weather` with about one in sixteen values (never the first four) None."""
    shown = weather.astype(object)
    candidates = np.arange(len(WEATHERS), len(weather))
    if candidates.size:
        count = min(candidates.size, max(1, len(weather) // 16))
        shown[rng.choice(candidates, count, replace=False)] = None
    return shown


def _light(starts: np.ndarray) -> np.ndarray:
    """Time of day from the start hour: day, dusk or night."""
    hours = (starts.astype("datetime64[h]") - starts.astype("datetime64[D]")).astype(int)
    dusk = ((hours >= 5) & (hours < 7)) | ((hours >= 17) & (hours < 20))
    return np.where((hours >= 7) & (hours < 17), "day", np.where(dusk, "dusk", "night"))


def _day(starts: np.ndarray) -> np.ndarray:
    """The hive partition value 'YYYY-MM-DD' of each start time."""
    return np.datetime_as_string(starts, unit="D")


def _spread(drives: Columns, per_drive: int) -> np.ndarray:
    """`per_drive` evenly spaced, millisecond-rounded times in each drive, one row a drive.

    They run from 1 s after the start to 1 s before the end, so frame k * F / S and sweep
    k share their slot and a sweep lands just before every few frames.
    """
    span = (drives["ended_at"] - drives["started_at"]).astype(np.int64) - 2 * SECOND_US
    offsets = SECOND_US + span[:, None] * np.arange(per_drive)[None, :] // per_drive
    offsets = offsets // 1000 * 1000
    return drives["started_at"][:, None] + offsets.astype("timedelta64[us]")


def _frames(drives: Columns, per_drive: int) -> Columns:
    """Camera frames, cycling through the cameras; frame ids are global and start at 1."""
    n = len(drives["drive_id"]) * per_drive
    drive_id = np.repeat(drives["drive_id"], per_drive)
    frame_id = np.arange(1, n + 1)
    return {
        "drive_id": drive_id,
        "frame_id": frame_id,
        "ts": _spread(drives, per_drive).ravel(),
        "camera": np.array(CAMERAS)[np.arange(n) % per_drive % len(CAMERAS)],
        "image_uri": _blob_uris(drive_id, frame_id, np.full(n, "jpg")),
        "day": np.repeat(_day(drives["started_at"]), per_drive),
    }


def _sweeps(rng: np.random.Generator, drives: Columns) -> Columns:
    """LIDAR sweeps, each 10-80 ms before its slot; the last drive's are LAS with laspy."""
    n = len(drives["drive_id"]) * SWEEPS_PER_DRIVE
    drive_id = np.repeat(drives["drive_id"], SWEEPS_PER_DRIVE)
    sweep_id = np.arange(1, n + 1)
    early = (rng.integers(10, 81, n) * 1000).astype("timedelta64[us]")
    las = drive_id == drive_id[-1] if _has_laspy() else np.zeros(n, dtype=bool)
    ext = np.where(las, "las", "bin")
    return {
        "drive_id": drive_id,
        "sweep_id": sweep_id,
        "ts": _spread(drives, SWEEPS_PER_DRIVE).ravel() - early,
        "uri": _blob_uris(drive_id, sweep_id, ext),
        "day": np.repeat(_day(drives["started_at"]), SWEEPS_PER_DRIVE),
    }


def _blob_uris(drive_id: np.ndarray, item_id: np.ndarray, ext: np.ndarray) -> np.ndarray:
    """Blob paths relative to their files root: `<drive_id:04d>/<item_id:06d>.<ext>`."""
    parts = zip(drive_id, item_id, ext, strict=True)
    return np.array([f"{d:04d}/{i:06d}.{e}" for d, i, e in parts])


def _imu(rng: np.random.Generator, drives: Columns) -> Columns:
    """IMU samples at IMU_HZ over each whole drive: smooth motion plus sensor noise."""
    counts = (drives["ended_at"] - drives["started_at"]).astype(np.int64) * IMU_HZ // SECOND_US
    row_drive = np.repeat(np.arange(len(counts)), counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    t = step / IMU_HZ
    phase = rng.uniform(0, 2 * np.pi, len(counts))[row_drive]
    noise = rng.normal(0.0, 1.0, (6, t.size))
    return {
        "drive_id": drives["drive_id"][row_drive],
        "ts": drives["started_at"][row_drive] + (step * SECOND_US // IMU_HZ).astype("m8[us]"),
        "ax": 0.8 * np.sin(t / 6.0 + phase) + 0.05 * noise[0],
        "ay": 0.5 * np.sin(t / 4.0 + 2 * phase) + 0.05 * noise[1],
        "az": 9.81 + 0.08 * noise[2],
        "gx": 0.01 * noise[3],
        "gy": 0.01 * noise[4],
        "gz": 0.12 * np.sin(t / 9.0 + phase) + 0.01 * noise[5],
        "day": _day(drives["started_at"])[row_drive],
    }


def _table(columns: Columns, name: str) -> pa.Table:
    """An Arrow table of `columns` with exactly the types TABLES gives table `name`."""
    fields = [column.split() for column in TABLES[name].split(",")]
    schema = pa.schema([(column, ARROW_TYPES[sql_type]) for column, sql_type in fields])
    arrays = [pa.array(columns[field.name], type=field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------- writers


def _write_warehouse(path: Path, drives: Columns, vehicles: Columns, routes: Columns) -> None:
    """The DuckDB warehouse: drives, vehicles and routes, closed cleanly."""
    with duckdb.connect(str(path)) as con:
        for name, columns in (("vehicles", vehicles), ("drives", drives), ("routes", routes)):
            con.execute(f"CREATE TABLE {name} ({TABLES[name]})")  # constants only
            con.register("incoming", _table(columns, name))
            con.execute(f"INSERT INTO {name} SELECT * FROM incoming")
            con.unregister("incoming")
        con.execute("CHECKPOINT")


def _write_hive(folder: Path, table: pa.Table) -> None:
    """One `day=YYYY-MM-DD/part-0.parquet` file per day; the day is only in the path."""
    days = np.asarray(table["day"].to_pylist())
    data = table.drop_columns(["day"])
    for day in np.unique(days):
        part = folder / f"day={day}"
        part.mkdir(parents=True)
        pq.write_table(data.filter(pa.array(days == day)), part / "part-0.parquet")


def _write_images(
    rng: np.random.Generator, root: Path, frames: Columns, drives: Columns, truth: np.ndarray
) -> list[bytes]:
    """Render every frame's JPEG under `root`; returns the encoded bytes in frame order."""
    row = frames["drive_id"] - 1  # drive ids are 1..n in row order
    light = _light(drives["started_at"])
    images = []
    for uri, r, camera in zip(frames["image_uri"], row, frames["camera"], strict=True):
        data = render_frame(rng, truth[r], light[r], camera)
        _write_blob(root / uri, data)
        images.append(data)
    return images


def _write_pointclouds(rng: np.random.Generator, root: Path, sweeps: Columns, truth: np.ndarray) -> None:
    """Write every sweep as KITTI float32 (x, y, z, intensity) or, for `.las` URIs, LAS."""
    for uri, drive_id in zip(sweeps["uri"], sweeps["drive_id"], strict=True):
        points = pointcloud(rng, truth[drive_id - 1])
        if uri.endswith(".las"):
            (root / uri).parent.mkdir(parents=True, exist_ok=True)
            write_las(root / uri, points)
        else:
            _write_blob(root / uri, points.tobytes())


def _write_blob(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_vectors(path: Path, frames: Columns, images: Sequence[bytes]) -> None:
    """The LanceDB table `frame_embeddings`, embedded from the rendered JPEG bytes."""
    import lancedb

    flat = pa.array(embed_images_numpy(images).ravel(), type=pa.float32())
    table = pa.table(
        {
            "frame_id": pa.array(frames["frame_id"], type=pa.int64()),
            "drive_id": pa.array(frames["drive_id"], type=pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, NUMPY_IMAGE_DIM),
        }
    )
    lancedb.connect(str(path)).create_table("frame_embeddings", data=table)


def _has_laspy() -> bool:
    return importlib.util.find_spec("laspy") is not None


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m fedquery.sample_data.generate DEST [--seed N] [--force]`: prints the catalog path."""
    parser = argparse.ArgumentParser(prog="python -m fedquery.sample_data.generate", description=__doc__)
    parser.add_argument("dest", help="folder to build into (created if missing)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n-drives", type=int, default=50)
    parser.add_argument("--frames-per-drive", type=int, default=8)
    parser.add_argument("--force", action="store_true", help="rebuild even if already built")
    args = parser.parse_args(argv)
    catalog = build(
        args.dest,
        seed=args.seed,
        n_drives=args.n_drives,
        frames_per_drive=args.frames_per_drive,
        force=args.force,
    )
    print(catalog)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
