"""The read-only sandbox: every form that could write, read files or change settings is refused
with ``ForbiddenError`` before anything runs, and the data is left byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import fedquery

# {root} is the folder of the shop data set; the statements aim at it, so that a statement that
# slipped through would leave a trace there.
FORBIDDEN = {
    # DuckDB's file readers and file access without a catalog table
    "read_csv": "SELECT * FROM read_csv('{root}/x.csv')",
    "read_csv_auto": "SELECT * FROM read_csv_auto('{root}/x.csv')",
    "read_parquet": "SELECT * FROM read_parquet('{root}/lake/returns/returns-0.parquet')",
    "read_parquet_list": "SELECT count(*) FROM read_parquet(['{root}/lake/returns/returns-0.parquet'])",
    "parquet_scan": "SELECT * FROM parquet_scan('{root}/lake/returns/*.parquet')",
    "read_text": "SELECT * FROM read_text('{root}/shop.duckdb')",
    "read_json": "SELECT (SELECT count(*) FROM read_json('{root}/x.json'))",
    "glob": "SELECT * FROM glob('{root}/*')",
    "from_file_string": "SELECT * FROM '{root}/lake/returns/returns-0.parquet'",
    "from_csv_string": "SELECT * FROM 'x.csv'",
    "from_quoted_file_name": 'SELECT * FROM "returns-0.parquet"',
    "from_url_string": "SELECT * FROM 's3://bucket/x.parquet'",
    "reader_in_join": "SELECT r.* FROM returns r "
                      "JOIN read_parquet('{root}/lake/returns/returns-1.parquet') x USING (order_id)",
    "reader_in_in_subquery": "SELECT count(*) FROM clients WHERE name IN (SELECT * FROM read_csv('a.csv'))",
    "reader_in_lambda": "SELECT list_transform([1], x -> (SELECT count(*) FROM read_csv('a.csv')))",
    "parquet_metadata": "SELECT * FROM parquet_metadata('{root}/lake/returns/returns-0.parquet')",
    # statements that write, attach, install or configure
    "copy_to_lake": "COPY clients TO '{root}/lake/evil.parquet' (FORMAT parquet)",
    "copy_query_lowercase": "copy (SELECT 1) TO '{root}/evil.csv'",
    "copy_after_comment": "/* just a comment */ COPY clients TO '{root}/evil.csv'",
    "copy_parenthesised": "(COPY clients TO '{root}/evil.csv')",
    "attach": "ATTACH '{root}/evil.duckdb' AS evil",
    "detach": "DETACH shop",
    "install": "INSTALL httpfs",
    "force_install": "FORCE INSTALL httpfs",
    "load": "LOAD httpfs",
    "pragma": "PRAGMA enable_external_access",
    "pragma_table_function": "SELECT * FROM pragma_database_list()",
    "set": "SET enable_external_access = true",
    "set_global": "SET GLOBAL threads = 1",
    "reset": "RESET threads",
    "call": "CALL pragma_database_list()",
    "export_database": "EXPORT DATABASE '{root}/export'",
    "import_database": "IMPORT DATABASE '{root}/export'",
    "create_table": "CREATE TABLE evil AS SELECT 1 AS x",
    "create_table_in_source": "CREATE TABLE shop.main.evil (x INTEGER)",
    "create_view": "CREATE VIEW evil AS SELECT * FROM clients",
    "create_macro": "CREATE MACRO evil(x) AS x + 1",
    "create_secret": "CREATE SECRET evil (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "drop_table": "DROP TABLE clients",
    "drop_source_table": "DROP TABLE shop.main.customers",
    "alter_add_column": "ALTER TABLE shop.customers ADD COLUMN evil INTEGER",
    "alter_rename": "ALTER TABLE shop.customers RENAME TO evil",
    "insert_values": "INSERT INTO shop.customers VALUES (999, 'x', 'y', 'z')",
    "insert_select": "INSERT INTO clients SELECT * FROM clients",
    "update": "UPDATE shop.customers SET name = 'x'",
    "delete": "DELETE FROM clients WHERE customer_id = 1",
    "truncate": "TRUNCATE shop.customers",
    "select_into": "SELECT * INTO evil FROM clients",
    "cte_with_delete": "WITH x AS (DELETE FROM shop.customers RETURNING *) SELECT * FROM x",
    "cte_with_insert": "WITH x AS (INSERT INTO shop.customers VALUES (1, 'a', 'b', 'c') RETURNING *) "
                       "SELECT * FROM x",
    "use": "USE shop",
    "checkpoint": "CHECKPOINT",
    "vacuum": "VACUUM",
    "begin": "BEGIN TRANSACTION",
    # settings, environment and SQL-in-a-string
    "current_setting": "SELECT current_setting('allowed_directories')",
    "current_setting_in_where": "SELECT count(*) FROM clients WHERE name = current_setting('home_directory')",
    "getenv": "SELECT getenv('HOME')",
    "duckdb_settings": "SELECT * FROM duckdb_settings()",
    "query_function": "SELECT * FROM query('SELECT 1')",
    "query_table_function": "SELECT * FROM query_table('clients')",
}

# A forbidden statement after a harmless one is named by the sandbox, not just "several".
SMUGGLED = {
    "multi_statement_drop": "SELECT 1; DROP TABLE clients",
    "multi_statement_create": "SELECT 1; CREATE TABLE evil AS SELECT 1",
    "multi_statement_copy": "SELECT count(*) FROM clients; COPY clients TO '{root}/evil.csv'",
}


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: sha256 of files, "dir" for folders."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def before(unseen_root: Path, fq: fedquery.Connection) -> dict[str, str]:
    """The data set as it is before any forbidden statement is tried."""
    assert fq.sql("SELECT count(*) FROM clients").fetchall() == [(600,)]
    return snapshot(unseen_root)


def _refused(fq: fedquery.Connection, sql: str) -> None:
    with pytest.raises(fedquery.ForbiddenError):
        fq.sql(sql)
    with pytest.raises(fedquery.ForbiddenError):
        fq.explain(sql)


@pytest.mark.parametrize("sql", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden(sql: str, fq: fedquery.Connection, unseen_root: Path, before: dict) -> None:
    _refused(fq, sql.format(root=unseen_root))
    assert snapshot(unseen_root) == before


@pytest.mark.parametrize("sql", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_smuggled_statement(sql: str, fq: fedquery.Connection, unseen_root: Path, before: dict) -> None:
    _refused(fq, sql.format(root=unseen_root))
    assert snapshot(unseen_root) == before


def test_several_statements_never_run(fq: fedquery.Connection, unseen_root: Path, before: dict) -> None:
    """Whatever error several statements give, none of them runs."""
    for sql in SMUGGLED.values():
        with pytest.raises(fedquery.FedQueryError):
            fq.sql(sql.format(root=unseen_root)).fetchall()
    assert snapshot(unseen_root) == before
    assert fq.sql("SELECT count(*) FROM clients").fetchall() == [(600,)]


def test_read_only_statements_still_allowed(fq: fedquery.Connection) -> None:
    assert fq.sql("SHOW TABLES").columns == ["name"]
    assert "clients" in [r[0] for r in fq.sql("SHOW TABLES").fetchall()]
    assert [r[0] for r in fq.sql("DESCRIBE clients").fetchall()] == ["customer_id", "name", "segment",
                                                                     "country"]
    assert fq.sql("VALUES (1), (2)").fetchall() == [(1,), (2,)]
    assert fq.sql("SELECT sum(x) AS s FROM range(4) t(x)").fetchall() == [(6,)]


def test_data_untouched_after_everything(fq: fedquery.Connection, unseen_root: Path, before: dict) -> None:
    """All forbidden forms again, one after the other, then one byte-for-byte comparison."""
    for sql in list(FORBIDDEN.values()) + list(SMUGGLED.values()):
        with pytest.raises(fedquery.FedQueryError):
            fq.sql(sql.format(root=unseen_root)).fetchall()
    after = snapshot(unseen_root)
    assert sorted(after) == sorted(before), "a file appeared or vanished in the data folder"
    assert after == before
    assert fq.sql("SELECT count(*) FROM clients").fetchall() == [(600,)]
