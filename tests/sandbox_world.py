"""A small catalog for sandbox tests, whose folders also hold files the catalog never declares.

Every undeclared file holds ``MARKER``; a lake root also holds a catalog file with an S3 secret
(``SECRET``). A query that brings either back, or DuckDB's settings and database list, has
escaped the sandbox: ``leaked(text, sql)`` says what of that a text shows.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

MARKER = "SBX_MARKER_7f3a"
SECRET = "SBX_SECRET_KEY_91c2"
# What DuckDB's settings, database list (the warehouse file's name) and views show, and no
# catalog table holds.
SYSTEM_SIGNS = ("w.duckdb", "access_mode", "enable_external_access", "allowed_directories",
                "lock_configuration", "python_enable_replacements", "CREATE VIEW", "read_parquet(")


def build_world(root: Path) -> dict[str, Any]:
    """Write the data under ``root``; return its catalog (a dict with absolute paths)."""
    con = duckdb.connect(str(root / "w.duckdb"))
    con.execute("CREATE TABLE frames AS SELECT * FROM (VALUES (1, 'a.txt'), (2, 'b.txt'), "
                "(3, 'c.txt')) t(id, name)")
    con.close()
    lake = root / "lake"
    (lake / "t").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2, 3]}), lake / "t" / "part-0.parquet")
    _undeclared(lake)
    (root / "blobs").mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (root / "blobs" / name).write_text(f"blob {name}")
    return {
        "sources": {"w": {"kind": "duckdb", "path": str(root / "w.duckdb")},
                    "lake": {"kind": "parquet", "root": str(lake)},
                    "pics": {"kind": "files", "root": str(root / "blobs")}},
        "tables": {"frames": {"source": "w", "table": "frames"},
                   "t": {"source": "lake", "path": "t/"}},
        "blobs": {"frames.name": "pics"},
    }


def _undeclared(lake: Path) -> None:
    """CSV, TSV, Parquet, JSON and gzip files under the lake root that no table declares, and a
    catalog file with a secret in it."""
    (lake / "hidden.csv").write_text(f"secret,n\n{MARKER},1\n")
    (lake / "hidden.tsv").write_text(f"secret\tn\n{MARKER}\t1\n")
    (lake / "hidden.json").write_text(f'{{"secret": "{MARKER}", "n": 1}}\n')
    pq.write_table(pa.table({"secret": [MARKER], "n": [1]}), lake / "hidden.parquet")
    with gzip.open(lake / "hidden.csv.gz", "wt") as out:
        out.write(f"secret,n\n{MARKER},1\n")
    (lake / "t" / "stray.csv").write_text(f"secret\n{MARKER}\n")
    (lake / "catalog.yaml").write_text(
        "sources:\n  lake: {kind: parquet, root: 's3://b/', options: "
        f"{{key: AKIAEXAMPLE, secret: {SECRET}}}}}\n")


def leaked(text: str, sql: str = "") -> list[str]:
    """What of the undeclared files, the secret or DuckDB's own state ``text`` shows (signs the
    query text itself holds do not count: a function may echo its argument)."""
    signs = (MARKER, SECRET, *SYSTEM_SIGNS)
    return [sign for sign in signs if sign.lower() in text.lower() and sign.lower() not in sql.lower()]
