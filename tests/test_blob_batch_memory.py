"""Memory a blob function's call holds: its batch's results (``limits.batch_memory``) and each
decode's working memory (``limits.decode_memory``), reserved before anything is read.

DuckDB hands a blob function a batch of rows (up to 2048) and takes every row's value back at
once, so ``read_blob``'s bytes of every file in the batch live together (twice: fedquery's
array and DuckDB's copy). The call learns the sizes first (nothing read), then holds their sum
from the source's ``batch_memory``, waiting while other calls hold it; a batch that needs more
than the whole budget is a ``SourceError`` before any file is read. A point-cloud decode
reserves what that decode really takes beyond the file (an ascii PCD parses every value as a
float64), measured here with ``tracemalloc``.
"""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fedquery
from fedquery.functions import budget as budget_module
from fedquery.functions import pointclouds

FILES = 4
FILE_BYTES = 300_000


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    for i in range(FILES):
        (tmp_path / f"f{i}.bin").write_bytes(bytes([i + 1]) * FILE_BYTES)
    points = np.random.default_rng(2).random((10_000, 4), dtype=np.float32)
    for i in range(FILES):
        (tmp_path / f"sweep{i}.bin").write_bytes(points.tobytes())  # KITTI: 10,000 points
    return tmp_path


def _connect(root: Path, **limits) -> fedquery.Connection:
    source = {"kind": "files", "root": str(root), "limits": limits}
    return fedquery.connect({"sources": {"cam": source}, "tables": {"files": {"source": "cam"}}})


def _bytes_read(con: fedquery.Connection) -> int:
    return con._session.functions.blobs.roots["cam"].filesystem.handler.stats.bytes


BLOBS = "SELECT uri, read_blob(uri) FROM files WHERE uri LIKE 'f%' ORDER BY uri"


def test_a_batch_over_batch_memory_fails_before_any_file_is_read(root: Path) -> None:
    with _connect(root, batch_memory="2MB") as con:  # 4 x 300 kB, twice: 2.4 MB
        with pytest.raises(fedquery.SourceError) as info:
            con.sql(BLOBS).fetchall()
        assert "needs 2.289 MiB" in str(info.value) and "limits.batch_memory" in str(info.value)
        assert info.value.source == "cam"
        assert _bytes_read(con) == 0  # the sizes only (fstat)
        rows = con.sql("SELECT uri, read_blob(uri) FROM files WHERE uri IN ('f0.bin', 'f1.bin') "
                       "ORDER BY uri").fetchall()
    assert rows == [("f0.bin", b"\x01" * FILE_BYTES), ("f1.bin", b"\x02" * FILE_BYTES)]


def test_a_batch_waits_while_another_call_holds_the_budget(root: Path) -> None:
    with _connect(root, batch_memory="3MB") as con:
        results = con._session.functions.blobs.roots["cam"].results
        answer: list = []
        with results.reserve(results.total):  # another call holds all of it
            query = threading.Thread(target=lambda: answer.extend(con.sql(BLOBS).fetchall()))
            query.start()
            query.join(0.5)
            assert query.is_alive() and _bytes_read(con) == 0  # waiting, nothing read
        query.join(30)
    assert [uri for uri, _ in answer] == [f"f{i}.bin" for i in range(FILES)]
    assert [data for _, data in answer] == [bytes([i + 1]) * FILE_BYTES for i in range(FILES)]


def test_read_pointcloud_holds_its_points_from_batch_memory(root: Path) -> None:
    query = "SELECT sum(len(read_pointcloud(uri))) FROM files WHERE uri LIKE 'sweep%'"
    over = pytest.raises(fedquery.SourceError, match=r"read_pointcloud: .*limits\.batch_memory")
    with _connect(root, batch_memory="2MB") as con, over:  # 4 x 10,000 points x 32 B, twice
        con.sql(query).fetchall()
    with _connect(root, batch_memory="3MB") as con:
        assert con.sql(query).fetchall() == [(FILES * 10_000,)]


# ---------------------------------------------------------------------- decode reservations


def _ascii_pcd(points: int) -> bytes:
    header = (f"VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
              f"WIDTH {points}\nHEIGHT 1\nPOINTS {points}\nDATA ascii\n").encode()
    return header + b"1 2 3 4\n" * points


def _decode_peak(data: bytes, name: str) -> int:
    """The most memory Python and numpy allocate while one cloud is decoded into its columns."""
    where = pointclouds.count_from(data, name, len(data))
    columns = pointclouds.PointColumns([where.count])
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        columns.fill(0, data, where)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name, data", [
    ("a.pcd", _ascii_pcd(2_000_000)),
    ("k.bin", np.ones((1_500_000, 4), np.float32).tobytes()),
])
def test_decode_reservation_covers_what_the_decode_takes(tmp_path: Path, monkeypatch,
                                                         name: str, data: bytes) -> None:
    """``read_pointcloud`` reserves the file and its decode's working memory from
    ``decode_memory``: at least what decoding it allocates (16 MB of ascii PCD parse into 64 MB
    of floats beside two copies of the text: more than the file plus a flat 64 MiB)."""
    (tmp_path / name).write_bytes(data)
    reserved: list[tuple] = []
    real = budget_module.MemoryBudget.reserve

    def reserve(self, nbytes: int):
        reserved.append((self, nbytes))
        return real(self, nbytes)

    monkeypatch.setattr(budget_module.MemoryBudget, "reserve", reserve)
    with _connect(tmp_path, read_pointcloud="1GiB") as con:
        decodes = con._session.functions.blobs.roots["cam"].budget
        assert con.sql(f"SELECT len(read_pointcloud('{name}'))").fetchall()[0][0] > 0
    [whole] = [n for budget, n in reserved if budget is decodes]  # the file and its decode
    decode = whole - len(data)
    assert decode >= _decode_peak(data, name), (decode, _decode_peak(data, name))
