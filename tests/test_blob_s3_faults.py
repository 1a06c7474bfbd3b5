"""Blob reads on S3 under faults: transient errors are retried, a lasting one fails the query.

A fault proxy (``tests/services/s3_faults.py``) sits between fedquery and ``moto_server`` and
answers a seeded fraction of the object requests with ``503 SlowDown``, resets or stalls. Each
answer is then either complete and right, or a ``SourceError`` naming the files source: a
transient fault never turns into a per-row "bad file" NULL. A missing object stays a per-row
error; a request S3 refuses (a 400 such as ``VALIDATION``, 403, 409) is a problem of the
source, not of the file: a ``SourceError`` too (``Answering`` answers chosen requests so).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery
from tests.services.s3 import upload_tree
from tests.services.s3_faults import FaultProxy

BUCKET, PREFIX, COUNT = "fedquery-faults", "jpegs", 400
COUNT_QUERY = "SELECT count(i.width), count(*), count(i.error) FROM (SELECT image_info(uri) AS i FROM shots)"


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, s3_credentials) -> Path:
    """400 small JPEGs on S3, and a local table of their URIs (plus one missing object)."""
    tmp = tmp_path_factory.mktemp("faults")
    folder = tmp / "upload"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(COUNT):
        pixels = rng.integers(0, 255, (16 + i % 7, 24 + i % 5, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG")
        (folder / f"img-{i:03d}.jpg").write_bytes(out.getvalue())
    upload_tree(folder, BUCKET, PREFIX, endpoint=s3_endpoint)
    lake = tmp / "lake" / "shots"
    lake.mkdir(parents=True)
    uris = [f"img-{i:03d}.jpg" for i in range(COUNT)]
    pq.write_table(pa.table({"uri": uris}), lake / "part-0.parquet")
    (tmp / "lake" / "one").mkdir()
    pq.write_table(pa.table({"uri": ["img-000.jpg", "nope.jpg", "img-001.jpg"]}),
                   tmp / "lake" / "one" / "part-0.parquet")
    return tmp


def _catalog(jpegs: Path, proxy: FaultProxy, credentials: dict, **settings) -> dict:
    options = {"endpoint_url": proxy.url, "key": credentials["AWS_ACCESS_KEY_ID"],
               "secret": credentials["AWS_SECRET_ACCESS_KEY"], "max_attempts": 1,
               "request_timeout": 2, "connect_timeout": 2}
    return {"sources": {"lake": {"kind": "parquet", "root": str(jpegs / "lake")},
                        "store": {"kind": "files", "root": f"s3://{BUCKET}/{PREFIX}/",
                                  "options": options, **settings}},
            "tables": {"shots": {"source": "lake", "path": "shots/"},
                       "few": {"source": "lake", "path": "one/"}},
            "blobs": {"shots.uri": "store", "few.uri": "store"}}


def test_half_the_requests_answered_503_still_gives_every_row(jpegs, s3_endpoint, s3_credentials) -> None:
    with FaultProxy(s3_endpoint, seed=11) as proxy:
        proxy.inject("503", rate=0.5, match=f"/{PREFIX}/")
        with fedquery.connect(_catalog(jpegs, proxy, s3_credentials, read_attempts=20)) as con:
            assert con.sql(COUNT_QUERY).fetchall() == [(COUNT, COUNT, 0)]
        assert proxy.injected["503"] > COUNT / 2, proxy.injected


def test_a_fault_that_lasts_fails_the_query_naming_the_source(jpegs, s3_endpoint, s3_credentials) -> None:
    with FaultProxy(s3_endpoint, seed=1) as proxy:
        proxy.inject("503", match=f"/{PREFIX}/")
        for strict in (False, True):
            catalog = _catalog(jpegs, proxy, s3_credentials, read_attempts=3)
            with fedquery.connect(catalog, strict=strict) as con, \
                    pytest.raises(fedquery.SourceError) as info:
                con.sql(COUNT_QUERY).fetchall()
            assert info.value.source == "store"
            assert "3 attempts in a row with transient errors" in str(info.value)
            assert re.search("503|slow_?down", str(info.value), re.I), str(info.value)


def test_a_missing_object_stays_a_per_row_error_under_faults(jpegs, s3_endpoint, s3_credentials) -> None:
    with FaultProxy(s3_endpoint, seed=5) as proxy:
        proxy.inject("503", rate=0.5, match=f"/{PREFIX}/")
        with fedquery.connect(_catalog(jpegs, proxy, s3_credentials, read_attempts=20)) as con:
            rows = con.sql("SELECT uri, image_info(uri) FROM few ORDER BY uri").fetchall()
    assert [(u, i["error"] is None) for u, i in rows] == [
        ("img-000.jpg", True), ("img-001.jpg", True), ("nope.jpg", False)]
    assert "not found" in rows[2][1]["error"]


def test_resets_and_stalls_are_retried(jpegs, s3_endpoint, s3_credentials) -> None:
    query = ("SELECT count(i.width), count(i.error) FROM (SELECT image_info(uri) AS i "
             "FROM shots WHERE uri < 'img-060') ")
    for fault in ("reset", "stall"):  # a stalled request times out (request_timeout 2 s)
        with FaultProxy(s3_endpoint, seed=2) as proxy:
            proxy.inject(fault, rate=0.2, match=f"/{PREFIX}/img-0")
            with fedquery.connect(_catalog(jpegs, proxy, s3_credentials, read_attempts=20)) as con:
                assert con.sql(query).fetchall() == [(60, 0)]
            assert proxy.injected[fault], proxy.injected


@pytest.mark.parametrize("status, code, methods", [
    (400, "ValidationError", ("GET",)),       # AWS Error VALIDATION, on the read of the bytes
    (400, "InvalidRequest", ("HEAD", "GET")),
    (403, "AccessDenied", ("HEAD", "GET")),
    (403, "AccessDenied", ("GET",)),
    (409, "OperationAborted", ("HEAD", "GET")),
])
def test_a_refused_request_is_a_source_error_not_a_bad_file(jpegs, s3_endpoint, s3_credentials,
                                                            status, code, methods) -> None:
    with FaultProxy(s3_endpoint, seed=4) as proxy:
        proxy.inject("status", status=status, code=code, methods=methods,
                     match=f"/{PREFIX}/img-001")
        for strict in (False, True):
            with fedquery.connect(_catalog(jpegs, proxy, s3_credentials), strict=strict) as con:
                for function in ("image_info", "read_blob", "thumbnail"):
                    call = f"{function}(uri, 8)" if function == "thumbnail" else f"{function}(uri)"
                    with pytest.raises(fedquery.SourceError) as info:
                        con.sql(f"SELECT {call} FROM few WHERE uri <> 'nope.jpg'").fetchall()
                    assert info.value.source == "store"
                    assert "img-001.jpg" in str(info.value), str(info.value)
        assert proxy.injected["status"]


def _outcome(jpegs, proxy, credentials) -> tuple:
    """What ``read_blob`` and ``image_info`` of img-001 give, and the faults it took."""
    proxy.reset_counts()
    try:
        with fedquery.connect(_catalog(jpegs, proxy, credentials, read_attempts=3)) as con:
            rows = con.sql("SELECT read_blob(uri) IS NOT NULL, image_info(uri).width, "
                           "image_info(uri).error FROM few WHERE uri = 'img-001.jpg'").fetchall()
    except fedquery.SourceError as exc:
        return "SourceError", str(exc), proxy.injected["status"]
    return rows[0], None, proxy.injected["status"]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("status", [400, 401, 403, 409, 416, 499])
def test_each_refusing_status_is_a_source_error_at_once(jpegs, s3_endpoint, s3_credentials,
                                                        method: str, status: int) -> None:
    """Any 4xx but 404, 408 and 429 means the source (credentials, permissions, the endpoint)
    is wrong, not the file: a SourceError at the first answer, never retried, never a NULL."""
    with FaultProxy(s3_endpoint, seed=6) as proxy:
        proxy.inject("status", status=status, methods=(method,), match=f"/{PREFIX}/img-001")
        outcome, message, injected = _outcome(jpegs, proxy, s3_credentials)
    assert outcome == "SourceError", outcome
    assert "S3 refused the request" in message and "img-001.jpg" in message, message
    assert injected == 1


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_each_transient_status_is_retried_then_a_source_error(jpegs, s3_endpoint, s3_credentials,
                                                              method: str, status: int) -> None:
    """408, 429 and 5xx pass: fedquery's own layer tries again (with ``max_attempts: 1`` the
    S3 client does not), so two of them in a row still give the file; three (read_attempts)
    fail the query, never the row."""
    with FaultProxy(s3_endpoint, seed=7) as proxy:
        proxy.inject("status", status=status, methods=(method,), match=f"/{PREFIX}/img-001",
                     count=2)
        outcome, _, injected = _outcome(jpegs, proxy, s3_credentials)
        assert outcome == (True, 24 + 1 % 5, None) and injected == 2
        proxy.inject("status", status=status, methods=(method,), match=f"/{PREFIX}/img-001")
        outcome, message, injected = _outcome(jpegs, proxy, s3_credentials)
    assert outcome == "SourceError", outcome
    assert "3 attempts in a row with transient errors" in message and injected == 3, message


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_a_missing_object_is_the_rows_error(jpegs, s3_endpoint, s3_credentials,
                                            method: str) -> None:
    with FaultProxy(s3_endpoint, seed=8) as proxy:
        proxy.inject("status", status=404, code="NoSuchKey", methods=(method,),
                     match=f"/{PREFIX}/img-001")
        outcome, _, injected = _outcome(jpegs, proxy, s3_credentials)
    assert outcome[:2] == (False, None) and "not found" in outcome[2], outcome
