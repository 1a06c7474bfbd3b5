"""``kind: iceberg`` against the test services: a SQL catalog on PostgreSQL whose warehouse is
a bucket of the S3 test server (pyiceberg's pyarrow FileIO, given the endpoint)."""

from __future__ import annotations

import duckdb
import pyarrow as pa

import fedquery
from tests.test_iceberg_tables import _trips


def test_postgres_catalog_and_s3_warehouse(postgres_dsn: str, s3_endpoint: str,
                                           s3_credentials) -> None:
    from pyiceberg.catalog import load_catalog

    from tests.services.s3 import s3_client

    bucket = "iceberg-warehouse-test"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    uri = postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    props = {"type": "sql", "uri": uri, "warehouse": f"s3://{bucket}/wh",
             "s3.endpoint": s3_endpoint, "s3.region": "us-east-1",
             "s3.access-key-id": s3_credentials["AWS_ACCESS_KEY_ID"],
             "s3.secret-access-key": s3_credentials["AWS_SECRET_ACCESS_KEY"]}
    catalog = load_catalog("services", **props)
    catalog.create_namespace_if_not_exists("ns")
    first, second = _trips(0, 60), _trips(1000, 60)
    table = catalog.create_table("ns.trips_s3", schema=first.schema)
    with table.update_spec() as spec:
        spec.add_identity("city")
    table.append(first)
    table.append(second)
    source = {"kind": "iceberg", "catalog": {
        **props, "name": "services", "s3.secret-access-key": "${AWS_SECRET_ACCESS_KEY}"}}
    with fedquery.connect({"sources": {"ice": source},
                           "tables": {"trips": {"source": "ice", "table": "ns.trips_s3"}}}) as con:
        sql = "SELECT city, count(*), sum(fare) FROM trips WHERE id > 10 GROUP BY city"
        reference = duckdb.connect()
        reference.register("trips", pa.concat_tables([first, second]))
        want = sorted(reference.sql(sql).fetchall(), key=repr)
        assert sorted(con.sql(sql).fetchall(), key=repr) == want
        explained = con.explain("SELECT count(*) FROM trips WHERE city = 'austin'", analyze=True)
        assert "2 of 6 data files read" in explained
        assert s3_credentials["AWS_SECRET_ACCESS_KEY"] not in explained
