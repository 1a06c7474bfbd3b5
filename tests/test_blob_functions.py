"""Blob functions in SQL, end to end: real files, per-row errors, confinement."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery


def test_image_info_equals_pillow(fleet) -> None:
    con, root = fleet
    rows = con.sql("SELECT f.image_uri, image_info(f.image_uri) AS info FROM frames f "
                   "WHERE f.drive_id IN (1, 2)").fetchall()
    assert rows
    for uri, info in rows:
        path = root / "blobs" / "camera" / uri
        with Image.open(path) as image:
            expected = (image.format, image.width, image.height, image.mode)
        assert (info["format"], info["width"], info["height"], info["mode"]) == expected
        assert info["bytes"] == path.stat().st_size and info["error"] is None


def test_thumbnail_fits_and_read_blob_is_the_file(fleet) -> None:
    con, root = fleet
    uri, thumb, data = con.sql("SELECT image_uri, thumbnail(image_uri, 40), read_blob(image_uri) "
                               "FROM frames ORDER BY frame_id LIMIT 1").fetchall()[0]
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "PNG" and max(image.size) <= 40
    assert data == (root / "blobs" / "camera" / uri).read_bytes()


def test_pointcloud_info_equals_numpy(fleet) -> None:
    con, root = fleet
    uri, info, points = con.sql("SELECT uri, pointcloud_info(uri), len(read_pointcloud(uri)) "
                                "FROM lidar_sweeps WHERE uri LIKE '%.bin' LIMIT 1").fetchall()[0]
    xyz = np.fromfile(root / "blobs" / "lidar" / uri, np.float32).reshape(-1, 4)[:, :3]
    assert info["points"] == points == len(xyz)
    assert info["min_x"] == pytest.approx(float(xyz[:, 0].min()))
    assert info["max_z"] == pytest.approx(float(xyz[:, 2].max()))


@pytest.fixture()
def shelf(tmp_path: Path):
    """Good, corrupt, truncated and missing images behind a blob column."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    good = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(good, "PNG")
    (blobs / "good.png").write_bytes(good.getvalue())
    (blobs / "corrupt.jpg").write_bytes(b"this is not an image at all")
    (blobs / "empty.png").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(good.getvalue())
    lake = tmp_path / "lake" / "shots"
    lake.mkdir(parents=True)
    uris = ["good.png", "corrupt.jpg", "empty.png", "missing.png", None]
    pq.write_table(pa.table({"id": range(len(uris)), "uri": uris}), lake / "p.parquet")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")},
                           "pics": {"kind": "files", "root": str(blobs)},
                           "more": {"kind": "files", "root": str(tmp_path / "lake")}},
               "tables": {"shots": {"source": "lake", "path": "shots/"}},
               "blobs": {"shots.uri": "pics"}}
    with fedquery.connect(catalog) as con:
        yield con, tmp_path


def test_bad_files_are_reported_per_row(shelf) -> None:
    con, _ = shelf
    rows = dict(con.sql("SELECT id, image_info(uri) FROM shots ORDER BY id").fetchall())
    assert len(rows) == 5
    assert rows[0]["format"] == "PNG" and rows[0]["error"] is None
    for broken in (1, 2, 3):
        assert rows[broken]["error"] and rows[broken]["width"] is None
    assert "not found" in rows[3]["error"]
    assert rows[4] is None
    blobs = dict(con.sql("SELECT id, read_blob(uri) FROM shots ORDER BY id").fetchall())
    assert blobs[3] is None and blobs[0].startswith(b"\x89PNG")


@pytest.mark.parametrize("uri", ["../outside.png", "../lake/shots/p.parquet/../../../outside.png"])
def test_escaping_uri_is_refused_and_nothing_returned(shelf, uri: str) -> None:
    con, _ = shelf
    with pytest.raises(fedquery.ForbiddenError):
        con.sql(f"SELECT read_blob(uri || '') FROM (SELECT '{uri}' AS uri) t").fetchall()
    with pytest.raises(fedquery.ForbiddenError):
        con.sql(f"SELECT image_info(replace(s.uri, 'good.png', '{uri}')) FROM shots s "
                "WHERE s.id = 0").fetchall()


def test_strict_connection_fails_on_a_bad_file(shelf) -> None:
    con, root = shelf
    catalog = {"sources": {"pics": {"kind": "files", "root": str(root / "blobs")}}}
    with fedquery.connect(catalog, strict=True) as strict:
        assert strict.sql("SELECT image_info('good.png').width").fetchall() == [(64,)]
        with pytest.raises(fedquery.SourceError) as info:
            strict.sql("SELECT image_info('corrupt.jpg')").fetchall()
        assert info.value.source == "pics" and "corrupt.jpg" in str(info.value)
        with pytest.raises(fedquery.SourceError, match="not found"):
            strict.sql("SELECT read_blob('missing.png')").fetchall()
