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


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error of a failed command: one line, no traceback."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_version():
    import fedquery

    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"fedquery {fedquery.__version__}"


def test_param_is_typed_by_the_column_it_meets(tmp_path):
    import duckdb

    duckdb.connect(str(tmp_path / "w.duckdb")).execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES ('007', 7), ('7', 8), ('Austin', 9)) v(city, n)"
    ).close()
    (tmp_path / "c.yaml").write_text("sources: {w: {kind: duckdb, path: w.duckdb}}\n"
                                     "tables: {t: {source: w, table: t}}\n")
    catalog = str(tmp_path / "c.yaml")

    def rows(query: str, *params: str) -> list[dict]:
        done = run_cli("sql", catalog, query, "--format", "json",
                       *[a for p in params for a in ("--param", p)])
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    assert rows("SELECT n FROM t WHERE city = $city", "city=007") == [{"n": 7}]  # not 7
    assert rows("SELECT city FROM t WHERE n = $n", "n=8") == [{"city": "7"}]      # cast to int
    assert rows("SELECT city FROM t WHERE n > $n ORDER BY n", "n=007") == [
        {"city": "7"}, {"city": "Austin"}]
    assert rows("SELECT $n + 1 AS x", "n:int=5") == [{"x": 6}]
    assert rows("SELECT $d + 1 AS x", "d:date=2024-02-28") == [{"x": "2024-02-29"}]
    assert rows("SELECT $v AS v, $t AS t", "v:json=[1, 2.5]", "t:text=x=y") == [
        {"v": [1, 2.5], "t": "x=y"}]
    error = _one_line_error(run_cli("sql", catalog, "SELECT n FROM t WHERE n = $n",
                                    "--param", "n=seven"))
    assert "seven" in error  # the error names the value, not a row of the data


def test_query_vector_param_as_json_text(catalog):
    import fedquery

    query = ("SELECT frame_id FROM frame_embeddings ORDER BY "
             "array_cosine_distance(embedding, $q), frame_id LIMIT 3")
    vector = [0.1] * 64
    done = run_cli("sql", catalog, query, "--param", f"q={json.dumps(vector)}", "--format", "json")
    assert done.returncode == 0, done.stderr
    with fedquery.connect(catalog) as con:
        expected = con.sql(query, params={"q": vector}).fetchall()
    assert [(json.loads(line)["frame_id"],) for line in done.stdout.splitlines()] == expected
    short = run_cli("sql", catalog, query, "--param", "q=[1, 2]")
    assert "has 2 values" in _one_line_error(short) and "FLOAT[64]" in short.stderr


@pytest.mark.parametrize("param, says", [
    ("city", "expected NAME=VALUE or NAME:TYPE=VALUE"),
    ("=x", "expected NAME=VALUE"),
    ("n:integer=five", "'five' is not a valid int"),
    ("n:colour=red", "unknown type 'colour'; use one of text, int"),
    ("d:date=2024-13-01", "is not a valid date"),
])
def test_bad_param_is_one_line(catalog, param, says):
    done = run_cli("sql", catalog, "SELECT 1", "--param", param)
    assert says in _one_line_error(done)


def test_output_into_a_missing_folder(catalog, tmp_path):
    target = tmp_path / "missing" / "out.csv"
    done = run_cli("sql", catalog, "SELECT 1", "--format", "csv", "--output", str(target))
    assert "the folder" in _one_line_error(done) and "does not exist" in done.stderr
    done = run_cli("sql", catalog, "SELECT 1", "--output", str(tmp_path))
    assert "it is a folder" in _one_line_error(done)


def test_a_failed_query_leaves_no_output_file(catalog, tmp_path):
    target = tmp_path / "out.json"
    done = run_cli("sql", catalog, "SELECT error('boom') FROM drives", "--format", "json",
                   "--output", str(target))
    assert "boom" in done.stderr and done.returncode == 1
    assert not target.exists()


def test_demo_on_a_bad_dir(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in _one_line_error(run_cli("demo", "--dir", str(afile)))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert "not a sample data set" in _one_line_error(run_cli("demo", "--dir", str(busy)))
    assert (busy / "mine.txt").read_text() == "keep me"


def test_bad_catalog_path(tmp_path):
    missing = run_cli("sql", str(tmp_path / "nope.yaml"), "SELECT 1")
    assert "CatalogError" in _one_line_error(missing) and "catalog file not found" in missing.stderr
    folder = run_cli("sql", str(tmp_path), "SELECT 1")
    assert "is a folder, not a catalog file" in _one_line_error(folder)


def test_syntax_error_in_sql_words(catalog):
    done = run_cli("sql", catalog, "SELEC * FROM drives")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    first = done.stderr.splitlines()[0]
    assert first == ("error: ParseError: syntax error at or near 'SELEC': a query starts with "
                     "SELECT, WITH, VALUES, FROM, DESCRIBE or SHOW (did you mean SELECT?)")
    for query in ("SELECT 1 +", "SELECT drive_id FROM drives WHERE", "SELECT drive_id FROM"):
        done = run_cli("sql", catalog, query)
        assert done.returncode == 1 and "ParseError" in done.stderr
        assert "<class" not in done.stderr and "sqlglot" not in done.stderr
        assert "Token" not in done.stderr, done.stderr
