"""Local blob reads stay beneath their root: no symlink, hard link, FIFO or folder gets through.

The tree under test has, inside the root, a picture, a folder, symlinks that stay inside and
symlinks (to a file and to a folder) that lead out; a hard link to a file outside; a FIFO and a
folder named like a picture. Reads open the path one component at a time beneath the root
without following a symlink out of it and check the opened file, so a symlink swapped between a
check and the open cannot hand out an outside file (the race test shows it: the old
check-then-open returned an outside file about once in fifteen tries).
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

import fedquery

OUTSIDE = b"OUTSIDE-SECRET"


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(out, "PNG")
    return out.getvalue()


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "in.png").write_bytes(_png(10, 10))
    (root / "sub" / "inner.png").write_bytes(_png(12, 12))
    (outside / "secret.png").write_bytes(_png(30, 20))
    (outside / "secret.txt").write_bytes(OUTSIDE)
    os.symlink("sub/inner.png", root / "alias.png")          # stays inside
    os.symlink("../in.png", root / "sub" / "up.png")          # stays inside, through ..
    os.symlink("sub", root / "subalias")                      # a folder inside
    os.symlink(outside / "secret.png", root / "leak.png")     # leads out (absolute)
    os.symlink("../../outside", root / "sub" / "escape")      # a folder out (relative)
    os.symlink(outside, root / "linkdir")                     # a folder out (absolute)
    os.link(outside / "secret.txt", root / "hard.txt")        # a hard link to an outside file
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "pipe.bin")
    (root / "folder.png").mkdir()
    return tmp_path


def _connect(tree: Path, **settings) -> fedquery.Connection:
    source = {"kind": "files", "root": str(tree / "root"), **settings}
    return fedquery.connect({"sources": {"cam": source}, "tables": {"cam_files": {"source": "cam"}}})


def test_listing_lists_only_regular_files_beneath_the_root(tree: Path) -> None:
    with _connect(tree) as con:
        rows = dict(con.sql("SELECT uri, size FROM cam_files").fetchall())
    inner = (tree / "root" / "sub" / "inner.png").stat().st_size
    assert rows == {"in.png": (tree / "root" / "in.png").stat().st_size, "sub/inner.png": inner,
                    "alias.png": inner, "sub/up.png": (tree / "root" / "in.png").stat().st_size}


def test_listing_shows_hard_links_only_when_allowed(tree: Path) -> None:
    with _connect(tree, allow_hard_links=True) as con:
        rows = dict(con.sql("SELECT uri, size FROM cam_files").fetchall())
    assert rows["hard.txt"] == len(OUTSIDE) and "linkdir/secret.txt" not in rows


@pytest.mark.parametrize("uri", ["leak.png", "linkdir/secret.png", "sub/escape/secret.png"])
def test_symlinks_out_of_the_root_are_refused(tree: Path, uri: str) -> None:
    with _connect(tree) as con:
        for function in ("read_blob", "image_info"):
            with pytest.raises(fedquery.ForbiddenError, match="cam"):
                con.sql(f"SELECT {function}('{uri}')").fetchall()


def test_symlinks_that_stay_inside_are_followed(tree: Path) -> None:
    with _connect(tree) as con:
        alias, up, through = con.sql("SELECT read_blob('alias.png'), image_info('sub/up.png').width, "
                                     "image_info('subalias/inner.png').width").fetchall()[0]
    assert alias == (tree / "root" / "sub" / "inner.png").read_bytes() and (up, through) == (10, 12)


def test_hard_links_are_refused_unless_allowed(tree: Path) -> None:
    with _connect(tree) as con:
        data, info = con.sql("SELECT read_blob('hard.txt'), image_info('hard.txt')").fetchall()[0]
        assert data is None and "hard link" in info["error"] and info["bytes"] is None
    strict = fedquery.connect({"sources": {"cam": {"kind": "files", "root": str(tree / "root")}}},
                              strict=True)
    with strict, pytest.raises(fedquery.SourceError, match="hard link"):
        strict.sql("SELECT read_blob('hard.txt')").fetchall()
    with _connect(tree, allow_hard_links=True) as con:
        assert con.sql("SELECT read_blob('hard.txt')").fetchall() == [(OUTSIDE,)]


def _within(seconds: float, function):
    """``function()``'s answer, failing (not hanging) when it takes longer than ``seconds``."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the read hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("uri", ["pipe.png", "folder.png"])
def test_fifos_and_folders_are_per_row_errors_never_a_hang(tree: Path, uri: str) -> None:
    with _connect(tree) as con:
        info, data, thumb = _within(60, lambda: con.sql(
            f"SELECT image_info('{uri}'), read_blob('{uri}'), thumbnail('{uri}', 8)").fetchall()[0])
        cloud, points = _within(60, lambda: con.sql(
            "SELECT pointcloud_info('pipe.bin'), read_pointcloud('pipe.bin')").fetchall()[0])
    assert "not a regular file" in info["error"] and data is None and thumb is None
    assert "not a regular file" in cloud["error"] and points is None


def test_a_symlink_swapped_between_check_and_open_never_hands_out_an_outside_file(tmp_path: Path) -> None:
    """A thread flips ``link.png`` between an inside and an outside picture while queries read
    it. Each answer is the inside file or a refusal, never the outside one."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    inside_png, outside_png = _png(10, 10), _png(30, 20)
    (root / "in.png").write_bytes(inside_png)
    (outside / "secret.png").write_bytes(outside_png)
    link, stop, flips = root / "link.png", threading.Event(), [0]

    def swap() -> None:
        while not stop.is_set():
            spare = root / f".link{flips[0] % 2}"
            spare.unlink(missing_ok=True)
            os.symlink("in.png" if flips[0] % 2 else outside / "secret.png", spare)
            os.replace(spare, link)
            flips[0] += 1

    swapper = threading.Thread(target=swap, daemon=True)
    seen = {"inside": 0, "outside": 0, "refused": 0}
    with fedquery.connect({"sources": {"r": {"kind": "files", "root": str(root)}}}) as con:
        swapper.start()
        try:
            for i in range(3000):
                query = ("SELECT read_blob('link.png')" if i % 2 else
                         "SELECT image_info('link.png').width")
                try:
                    value = con.sql(query).fetchall()[0][0]
                except fedquery.ForbiddenError:
                    seen["refused"] += 1
                    continue
                if value in (outside_png, 30):
                    seen["outside"] += 1
                elif value in (inside_png, 10):
                    seen["inside"] += 1
        finally:
            stop.set()
            swapper.join()
    assert seen["outside"] == 0, seen
    assert seen["inside"] + seen["refused"] == 3000, seen
    assert flips[0] > 1000 and seen["inside"] > 100, (flips, seen)  # the swap really ran
