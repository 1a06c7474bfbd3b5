"""The ``fedquery`` command, run in a subprocess as a user would from a shell."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedquery.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def catalog(sample) -> str:
    return str(sample)


def test_sql_csv_matches_python_api(catalog):
    import fedquery

    query = ("SELECT d.city, count(*) AS frames FROM drives d JOIN frames f "
             "ON f.drive_id = d.drive_id GROUP BY d.city ORDER BY d.city")
    done = run_cli("sql", catalog, query, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    with fedquery.connect(catalog) as con:
        expected = con.sql(query).fetchall()
    assert rows[0] == ["city", "frames"]
    assert [(city, int(n)) for city, n in rows[1:]] == expected


def test_sql_param_and_json(catalog):
    done = run_cli("sql", catalog, "SELECT drive_id, city FROM drives WHERE city = $c "
                   "ORDER BY drive_id", "--param", "c=Austin", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows and all(r["city"] == "Austin" for r in rows)
    assert [r["drive_id"] for r in rows] == sorted(r["drive_id"] for r in rows)


def test_sql_parquet_output(catalog, tmp_path):
    out = tmp_path / "vehicles.parquet"
    done = run_cli("sql", catalog, "SELECT * FROM vehicles", "--format", "parquet",
                   "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows > 0


def test_explain_and_tables(catalog):
    done = run_cli("explain", catalog, "SELECT ts FROM frames WHERE camera = 'left'")
    assert done.returncode == 0, done.stderr
    assert "filter:  camera = 'left'" in done.stdout
    tables = run_cli("tables", catalog)
    assert {"drives", "frames", "frame_embeddings"} <= set(tables.stdout.split())


def test_errors_exit_nonzero_with_message(catalog):
    done = run_cli("sql", catalog, "SELECT * FROM drivez")
    assert done.returncode == 1
    assert "PlanError" in done.stderr and "did you mean 'drives'" in done.stderr
    done = run_cli("sql", catalog, "DROP TABLE drives")
    assert done.returncode == 1 and "ForbiddenError" in done.stderr
