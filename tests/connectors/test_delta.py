"""Conformance of ``kind: delta``: a partitioned table written in two commits."""

from __future__ import annotations

import pytest

from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table


class TestDeltaConformance(ConnectorConformance):
    """Partitioned by day, two appends."""

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        from deltalake import write_deltalake

        import fedquery

        root = tmp_path_factory.mktemp("delta-conformance")
        table = kinds_table()
        write_deltalake(root / "kinds", table.slice(0, 25), partition_by=["day"])
        write_deltalake(root / "kinds", table.slice(25), partition_by=["day"], mode="append")
        con = fedquery.connect({"sources": {"dl": {"kind": "delta", "root": str(root)}},
                                "tables": {"kinds": {"source": "dl", "path": "kinds"}}})
        yield Case(con, "dl", TableRef("main", "kinds"), table, "kinds")
        con.close()
