"""Conformance of ``kind: parquet`` with ``root: s3://...``: the lake on an S3 server (moto).

The same files as the local Parquet conformance tests, uploaded to a bucket: a folder of two
files with small row groups, and a hive-partitioned folder.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table
from fedquery.connectors.remote_fs import glob_regex
from tests.services.s3 import upload_tree


def s3_catalog(endpoint: str, root: str, table: dict) -> dict:
    """A catalog with one S3 lake whose credentials come from the environment (``${VAR}``)."""
    options = {"endpoint_url": endpoint, "key": "${AWS_ACCESS_KEY_ID}",
               "secret": "${AWS_SECRET_ACCESS_KEY}"}
    return {"sources": {"lake": {"kind": "parquet", "root": root, "options": options}},
            "tables": {"kinds": {"source": "lake", **table}}}


class TestS3ParquetConformance(ConnectorConformance):
    """Two files in one folder of a bucket, small row groups."""

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
             s3_credentials: dict) -> Case:
        local = tmp_path_factory.mktemp("s3-conformance")
        (local / "kinds").mkdir()
        table = kinds_table()
        pq.write_table(table.slice(0, 25), local / "kinds" / "a.parquet", row_group_size=10)
        pq.write_table(table.slice(25), local / "kinds" / "b.parquet", row_group_size=10)
        upload_tree(local, "conformance", "plain", endpoint=s3_endpoint)
        con = fedquery.connect(s3_catalog(s3_endpoint, "s3://conformance/plain/", {"path": "kinds/"}))
        yield Case(con, "lake", TableRef("main", "kinds"), table, "kinds")
        con.close()

    def test_describe_names_the_bucket_and_endpoint(self, case: Case, s3_endpoint: str,
                                                    s3_credentials: dict) -> None:
        detail = case.connector.describe(case.table)
        assert detail["files"] == "s3://conformance/plain/kinds/"
        assert detail["endpoint"] == s3_endpoint
        text = repr(detail)
        assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in text
        assert s3_credentials["AWS_ACCESS_KEY_ID"] not in text

    def test_counts_bytes_read(self, case: Case) -> None:
        self.scan(case, columns=("id",))
        fetched = case.connector.bytes_read()
        assert fetched >= min(case.connector.read_stats.snapshot().values())  > 0
        self.scan(case, columns=("id",))  # a file within its kept tail (64 KiB) is not fetched again
        assert case.connector.bytes_read() == fetched


class TestS3HiveParquetConformance(ConnectorConformance):
    """Hive partitions (``bucket=...``) in a bucket: the partition column comes last, as text."""

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
             s3_credentials: dict) -> Case:
        local = tmp_path_factory.mktemp("s3-hive-conformance")
        table = kinds_table()
        buckets = pa.array([f"b{i % 3}" for i in table["id"].to_pylist()], pa.string())
        for bucket in ("b0", "b1", "b2"):
            folder = local / "kinds" / f"bucket={bucket}"
            folder.mkdir(parents=True)
            pq.write_table(table.filter(pc.equal(buckets, bucket)), folder / "part-0.parquet")
        upload_tree(local, "conformance", "hive", endpoint=s3_endpoint)
        con = fedquery.connect(s3_catalog(s3_endpoint, "s3://conformance/hive",
                                          {"path": "kinds/", "partitioning": "hive"}))
        yield Case(con, "lake", TableRef("main", "kinds"), table.append_column("bucket", buckets), "kinds")
        con.close()

    def test_partition_filter(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "bucket"), filter="bucket = 'b1'")
        assert sorted(r["id"] for r in got.to_pylist()) == [i for i in range(1, 61) if i % 3 == 1]

    def test_partition_filter_reads_one_partition(self, case: Case) -> None:
        before = case.connector.read_stats.snapshot()
        self.scan(case, columns=("id",), filter="bucket = 'b2'")
        after = case.connector.read_stats.snapshot()
        read = {path for path, n in after.items() if n > before.get(path, 0)}
        # (files fetched earlier in the class are served from their kept tails: nothing new)
        assert all("/bucket=b2/" in path for path in read), read


def test_local_files_unchanged(tmp_path: Path) -> None:
    """A local lake is still a DuckDB ``read_parquet`` view, and counts no remote bytes."""
    (tmp_path / "kinds").mkdir()
    pq.write_table(kinds_table(), tmp_path / "kinds" / "a.parquet")
    with fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": str(tmp_path)}},
                           "tables": {"kinds": {"source": "lake", "path": "kinds/"}}}) as con:
        connector = con._session.connectors["lake"]
        assert connector.bytes_read() is None
        assert connector.describe(TableRef("main", "kinds"))["files"].endswith("*.parquet")
        assert connector.relations() == {}


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("b/lake/t/*.parquet", "b/lake/t/a.parquet", True),
    ("b/lake/t/*.parquet", "b/lake/t/sub/a.parquet", False),
    ("b/lake/t/**/*.parquet", "b/lake/t/a.parquet", True),
    ("b/lake/t/**/*.parquet", "b/lake/t/x=1/y=2/a.parquet", True),
    ("b/lake/t/part-?.parquet", "b/lake/t/part-1.parquet", True),
    ("b/lake/t/part-[!0].parquet", "b/lake/t/part-0.parquet", False),
    ("b/lake/t/*.parquet", "b/lake/t/a.parquet.crc", False),
])
def test_globs_match_as_duckdb_globs(pattern: str, path: str, matches: bool) -> None:
    """``*`` and ``?`` stay inside one folder, ``**/`` spans any number of folders."""
    assert bool(glob_regex(pattern).fullmatch(path)) is matches
