"""Conformance of the connection's own source, ``con.register(name, data)``: the kinds table
registered as Arrow."""

from __future__ import annotations

import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table


class TestRegisteredConformance(ConnectorConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        root = tmp_path_factory.mktemp("registered-conformance")
        con = fedquery.connect({"sources": {"lake": {"kind": "parquet", "root": str(root)}}})
        table = kinds_table()
        con.register("things", table)
        source = next(n for n, c in con._session.connectors.items() if c.kind == "python")
        yield Case(con, source, TableRef("main", "things"), table, "things")
        con.close()

    def test_checks_its_own_settings(self, case: Case) -> None:
        pytest.skip("registered data is not declared in a catalog: it has no settings")
