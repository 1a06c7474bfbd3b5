"""``Result._repr_html_``: thumbnails (JPEG, the URI under each) of image URIs wherever they are,
plots of point clouds, escaping, caps, bounded work."""

from __future__ import annotations

import base64
import html
import io
import re

import pytest
from PIL import Image

import fedquery
from fedquery import notebook, notebook_previews
from fedquery.notebook_values import NESTED_ROWS
from fedquery.result import HTML_ROWS
from tests.html_tree import parse

IMG = re.compile(r'<img src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"')
JPEG = re.compile(r'<img src="data:image/jpeg;base64,[^"]+" title="([^"]*)"[^>]*><div[^>]*>([^<]*)</div>')


@pytest.fixture(scope="module")
def con(sample):
    connection = fedquery.connect(sample)
    yield connection
    connection.close()


def _images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(m))) for m in IMG.findall(page)]


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>", 1)[1])


def test_image_uri_column_shows_jpeg_thumbnails_with_their_uri(con) -> None:
    res = con.sql("SELECT frame_id, image_uri FROM frames ORDER BY frame_id LIMIT 30")
    page = res._repr_html_()
    uris = [uri for _, uri in res.fetchall()[:HTML_ROWS]]
    rows = _rows(page)
    assert len(rows) == HTML_ROWS == 20 and 'class="fq-more"' in page  # and a row of "…"
    assert all('<img src="data:image/jpeg;base64,' in row for row in rows)
    images = _images(page)
    assert len(images) == 20
    for image in images:
        assert image.format == "JPEG" and max(image.size) <= notebook.THUMB_PX
    assert [(title, caption) for title, caption in JPEG.findall(page)] == [(u, u) for u in uris]


def test_blob_column_through_alias_and_join(con) -> None:
    page = con.sql("SELECT f.image_uri AS picture, d.city FROM frames f "
                   "JOIN drives d USING (drive_id) ORDER BY f.frame_id LIMIT 3")._repr_html_()
    assert len(_images(page)) == 3


def test_lidar_uri_column_shows_a_plot(con) -> None:
    page = con.sql("SELECT sweep_id, uri FROM lidar_sweeps ORDER BY sweep_id LIMIT 4")._repr_html_()
    images = _images(page)
    assert len(images) == 4
    for image in images:
        assert image.format == "PNG" and max(image.size) <= notebook.THUMB_PX  # dots stay sharp
        pixels = image.convert("RGB").getcolors(1 << 16)
        assert len(pixels) >= 2  # points drawn on the white background


def test_thumbnail_bytes_render_as_an_image(con) -> None:
    page = con.sql("SELECT thumbnail(image_uri, 32) AS t FROM frames ORDER BY frame_id "
                   "LIMIT 2")._repr_html_()
    images = _images(page)
    assert len(images) == 2 and all(max(i.size) <= 32 and i.format == "JPEG" for i in images)


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


# ---------------------------------------------------------------- previews beyond blob columns


def _figures(page: str) -> list[tuple[str, str, str]]:
    """(MIME type, tooltip, caption) of every thumbnail, in document order."""
    found = []
    for cell in parse(page).iter("img"):
        mime = cell.attrs["src"].split(";", 1)[0].removeprefix("data:")
        found.append((mime, cell.attrs["title"], ""))
    captions = re.findall(r'<img [^>]*><div[^>]*>([^<]*)</div>', page)
    return [(m, t, c) for (m, t, _), c in zip(found, captions, strict=True)]


