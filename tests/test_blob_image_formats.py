"""The image functions decode PNG, JPEG, GIF, WebP, BMP and TIFF only, never another program.

Pillow knows many more formats, and for EPS it runs Ghostscript (``gs``) on the file: an
external program on untrusted input. A fake ``gs`` first on ``PATH`` records every call; plain
Pillow calls it for an EPS file (so the trap works), the blob functions never do. EPS and the
other formats Pillow reads (PPM, ICO, TGA, PCX, SGI, IM) give ``format not supported`` per row
(``not an image`` when Pillow has no magic bytes to tell it by), whatever the file's name says,
and a ``SourceError`` with ``strict=True``.
"""

from __future__ import annotations

import io
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

import fedquery

REFUSED = ("EPS", "PPM", "ICO", "TGA", "PCX", "SGI", "IM")
READ = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
UNREAD = ("format not supported: ", "not an image")  # IM has no magic bytes Pillow checks


def _encoded(fmt: str) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 12 deprecates IM
        Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


@pytest.fixture()
def fake_gs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``gs`` on ``PATH`` that appends its arguments to a file and fails; Pillow's cached
    answer to "is Ghostscript installed" is cleared so that it finds this one."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "gs-calls"
    bin_dir.mkdir()
    script = bin_dir / "gs"
    script.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo 10.0 && exit 0\n'
                      f'echo "$@" >> {calls}\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return calls


@pytest.fixture()
def shelf(tmp_path: Path) -> Path:
    root = tmp_path / "shelf"
    root.mkdir()
    for fmt in REFUSED + READ:
        data = _encoded(fmt)
        (root / f"{fmt.lower()}.{fmt.lower()}").write_bytes(data)
        (root / f"{fmt.lower()}-named.png").write_bytes(data)  # the name says PNG
    return root


def _connect(root: Path, strict: bool = False) -> fedquery.Connection:
    return fedquery.connect({"sources": {"cam": {"kind": "files", "root": str(root)}}},
                            strict=strict)


def test_the_trap_catches_pillow_running_ghostscript(fake_gs: Path) -> None:
    with Image.open(io.BytesIO(_encoded("EPS"))) as img, \
            pytest.raises(subprocess.CalledProcessError):
        img.load()
    assert fake_gs.exists(), "plain Pillow runs gs on an EPS file"


@pytest.mark.parametrize("fmt", REFUSED)
def test_other_formats_are_not_supported_and_run_nothing(shelf: Path, fake_gs: Path,
                                                         fmt: str) -> None:
    names = (f"{fmt.lower()}.{fmt.lower()}", f"{fmt.lower()}-named.png")
    with _connect(shelf) as con:
        rows = [con.sql("SELECT image_info($u), thumbnail($u, 16), embed_image($u)",
                        params={"u": name}).fetchall()[0] for name in names]
    assert not fake_gs.exists(), f"gs ran: {fake_gs.read_text()}"
    for name, (info, thumb, vector) in zip(names, rows, strict=True):
        assert info["format"] not in READ and info["width"] is None, (name, info)
        assert info["error"].startswith(UNREAD), info["error"]
        assert thumb is None and vector is None, name
    with _connect(shelf, strict=True) as con:
        for function in ("image_info($u)", "thumbnail($u, 16)", "embed_image($u)"):
            with pytest.raises(fedquery.SourceError, match="|".join(UNREAD)):
                con.sql(f"SELECT {function}", params={"u": f"{fmt.lower()}-named.png"}).fetchall()
    assert not fake_gs.exists(), fake_gs.read_text()


@pytest.mark.parametrize("fmt", READ)
def test_the_supported_formats_are_read(shelf: Path, fmt: str) -> None:
    with _connect(shelf, strict=True) as con:
        info, thumb, vector = con.sql("SELECT image_info($u), thumbnail($u, 16), embed_image($u)",
                                      params={"u": f"{fmt.lower()}-named.png"}).fetchall()[0]
    assert (info["format"], info["width"], info["height"], info["error"]) == (fmt, 32, 24, None)
    with Image.open(io.BytesIO(thumb)) as small:
        assert (small.format, small.size) == ("PNG", (16, 12))
    assert vector is not None


def test_embed_image_decodes_within_the_pixel_cap(tmp_path: Path) -> None:
    """A small file can hold a big picture: ``embed_image`` checks the header's pixels against
    ``limits.thumbnail_pixels`` before any embedder decodes it, as ``thumbnail`` does."""
    out = io.BytesIO()
    Image.new("RGB", (3000, 2000), "white").save(out, "PNG")
    (tmp_path / "wide.png").write_bytes(out.getvalue())
    assert len(out.getvalue()) < 64 * 1024
    source = {"kind": "files", "root": str(tmp_path), "limits": {"thumbnail_pixels": 5_000_000}}
    for strict in (False, True):
        with fedquery.connect({"sources": {"cam": source}}, strict=strict) as con:
            query = "SELECT embed_image('wide.png'), thumbnail('wide.png', 64)"
            if strict:
                with pytest.raises(fedquery.SourceError, match=r"6,000,000 pixels to decode is "
                                   r"over limits.thumbnail_pixels \(5,000,000\)"):
                    con.sql(query).fetchall()
            else:
                assert con.sql(query).fetchall() == [(None, None)]
    source["limits"]["thumbnail_pixels"] = 6_000_000
    with fedquery.connect({"sources": {"cam": source}}, strict=True) as con:
        vector, thumb = con.sql("SELECT embed_image('wide.png'), thumbnail('wide.png', 64)").fetchall()[0]
    assert vector is not None and thumb is not None
