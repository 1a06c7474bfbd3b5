"""Blob reads on S3 under faults: transient errors are retried, a lasting one fails the query.

A fault proxy (``tests/services/s3_faults.py``) sits between fedquery and ``moto_server`` and
answers a seeded fraction of the object requests with ``503 SlowDown``, resets or stalls. Each
answer is then either complete and right, or a ``SourceError`` naming the files source: a
transient fault never turns into a per-row "bad file" NULL. A missing object stays a per-row
error.
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
