"""Conformance of ``kind: postgres``: the kinds table in a real PostgreSQL, read through ADBC."""

from __future__ import annotations

import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table

KINDS_DDL = """CREATE TABLE {table} (id integer, name text, score double precision,
  amount numeric(10, 2), flag boolean, ts timestamp, day date, big bigint, tags text[])"""


class TestPostgresConformance(ConnectorConformance):
    """The table in ``public``, the source's default schema."""

    SCHEMA = "public"

    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, postgres_database, monkeypatch_class) -> Case:
        name = f"{cls.SCHEMA}.kinds"
        if cls.SCHEMA != "public":
            postgres_database.execute(f"CREATE SCHEMA IF NOT EXISTS {cls.SCHEMA}")
        postgres_database.execute(f"DROP TABLE IF EXISTS {name}")
        postgres_database.load(name, kinds_table(), KINDS_DDL.format(table=name))
        monkeypatch_class.setenv("FQ_TEST_PG_DSN", postgres_database.dsn)
        con = fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": "${FQ_TEST_PG_DSN}"}},
                                "tables": {"things": {"source": "pg", "table": name}}})
        yield Case(con, "pg", TableRef(cls.SCHEMA, "kinds"), kinds_table(), "things")
        con.close()


class TestPostgresOtherSchemaConformance(TestPostgresConformance):
    """The same table in a schema that is not the default one."""

    SCHEMA = "lab"


@pytest.fixture(scope="class")
def monkeypatch_class():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


