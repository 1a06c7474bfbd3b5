"""The read-only sandbox: refuse, before anything runs, what could write or reach beyond the
catalog.

A query passes three readings. Its first keyword, before it is parsed. fedquery's own tree:
only SELECT, WITH, VALUES, set operations, DESCRIBE and SHOW TABLES, nothing that writes,
attaches or configures anywhere inside, every function on the allow-list and every table
position holding a catalog table, a CTE or one of a few table functions
(``sandbox_functions``). And DuckDB's own parse of the text and of sqlglot's rendering of the
tree, which must find nothing more (``sandbox_duckdb``). Table names are then resolved by scope
and checked against the catalog by the binder (``bind``).
"""

from __future__ import annotations

import re

from sqlglot import exp

from fedquery.bind import file_access, is_path
from fedquery.errors import ForbiddenError
from fedquery.parse import DIALECT, first_keyword, parse_statements
from fedquery.sandbox_duckdb import check_duckdb_reading
from fedquery.sandbox_functions import (
    ALLOWED_TABLE_FUNCTIONS,
    DENIED_FUNCTIONS,
    FEDQUERY_FUNCTIONS,
    check_bare_name,
    check_function,
    check_table_function,
    is_denied,
    table_function_name,
)

__all__ = ["ALLOWED_TABLE_FUNCTIONS", "DENIED_FUNCTIONS", "FEDQUERY_FUNCTIONS", "check_sandbox",
           "check_statement_keyword", "check_text"]

ALLOWED_ROOTS = (exp.Select, exp.SetOperation, exp.Values, exp.Describe, exp.Show, exp.Subquery)
FORBIDDEN_NODES = (exp.DML, exp.DDL, exp.Command, exp.Pragma, exp.Set, exp.Into, exp.Copy,
                   exp.Attach, exp.Detach, exp.Use, exp.Install, exp.Transaction, exp.Commit,
                   exp.Rollback)
STATEMENTS_ONLY_AT_ROOT = (exp.Describe, exp.Show, exp.Summarize)
FILE_READERS = (exp.ReadCSV, exp.ReadParquet)
SHOW_TABLES = {"TABLES", "ALL TABLES"}

FORBIDDEN_KEYWORDS = {"ATTACH", "CALL", "CHECKPOINT", "COPY", "CREATE", "DELETE", "DETACH", "DROP",
                      "EXPORT", "IMPORT", "INSERT", "INSTALL", "LOAD", "PRAGMA", "RESET", "SET",
                      "UPDATE", "USE", "VACUUM", "ALTER", "TRUNCATE", "MERGE", "BEGIN", "COMMIT"}
_CALLED = re.compile(r"\s*([A-Za-z_]\w*)\s*\(")
READ_ONLY = "fedquery is read-only (SELECT, WITH, VALUES, DESCRIBE, SHOW TABLES)"


def check_statement_keyword(sql: str) -> None:
    """Refuse by the text: its first keyword before anything is parsed, then what fedquery's
    and DuckDB's parsers read in it (``check_text``)."""
    keyword = first_keyword(sql)
    if keyword in FORBIDDEN_KEYWORDS:
        raise ForbiddenError(f"{keyword} is not allowed: {READ_ONLY}")
    check_text(sql)


def check_text(sql: str) -> None:
    """Refuse unless every statement of ``sql`` passes ``check_sandbox`` and DuckDB's parser
    reads in the text itself (which the executor describes) nothing more."""
    trees = parse_statements(sql)
    for tree in trees:
        check_sandbox(tree)
    check_duckdb_reading(sql, trees)


def check_sandbox(expression: exp.Expr) -> None:
    """Raise ``ForbiddenError`` unless the statement is read-only and uses allowed functions in
    allowed positions, in fedquery's reading and in DuckDB's reading of its SQL."""
    _check_root(expression)
    for node in expression.walk():
        _check_node(node, expression)
    check_duckdb_reading(expression.sql(DIALECT), [expression])


def _check_root(expression: exp.Expr) -> None:
    if not isinstance(expression, ALLOWED_ROOTS):
        raise ForbiddenError(f"{_statement_name(expression)} is not allowed: {READ_ONLY}")
    if isinstance(expression, exp.Show) and str(expression.name).upper() not in SHOW_TABLES:
        raise ForbiddenError(f"SHOW {expression.name} is not allowed: only SHOW TABLES")
    described = expression.this if isinstance(expression, exp.Describe) else None
    if isinstance(described, exp.Schema):  # sqlglot's reading of DESCRIBE name(...)
        raise ForbiddenError(f"DESCRIBE {described.sql(DIALECT)} is not allowed: only DESCRIBE "
                             "of a table or a query")
    if isinstance(described, exp.Table) and is_path([p.name for p in described.parts]):
        raise file_access(".".join(p.name for p in described.parts))


def _check_node(node: exp.Expr, root: exp.Expr) -> None:
    if isinstance(node, FORBIDDEN_NODES):
        raise ForbiddenError(f"{_statement_name(node)} is not allowed inside a query")
    if isinstance(node, STATEMENTS_ONLY_AT_ROOT) and node is not root:
        raise ForbiddenError(f"{node.key.upper()} is not allowed inside a query")
    if isinstance(node, FILE_READERS):
        raise ForbiddenError(f"{node.sql_name().lower()}() is not allowed: read files "
                             "through tables declared in the catalog")
    if (isinstance(node, exp.Func) and isinstance(node.parent, exp.Table | exp.Lateral)
            and node.arg_key == "this"):
        check_table_function(table_function_name(node), qualified=bool(node.parent.args.get("db")))
    elif isinstance(node, exp.Anonymous):
        check_function(node.name)
    elif isinstance(node, exp.Column) and not node.table:
        check_bare_name(node.name)
    elif isinstance(node, exp.Func) and not isinstance(node, exp.Binary | exp.Unary):
        _check_typed_function(node)  # operators (AND, OR, =, -x) are no function DuckDB looks up


def _check_typed_function(func: exp.Func) -> None:
    """A function sqlglot reads into a class of its own (``version()`` is CurrentVersion): its
    class name and the name DuckDB is handed (``VERSION(...)``) must not be denied."""
    head = _CALLED.match(func.sql(DIALECT))
    for name in (func.sql_name(), head.group(1) if head else ""):
        if name and is_denied(name):
            raise ForbiddenError(f"function {name.lower()}() is not allowed in fedquery queries")


def _statement_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Column):
        return f"statement {node.sql()!r}"
    if isinstance(node, exp.Into):
        return "SELECT ... INTO"
    return node.key.upper()
