"""Conformance of ``kind: duckdb``: a DuckDB database file attached read-only."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table


def write_database(path: Path, schema: str) -> None:
    con = duckdb.connect(str(path))
    try:
        con.register("incoming", kinds_table())
        if schema != "main":
            con.execute(f"CREATE SCHEMA {schema}")
        con.execute(f"CREATE TABLE {schema}.kinds AS SELECT * FROM incoming")
    finally:
        con.close()


class TestDuckDBConformance(ConnectorConformance):
    SCHEMA = "main"

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        path = tmp_path_factory.mktemp("duckdb-conformance") / "kinds.duckdb"
        write_database(path, cls.SCHEMA)
        table = "kinds" if cls.SCHEMA == "main" else f"{cls.SCHEMA}.kinds"
        con = fedquery.connect({"sources": {"db": {"kind": "duckdb", "path": str(path)}},
                                "tables": {"things": {"source": "db", "table": table}}})
        yield Case(con, "db", TableRef(cls.SCHEMA, "kinds"), kinds_table(), "things")
        con.close()


class TestDuckDBOtherSchemaConformance(TestDuckDBConformance):
    """The same table in a schema that is not the default one."""

    SCHEMA = "lab"
