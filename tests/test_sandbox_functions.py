"""Every function of the DuckDB in this environment, called in every position with arguments that
would reach an undeclared file, a system view, a setting or a secret: the sandbox refuses the
call before anything runs, or the answer (and any error) shows none of it.

Most calls are only vetted (the sandbox checks and the binder, nothing runs); every call that
passes is then run on the executor's own DuckDB, as the residual would be, and a representative
subset (each allowed function once, every allowed table function) end to end through
``Connection.sql``.
"""

from __future__ import annotations

import json

import duckdb
import pytest

import fedquery
from fedquery import ForbiddenError, ParseError, PlanError
from fedquery.bind import bind_tables
from fedquery.parse import parse_statements
from fedquery.sandbox import check_statement_keyword
from fedquery.sandbox_functions import allowed_functions, fold, parse_with_duckdb
from tests.sandbox_world import MARKER, build_world, leaked

# (name, type) of every DuckDB function: scalar, aggregate, window, macro, pragma, table,
# table_macro.
CATALOGUE = sorted(set(duckdb.connect().execute(
    "SELECT function_name, function_type FROM duckdb_functions()").fetchall()))
NAMES = sorted({name for name, _ in CATALOGUE})
TABLE_LIKE = {name for name, kind in CATALOGUE if kind in ("table", "table_macro", "pragma")}
SCALAR_LIKE = {name for name, kind in CATALOGUE if kind in ("scalar", "aggregate", "window", "macro")}
# DuckDB's table functions a query may use in FROM (fedquery adds vector_search and timeline).
REVIEWED_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
# Reviewed by hand: functions that reach files, settings, secrets, variables, the catalog, the
# executor's state or other queries' state. None of them may be callable.
REVIEWED_DENY = {
    "current_setting", "getenv", "getvariable", "which_secret", "read_text", "read_csv",
    "read_csv_auto", "read_json", "read_json_auto", "read_ndjson", "read_parquet", "parquet_scan",
    "glob", "query", "query_table", "sniff_csv", "json_execute_serialized_sql",
    "json_serialize_plan", "current_database", "current_catalog", "current_schema",
    "current_schemas", "current_query", "in_search_path", "pg_get_viewdef",
    "pg_get_constraintdef", "format_type", "get_block_size", "index_key", "nextval", "currval",
    "setval", "setseed", "write_log", "sleep_ms", "pg_sleep", "stats", "txid_current",
    "current_connection_id", "current_query_id", "current_transaction_id", "summary",
    "test_all_types", "repeat_row", "arrow_scan", "pandas_scan", "python_map_function",
    "histogram_values", "enable_logging", "enable_profiling", "checkpoint", "force_checkpoint",
}
REVIEWED_DENY_PREFIXES = ("duckdb_", "pragma_", "parquet_", "sniff_", "json_execute", "__", "read_")
FEDQUERY_OWN = {"read_blob", "read_pointcloud"}  # fedquery's scalar functions of those names

