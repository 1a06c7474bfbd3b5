"""A read that never ends: every blob read has a deadline (the source's ``read_timeout``).

The fault proxy trickles an S3 response a few KB a second: never silent long enough for the
S3 client's ``request_timeout``, yet minutes long. The query fails with a ``SourceError`` that
names ``read_timeout`` while the response is still trickling; the stuck read is abandoned on a
thread of its own, later queries on the same connection still run, and once too many reads are
stuck new ones are refused at once instead of piling up.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

import fedquery
import fedquery.functions.deadline as deadline
from fedquery.functions.deadline import Deadlines, ReadTimedOut, TooManyStuck
from tests.services.s3 import s3_client
from tests.services.s3_faults import FaultProxy

BUCKET = "fedquery-deadline"


@pytest.fixture()
def trickling(s3_endpoint: str, s3_credentials: dict):
    """Twenty 200 KB objects behind a proxy, and a catalog with a 2 s read_timeout."""
    client = s3_client(s3_endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    for i in range(20):
        client.put_object(Bucket=BUCKET, Key=f"slow/{i:02d}.bin", Body=bytes([i]) * 200_000)
    client.put_object(Bucket=BUCKET, Key="slow/fine.bin", Body=b"fine")
    with FaultProxy(s3_endpoint) as proxy:
        options = {"endpoint_url": proxy.url, "key": s3_credentials["AWS_ACCESS_KEY_ID"],
                   "secret": s3_credentials["AWS_SECRET_ACCESS_KEY"], "max_attempts": 3,
                   "request_timeout": 1}
        yield proxy, {"sources": {"store": {"kind": "files", "root": f"s3://{BUCKET}/slow/",
                                            "options": options, "read_timeout": 2}}}
        proxy.clear()


def _eventually(condition, tries: int = 200) -> bool:
    """Whether ``condition()`` becomes true within ``tries`` checks 50 ms apart."""
    pause = threading.Event()
    for _ in range(tries):
        if condition():
            return True
        pause.wait(0.05)
    return condition()


URIS = "SELECT read_blob(u) FROM (VALUES {}) t(u)"


def test_a_trickling_object_fails_the_query_at_its_deadline(trickling) -> None:
    proxy, catalog = trickling
    proxy.inject("trickle", chunk=100, pause=0.05, methods=("GET",), match=r"/\d\d\.bin")
    with fedquery.connect(catalog) as con:
        with pytest.raises(fedquery.SourceError) as info:
            con.sql("SELECT read_blob('00.bin')").fetchall()
        assert "read_timeout (2 s)" in str(info.value) and info.value.source == "store"
        assert not proxy.wait_idle(0.1)  # the response is still trickling: it was not waited for
        assert con.sql("SELECT read_blob('fine.bin')").fetchall() == [(b"fine",)]


def test_many_trickling_objects_in_one_query_fail_it_and_later_queries_run(trickling) -> None:
    proxy, catalog = trickling
    proxy.inject("trickle", chunk=100, pause=0.05, methods=("GET",), match=r"/\d\d\.bin")
    values = ", ".join(f"('{i:02d}.bin')" for i in range(20))
    with fedquery.connect(catalog) as con:
        with pytest.raises(fedquery.SourceError, match="read_timeout|still stuck"):
            con.sql(URIS.format(values)).fetchall()
        assert con._session.functions.blobs.deadlines.abandoned > 0
        proxy.clear()  # the trickles stop: their threads end, the abandoned count goes down
        assert proxy.wait_idle(10)
        assert con.sql(URIS.format("('fine.bin'), ('03.bin')")).fetchall() == [
            (b"fine",), (bytes([3]) * 200_000,)]


def test_too_many_stuck_reads_refuse_new_ones_at_once(trickling, monkeypatch) -> None:
    proxy, catalog = trickling
    monkeypatch.setattr(deadline, "MOST_ABANDONED", 2)
    proxy.inject("trickle", chunk=50, pause=0.05, methods=("GET",), match=r"/\d\d\.bin")
    with fedquery.connect(catalog) as con:
        for uri in ("00.bin", "01.bin"):
            with pytest.raises(fedquery.SourceError, match="read_timeout"):
                con.sql("SELECT read_blob(?)", params=[uri]).fetchall()
        requests = proxy.requests["GET"]
        with pytest.raises(fedquery.SourceError, match="2 earlier reads are still stuck"):
            con.sql("SELECT read_blob('fine.bin')").fetchall()
        assert proxy.requests["GET"] == requests  # refused before any request
        proxy.clear()
        assert proxy.wait_idle(10)
        deadlines = con._session.functions.blobs.deadlines
        assert _eventually(lambda: deadlines.abandoned == 0)
        assert con.sql("SELECT read_blob('fine.bin')").fetchall() == [(b"fine",)]


def test_deadlines_hand_back_results_and_errors() -> None:
    deadlines = Deadlines(most_abandoned=1)
    assert deadlines.run(lambda cancel: 7, timeout=5) == 7
    with pytest.raises(KeyError):
        deadlines.run(lambda cancel: {}["x"], timeout=5)
    stuck, told = threading.Event(), []
    with pytest.raises(ReadTimedOut):
        deadlines.run(lambda cancel: told.append(cancel) or stuck.wait(30), timeout=0.1)
    assert told[0].is_set() and deadlines.abandoned == 1  # told to stop at its next request
    with pytest.raises(TooManyStuck):
        deadlines.run(lambda cancel: 1, timeout=5)
    stuck.set()
    assert _eventually(lambda: deadlines.abandoned == 0)
    assert deadlines.run(lambda cancel: 8, timeout=5) == 8
