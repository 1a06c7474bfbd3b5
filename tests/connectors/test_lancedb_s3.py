"""``kind: lancedb`` with ``uri: s3://...``: a LanceDB database in a bucket of the S3 server.

The conformance suite over the same table as the local LanceDB tests, a vector top-k joined to a
local table that answers as it does over the local copy, and the errors a remote database
gives (a missing table, a store that does not answer, options Lance cannot apply).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table
from tests.connectors.test_lancedb import DIM, with_vectors
from tests.services.s3 import upload_tree

BUCKET = "lance-conformance"


def s3_catalog(endpoint: str, uri: str, **extra) -> dict:
    """A catalog with one LanceDB database on S3 whose keys come from the environment."""
    options = {"endpoint_url": endpoint, "key": "${AWS_ACCESS_KEY_ID}",
               "secret": "${AWS_SECRET_ACCESS_KEY}", **extra}
    return {"sources": {"vec": {"kind": "lancedb", "uri": uri, "options": options}},
            "tables": {"items": {"source": "vec", "table": "kinds"}}}


@pytest.fixture(scope="module")
def lance_bucket(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
                 s3_credentials: dict) -> tuple[str, Path, pa.Table]:
    """The kinds table with vectors, written by lancedb locally and copied to the bucket."""
    import lancedb

    local = tmp_path_factory.mktemp("lance-s3") / "db"
    table = with_vectors(kinds_table())
    lancedb.connect(str(local)).create_table("kinds", table)
    upload_tree(local, BUCKET, "db", endpoint=s3_endpoint)
    return f"s3://{BUCKET}/db", local, table


class TestS3LanceDBConformance(ConnectorConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, lance_bucket, s3_endpoint: str) -> Case:
        uri, _, table = lance_bucket
        con = fedquery.connect(s3_catalog(s3_endpoint, uri))
        yield Case(con, "vec", TableRef("main", "items"), table, "items")
        con.close()

    def test_describe_names_the_endpoint_not_the_keys(self, case: Case, s3_endpoint: str,
                                                      s3_credentials: dict) -> None:
        detail = case.connector.describe(case.table)
        assert detail["uri"] == f"s3://{BUCKET}/db" and detail["endpoint"] == s3_endpoint
        for secret in s3_credentials.values():
            if len(secret) > 8:
                assert secret not in repr(detail) + repr(case.connector)


def test_top_k_on_s3_answers_as_over_the_local_copy(lance_bucket, s3_endpoint: str) -> None:
    """Nearest rows to a query vector among those a filter keeps, joined to a local table."""
    uri, local, table = lance_bucket
    query = [0.5, -0.25, 1.0, 0.0][:DIM]
    sql = ("SELECT i.id, i.name, n.label FROM items i JOIN names n ON n.id = i.id "
           "WHERE i.score > -2 ORDER BY array_cosine_distance(i.vec, $q::FLOAT[4]), i.id LIMIT 5")
    names = pa.table({"id": pa.array(range(1, 61), pa.int32()),
                      "label": [f"row {i}" for i in range(1, 61)]})
    answers = []
    for catalog in (s3_catalog(s3_endpoint, uri),
                    {"sources": {"vec": {"kind": "lancedb", "uri": str(local)}},
                     "tables": {"items": {"source": "vec", "table": "kinds"}}}):
        with fedquery.connect(catalog) as con:
            con.register("names", names)
            answers.append(con.sql(sql, params={"q": query}).fetchall())
    with duckdb.connect() as plain:
        plain.register("items", table)
        plain.register("names", names)
        want = plain.sql(sql.replace("$q", "?"), params=[query]).fetchall()
    assert answers[0] == answers[1] == want and len(want) == 5


def test_missing_table_on_s3_is_a_source_error(lance_bucket, s3_endpoint: str,
                                               s3_credentials: dict) -> None:
    uri, _, _ = lance_bucket
    catalog = s3_catalog(s3_endpoint, uri)
    catalog["tables"]["items"]["table"] = "nope"
    with pytest.raises(fedquery.SourceError, match=r"no table 'nope'") as info:
        fedquery.connect(catalog)
    assert info.value.source == "vec"
    assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in str(info.value)


def test_unreachable_store_is_a_source_error(lance_bucket, s3_credentials: dict) -> None:
    uri, _, _ = lance_bucket
    catalog = s3_catalog("http://127.0.0.1:9", uri, connect_timeout=2, max_attempts=1)
    with pytest.raises(fedquery.SourceError, match="cannot open LanceDB table 'kinds'") as info:
        fedquery.connect(catalog)
    assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in str(info.value)


@pytest.mark.parametrize("options, message", [
    ({"read_timeout": 5}, r"sources\.vec\.options\.read_timeout: not used for a lancedb source"),
    ({"secret_key": "x"}, r"sources\.vec\.options\.secret_key: unknown S3 option"),
    ({"max_attempts": "many"}, r"sources\.vec\.options\.max_attempts: expected a positive integer"),
])
def test_options_are_checked_where_the_catalog_loads(options: dict, message: str) -> None:
    catalog = {"sources": {"vec": {"kind": "lancedb", "uri": "s3://b/db", "options": options}}}
    with pytest.raises(fedquery.CatalogError, match=message):
        fedquery.catalog.load_catalog(catalog)
