"""A URI names a file strictly beneath its root: the root itself is never a file to read.

On S3 a root is a key prefix (``s3://fleet/blobs/``), and the object whose key is the prefix
without its slash (``blobs``) lies outside it: ``''``, ``'.'``, ``'a.png/..'`` and the root's
own URI all normalise to the prefix, and must be refused, not served as that object. The
listing shows only keys that a blob function reads back under the URI it lists (no
``blobs/../lake/hidden.csv`` shown as ``../lake/hidden.csv``), and a missing bucket is a
``SourceError``, as for a lake. The same URIs on a local root are refused the same way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery
from tests.services.s3 import s3_client

BUCKET = "fedquery-roots"
PREFIX_OBJECT = b"THE-OBJECT-NAMED-LIKE-THE-PREFIX"
ROOT_URIS = [".", "", "./", "a.png/..", "sub/../", "./a.png/../."]


def _full(base: str) -> list[str]:
    return [base, f"{base}/", f"{base}/a.png/..", f"{base}/./", f"{base}//"]


@pytest.fixture(scope="module")
def fleet(s3_endpoint: str, s3_credentials: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory):
    """``s3://fedquery-roots/blobs/`` with a picture, a sibling object named ``blobs`` and keys
    that do not normalise to themselves."""
    client = s3_client(s3_endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    for key, body in [("blobs", PREFIX_OBJECT), ("blobs/a.png", b"picture"),
                      ("blobs/sub/b.png", b"another"), ("blobs/../lake/hidden.csv", b"hidden"),
                      ("blobs/./dot.png", b"dot"), ("blobs//double.png", b"double"),
                      ("blobs/sub/../c.png", b"climb"), ("lake/hidden.csv", b"hidden")]:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    options = {"endpoint_url": s3_endpoint, "key": s3_credentials["AWS_ACCESS_KEY_ID"],
               "secret": s3_credentials["AWS_SECRET_ACCESS_KEY"]}
    catalog = {"sources": {"cam": {"kind": "files", "root": f"s3://{BUCKET}/blobs/",
                                   "options": options},
                           "gone": {"kind": "files", "root": "s3://fedquery-no-bucket/blobs/",
                                    "options": options},
                           "lake": _lake(tmp_path_factory.mktemp("roots"))},
               "tables": {"cam_files": {"source": "cam"}, "gone_files": {"source": "gone"},
                          "one": {"source": "lake", "path": "one.parquet"}},
               "blobs": {"one.uri": "cam"}}
    with fedquery.connect(catalog) as con:
        yield con


def _lake(folder: Path) -> dict:
    """A lake with one table ``one`` of one empty ``uri``: ``uri || $uri`` is a blob column."""
    pq.write_table(pa.table({"uri": [""]}), folder / "one.parquet")
    return {"kind": "parquet", "root": str(folder)}


def _read(con: fedquery.Connection, uri: str, function: str = "read_blob"):
    """``function`` of ``uri`` as a URI of the blob column ``one.uri``."""
    return con.sql(f"SELECT {function}(uri || $uri) FROM one", params={"uri": uri}).fetchall()


@pytest.mark.parametrize("uri", ROOT_URIS + _full(f"s3://{BUCKET}/blobs"))
def test_the_object_named_like_the_prefix_is_never_read(fleet, uri: str) -> None:
    stats = fleet._session.functions.blobs.roots["cam"].filesystem.handler.stats
    before = stats.bytes
    for function in ("read_blob", "image_info"):
        with pytest.raises(fedquery.ForbiddenError, match="names the root of files source 'cam'"):
            _read(fleet, uri, function)
    assert stats.bytes == before


@pytest.mark.parametrize("uri", ["a.png", "./a.png", "sub/../a.png", f"s3://{BUCKET}/blobs/a.png",
                                 f"s3://{BUCKET}/blobs/sub/b.png/../../a.png"])
def test_files_under_the_prefix_are_read(fleet, uri: str) -> None:
    assert _read(fleet, uri) == [(b"picture",)]


def test_the_listing_shows_only_keys_that_read_back_under_their_uri(fleet) -> None:
    listed = fleet.sql("SELECT uri, size FROM cam_files ORDER BY uri").fetchall()
    assert listed == [("a.png", 7), ("sub/b.png", 7)]
    for uri, size in listed:
        assert len(_read(fleet, uri)[0][0]) == size


def test_listing_a_missing_bucket_is_a_source_error(fleet) -> None:
    with pytest.raises(fedquery.SourceError, match="bucket 'fedquery-no-bucket' does not exist") \
            as info:
        fleet.sql("SELECT count(*) FROM gone_files").fetchall()
    assert info.value.source == "gone"


# ---------------------------------------------------------------------- local roots


@pytest.fixture()
def local(tmp_path: Path):
    root = tmp_path / "blobs"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"picture")
    os.symlink(".", root / "self")
    os.symlink(str(root), root / "sub" / "again")
    catalog = {"sources": {"cam": {"kind": "files", "root": str(root)},
                           "lake": _lake(tmp_path)},
               "tables": {"one": {"source": "lake", "path": "one.parquet"}},
               "blobs": {"one.uri": "cam"}}
    with fedquery.connect(catalog) as con:
        yield con, root


def test_a_local_root_is_never_a_file_to_read(local) -> None:
    con, root = local
    uris = [*ROOT_URIS, "self", "sub/again", "self/.", *_full(str(root)), f"file://{root}"]
    for uri in uris:
        for function in ("read_blob", "image_info", "pointcloud_info"):
            with pytest.raises(fedquery.ForbiddenError, match="names the root of files source"):
                _read(con, uri, function)
    assert _read(con, "self/a.png") == [(b"picture",)]


def test_a_nul_byte_in_a_uri_is_refused(local) -> None:
    con, _ = local
    with pytest.raises(fedquery.ForbiddenError, match="NUL byte"):
        _read(con, "a.png\0.jpg")
