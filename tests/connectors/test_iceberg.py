"""Conformance of ``kind: iceberg``: a SQL catalog on a SQLite file, a partitioned table
written in two commits."""

from __future__ import annotations

import pytest

from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table
from tests.lakes import iceberg_catalog, iceberg_source


class TestIcebergConformance(ConnectorConformance):
    """Partitioned by day, two appends."""

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        import fedquery

        root = tmp_path_factory.mktemp("iceberg-conformance")
        catalog = iceberg_catalog(root)
        table = kinds_table()
        ice = catalog.create_table("ns.kinds", schema=table.schema)
        with ice.update_spec() as spec:
            spec.add_identity("day")
        ice.append(table.slice(0, 25))
        ice.append(table.slice(25))
        con = fedquery.connect({"sources": {"ice": iceberg_source(root)},
                                "tables": {"kinds": {"source": "ice", "table": "ns.kinds"}}})
        yield Case(con, "ice", TableRef("main", "kinds"), table, "kinds")
        con.close()
