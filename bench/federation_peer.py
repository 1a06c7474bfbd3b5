"""One system of bench/federation.py's peer mode, as a long-lived worker speaking JSON lines.

    <python> bench/federation_peer.py SYSTEM

SYSTEM is ``duckdb`` (DuckDB with its postgres and httpfs extensions, loaded from the files of
the ``duckdb-extension-postgres``/``-httpfs`` packages), ``daft`` (``daft.read_sql`` through
ConnectorX for PostgreSQL, ``daft.read_parquet`` for S3, ``daft.sql`` for the query) or
``fedquery``. The peers run in their own venv (see ``PEER_REQUIREMENTS`` in federation.py),
fedquery in its own; this file imports nothing from either but the system it drives.

Each request is one JSON line on stdin, each answer one JSON line on stdout:

- ``{"op": "setup", "timed": SITE, "counted": SITE, "pg_schema": ..., "pg_tables": [...],
  "lake_tables": [...], "bucket": ..., "prefix": ..., "creds": {...}, "ext_dir": ...}``
  where a SITE is ``{"pg_dsn": ..., "s3_endpoint": ..., "catalog": {...}}`` (the catalog is
  fedquery's); the timed site's connection is made once and kept;
- ``{"op": "run", "sql": ..., "counted": false, "out": PATH}``: run the query on the timed
  connection, or on a fresh connection to the counted site (through the counting proxies),
  write the answer to PATH as Arrow IPC; answers ``{"ms": ..., "rows": ...}`` (the time of
  the query and its answer as an Arrow table, not of writing it out) or ``{"error": ...}``;
- ``{"op": "versions"}``, ``{"op": "quit"}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _percent_host(dsn: str) -> str:
    """A libpq URI with its ``?host=/socket/dir`` moved into the authority, percent-encoded
    (ConnectorX's URL parser wants a host there)."""
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    parts = urlsplit(dsn)
    query = parse_qsl(parts.query)
    host = next((v for k, v in query if k == "host"), None)
    if not host or not host.startswith("/"):
        return dsn
    rest = [(k, v) for k, v in query if k != "host"]
    user = parts.username or "postgres"
    login = f"{user}:{parts.password}" if parts.password else user
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(("postgresql", f"{login}@{quote(host, safe='')}{port}", parts.path or "/postgres",
                       urlencode(rest), ""))


def _endpoint_host(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rstrip("/")


# --------------------------------------------------------------------------- DuckDB


class DuckDBPeer:
    """DuckDB with the postgres extension ATTACHing PostgreSQL and httpfs reading S3."""

    name = "duckdb"

    def __init__(self, setup: dict[str, Any]) -> None:
        import duckdb

        self.duckdb = duckdb
        self.setup = setup
        self.note: str | None = None
        self.extensions = self._extension_files(Path(setup["ext_dir"]))
        self.timed = self.connect(setup["timed"])

    @staticmethod
    def _extension_files(ext_dir: Path) -> list[str]:
        """The extension files inside the installed packages; the postgres one copied to
        ``ext_dir/postgres_scanner.duckdb_extension`` (DuckDB loads it only under that name)."""
        import shutil

        import duckdb_extension_httpfs
        import duckdb_extension_postgres

        def find(module: Any, stem: str) -> Path:
            root = Path(module.__file__).parent
            found = sorted(root.rglob(f"{stem}.duckdb_extension"))
            if not found:
                raise RuntimeError(f"no {stem}.duckdb_extension under {root}")
            return found[0]

        ext_dir.mkdir(parents=True, exist_ok=True)
        postgres = ext_dir / "postgres_scanner.duckdb_extension"
        source = find(duckdb_extension_postgres, "postgres")
        if not postgres.exists() or postgres.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, postgres)
        return [str(postgres), str(find(duckdb_extension_httpfs, "httpfs"))]

    def connect(self, site: dict[str, Any]) -> Any:
        s = self.setup
        creds = s["creds"]
        con = self.duckdb.connect(config={"autoinstall_known_extensions": "false",
                                          "autoload_known_extensions": "false"})
        for path in self.extensions:
            con.execute(f"LOAD '{path}'")
        con.execute("SET enable_external_file_cache = false")
        con.execute(f"SET s3_endpoint = '{_endpoint_host(site['s3_endpoint'])}'")
        con.execute("SET s3_url_style = 'path'")
        con.execute("SET s3_use_ssl = false")
        con.execute(f"SET s3_access_key_id = '{creds['key']}'")
        con.execute(f"SET s3_secret_access_key = '{creds['secret']}'")
        con.execute(f"SET s3_region = '{creds['region']}'")
        con.execute(f"ATTACH '{site['pg_dsn']}' AS pg (TYPE postgres, READ_ONLY)")
        for table in s["pg_tables"]:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM pg.{s['pg_schema']}.{table}")
        for table in s["lake_tables"]:
            glob = f"s3://{s['bucket']}/{s['prefix']}/{table}/*.parquet"
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}')")
        return con

    def run(self, con: Any, sql: str) -> Any:
        return con.sql(sql).to_arrow_table()

    def close(self, con: Any) -> None:
        con.close()

    def versions(self) -> dict[str, str]:
        con = self.timed
        rows = con.execute("SELECT extension_name, extension_version FROM duckdb_extensions() "
                           "WHERE loaded AND extension_name IN ('postgres_scanner', 'httpfs')"
                           ).fetchall()
        return {"duckdb": self.duckdb.__version__, **{name: str(v) for name, v in rows}}


# --------------------------------------------------------------------------- Daft


