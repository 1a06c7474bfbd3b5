"""``files`` sources: the listing table, and URIs confined to the declared roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fedquery
from fedquery.functions.blobs import Blobs


def test_listing_matches_the_folder(fleet) -> None:
    con, root = fleet
    camera = root / "blobs" / "camera"
    expected = sorted((str(p.relative_to(camera)), p.stat().st_size)
                      for p in camera.rglob("*") if p.is_file())
    got = con.sql("SELECT uri, size FROM camera_files ORDER BY uri").fetchall()
    assert got == expected


def test_listing_filters_and_joins(fleet) -> None:
    con, _ = fleet
    rows = con.sql("""SELECT count(*) FROM frames f JOIN camera_files c ON c.uri = f.image_uri
                      WHERE c.extension = 'jpg' AND f.camera = 'front'""").fetchall()
    assert rows == con.sql("SELECT count(*) FROM frames WHERE camera = 'front'").fetchall()


def test_missing_root_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(fedquery.SourceError) as info:
        fedquery.connect({"sources": {"cam": {"kind": "files", "root": str(tmp_path / "nope")}}})
    assert info.value.source == "cam"


@pytest.fixture()
def roots(tmp_path: Path) -> Blobs:
    (tmp_path / "cam" / "a").mkdir(parents=True)
    (tmp_path / "cam" / "a" / "x.jpg").write_bytes(b"inside")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.txt", tmp_path / "cam" / "link.txt")
    catalog = fedquery.catalog.load_catalog(
        {"sources": {"cam": {"kind": "files", "root": str(tmp_path / "cam")}}})
    return Blobs.from_catalog(catalog)


def test_relative_uris_resolve_inside_the_root(roots: Blobs, tmp_path: Path) -> None:
    blob = roots.resolve("a/./x.jpg", "cam")
    assert roots.read(blob) == (b"inside", 6)
    assert roots.resolve(str(tmp_path / "cam" / "a" / "x.jpg")).path == blob.path


@pytest.mark.parametrize("uri", ["../secret.txt", "a/../../secret.txt", "link.txt",
                                 "/etc/passwd", "s3://bucket/x.jpg", "http://example.com/x.jpg"])
def test_escaping_uris_are_refused(roots: Blobs, uri: str) -> None:
    with pytest.raises(fedquery.ForbiddenError):
        roots.resolve(uri, "cam")
