"""TPC-DS data and its 99 queries, made by DuckDB's own ``tpcds`` extension.

DuckDB 2.0 (fedquery's) cannot load extensions, so a side environment with DuckDB 1.5.5 and the
``duckdb-extension-tpcds`` wheel runs ``dsdgen`` once and writes every table as Parquet, with
the queries as JSON, into ``~/.cache/fedquery/tpcds/sf<SF>`` (``FEDQUERY_TPCDS_DIR`` moves it).
The side environment is made with pip from the package index, once, next to the data.

    python -m tests.services.tpcds 0.1     # build (or find) the data, print its folder
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from tests.services.launch import ServiceError

PEER = ("duckdb==1.5.5", "duckdb-extension-tpcds==1.5.5")
FACTS = ("store_sales", "store_returns", "catalog_sales", "catalog_returns", "web_sales",
         "web_returns", "inventory")
_GENERATE = """
import glob, json, sys, duckdb, duckdb_extension_tpcds
folder, scale = sys.argv[1], float(sys.argv[2])
extension = glob.glob(duckdb_extension_tpcds.__path__[0] + "/**/*.duckdb_extension", recursive=True)[0]
con = duckdb.connect()
con.execute("LOAD '" + extension + "'")
con.execute(f"CALL dsdgen(sf={scale})")
for (table,) in con.execute("SHOW TABLES").fetchall():
    con.execute(f"COPY {table} TO '{folder}/{table}.parquet' (FORMAT parquet)")
queries = con.execute("SELECT query_nr, query FROM tpcds_queries() ORDER BY query_nr").fetchall()
json.dump(queries, open(folder + "/queries.json", "w"))
"""


def home() -> Path:
    return Path(os.environ.get("FEDQUERY_TPCDS_DIR") or Path.home() / ".cache" / "fedquery" / "tpcds")


def tpcds(scale: float = 0.1) -> Path:
    """The folder holding ``<table>.parquet`` for every TPC-DS table and ``queries.json``."""
    folder = home() / f"sf{scale:g}"
    if (folder / "queries.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    python = _peer_python()
    done = subprocess.run([str(python), "-c", _GENERATE, str(folder), str(scale)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise ServiceError(f"TPC-DS generation failed: {done.stderr[-500:]}")
    return folder


def queries(folder: Path) -> list[tuple[int, str]]:
    return [(int(n), text) for n, text in json.loads((folder / "queries.json").read_text())]


def _peer_python() -> Path:
    """DuckDB 1.5.5 with the tpcds extension, in a virtual environment of its own."""
    env = home() / "peer-venv"
    python = env / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import duckdb_extension_tpcds"],
                                          capture_output=True).returncode == 0:
        return python
    venv.create(env, with_pip=True, clear=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise ServiceError(f"cannot install {' '.join(PEER)} for TPC-DS data: {done.stderr[-500:]}")
    return python


if __name__ == "__main__":
    print(tpcds(float(sys.argv[1]) if len(sys.argv) > 1 else 0.1))
