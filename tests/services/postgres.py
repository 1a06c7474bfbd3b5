"""PostgreSQL for the tests: ``FEDQUERY_TEST_PG_DSN`` if set, else a private server from pgserver.

``postgres_dsn`` (session) is a DSN for a role that may create databases. ``postgres_database``
(module) creates a fresh database for one test module and returns a ``PgDatabase``: its DSN and
``load(name, table, ddl=None)`` to put an Arrow table in it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from sqlglot import exp

from tests.services import unavailable
from tests.services.launch import ServiceError, postgres_server
from tests.services.tcp_proxy import proxied_dsn, upstream_of  # noqa: F401  (tests import them here)

_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL server's DSN; pgserver's runs on a unix socket in a temporary folder.

    The folder is not under pytest's ``basetemp``: as root, pgserver runs PostgreSQL as another
    user and opens the folder's parents to it, and every pytest session that starts meanwhile
    closes ``/tmp/pytest-of-<user>`` again (mode 0700), which takes the data from under a
    running server.
    """
    dsn = os.environ.get("FEDQUERY_TEST_PG_DSN")
    if dsn:
        yield dsn
        return
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError as exc:
        unavailable(f"PostgreSQL tests need adbc-driver-postgresql ({exc.name}), "
                    "or FEDQUERY_TEST_PG_DSN")
    try:
        with postgres_server("fedquery-test-pg-") as dsn:
            yield dsn
    except ServiceError as exc:
        unavailable(str(exc))


@dataclass
class PgDatabase:
    """A database made for one test module."""

    name: str
    dsn: str

    def connect(self, autocommit: bool = True):
        import adbc_driver_postgresql.dbapi as adbc

        return adbc.connect(self.dsn, autocommit=autocommit)

    def execute(self, *statements: str) -> None:
        """Run trusted test DDL/DML (never user values) in one session."""
        with self.connect() as conn, conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def load(self, name: str, table: pa.Table, ddl: str | None = None) -> None:
        """Create ``name`` (``schema.table``; from ``ddl`` when given, else from the Arrow
        types) and append ``table``'s rows through ADBC's bulk ingest (COPY)."""
        schema, _, table_name = name.rpartition(".")
        with self.connect() as conn, conn.cursor() as cursor:
            if schema:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
            if ddl:
                cursor.execute(ddl)
            cursor.adbc_ingest(table_name, table, mode="append" if ddl else "create",
                               db_schema_name=schema or None)


@pytest.fixture(scope="module")
def postgres_database(postgres_dsn: str, request: pytest.FixtureRequest) -> Iterator[PgDatabase]:
    """A fresh, empty database for the requesting test module, dropped afterwards."""
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1]).lower()
    name = f"fq_{module}_{os.getpid()}_{next(_COUNTER)}"[:63]
    admin = PgDatabase("postgres", postgres_dsn)
    admin.execute(f"CREATE DATABASE {_quote(name)}")
    try:
        yield PgDatabase(name, with_database(postgres_dsn, name))
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


def with_database(dsn: str, database: str) -> str:
    """The same server and role, another database (URI or ``key=value`` DSN)."""
    if "://" in dsn:
        head, sep, query = dsn.partition("?")
        scheme, _, rest = head.partition("://")
        authority = rest.split("/", 1)[0]
        return f"{scheme}://{authority}/{database}{sep}{query}"
    return f"{dsn} dbname={database}"


def _quote(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("postgres")


SHOP_DDL = {
    "public.customers": "CREATE TABLE public.customers (customer_id integer, name text, "
                        "segment text, country text)",
    "public.products": "CREATE TABLE public.products (product_id integer, title text, "
                       "category text, price numeric(10, 2))",
    "sales.targets": "CREATE TABLE sales.targets (segment text, country text, quarter integer, "
                     "target numeric(12, 2))",
}


def load_shop(db: PgDatabase, unseen_root: Path) -> None:
    """The unseen shop's warehouse tables, copied into PostgreSQL with their types; analyzed
    (once per database: a second call finds them there)."""
    import duckdb

    with db.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                       "AND tablename = 'customers'")
        if cursor.fetchall()[0][0]:
            return

    db.execute("CREATE SCHEMA IF NOT EXISTS sales")
    with duckdb.connect(str(unseen_root / "shop.duckdb"), read_only=True) as warehouse:
        for name, ddl in SHOP_DDL.items():
            rows = warehouse.sql(f"SELECT * FROM {name.replace('public.', '')}").to_arrow_table()
            db.load(name, rows, ddl)
    db.execute("ANALYZE")


def shop_catalog_in_postgres(unseen_catalog: dict, dsn: str, lake: dict | None = None) -> dict:
    """The shop catalog with its warehouse tables in PostgreSQL (and another lake if given)."""
    return {
        "sources": {"pg": {"kind": "postgres", "dsn": dsn},
                    "lake": lake or unseen_catalog["sources"]["lake"]},
        "tables": {"clients": {"source": "pg", "table": "customers"},
                   "products": {"source": "pg", "table": "public.products"},
                   "targets": {"source": "pg", "table": "sales.targets"},
                   "orders": unseen_catalog["tables"]["orders"],
                   "returns": unseen_catalog["tables"]["returns"]}}


def shop_on_postgres_and_s3(db: PgDatabase, unseen: tuple, unseen_root: Path, s3_endpoint: str,
                            s3_credentials: dict, bucket: str) -> dict:
    """The shop catalog with its warehouse in PostgreSQL and its lake uploaded to ``bucket`` on
    the S3 server (its vectors stay in the local LanceDB)."""
    from tests.services.s3 import upload_tree

    catalog, _ = unseen
    load_shop(db, unseen_root)
    upload_tree(unseen_root / "lake", bucket, "lake", endpoint=s3_endpoint)
    lake = {"kind": "parquet", "root": f"s3://{bucket}/lake/",
            "options": {"endpoint_url": s3_endpoint, "key": s3_credentials["AWS_ACCESS_KEY_ID"],
                        "secret": s3_credentials["AWS_SECRET_ACCESS_KEY"]}}
    federated = shop_catalog_in_postgres(catalog, db.dsn, lake)
    federated["sources"]["vec"] = catalog["sources"]["vec"]
    federated["tables"]["product_vectors"] = catalog["tables"]["product_vectors"]
    return federated


# ---------------------------------------------------------------------- faults


@pytest.fixture
def pg_proxy(postgres_dsn: str):
    """A ``FaultProxy`` in front of the test server, new for each test."""
    from tests.services.tcp_proxy import FaultProxy

    with FaultProxy(upstream_of(postgres_dsn)) as proxy:
        yield proxy


@dataclass
class RestartablePostgres:
    """A private PostgreSQL server (pgserver) that a test may restart."""

    dsn: str
    server: object

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m mode``: every session is ended, the server is back when this
        returns (``fast`` rolls back and closes sessions; ``immediate`` is a crash)."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", mode, "restart"], pgdata=self.server.pgdata,
               user=self.server.system_user, timeout=60)


@pytest.fixture(scope="module")
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A PostgreSQL server of the test module's own (pgserver), so restarting it disturbs no
    other test; skipped when pgserver is not installed."""
    import shutil
    import tempfile
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        unavailable("restarting a server needs pgserver")
    folder = Path(tempfile.mkdtemp(prefix="fedquery-test-pg-restart-"))
    try:
        server = pgserver.get_server(folder / "data", cleanup_mode="delete")
    except Exception as exc:  # pgserver raises whatever initdb or pg_ctl raised
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"pgserver could not start PostgreSQL in {folder}: {exc}")
    try:
        yield RestartablePostgres(server.get_uri(), server)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
