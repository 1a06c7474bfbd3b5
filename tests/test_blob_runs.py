"""Blob functions keep their state per run: eight threads on one Connection never mix answers.

DuckDB's functions are database-wide and run on DuckDB's own threads, so what a query reads,
caches or fails with is kept under that query's run (a DuckDB variable on its own cursor that
the plan passes to each blob function) and its errors are found again by a token of their own.
"""

from __future__ import annotations

import io
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

import fedquery

THREADS, ROUNDS = 8, 12
SIZES = {f"img{i}.png": (10 + i, 20 + i) for i in range(6)}


@pytest.fixture()
def shelf(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for name, size in SIZES.items():
        out = io.BytesIO()
        Image.new("RGB", size, "white").save(out, "PNG")
        (root / name).write_bytes(out.getvalue())
    (tmp_path / "outside.png").write_bytes((root / "img0.png").read_bytes())
    return root


def _good(con: fedquery.Connection, root: Path, n: int) -> None:
    names = [list(SIZES)[(n + k) % len(SIZES)] for k in range(3)]
    values = ", ".join(f"('{name}')" for name in names)
    rows = con.sql(f"SELECT u, image_info(u).width, image_info(u).height, read_blob(u) "
                   f"FROM (VALUES {values}) t(u) ORDER BY u").fetchall()
    assert rows == [(name, *SIZES[name], (root / name).read_bytes()) for name in sorted(names)]


def _refused(con: fedquery.Connection, n: int) -> None:
    uri = f"../outside.png?{n}"
    with pytest.raises(fedquery.ForbiddenError) as info:
        con.sql(f"SELECT image_info(u), read_blob(u) FROM (VALUES ('img0.png'), ('{uri}')) t(u)"
                ).fetchall()
    assert repr(uri) in str(info.value)


def _missing(con: fedquery.Connection, n: int) -> None:
    uri = f"missing-{n}.png"
    with pytest.raises(fedquery.SourceError) as info:
        con.sql(f"SELECT read_blob(u) FROM (VALUES ('img1.png'), ('{uri}')) t(u)").fetchall()
    assert uri in str(info.value) and info.value.source == "shelf"


def test_eight_threads_get_their_own_answers_and_errors(shelf: Path) -> None:
    catalog = {"sources": {"shelf": {"kind": "files", "root": str(shelf)}}}
    counter = itertools.count()
    with fedquery.connect(catalog, strict=True) as con:
        def work(_: int) -> None:
            for _ in range(ROUNDS):
                n = next(counter)
                (_good, lambda c, r, k: _refused(c, k), lambda c, r, k: _missing(c, k))[n % 3](
                    con, shelf, n)

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(work, range(THREADS)))


def test_each_run_reads_each_file_once_and_only_for_itself(shelf: Path) -> None:
    """Each query reads the file once (its second call is served by its own cache) and no
    query is served from another's: the bytes read are exactly one file per query."""
    catalog = {"sources": {"shelf": {"kind": "files", "root": str(shelf)}}}
    size = (shelf / "img3.png").stat().st_size
    queries = 64
    with fedquery.connect(catalog) as con:
        stats = con._session.functions.blobs.roots["shelf"].filesystem.handler.stats
        query = "SELECT read_blob('img3.png'), image_info('img3.png').width"
        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(lambda _: con.sql(query).fetchall(), range(queries)))
        assert all(a == [((shelf / "img3.png").read_bytes(), 13)] for a in answers)
        assert stats.snapshot()[str(shelf / "img3.png")] == queries * size
