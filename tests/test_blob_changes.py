"""A file that changes while a blob function reads it: never torn bytes, never padding.

On S3 the fault proxy replaces an object between the HEAD that learns its size and the GETs
that fetch it, or between two GETs of one read, or answers a GET with a body shorter than the
range asked for (its ``Content-Length`` matching). Locally, a writer rewrites the file between
two reads of the same descriptor (at the moment the read asks for its bytes). One read gives
the file as one version of it (read again once if it changed meanwhile), or the error "changed
while it was read" when it keeps changing, or, for a body that keeps coming back short, a
``SourceError``. Within one query a file is pinned to the version the query saw first:
``read_blob`` learns every file's size before it reads them (its batch memory), so a file
replaced after that is the row's error "changed while the query read it", never the new bytes
beside the old size, and never part of each.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

import fedquery
import fedquery.functions.blobs
import fedquery.functions.reads
from tests.services.s3 import s3_client
from tests.services.s3_faults import FaultProxy

BUCKET = "fedquery-changes"


@pytest.fixture()
def store(s3_endpoint: str, s3_credentials: dict, request: pytest.FixtureRequest):
    """A proxy in front of the S3 server, a put(key, bytes) into the bucket, and a catalog."""
    client = s3_client(s3_endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    prefix = request.node.name[:60]

    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=body)

    with FaultProxy(s3_endpoint, seed=3) as proxy:
        options = {"endpoint_url": proxy.url, "key": s3_credentials["AWS_ACCESS_KEY_ID"],
                   "secret": s3_credentials["AWS_SECRET_ACCESS_KEY"], "max_attempts": 1,
                   "request_timeout": 5}
        catalog = {"sources": {"store": {"kind": "files", "root": f"s3://{BUCKET}/{prefix}/",
                                         "options": options, "read_attempts": 3}}}
        yield proxy, put, catalog


def _blob(catalog: dict, uri: str, *, strict: bool = False):
    with fedquery.connect(catalog, strict=strict) as con:
        return con.sql("SELECT read_blob(?)", params=[uri]).fetchall()[0][0]


def _read(catalog: dict, uri: str) -> bytes:
    """One read of the whole file by the blob layer, in a run of its own (nothing pinned
    before it), as the first read of a query makes it."""
    with fedquery.connect(catalog) as con:
        blobs = con._session.functions.blobs
        return bytes(blobs.read(blobs.resolve(uri, next(iter(catalog["sources"]))), run="one")[0])


def _stale_in_query(catalog: dict, uri: str, restore) -> None:
    """``read_blob`` of a file replaced after the query learnt its size: the row's error (NULL;
    with ``strict``, a SourceError), never bytes of a version the query did not size.
    ``restore()`` puts the old version back (and the fault that replaces it) before each query."""
    restore()
    assert _blob(catalog, uri) is None
    restore()
    with pytest.raises(fedquery.SourceError, match="changed while the query read it"):
        _blob(catalog, uri, strict=True)


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


@pytest.mark.parametrize("new_size", [3000, 10])
def test_an_object_replaced_between_head_and_get_is_read_whole_again(store, new_size: int) -> None:
    proxy, put, catalog = store
    old, new = _pattern(1000, 1), _pattern(new_size, 2)
    put("a.bin", old)
    proxy.inject("replace", methods=("GET",), match="a.bin", count=1,
                 before=lambda: put("a.bin", new))
    assert _read(catalog, "a.bin") == new  # was the first 1000 bytes of 3000, or 10 + 990 NULs
    assert proxy.injected["replace"] == 1

    def restore() -> None:
        put("a.bin", old)
        proxy.inject("replace", methods=("GET",), match="a.bin", count=1,
                     before=lambda: put("a.bin", new))

    _stale_in_query(catalog, "a.bin", restore)


def test_an_object_replaced_between_two_gets_of_one_read(store, monkeypatch) -> None:
    proxy, put, catalog = store
    monkeypatch.setattr(fedquery.functions.reads, "READ_CHUNK", 1000)
    monkeypatch.setattr(fedquery.functions.blobs, "READ_CHUNK", 1000, raising=False)
    old, new = _pattern(2500, 1), _pattern(2500, 2)
    put("b.bin", old)
    gets = []

    def second_get() -> None:
        gets.append(1)
        if len(gets) == 2:
            put("b.bin", new)

    proxy.inject("replace", methods=("GET",), match="b.bin", before=second_get)
    assert _read(catalog, "b.bin") == new  # was old[:1000] + new[1000:]
    put("b.bin", old)
    gets.clear()
    assert _blob(catalog, "b.bin") is None  # sized as old, then changed: the row's error


def test_an_object_that_keeps_changing_is_the_rows_error(store) -> None:
    proxy, put, catalog = store
    put("c.bin", b"x" * 100)
    put("d.bin", b"d" * 50)
    versions = iter(range(1, 1000))
    proxy.inject("replace", methods=("GET",), match="c.bin",
                 before=lambda: put("c.bin", b"y" * (100 + next(versions))))
    with fedquery.connect(catalog) as con:
        rows = con.sql("SELECT u, read_blob(u), image_info(u).error FROM (VALUES ('c.bin'), "
                       "('d.bin')) t(u) ORDER BY u").fetchall()
    assert rows[0][1] is None and "changed while" in rows[0][2], rows
    assert rows[1][1] == b"d" * 50
    with pytest.raises(fedquery.SourceError, match="changed while"):
        _blob(catalog, "c.bin", strict=True)
    with pytest.raises(fedquery.functions.reads.Changed, match="changed while it was read, twice"):
        _read(catalog, "c.bin")


def test_a_short_body_is_read_again_never_padded(store) -> None:
    proxy, put, catalog = store
    body = _pattern(5000, 4)
    put("e.bin", body)
    proxy.inject("short", methods=("GET",), match="e.bin", count=1)
    assert _blob(catalog, "e.bin") == body  # was body[:-8] followed by 8 stray bytes
    assert proxy.injected["short"] == 1


def test_a_body_that_stays_short_is_a_source_error(store) -> None:
    proxy, put, catalog = store
    put("f.bin", _pattern(5000, 5))
    proxy.inject("short", methods=("GET",), match="f.bin")
    with pytest.raises(fedquery.SourceError) as info:
        _blob(catalog, "f.bin")
    assert "fewer bytes than" in str(info.value) and info.value.source == "store"


def test_a_file_replaced_between_two_reads_of_one_query_is_its_error(store) -> None:
    """One query reads a header first (its size and pin kept for the run), the whole file next
    (``thumbnail`` after ``image_info``, ``read_blob`` after its size): if the object was
    replaced in between, what the query learnt first no longer holds: the row's error."""
    from fedquery.functions.reads import Stale

    proxy, put, catalog = store
    put("g.bin", b"g" * 4000)
    with fedquery.connect(catalog) as con:
        blobs = con._session.functions.blobs
        blob = blobs.resolve("g.bin", "store")
        assert blobs.read(blob, 100, run="r1") == (b"g" * 100, 4000)
        put("g.bin", b"h" * 3000)
        with pytest.raises(Stale, match="not the version read before"):
            blobs.read(blob, run="r1")
        assert blobs.read(blob, run="r2") == (b"h" * 3000, 3000)  # another run: the new one


