"""Conformance of ``kind: parquet``: a local lake, a folder of files and a hive-partitioned folder."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table


class TestParquetConformance(ConnectorConformance):
    """Two files in one folder, small row groups."""

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        root = tmp_path_factory.mktemp("parquet-conformance")
        (root / "kinds").mkdir()
        table = kinds_table()
        pq.write_table(table.slice(0, 25), root / "kinds" / "a.parquet", row_group_size=10)
        pq.write_table(table.slice(25), root / "kinds" / "b.parquet", row_group_size=10)
        con = fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": str(root)}},
                                "tables": {"kinds": {"source": "lake", "path": "kinds/"}}})
        yield Case(con, "lake", TableRef("main", "kinds"), table, "kinds")
        con.close()


class TestHiveParquetConformance(ConnectorConformance):
    """Hive partitions (``bucket=...``): the partition column comes last, as text."""

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        root = tmp_path_factory.mktemp("hive-conformance")
        table = kinds_table()
        buckets = pa.array([f"b{i % 3}" for i in table["id"].to_pylist()], pa.string())
        for bucket in ("b0", "b1", "b2"):
            folder = root / "kinds" / f"bucket={bucket}"
            folder.mkdir(parents=True)
            pq.write_table(table.filter(pc.equal(buckets, bucket)), folder / "part-0.parquet")
        con = fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": str(root)}},
                                "tables": {"kinds": {"source": "lake", "path": "kinds/",
                                                     "partitioning": "hive"}}})
        yield Case(con, "lake", TableRef("main", "kinds"), table.append_column("bucket", buckets), "kinds")
        con.close()

    def test_partition_filter(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "bucket"), filter="bucket = 'b1'")
        assert sorted(r["id"] for r in got.to_pylist()) == [i for i in range(1, 61) if i % 3 == 1]