class DaftPeer:
    """Daft: ``read_sql`` (ConnectorX) per PostgreSQL table, ``read_parquet`` per lake table.

    Decimal columns are read as they are, unless Daft refuses to plan the query with them: its
    decimal arithmetic stops at 38 digits of precision, which ``l_extendedprice * (1 -
    l_discount) * (1 + l_tax)`` (Q1) and a few others pass, and Daft's own TPC-H runs use
    doubles. Such a query runs over the same tables with every decimal read as float64 (schema
    hints), which the answer says (``note``); the choice is kept per query text."""

    name = "daft"

    def __init__(self, setup: dict[str, Any]) -> None:
        import daft

        self.daft = daft
        self.setup = setup
        self.variant: dict[str, str] = {}  # query text -> "decimal" or "float64"
        self.note: str | None = None
        self.timed = self.connect(setup["timed"])

    def connect(self, site: dict[str, Any]) -> dict[str, dict[str, Any]]:
        from daft.io import IOConfig, S3Config

        s, daft = self.setup, self.daft
        creds = s["creds"]
        io = IOConfig(s3=S3Config(endpoint_url=site["s3_endpoint"], key_id=creds["key"],
                                  access_key=creds["secret"], region_name=creds["region"],
                                  force_virtual_addressing=False,
                                  use_ssl=site["s3_endpoint"].startswith("https")))
        url = _percent_host(site["pg_dsn"])
        tables: dict[str, dict[str, Any]] = {"decimal": {}, "float64": {}}
        for t in s["pg_tables"]:
            sql = f"SELECT * FROM {s['pg_schema']}.{t}"
            frame = tables["decimal"][t] = daft.read_sql(sql, url)
            tables["float64"][t] = daft.read_sql(sql, url, schema=self._float_hints(frame))
        for t in s["lake_tables"]:
            path = f"s3://{s['bucket']}/{s['prefix']}/{t}/*.parquet"
            frame = tables["decimal"][t] = daft.read_parquet(path, io_config=io)
            tables["float64"][t] = daft.read_parquet(path, io_config=io,
                                                     schema=self._float_hints(frame))
        return tables

    def _float_hints(self, frame: Any) -> dict[str, Any]:
        """Schema hints reading every decimal column as float64."""
        double = self.daft.DataType.float64()
        return {f.name: double for f in frame.schema() if f.dtype.is_decimal128()}

    def run(self, tables: dict[str, dict[str, Any]], sql: str) -> Any:
        variant = self.variant.get(sql)
        if variant is None:
            try:
                frame = self.daft.sql(sql, **tables["decimal"])
                variant = "decimal"
            except Exception as exc:  # Daft's planner refusing decimal arithmetic
                if "Decimal" not in str(exc):
                    raise
                frame, variant = None, "float64"
            self.variant[sql] = variant
        else:
            frame = None
        if frame is None:
            frame = self.daft.sql(sql, **tables[variant])
        if variant == "float64":
            self.note = "daft read decimals as float64 (its decimal arithmetic refused the query)"
        return frame.to_arrow()

    def close(self, tables: dict[str, dict[str, Any]]) -> None:
        tables.clear()

    def versions(self) -> dict[str, str]:
        import connectorx
        import pyarrow

        return {"daft": self.daft.__version__, "connectorx": getattr(connectorx, "__version__", "?"),
                "pyarrow": pyarrow.__version__}


# --------------------------------------------------------------------------- fedquery


class FedqueryPeer:
    """fedquery over its catalog (the counted site's catalog goes through the proxies)."""

    name = "fedquery"

    def __init__(self, setup: dict[str, Any]) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import fedquery

        self.fedquery = fedquery
        self.setup = setup
        self.note: str | None = None
        self.timed = self.connect(setup["timed"])

    def connect(self, site: dict[str, Any]) -> Any:
        return self.fedquery.connect(site["catalog"])

    def run(self, con: Any, sql: str) -> Any:
        return con.sql(sql).arrow()

    def close(self, con: Any) -> None:
        con.close()

    def versions(self) -> dict[str, str]:
        import duckdb
        import pyarrow

        return {"fedquery": getattr(self.fedquery, "__version__", "?"), "duckdb": duckdb.__version__,
                "pyarrow": pyarrow.__version__}


SYSTEMS = {"duckdb": DuckDBPeer, "daft": DaftPeer, "fedquery": FedqueryPeer}


# --------------------------------------------------------------------------- the loop


def _write_ipc(table: Any, path: str) -> None:
    import pyarrow as pa

    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def handle(peer: Any, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "versions":
        return {"versions": peer.versions()}
    if op != "run":
        return {"error": f"unknown op {op!r}"}
    con = peer.connect(peer.setup["counted"]) if request.get("counted") else peer.timed
    peer.note = None
    try:
        started = time.perf_counter()
        table = peer.run(con, request["sql"])
        ms = (time.perf_counter() - started) * 1000
    finally:
        if con is not peer.timed:
            peer.close(con)
    _write_ipc(table, request["out"])
    answer = {"ms": ms, "rows": table.num_rows}
    if peer.note:
        answer["note"] = peer.note
    return answer


def main() -> int:
    system = sys.argv[1]
    # The protocol owns stdout; whatever the libraries print goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    peer = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "quit":
                break
            if request["op"] == "setup":
                peer = SYSTEMS[system](request)
                answer: dict[str, Any] = {"ok": True}
            elif peer is None:
                answer = {"error": "no setup yet"}
            else:
                answer = handle(peer, request)
        except Exception as exc:  # reported to the bench, which records it per query
            traceback.print_exc()
            answer = {"error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
        out.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
