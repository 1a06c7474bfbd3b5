"""The blob functions on the S3 server: the same answers as on local files, headers only.

Real images (those that ship inside scikit-image, ``skimage/data``) and laspy's sample LAS/LAZ
files (``tests/data/laspy``) are uploaded to ``moto_server``; a files source points at
``s3://<bucket>/<prefix>/`` and a local Parquet table's ``uri`` column is a blob column into it.
``image_info`` must equal Pillow's answer and ``pointcloud_info`` laspy's header, while the
source's counting filesystem shows that only a header prefix of each file was read (and the
last 64 bytes of a PNG longer than it). URIs that
leave the root (another bucket, ``..``) are refused with ``ForbiddenError`` and read nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery
from tests.services.s3 import upload_tree

DATA = Path(__file__).parent / "data"
BUCKET, PREFIX = "fedquery-blobs", "shelf/v1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".tif")
PREFIX_BYTES = 64 * 1024  # what the issue allows per typical JPEG or PNG
TAIL_BYTES = 64  # the end of a PNG or GIF longer than the prefix, read to find one cut short
BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")


def _skimage_images() -> list[Path]:
    skimage = pytest.importorskip("skimage")
    folder = Path(skimage.__file__).parent / "data"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _pillow_says(path: Path) -> dict:
    try:
        with Image.open(path) as img:
            return {"format": img.format, "width": img.width, "height": img.height, "mode": img.mode}
    except Image.UnidentifiedImageError:  # skimage's planar multipage_rgb.tif
        return dict.fromkeys(("format", "width", "height", "mode"))


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
          s3_credentials: dict[str, str]):
    """skimage's images and laspy's files on S3, and a local table of their URIs."""
    images = _skimage_images()
    assert len(images) >= 20, "scikit-image ships its sample images"
    clouds = sorted((DATA / "laspy").glob("*.la[sz]"))
    assert clouds, "laspy's sample files are in tests/data/laspy"
    tmp = tmp_path_factory.mktemp("blob_s3")
    local = tmp / "upload"
    (local / "images").mkdir(parents=True)
    (local / "clouds").mkdir()
    for path in images:
        shutil.copy(path, local / "images" / path.name)
    for path in clouds:
        shutil.copy(path, local / "clouds" / path.name)
    keys = upload_tree(local, BUCKET, PREFIX, endpoint=s3_endpoint)
    # A neighbour outside the root, to show that it is never read.
    upload_tree(local / "images", BUCKET, "secret", endpoint=s3_endpoint)
    upload_tree(local / "images", "other-bucket", "", endpoint=s3_endpoint)
    assert len(keys) == len(images) + len(clouds)
    lake = tmp / "lake"
    (lake / "shots").mkdir(parents=True)
    (lake / "sweeps").mkdir()
    pq.write_table(pa.table({"id": range(len(images)),
                             "uri": [f"images/{p.name}" for p in images]}),
                   lake / "shots" / "part-0.parquet")
    pq.write_table(pa.table({"id": range(len(clouds)),
                             "uri": [f"clouds/{p.name}" for p in clouds]}),
                   lake / "sweeps" / "part-0.parquet")
    options = {"endpoint_url": s3_endpoint, "key": s3_credentials["AWS_ACCESS_KEY_ID"],
               "secret": s3_credentials["AWS_SECRET_ACCESS_KEY"]}
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(lake)},
                           "store": {"kind": "files", "root": f"s3://{BUCKET}/{PREFIX}/",
                                     "options": options}},
               "tables": {"shots": {"source": "lake", "path": "shots/"},
                          "sweeps": {"source": "lake", "path": "sweeps/"},
                          "store_files": {"source": "store"}},
               "blobs": {"shots.uri": "store", "sweeps.uri": "store"}}
    with fedquery.connect(catalog) as con:
        yield con, {p.name: p for p in images}, {p.name: p for p in clouds}


def _stats(con):
    """The files source's counting filesystem's stats (``fedquery/connectors/remote_fs.ReadStats``)."""
    return con._session.functions.blobs.roots["store"].filesystem.handler.stats


def test_listing_table_sees_the_uploaded_files(shelf) -> None:
    con, images, clouds = shelf
    rows = dict(con.sql("SELECT uri, size FROM store_files").fetchall())
    expected = {f"images/{n}": p.stat().st_size for n, p in images.items()}
    expected |= {f"clouds/{n}": p.stat().st_size for n, p in clouds.items()}
    assert rows == expected


def test_image_info_on_s3_equals_pillow(shelf) -> None:
    con, images, _ = shelf
    rows = con.sql("SELECT uri, image_info(uri) AS info FROM shots ORDER BY id").fetchall()
    assert len(rows) == len(images)
    for uri, info in rows:
        path = images[uri.rsplit("/", 1)[1]]
        pillow = _pillow_says(path)
        assert {k: info[k] for k in pillow} == pillow, uri
        assert info["bytes"] == path.stat().st_size, uri
        if pillow["format"] is None:
            assert info["error"], uri  # what Pillow cannot open is reported, with a reason
        else:
            assert info["error"] is None, (uri, info["error"])


def test_image_info_on_s3_reads_at_most_64_kib_per_jpeg_or_png(shelf) -> None:
    """The counting filesystem counts the payload bytes S3 returned (not HTTP headers, nor the
    HEAD request that gives the size), so a header read is exactly one prefix of
    ``min(size, 64 KiB)``: the allowance is zero bytes above 64 KiB per image, but for the one
    byte read again alone when a prefix ends in the random sentinel its read set there (one
    read in 256: ``fedquery.functions.reads``, how a short body is caught)."""
    con, images, _ = shelf
    typical = {n: p for n, p in images.items() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    assert len(typical) >= 20
    stats = _stats(con)
    before_total, before = stats.bytes, stats.snapshot()
    names = ", ".join(f"'images/{n}'" for n in typical)
    rows = con.sql(f"SELECT uri, image_info(uri) FROM shots WHERE uri IN ({names})").fetchall()
    assert len(rows) == len(typical) and all(info["error"] is None for _, info in rows)
    after = stats.snapshot()
    read = {path: after[path] - before.get(path, 0) for path in after
            if after[path] != before.get(path, 0)}
    total_read = stats.bytes - before_total
    assert sum(read.values()) == total_read
    assert set(read) == {f"{BUCKET}/{PREFIX}/images/{n}" for n in typical}, "only those files"
    for name, path in typical.items():
        size = path.stat().st_size
        # a PNG longer than the prefix also gives its last bytes (is its IEND chunk there?)
        tail = TAIL_BYTES if path.suffix.lower() == ".png" and size > PREFIX_BYTES else 0
        wanted = min(size, PREFIX_BYTES) + tail  # (+1 a read: the sentinel of a short-body check)
        assert read[f"{BUCKET}/{PREFIX}/images/{name}"] - wanted in (0, 1, 2)
    assert total_read / len(typical) <= PREFIX_BYTES + TAIL_BYTES + 2
    total_size = sum(p.stat().st_size for p in typical.values())
    assert total_read * 4 < total_size, (total_read, total_size)  # far less than the files


def test_same_query_twice_reads_again_but_not_twice_within_a_query(shelf) -> None:
    con, images, _ = shelf
    name = "astronaut.png"
    stats = _stats(con)
    before = stats.bytes
    uri = f"images/{name}"
    query = f"SELECT image_info(uri), image_info(uri) FROM shots WHERE uri = '{uri}'"
    con.sql(query).fetchall()
    once = stats.bytes - before
    assert once - (PREFIX_BYTES + TAIL_BYTES) in (0, 1, 2)  # the per-query cache serves the 2nd call
    con.sql(query).fetchall()
    assert stats.bytes - before - once - (PREFIX_BYTES + TAIL_BYTES) in (0, 1, 2)  # read again


def test_pointcloud_info_on_s3_equals_laspy_header(shelf) -> None:
    laspy = pytest.importorskip("laspy")
    con, _, clouds = shelf
    rows = con.sql("SELECT uri, pointcloud_info(uri) FROM sweeps ORDER BY id").fetchall()
    assert len(rows) == len(clouds)
    for uri, info in rows:
        path = clouds[uri.rsplit("/", 1)[1]]
        with laspy.open(path) as reader:
            header = reader.header
        assert info["error"] is None, (uri, info["error"])
        assert info["format"] == ("LAZ" if header.are_points_compressed else "LAS"), uri
        assert info["points"] == header.point_count, uri
        assert [info[k] for k in BOUNDS] == [*header.mins, *header.maxs], uri


def test_read_pointcloud_on_s3_equals_laspy(shelf) -> None:
    laspy = pytest.importorskip("laspy")
    con, _, clouds = shelf
    rows = con.sql("SELECT uri, len(read_pointcloud(uri)) FROM sweeps ORDER BY id").fetchall()
    for uri, points in rows:
        assert points == len(laspy.read(clouds[uri.rsplit("/", 1)[1]]).points), uri


@pytest.mark.parametrize("uri", [
    "s3://other-bucket/astronaut.png",
    f"s3://{BUCKET}/secret/astronaut.png",
    f"s3://{BUCKET}/{PREFIX}/../../secret/astronaut.png",
    f"s3://{BUCKET}/{PREFIX}-other/astronaut.png",
    "../../secret/astronaut.png",
    "images/../../../secret/astronaut.png",
    "../v1-other/astronaut.png",
    "file:///etc/passwd",
    "/etc/passwd",
])
def test_escaping_uri_on_s3_is_refused_and_nothing_read(shelf, uri: str) -> None:
    con, _, _ = shelf
    stats = _stats(con)
    before = stats.bytes
    for function in ("image_info", "read_blob"):
        with pytest.raises(fedquery.ForbiddenError):
            con.sql(f"SELECT {function}(replace(s.uri, 'images/astronaut.png', '{uri}')) "
                    "FROM shots s WHERE s.uri = 'images/astronaut.png'").fetchall()
    assert stats.bytes == before, "nothing of a refused file is read"
    assert not any("secret" in path or "other" in path for path in stats.snapshot())


def test_full_uri_inside_the_root_is_allowed(shelf) -> None:
    con, images, _ = shelf
    uri = f"s3://{BUCKET}/{PREFIX}/images/camera.png"
    info = con.sql(f"SELECT image_info('{uri}')").fetchall()[0][0]
    with Image.open(images["camera.png"]) as img:
        assert (info["format"], info["width"], info["height"], info["mode"]) == \
            (img.format, img.width, img.height, img.mode)


def test_missing_object_on_s3_is_reported_per_row(shelf) -> None:
    con, _, _ = shelf
    rows = con.sql("SELECT s.id, image_info(CASE WHEN s.id = 0 THEN 'images/nope.png' "
                   "ELSE s.uri END) FROM shots s ORDER BY s.id").fetchall()
    assert len(rows) > 1
    assert rows[0][1]["width"] is None and "not found" in rows[0][1]["error"]
    assert all(info["error"] is None for _, info in rows[1:] if info["format"] is not None)


@pytest.mark.parametrize("uri", [
    f"s3a://{BUCKET}/{PREFIX}/images/camera.png",
    f"s3://{BUCKET}/{PREFIX}/images/./camera.png",
    f"s3://{BUCKET}/{PREFIX}/clouds/../images/camera.png",
    "./images/camera.png",
])
def test_uris_that_stay_inside_the_root_are_read(shelf, uri: str) -> None:
    con, _, _ = shelf
    info = con.sql(f"SELECT image_info('{uri}')").fetchall()[0][0]
    assert (info["format"], info["error"]) == ("PNG", None)


def test_embed_image_on_s3_equals_local_and_reads_each_file_once(shelf) -> None:
    """Whole files are read for embedding; ``image_info`` in the same query is served from the
    per-query cache, so each file's bytes are fetched exactly once."""
    from fedquery.functions.embedders import embed_images_numpy

    con, images, _ = shelf
    names = sorted(n for n, p in images.items() if p.suffix.lower() in (".jpg", ".png"))[:8]
    stats = _stats(con)
    before = stats.bytes
    listed = ", ".join(f"'images/{n}'" for n in names)
    rows = con.sql(f"SELECT uri, embed_image(uri), image_info(uri).width FROM shots "
                   f"WHERE uri IN ({listed}) ORDER BY uri").fetchall()
    assert [uri for uri, _, _ in rows] == [f"images/{n}" for n in names]
    for uri, vector, width in rows:
        path = images[uri.rsplit("/", 1)[1]]
        expected = embed_images_numpy([path.read_bytes()])[0]
        assert vector is not None and width == Image.open(path).width, uri
        assert vector == pytest.approx(expected.tolist(), rel=1e-6), uri
    whole = sum(images[n].stat().st_size for n in names)
    assert whole <= stats.bytes - before <= whole + len(names)  # a sentinel byte checked at most
