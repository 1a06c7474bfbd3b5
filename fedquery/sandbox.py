"""The read-only sandbox: refuse, before anything runs, what could write or reach files.

Only SELECT, WITH, VALUES, set operations, DESCRIBE and SHOW TABLES pass. Functions must be on an
allow-list: DuckDB's own scalar, aggregate and window functions and macros, less the ones that
read files or settings, plus fedquery's own; table functions only from a short list. Table
references are checked against the catalog by the binder.
"""

from __future__ import annotations

import functools

from sqlglot import exp

from fedquery.errors import ForbiddenError
from fedquery.parse import first_keyword

ALLOWED_ROOTS = (exp.Select, exp.SetOperation, exp.Values, exp.Describe, exp.Show, exp.Subquery)
FORBIDDEN_NODES = (exp.DML, exp.DDL, exp.Command, exp.Pragma, exp.Set, exp.Into, exp.Copy,
                   exp.Attach, exp.Detach, exp.Use, exp.Install, exp.Transaction, exp.Commit,
                   exp.Rollback)
FILE_READERS = (exp.ReadCSV, exp.ReadParquet)
ALLOWED_TABLE_FUNCTIONS = {"range", "generate_series", "unnest", "vector_search", "timeline"}
DENIED_FUNCTIONS = {
    "current_setting", "getenv", "read_blob", "read_text", "read_csv", "read_csv_auto",
    "read_json", "read_json_auto", "read_ndjson", "read_parquet", "parquet_scan", "glob",
    "query", "query_table", "sniff_csv", "parquet_metadata", "parquet_schema", "json_execute_serialized_sql",
}
FEDQUERY_FUNCTIONS = {"image_info", "thumbnail", "read_blob", "pointcloud_info",
                      "read_pointcloud", "embed_image", "embed_text"}


FORBIDDEN_KEYWORDS = {"ATTACH", "CALL", "CHECKPOINT", "COPY", "CREATE", "DELETE", "DETACH", "DROP",
                      "EXPORT", "IMPORT", "INSERT", "INSTALL", "LOAD", "PRAGMA", "RESET", "SET",
                      "UPDATE", "USE", "VACUUM", "ALTER", "TRUNCATE", "MERGE", "BEGIN", "COMMIT"}


def check_statement_keyword(sql: str) -> None:
    """Refuse a statement by its first keyword, before it is even parsed."""
    keyword = first_keyword(sql)
    if keyword in FORBIDDEN_KEYWORDS:
        raise ForbiddenError(f"{keyword} is not allowed: fedquery is read-only "
                             "(SELECT, WITH, VALUES, DESCRIBE, SHOW TABLES)")


def check_sandbox(expression: exp.Expr) -> None:
    """Raise ``ForbiddenError`` unless the statement is read-only and uses allowed functions."""
    if not isinstance(expression, ALLOWED_ROOTS):
        raise ForbiddenError(f"{_statement_name(expression)} is not allowed: fedquery is "
                             "read-only (SELECT, WITH, VALUES, DESCRIBE, SHOW TABLES)")
    for node in expression.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise ForbiddenError(f"{_statement_name(node)} is not allowed inside a query")
        if isinstance(node, FILE_READERS):
            raise ForbiddenError(f"{node.sql_name().lower()}() is not allowed: read files "
                                 "through tables declared in the catalog")
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Func):
            _check_table_function(node.this)
        elif isinstance(node, exp.Anonymous) and not isinstance(node.parent, exp.Table):
            _check_function(node.name.lower())


def _check_table_function(func: exp.Func) -> None:
    name = func.name.lower() if isinstance(func, exp.Anonymous) else func.sql_name().lower()
    if isinstance(func, exp.GenerateSeries | exp.Explode | exp.Unnest):
        return
    if name not in ALLOWED_TABLE_FUNCTIONS:
        raise ForbiddenError(f"table function {name}() is not allowed: only "
                             f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))} and catalog tables")


def _check_function(name: str) -> None:
    if name in FEDQUERY_FUNCTIONS:
        return
    if name in DENIED_FUNCTIONS or name not in duckdb_functions():
        raise ForbiddenError(f"function {name}() is not allowed in fedquery queries")


@functools.cache
def duckdb_functions() -> frozenset[str]:
    """Names of DuckDB's scalar, aggregate and window functions and macros."""
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.sql("SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                       "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro')").fetchall()
    finally:
        con.close()
    return frozenset(r[0] for r in rows) - DENIED_FUNCTIONS


def _statement_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Column):
        return f"statement {node.sql()!r}"
    if isinstance(node, exp.Into):
        return "SELECT ... INTO"
    return node.key.upper()