# ---------------------------------------------------------------------- local files


@pytest.fixture()
def rewriting(tmp_path: Path, monkeypatch):
    """A local file and a writer that rewrites it in place when the read asks for bytes at
    an offset past the start (``when(offset)``), ``times`` times at most."""
    path = tmp_path / "big.bin"
    path.write_bytes(_pattern(300_000, 1))
    monkeypatch.setattr(fedquery.functions.reads, "READ_CHUNK", 100_000)
    monkeypatch.setattr(fedquery.functions.blobs, "READ_CHUNK", 100_000, raising=False)
    state = {"times": 0, "new": _pattern(200_000, 2)}
    real_pread, real_preadv = os.pread, os.preadv
    lock = threading.Lock()

    def rewrite(fd: int, offset: int) -> None:
        with lock:
            if offset > 0 and state["times"] > 0 and _names(fd, path):
                state["times"] -= 1
                with open(path, "r+b") as out:  # in place: the same inode, another content
                    out.truncate(0)
                    out.write(state["new"])

    def pread(fd, n, offset):
        rewrite(fd, offset)
        return real_pread(fd, n, offset)

    def preadv(fd, buffers, offset):
        rewrite(fd, offset)
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(os, "preadv", preadv)
    catalog = {"sources": {"pics": {"kind": "files", "root": str(tmp_path)}}}
    return state, catalog


def _names(fd: int, path: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return False


def test_a_local_file_rewritten_during_its_read_is_read_again(rewriting) -> None:
    state, catalog = rewriting
    state["times"] = 1
    assert _read(catalog, "big.bin") == state["new"]  # was 100 000 old bytes + 100 000 new

    def restore() -> None:
        (Path(catalog["sources"]["pics"]["root"]) / "big.bin").write_bytes(_pattern(300_000, 1))
        state["times"] = 1

    _stale_in_query(catalog, "big.bin", restore)


def test_a_local_file_rewritten_during_every_read_is_the_rows_error(rewriting) -> None:
    state, catalog = rewriting
    state["times"] = 10
    with pytest.raises(fedquery.functions.reads.Changed, match="changed while it was read, twice"):
        _read(catalog, "big.bin")
    assert _blob(catalog, "big.bin") is None


def test_a_short_body_whose_last_byte_equals_the_marker_is_read_again(store, monkeypatch) -> None:
    """The sentinel byte is random: when it equals the file's own last byte, a short answer
    left it in place and passed as whole, with a hole of zeros (once in 256 short answers)."""
    from fedquery.functions import reads

    proxy, put, catalog = store
    body = _pattern(5000, 6)
    put("h.bin", body)
    monkeypatch.setattr(reads.random, "randrange", lambda n: body[-1])
    proxy.inject("short", methods=("GET",), match="h.bin", count=1)
    assert _blob(catalog, "h.bin") == body
    assert proxy.injected["short"] == 1