ARGS = {
    "none": "",
    "file": "'{lake}/hidden.csv'",
    "file_and_column": "'{lake}/hidden.parquet', secret",
    "view_name": "'pg_settings'",
    "view_identifier": "pg_settings, name",
    "setting": "'allowed_directories'",
    "secret_file": "'{lake}/catalog.yaml'",
}
TABLE_ARGS = ("file", "view_identifier", "setting")
POSITIONS = {
    "from": "SELECT * FROM {call}",
    "lateral": "SELECT * FROM t, LATERAL {call}",
    "join": "SELECT * FROM t JOIN {call} AS j ON true",
    "parenthesised": "SELECT * FROM ({call})",
    "subquery": "SELECT (SELECT count(*) FROM {call}) AS v",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("functions")
    con = fedquery.connect(build_world(root))
    yield con, root
    con.close()


def _call(name: str, args: str) -> str:
    spelled = name if name.replace("_", "").isalnum() and not name[0].isdigit() else f'"{name}"'
    return f"{spelled}({args})"


def _vet(con: fedquery.Connection, sql: str) -> type | None:
    """The error class the sandbox and binder refuse ``sql`` with, or None (nothing runs)."""
    try:
        check_statement_keyword(sql)
        for tree in parse_statements(sql):
            bind_tables(tree, con._planner.index)
    except fedquery.FedQueryError as exc:
        return type(exc)
    return None


def _refused_rightly(error: type, sql: str) -> bool:
    """ForbiddenError, or ParseError where sqlglot cannot read the call, or PlanError where
    DuckDB's parser cannot (so DuckDB could never run it either)."""
    if error is PlanError:
        return bool(parse_with_duckdb(sql).get("error"))
    return error in (ForbiddenError, ParseError)


def _run_on_executor(con: fedquery.Connection, sql: str) -> str:
    """What the executor's DuckDB answers (or the error it raises) when it runs ``sql`` as is."""
    cursor = con._session.cursor()
    try:
        return repr(cursor.execute(sql).fetchall())
    except duckdb.Error as exc:
        return str(exc)
    finally:
        cursor.close()


def _run_end_to_end(con: fedquery.Connection, sql: str) -> str:
    try:
        return repr(con.sql(sql).fetchall())
    except fedquery.FedQueryError as exc:
        return str(exc)


def test_the_allow_list_holds_none_of_the_reviewed_functions() -> None:
    allowed = allowed_functions()
    assert not (allowed & REVIEWED_DENY) - FEDQUERY_OWN
    assert not {n for n in allowed if n.startswith(REVIEWED_DENY_PREFIXES)} - FEDQUERY_OWN
    assert "abs" in allowed and "histogram" in allowed and "list_transform" in allowed


def test_every_allowed_macro_reads_no_table() -> None:
    """A macro's body is SQL: an allowed one calls only allowed functions and reads nothing."""
    con = duckdb.connect()
    rows = con.execute("SELECT function_name, macro_definition FROM duckdb_functions() "
                       "WHERE function_type = 'macro'").fetchall()
    for name, body in rows:
        if fold(name) not in allowed_functions():
            continue
        tree = json.loads(con.execute("SELECT json_serialize_sql($q)",
                                      {"q": f"SELECT {body}"}).fetchone()[0])
        text = json.dumps(tree)
        assert '"BASE_TABLE"' not in text and '"TABLE_FUNCTION"' not in text, name
        called = {fold(f) for f in _function_names(tree)}
        assert called <= allowed_functions(), (name, called - allowed_functions())


def _function_names(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["function_name"]] if node.get("class") == "FUNCTION" else []
        return own + [n for v in node.values() for n in _function_names(v)]
    if isinstance(node, list):
        return [n for v in node for n in _function_names(v)]
    return []


def test_every_function_in_a_scalar_position(world) -> None:
    """Allowed names pass and denied ones are refused; whatever passes, run as it is on the
    executor with each hostile argument, shows nothing undeclared."""
    con, root = world
    problems = []
    for name in NAMES:
        for args in ARGS.values():
            sql = f"SELECT {_call(name, args.format(lake=root / 'lake'))} AS v"
            error = _vet(con, sql)
            allowed = fold(name) in allowed_functions()
            if error is None and (not allowed or fold(name) in REVIEWED_DENY - FEDQUERY_OWN):
                problems.append(f"passed, not allowed: {sql}")
            elif error is not None and not allowed and not _refused_rightly(error, sql):
                problems.append(f"{error.__name__}, not ForbiddenError: {sql}")
            elif error is None and (shown := leaked(_run_on_executor(con, sql), sql)):
                problems.append(f"{sql} shows {shown}")
    assert not problems, "\n".join(problems[:40])


def test_allowed_functions_end_to_end(world) -> None:
    """Each allowed DuckDB function once through Connection.sql, with a path to an undeclared
    file: an answer or a FedQueryError, neither showing the file."""
    con, root = world
    problems, ran = [], 0
    for name in NAMES:
        if fold(name) not in allowed_functions():
            continue
        sql = f"SELECT {_call(name, ARGS['file'].format(lake=root / 'lake'))} AS v"
        if _vet(con, sql) is None:
            ran += 1
            if shown := leaked(_run_end_to_end(con, sql), sql):
                problems.append(f"{sql} shows {shown}")
    assert ran > 500
    assert not problems, "\n".join(problems[:40])


@pytest.mark.parametrize("position", POSITIONS.values(), ids=POSITIONS.keys())
def test_every_function_in_a_table_position(world, position: str) -> None:
    """Only range, generate_series and unnest of DuckDB's pass in a table position; every
    table function and table macro (histogram, duckdb_logs_parsed, read_*, ...) is refused
    with ForbiddenError (or a ParseError where sqlglot cannot read the call)."""
    con, root = world
    problems, passed = [], set()
    for name in NAMES:
        for arg_name in TABLE_ARGS:
            call = _call(name, ARGS[arg_name].format(lake=root / "lake"))
            sql = position.format(call=call)
            error = _vet(con, sql)
            if error is None:
                passed.add(fold(name))
                if shown := leaked(_run_end_to_end(con, sql), sql):
                    problems.append(f"{sql} shows {shown}")
            elif not _refused_rightly(error, sql):
                problems.append(f"{error.__name__}, not ForbiddenError: {sql}")
    assert passed <= REVIEWED_TABLE_FUNCTIONS, passed - REVIEWED_TABLE_FUNCTIONS
    assert not problems, "\n".join(problems[:40])


def test_table_functions_and_macros_are_refused_in_every_form(world) -> None:
    """Each of DuckDB's table functions and table macros, as written in FROM, LATERAL and a
    JOIN, upper-cased and quoted: ForbiddenError."""
    con, root = world
    problems = []
    for name in sorted(TABLE_LIKE - REVIEWED_TABLE_FUNCTIONS):
        args = ARGS["file"].format(lake=root / "lake")
        for sql in (f"SELECT * FROM {name.upper()}({args})", f'SELECT * FROM "{name}"({args})',
                    f'SELECT * FROM t, LATERAL "{name}"({args}) AS l',
                    f"SELECT * FROM t CROSS JOIN {name}({args})"):
            if (error := _vet(con, sql)) is None or not _refused_rightly(error, sql):
                problems.append(f"{error}: {sql}")
    assert not problems, "\n".join(problems[:40])


def test_fedquery_read_blob_works_and_duckdbs_is_refused(world) -> None:
    con, root = world
    rows = con.sql("SELECT read_blob(name) AS b FROM frames ORDER BY id").fetchall()
    assert rows == [(b"blob a.txt",), (b"blob b.txt",), (b"blob c.txt",)]
    for sql in (f"SELECT * FROM read_blob('{root}/lake/hidden.csv')",
                f"SELECT content FROM t, LATERAL read_blob('{root}/lake/hidden.csv')"):
        with pytest.raises(ForbiddenError):
            con.sql(sql)
    with pytest.raises(ForbiddenError, match="outside every declared files root") as info:
        con.sql(f"SELECT read_blob('{root}/lake/hidden.csv') AS b").fetchall()
    assert MARKER not in str(info.value)
