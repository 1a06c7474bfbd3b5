"""``Result._repr_html_``: thumbnails for image and point-cloud URI columns, escaping, caps."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

import fedquery
from fedquery import notebook
from fedquery.result import HTML_ROWS

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def con(sample):
    connection = fedquery.connect(sample)
    yield connection
    connection.close()


def _images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(m))) for m in IMG.findall(page)]


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>", 1)[1])


def test_image_uri_column_shows_thumbnails(con) -> None:
    page = con.sql("SELECT frame_id, image_uri FROM frames ORDER BY frame_id LIMIT 30")._repr_html_()
    rows = _rows(page)
    assert len(rows) == HTML_ROWS == 20
    assert all('<img src="data:image/png;base64,' in row for row in rows)
    images = _images(page)
    assert len(images) == 20
    for image in images:
        assert image.format == "PNG" and max(image.size) <= notebook.THUMB_PX
    assert "more rows" in page


def test_blob_column_through_alias_and_join(con) -> None:
    page = con.sql("SELECT f.image_uri AS picture, d.city FROM frames f "
                   "JOIN drives d USING (drive_id) ORDER BY f.frame_id LIMIT 3")._repr_html_()
    assert len(_images(page)) == 3


def test_lidar_uri_column_shows_a_plot(con) -> None:
    page = con.sql("SELECT sweep_id, uri FROM lidar_sweeps ORDER BY sweep_id LIMIT 4")._repr_html_()
    images = _images(page)
    assert len(images) == 4
    for image in images:
        assert max(image.size) <= notebook.THUMB_PX
        pixels = image.convert("RGB").getcolors(1 << 16)
        assert len(pixels) >= 2  # points drawn on the white background


def test_thumbnail_bytes_render_as_an_image(con) -> None:
    page = con.sql("SELECT thumbnail(image_uri, 32) AS t FROM frames ORDER BY frame_id "
                   "LIMIT 2")._repr_html_()
    images = _images(page)
    assert len(images) == 2 and all(max(i.size) <= 32 for i in images)


def test_values_are_escaped(con) -> None:
    page = con.sql("SELECT '<script>alert(1)</script>' AS \"<b>x</b>\", "
                   "repeat('a', 5000) AS long")._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert "a" * 500 not in page


def test_uri_outside_the_roots_leaks_nothing(con, sample) -> None:
    secret = (sample.parent / "warehouse.duckdb").read_bytes()[:64]
    page = con.sql("SELECT '../../warehouse.duckdb' AS image_uri, '../../x.png' AS p")._repr_html_()
    assert not IMG.findall(page)
    assert "../../warehouse.duckdb" in page
    assert base64.b64encode(secret[:48]).decode() not in page


def test_escaping_blob_uri_is_refused_not_raised(con) -> None:
    """Values of blob columns that climb out of their root: escaped URI and a reason."""
    rendered = notebook.render_html(
        ["image_uri", "uri"], [("../../warehouse.png", "0001/nope.las"),
                               ("/etc/passwd.png", "../../../x.bin"),
                               ("<img src=x onerror=alert(1)>.png", None)],
        more=False, blob_columns={"image_uri": "camera", "uri": "lidar"}, blobs=_blobs(con))
    assert not IMG.findall(rendered)
    assert "leaves the root" in rendered and "outside every declared" in rendered
    assert "file not found" in rendered
    assert "<img src=x" not in rendered


def test_missing_image_shows_the_uri_and_a_reason(con) -> None:
    blobs = _blobs(con)
    page = notebook.render_html(["image_uri"], [("0001/does-not-exist.jpg",), (None,)],
                                more=False, blob_columns={"image_uri": "camera"}, blobs=blobs)
    assert "0001/does-not-exist.jpg" in page and "file not found" in page
    assert "NULL" in page and not IMG.findall(page)


def test_size_cap_leaves_images_out(con) -> None:
    rows = con.sql("SELECT image_uri FROM frames ORDER BY frame_id LIMIT 20").fetchall()
    blobs = _blobs(con)
    full = notebook.render_html(["image_uri"], rows, more=False,
                                blob_columns={"image_uri": "camera"}, blobs=blobs)
    assert len(IMG.findall(full)) == 20
    cap = len(full) // 3
    capped = notebook.render_html(["image_uri"], rows, more=False,
                                  blob_columns={"image_uri": "camera"}, blobs=blobs, max_bytes=cap)
    assert len(capped) <= cap
    assert 0 < len(IMG.findall(capped)) < 20
    assert "left out" in capped


def test_default_cap_holds_for_many_rows(con) -> None:
    page = con.sql("SELECT image_uri, image_uri AS again, thumbnail(image_uri, 512) AS big "
                   "FROM frames ORDER BY frame_id LIMIT 500")._repr_html_()
    assert len(page.encode()) <= notebook.MAX_HTML_BYTES
    assert len(_rows(page)) == 20


def test_top_down_plot_subsamples() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    png = notebook.top_down_png(rng.normal(size=200_000), rng.normal(size=200_000))
    image = Image.open(io.BytesIO(png))
    assert image.size == (notebook.THUMB_PX, notebook.THUMB_PX)
    empty = Image.open(io.BytesIO(notebook.top_down_png(np.array([]), np.array([]))))
    assert empty.size == (notebook.THUMB_PX, notebook.THUMB_PX)


def _blobs(con):
    return con._session.functions.blobs


def test_catalog_statements_render_too(sample) -> None:
    """SHOW TABLES and DESCRIBE results are computed without a plan; they render all the same."""
    with fedquery.connect(sample) as con:
        assert "<td>frames</td>" in con.sql("SHOW TABLES")._repr_html_()
        assert "drive_id" in con.sql("DESCRIBE drives")._repr_html_()
