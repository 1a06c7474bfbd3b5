"""What ``import fedquery`` and a connection load: heavy libraries only when a source or a
function needs them, so ``fedquery sql CATALOG "SELECT 1"`` starts fast. (numpy is loaded by
pyarrow itself whenever it is installed.)"""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HEAVY = ("PIL", "pandas", "polars", "lancedb", "lance", "torch", "open_clip",
         "sentence_transformers", "transformers", "s3fs", "fsspec", "boto3", "botocore",
         "adbc_driver_manager", "adbc_driver_postgresql", "adbc_driver_sqlite", "tqdm", "scipy",
         "IPython", "pyiceberg", "deltalake", "sqlalchemy", "buenavista", "psycopg")

SCRIPT = """
import json, sys
HEAVY = {!r}
loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)
import fedquery
after_import = loaded()
con = fedquery.connect(sys.argv[1])
one = con.sql("SELECT 1").fetchall()
streamed = con.sql("SELECT 1 AS a").batches().read_all()  # what the CLI reads
rows = con.sql("SELECT count(*) FROM t JOIN p ON t.a = p.a").fetchall()
print(json.dumps({"import": after_import, "query": loaded(), "rows": [one, rows]}))
""".replace("{!r}", repr(HEAVY))


def test_no_heavy_library_without_a_source_that_needs_it(tmp_path):
    """A catalog of a DuckDB file, a local Parquet lake and a local files source (not read:
    pyarrow imports pandas when it builds an array from a Python list, as a files listing
    and the blob functions do)."""
    duckdb.connect(str(tmp_path / "w.duckdb")).execute("CREATE TABLE t AS SELECT 1 AS a").close()
    (tmp_path / "lake" / "p").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "lake" / "p" / "x.parquet")
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "catalog.yaml").write_text(
        "sources:\n  w: {kind: duckdb, path: w.duckdb}\n  lake: {kind: parquet, root: lake/}\n"
        "  cam: {kind: files, root: blobs/}\n"
        "tables:\n  t: {source: w, table: t}\n  p: {source: lake, path: p/}\n"
        "  c: {source: cam}\n")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "catalog.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["rows"] == [[[1]], [[1]]]
    assert seen["import"] == [], "import fedquery loaded " + ", ".join(seen["import"])
    assert seen["query"] == [], "connect and SELECT loaded " + ", ".join(seen["query"])


def test_pillow_loads_when_an_image_is_read(sample):
    """The lazy import still gives the image functions Pillow when they run."""
    script = ("import sys, fedquery\n"
              "con = fedquery.connect(sys.argv[1])\n"
              "assert 'PIL' not in sys.modules\n"
              "info = con.sql('SELECT image_info(image_uri) FROM frames LIMIT 1').fetchall()[0][0]\n"
              "print(info['format'], info['width'] > 0, 'PIL' in sys.modules)")
    assert _printed(script, sample) == ["JPEG", "True", "True"]


def test_a_lance_source_opens_without_lancedb(sample):
    """A LanceDB source is opened with pylance alone (its tables are ``<table>.lance`` folders):
    ``import lancedb`` cost over a second of every connect, even for ``SELECT 1``; a search still
    answers."""
    script = ("import sys, fedquery\n"
              "con = fedquery.connect(sys.argv[1])\n"
              "one = con.sql('SELECT 1').fetchall()\n"
              "n = con.sql('SELECT count(*) FROM frame_embeddings').fetchall()[0][0]\n"
              "print(one == [(1,)], n > 0, 'lancedb' in sys.modules)")
    assert _printed(script, sample) == ["True", "True", "False"]


def _printed(script: str, catalog) -> list[str]:
    """The words ``script`` prints, run in a fresh interpreter with the catalog's path."""
    done = subprocess.run([sys.executable, "-c", script, str(catalog)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_loading_a_catalog_imports_no_client_library(tmp_path):
    """Each kind's class checks its settings when the catalog loads: that imports the kind's
    module, never the library it reads with (pyiceberg, deltalake, ADBC drivers, Lance)."""
    script = (
        "import json, sys\n"
        "from fedquery.catalog import load_catalog\n"
        "load_catalog({'sources': {\n"
        "  'i': {'kind': 'iceberg', 'catalog': {'type': 'sql', 'uri': 'sqlite:///x.db',"
        " 'warehouse': 'w'}},\n"
        "  'd': {'kind': 'delta', 'root': 'delta/'},\n"
        "  'a': {'kind': 'adbc', 'driver': 'sqlite', 'uri': 'x.db'},\n"
        "  'v': {'kind': 'lancedb', 'uri': 's3://b/db', 'options': {'region': 'eu-west-1'}},\n"
        "  'p': {'kind': 'postgres', 'dsn': 'postgresql://h/db'}}})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
