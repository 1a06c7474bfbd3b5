"""``fedquery demo``: build the sample drive data set and run a short cross-source showcase."""

from __future__ import annotations

import os
import time
from pathlib import Path

import fedquery
from fedquery.cli_output import format_table
from fedquery.cli_params import CommandError

SHOWCASE = [
    ("Rainy drives in Austin and their front-camera frames (warehouse x lake)",
     """SELECT d.drive_id, d.started_at, v.model, count(*) AS frames
        FROM drives d
        JOIN vehicles v ON v.vehicle_id = d.vehicle_id
        JOIN frames f ON f.drive_id = d.drive_id
        WHERE d.city = $city AND d.weather = 'rain' AND f.camera = 'front'
        GROUP BY ALL ORDER BY d.drive_id"""),
    ("Frames and LIDAR sweeps per city and weather (two lake tables, one warehouse table)",
     """WITH f AS (SELECT drive_id, count(*) AS frames FROM frames GROUP BY drive_id),
             l AS (SELECT drive_id, count(*) AS sweeps FROM lidar_sweeps GROUP BY drive_id)
        SELECT d.city, coalesce(d.weather, '(unknown)') AS weather, count(*) AS drives,
               sum(f.frames) AS frames, sum(l.sweeps) AS sweeps
        FROM drives d LEFT JOIN f USING (drive_id) LEFT JOIN l USING (drive_id)
        GROUP BY ALL ORDER BY frames DESC, d.city LIMIT 8"""),
    ("Frames that look like this image (a rainy frame's file, embedded in the query), with their "
     "drive's metadata (blobs x vector x lake x warehouse)",
     """WITH probe AS (SELECT f.image_uri FROM frames f JOIN drives d ON d.drive_id = f.drive_id
                      WHERE d.weather = 'rain' ORDER BY f.frame_id LIMIT 1)
        SELECT f.frame_id, d.city, d.weather, f.image_uri,
               round(array_cosine_distance(e.embedding,
                     (SELECT embed_image(image_uri) FROM probe))::DOUBLE, 4) AS distance
        FROM frame_embeddings e JOIN frames f USING (frame_id) JOIN drives d ON d.drive_id = f.drive_id
        ORDER BY array_cosine_distance(e.embedding, (SELECT embed_image(image_uri) FROM probe)),
                 f.frame_id LIMIT 5"""),
    ("Camera frames of rainy drives, read from their image headers (lake x warehouse x blobs)",
     """SELECT f.frame_id, d.city, image_info(f.image_uri).format AS format,
               image_info(f.image_uri).width AS width, image_info(f.image_uri).bytes AS bytes
        FROM frames f JOIN drives d ON d.drive_id = f.drive_id
        WHERE d.weather = 'rain' ORDER BY f.frame_id LIMIT 4"""),
    ("Peak acceleration per drive, ranked within each city (window over IMU in the lake)",
     """SELECT d.city, d.drive_id, max(sqrt(ax*ax + ay*ay)) AS peak_accel,
               rank() OVER (PARTITION BY d.city ORDER BY max(sqrt(ax*ax + ay*ay)) DESC) AS rank_in_city
        FROM imu i JOIN drives d USING (drive_id)
        GROUP BY d.city, d.drive_id QUALIFY rank_in_city = 1 ORDER BY d.city"""),
]


def default_dir() -> Path:
    """Where the demo keeps its data: $FEDQUERY_SAMPLE_DIR or a user cache folder."""
    env = os.environ.get("FEDQUERY_SAMPLE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedquery" / "sample"


def run_demo(dest: Path | None = None) -> None:
    """Build the data set if missing, then print each showcase query, its rows and one plan."""
    from fedquery.sample_data.generate import build

    dest = dest or default_dir()
    started = time.perf_counter()
    catalog = _build(build, dest)
    print(f"sample data: {catalog} ({time.perf_counter() - started:.1f} s)\n")
    with fedquery.connect(catalog) as con:
        print("tables:", ", ".join(con.tables()), "\n")
        for title, sql in SHOWCASE:
            print(f"== {title}")
            print(format_table(con.sql(sql, params={"city": "Austin"}).arrow()))
        _nearest_frames(con)
        print("== The plan of the first query: what each source receives")
        print(con.explain(SHOWCASE[0][1], params={"city": "Austin"}))


def _build(build, dest: Path) -> Path:
    """The sample set built in ``dest``; a folder that cannot hold it is a one-line error."""
    if dest.exists() and not dest.is_dir():
        raise CommandError(f"demo --dir {dest}: is a file; give a new or empty folder")
    try:
        return build(dest)
    except FileExistsError as exc:
        raise CommandError(f"demo --dir {dest}: {exc}") from None
    except OSError as exc:
        raise CommandError(f"demo --dir {dest}: cannot build the sample data there "
                            f"({exc.strerror or exc}); give a folder you can write to") from None


NEAREST = """SELECT f.frame_id, d.city, d.weather, f.camera,
       round(array_cosine_distance(e.embedding, $q)::DOUBLE, 4) AS distance
FROM frame_embeddings e JOIN frames f ON f.frame_id = e.frame_id
JOIN drives d ON d.drive_id = f.drive_id
WHERE d.city = $city AND f.camera = 'front'
ORDER BY array_cosine_distance(e.embedding, $q), f.frame_id LIMIT 5"""


def _nearest_frames(con: fedquery.Connection) -> None:
    """An image embedded in Python, then an exact top-k joined to metadata, and what the
    vector table returned."""
    probe = ("SELECT embed_image(f.image_uri) FROM frames f JOIN drives d ON d.drive_id = f.drive_id "
             "WHERE d.weather = 'rain' ORDER BY f.frame_id LIMIT 1")
    q = con.sql(probe).fetchall()[0][0]
    params = {"q": q, "city": "Austin"}
    print("== Austin's front-camera frames nearest to a rainy frame's image "
          "(query vector from Python; exact top-k: metadata first, then the vector table)")
    print(format_table(con.sql(NEAREST, params=params).arrow()))
    analyzed = con.explain(NEAREST, params=params, analyze=True)
    moved = [line.strip() for line in analyzed.splitlines()
             if line.strip().startswith("analyze:") and "keys from the rest" in line]
    print("vector table:", moved[0].removeprefix("analyze: ") if moved else "(not rewritten)", "\n")