def test_entity_lists_preview_their_member_files(con) -> None:
    """``FROM drive``: the frames and lidar members are lists of structs; the image URIs in
    them show thumbnails (JPEG), the sweep URIs plots (PNG), each with its URI under it."""
    res = con.sql("SELECT drive_id, frames, lidar FROM drive ORDER BY drive_id LIMIT 2")
    page = res._repr_html_()
    first = res.fetchall()[0]
    figures = _figures(page)
    images = [(t, c) for m, t, c in figures if m == "image/jpeg"]
    plots = [(t, c) for m, t, c in figures if m == "image/png"]
    shown = [f["image_uri"] for f in first[1][:NESTED_ROWS]]
    assert [t for t, _ in images[:NESTED_ROWS]] == shown
    assert all(t == c for t, c in images)
    assert [t for t, _ in plots[:NESTED_ROWS]] == [s["uri"] for s in first[2][:NESTED_ROWS]]
    assert len(images) == len(plots) == 2 * NESTED_ROWS
    assert f"… {len(first[1]) - NESTED_ROWS} more" in page
    assert "{'" not in page and "datetime." not in page  # no Python reprs of the structs


def test_computed_uris_are_previewed(con, sample) -> None:
    """URIs built in the query (relative to a root, or absolute inside one) show thumbnails;
    strings that name no file of a root stay text, with nothing said about them."""
    root = sample.parent / "blobs" / "camera"
    res = con.sql("""
        SELECT split_part(image_uri, '/', 1) || '/' || split_part(image_uri, '/', 2) AS rel,
               $root || '/' || image_uri AS absolute,
               'nope/' || image_uri AS missing,
               '../' || image_uri AS climbing
        FROM frames ORDER BY frame_id LIMIT 3""", params={"root": str(root)})
    page = res._repr_html_()
    rows = res.fetchall()
    figures = _figures(page)
    assert [(m, t) for m, t, _ in figures] == [
        ("image/jpeg", uri) for row in rows for uri in row[:2]]
    for row in rows:
        assert html.escape(row[2]) in page and html.escape(row[3]) in page
    assert "not found" not in page and "leaves the root" not in page


def test_nothing_outside_the_roots_is_read(con, sample, tmp_path) -> None:
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (40, 40), "red").save(outside)
    link = sample.parent / "blobs" / "camera" / "link-out.jpg"
    link.symlink_to(outside)
    try:
        page = con.sql("SELECT $a AS a, $b AS b, 'camera/../../../' || $c AS c, "
                       "'0001/../link-out.jpg' AS d",
                       params={"a": str(outside), "b": "file://" + str(outside),
                               "c": str(outside)})._repr_html_()
    finally:
        link.unlink()
    assert not IMG.findall(page)


def test_previews_are_bounded(con) -> None:
    """Work is bounded by what is shown: at most MAX_PREVIEWS files are read for one table,
    and only the shown items of a list."""
    uris = [u for (u,) in con.sql("SELECT image_uri FROM frames ORDER BY frame_id").fetchall()]
    lists = [[{"n": i, "uri": u} for i, u in enumerate(uris[r * 10:(r + 1) * 10])]
             for r in range(HTML_ROWS)]
    blobs = _blobs(con)
    before = blobs.roots["camera"].stats.snapshot()
    page = notebook.render_html(["frames"], [(frames,) for frames in lists], more=False,
                                blobs=blobs)
    read = {p for p, n in blobs.roots["camera"].stats.snapshot().items() if before.get(p) != n}
    assert len(IMG.findall(page)) == notebook_previews.MAX_PREVIEWS
    assert len(read) == notebook_previews.MAX_PREVIEWS
    shown = {u for frames in lists for f in frames[:NESTED_ROWS] for u in [f["uri"]]}
    assert {p.rsplit("/camera/", 1)[1] for p in read} <= shown
    left = len(shown) - notebook_previews.MAX_PREVIEWS
    assert f"{left} file(s) not previewed" in page


def test_transparent_images_stay_png() -> None:
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    clear.paste((200, 0, 0, 255), (10, 10, 30, 30))
    opaque = Image.new("RGBA", (64, 64), (0, 128, 0, 255))
    data = []
    for image in (clear, opaque):
        out = io.BytesIO()
        image.save(out, "PNG")
        data.append(out.getvalue())
    page = notebook.render_html(["a", "b"], [tuple(data)], more=False)
    assert [m for m, _, _ in _figures(page)] == ["image/png", "image/jpeg"]
    kept = _images(page)[0]
    assert kept.mode == "RGBA" and kept.getchannel("A").getextrema()[0] == 0
