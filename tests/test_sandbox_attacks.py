"""Attacks on the sandbox: each must fail with the exact error class, before anything runs, and
no undeclared file, system view, setting or secret may show in an answer or an error.

The catalog (``tests/sandbox_world.py``) declares one warehouse table and one lake table; the
lake root also holds undeclared CSV, TSV, Parquet, JSON and gzip files and a catalog file with
an S3 secret, all of which the executor's DuckDB could read (the root is an allowed directory).
"""

from __future__ import annotations

import pytest

import fedquery
from fedquery import ForbiddenError, ParseError, PlanError
from tests.sandbox_world import MARKER, build_world, leaked


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sandbox")
    con = fedquery.connect(build_world(root))
    yield con, root
    con.close()


def _refused(con: fedquery.Connection, sql: str, error: type[Exception]) -> None:
    """``sql`` fails with exactly ``error`` (also in ``explain``), showing nothing undeclared."""
    for call in (lambda: con.sql(sql).fetchall(), lambda: con.explain(sql)):
        with pytest.raises(fedquery.FedQueryError) as info:
            call()
        assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
        assert not leaked(str(info.value), sql), str(info.value)


def _run(world, template: str, error: type[Exception]) -> None:
    con, root = world
    _refused(con, template.format(lake=root / "lake", root=root), error)


H = "{lake}/hidden"  # the undeclared files: hidden.csv, .tsv, .parquet, .json, .csv.gz

# A CTE name defined inside a subquery once exempted the same name outside it, where DuckDB then
# read it as a file path or a system view.
CTE_SCOPE = {
    "cte_in_derived_table_file": f'SELECT * FROM (WITH "{H}.csv" AS (SELECT 1 AS n) '
                                 f'SELECT * FROM "{H}.csv") a, "{H}.csv" b',
    "cte_in_derived_table_parquet": f'SELECT * FROM (WITH "{H}.parquet" AS (SELECT 1 AS n) '
                                    f'SELECT * FROM "{H}.parquet") a, "{H}.parquet" b',
    "cte_in_derived_table_json": f'SELECT * FROM (WITH "{H}.json" AS (SELECT 1 AS n) '
                                 f'SELECT n FROM "{H}.json") a, "{H}.json" b',
    "cte_in_derived_table_gzip": f'SELECT * FROM (WITH "{H}.csv.gz" AS (SELECT 1 AS n) '
                                 f'SELECT n FROM "{H}.csv.gz") a, "{H}.csv.gz" b',
    "cte_in_derived_table_pg_settings": "SELECT * FROM (WITH pg_settings AS (SELECT 1 AS n) "
                                        "SELECT * FROM pg_settings) a, pg_settings b",
    "cte_in_derived_table_duckdb_databases": "SELECT * FROM (WITH duckdb_databases AS "
                                             "(SELECT 1 AS n) SELECT * FROM duckdb_databases) a, "
                                             "duckdb_databases b",
    "cte_in_scalar_subquery_duckdb_views": "SELECT (SELECT count(*) FROM (WITH duckdb_views AS "
                                           "(SELECT 1 AS n) SELECT * FROM duckdb_views)) AS a, "
                                           "(SELECT string_agg(sql, ';') FROM duckdb_views) AS b",
    "cte_in_in_subquery": "SELECT * FROM t WHERE x IN (WITH pg_settings AS (SELECT 1 AS x) "
                          "SELECT x FROM pg_settings) OR x IN (SELECT length(name) FROM pg_settings)",
    "cte_in_union_arm": "(WITH pg_settings AS (SELECT 'a' AS name) SELECT name FROM pg_settings) "
                        "UNION ALL SELECT name FROM pg_settings",
    "cte_in_lateral_subquery": "SELECT * FROM t, LATERAL (WITH duckdb_databases AS (SELECT 1 AS n) "
                               "SELECT n FROM duckdb_databases) a, duckdb_databases d",
    "cte_in_cte_body": "WITH a AS (WITH pg_settings AS (SELECT 1 AS n) SELECT n FROM pg_settings) "
                       "SELECT * FROM a, pg_settings",
    "cte_defined_later": "WITH a AS (SELECT name FROM pg_settings), pg_settings AS "
                         "(SELECT 'x' AS name) SELECT * FROM a",
    "recursive_anchor_reads_outer": "WITH RECURSIVE duckdb_databases AS (SELECT database_name FROM "
                                    "duckdb_databases UNION SELECT 'x') SELECT * FROM duckdb_databases",
    "recursive_without_union": "WITH RECURSIVE pg_settings AS (SELECT name FROM pg_settings) "
                               "SELECT * FROM pg_settings",
    "recursive_middle_arm": "WITH RECURSIVE duckdb_databases AS (SELECT 'a' AS database_name UNION "
                            "SELECT database_name FROM duckdb_databases UNION SELECT 'c') "
                            "SELECT * FROM duckdb_databases",
    "recursive_union_by_name": "WITH RECURSIVE duckdb_databases AS (SELECT 'a' AS database_name "
                               "UNION ALL BY NAME SELECT database_name FROM duckdb_databases "
                               "WHERE database_name <> 'a') SELECT * FROM duckdb_databases",
    "recursive_intersect": "WITH RECURSIVE pg_settings AS (SELECT 'access_mode' AS name INTERSECT "
                           "SELECT name FROM pg_settings) SELECT * FROM pg_settings",
    "kelvin_sign_lookalike": 'WITH "duc\u212adb_databases" AS (SELECT 1 AS n) '
                             "SELECT * FROM duckdb_databases",
    "dotless_i_lookalike": 'WITH "pg_sett\u0130ngs" AS (SELECT 1 AS n) SELECT * FROM pg_settings',
}


@pytest.mark.parametrize("template", CTE_SCOPE.values(), ids=CTE_SCOPE.keys())
def test_cte_names_resolve_by_scope(world, template: str) -> None:
    _run(world, template, ForbiddenError)


# Table macros and table functions in every table position.
TABLE_POSITIONS = {
    "lateral_histogram_file": f"SELECT * FROM t, LATERAL histogram('{H}.csv', secret)",
    "lateral_histogram_parquet": f"SELECT * FROM t, LATERAL histogram('{H}.parquet', secret)",
    "lateral_histogram_system_view": "SELECT * FROM t, LATERAL histogram(duckdb_settings, name)",
    "lateral_histogram_string_view": "SELECT * FROM t, LATERAL histogram('pg_settings', name)",
    "lateral_histogram_values": f"SELECT * FROM t, LATERAL histogram_values('{H}.csv', secret)",
    "join_lateral_histogram": f"SELECT * FROM t JOIN LATERAL histogram('{H}.csv', secret) h ON true",
    "left_join_lateral": f"SELECT * FROM t LEFT JOIN LATERAL histogram('{H}.csv', secret) h ON true",
    "lateral_parenthesised": f"SELECT * FROM t, LATERAL (histogram('{H}.csv', secret))",
    "from_histogram": f"SELECT * FROM histogram('{H}.csv', secret)",
    "from_parenthesised_histogram": f"SELECT * FROM (histogram('{H}.csv', secret))",
    "from_parenthesised_read_csv": f"SELECT * FROM (read_csv('{H}.csv'))",
    "histogram_in_cte": f"WITH h AS (SELECT * FROM histogram('{H}.csv', secret)) SELECT * FROM h",
    "histogram_in_in_subquery": f"SELECT * FROM t WHERE x IN (SELECT count FROM "
                                f"histogram('{H}.csv', secret))",
    "histogram_in_exists": f"SELECT * FROM t WHERE EXISTS (SELECT * FROM t, "
                           f"LATERAL histogram('{H}.csv', secret))",
    "logs_parsed": "SELECT * FROM duckdb_logs_parsed('QueryLog')",
    "lateral_logs_parsed": "SELECT * FROM t, LATERAL duckdb_logs_parsed('QueryLog')",
    "profiling_settings": "SELECT * FROM duckdb_profiling_settings()",
    "lateral_read_csv": f"SELECT * FROM t, LATERAL read_csv('{H}.csv')",
    "lateral_read_text_catalog": "SELECT * FROM t, LATERAL read_text('{lake}/catalog.yaml')",
    "lateral_glob": "SELECT * FROM t, LATERAL glob('{lake}/*')",
    "lateral_query_table": "SELECT * FROM t, LATERAL query_table('pg_settings')",
    "lateral_sniff_csv": "SELECT * FROM t, LATERAL sniff_csv('{lake}/catalog.yaml')",
    "comma_join_read_text": "SELECT * FROM t, read_text('{lake}/catalog.yaml')",
    "cross_join_glob": "SELECT * FROM t CROSS JOIN glob('{lake}/**')",
    "upper_case_reader": f"SELECT * FROM READ_CSV('{H}.csv')",
    "quoted_reader": f"SELECT * FROM \"read_csv\"('{H}.csv')",
    "mixed_case_quoted_reader": f"SELECT * FROM \"Read_Csv_Auto\"('{H}.csv')",
    "read_json_objects": f"SELECT * FROM read_json_objects('{H}.json')",
    "read_ndjson": f"SELECT * FROM read_ndjson('{H}.json')",
    "read_duckdb": "SELECT * FROM read_duckdb('{root}/w.duckdb')",
    "which_secret": f"SELECT * FROM which_secret('{H}.csv', 's3')",
    "duckdb_secrets": "SELECT * FROM duckdb_secrets()",
    "json_execute_serialized_sql": "SELECT * FROM json_execute_serialized_sql("
                                   "json_serialize_sql('SELECT * FROM pg_settings'))",
    "json_each_of_file": f"SELECT * FROM json_each((SELECT content FROM read_text('{H}.json')))",
    "summary_table_function": "SELECT * FROM summary((SELECT 1))",
    "qualified_table_function": "SELECT * FROM system.main.duckdb_settings()",
    "qualified_allowed_name": "SELECT * FROM system.main.range(3)",
    "table_function_in_scalar_subquery": f"SELECT (SELECT max(secret) FROM read_csv('{H}.csv'))",
    "table_function_in_lambda": f"SELECT list_transform([1], x -> (SELECT max(secret) FROM "
                                f"read_csv('{H}.csv')))",
    "repeat_row": "SELECT * FROM repeat_row(1, num_rows := 2)",
    "test_all_types": "SELECT * FROM test_all_types()",
    "unnest_of_subquery_reader": f"SELECT * FROM unnest((SELECT list(secret) FROM "
                                 f"read_csv('{H}.csv')))",
}


@pytest.mark.parametrize("template", TABLE_POSITIONS.values(), ids=TABLE_POSITIONS.keys())
def test_table_positions_take_only_allowed_functions(world, template: str) -> None:
    _run(world, template, ForbiddenError)


def test_histogram_as_an_aggregate_still_works(world) -> None:
    con, _ = world
    assert dict(con.sql("SELECT histogram(x) AS h FROM t").fetchall()[0][0]) == {1: 1, 2: 1, 3: 1}
    assert con.sql("SELECT unnest([1, 2]) AS u").fetchall() == [(1,), (2,)]
    assert con.sql("SELECT sum(u) FROM unnest([1, 2, 3]) AS v(u)").fetchall() == [(6,)]
    assert con.sql("SELECT count(*) FROM t, unnest([t.x, t.x]) AS v(u)").fetchall() == [(6,)]
    assert con.sql("SELECT count(*) FROM t, LATERAL (SELECT t.x * 2 AS y) s").fetchall() == [(3,)]
    assert con.sql("SELECT * FROM range(2) r(i), LATERAL (SELECT i + 1 AS j)").fetchall() == [
        (0, 1), (1, 2)]


def test_marker_is_really_there(world) -> None:
    """The attacks above would have found the marker: plain DuckDB reads it from those files."""
    import duckdb

    _, root = world
    ref = duckdb.connect()
    assert ref.execute(f"SELECT secret FROM '{root}/lake/hidden.csv'").fetchall() == [(MARKER,)]
    ref.close()


# DuckDB's system catalogs, schemas and views, the executor's internal names, fedquery's internal
# functions, and functions reached through a qualifier.
SYSTEM_AND_INTERNAL = {
    "pg_catalog_qualified": "SELECT * FROM pg_catalog.pg_settings",
    "information_schema_tables": "SELECT * FROM information_schema.tables",
    "information_schema_columns": "SELECT column_name FROM information_schema.columns",
    "system_table_function": "SELECT * FROM system.main.duckdb_settings()",
    "system_view_three_parts": "SELECT * FROM system.main.duckdb_views",
    "system_view_two_parts": "SELECT * FROM system.duckdb_databases",
    "main_system_view": "SELECT * FROM main.duckdb_databases",
    "memory_catalog": "SELECT * FROM memory.main.frames",
    "temp_catalog": "SELECT * FROM temp.main.x",
    "temp_two_parts": "SELECT * FROM temp.x",
    "sqlite_master": "SELECT * FROM sqlite_master",
    "pragma_database_list_view": "SELECT * FROM pragma_database_list",
    "pg_settings_unqualified": "SELECT name, setting FROM pg_settings",
    "duckdb_views_in_subquery": "SELECT * FROM t WHERE x IN (SELECT length(sql) FROM duckdb_views)",
    "executor_fragment": "SELECT * FROM __f0",
    "executor_fragment_quoted_upper": 'SELECT * FROM "__F0"',
    "executor_keys": "SELECT * FROM __fq_keys",
    "executor_empty": "SELECT * FROM __fq_empty",
    "remote_lake_dataset": "SELECT * FROM __parquet_lake_t",
    "internal_blob_function": "SELECT __fq_read_blob('a.txt', 'pics') AS b",
    "internal_function_upper_case": "SELECT __FQ_IMAGE_INFO('a.txt', 'pics') AS i",
    "duckdb_internal_function": "SELECT __internal_barrier(1) AS b",
    "qualified_denied_function": "SELECT system.main.current_setting('allowed_directories') AS s",
    "function_qualified_by_source": "SELECT w.main.abs(-1) AS a",
    "method_call_of_denied_function": "SELECT 'allowed_directories'.current_setting() AS s",
    "method_call_on_column": "SELECT x.current_setting() FROM (SELECT 'allowed_directories' AS x)",
    "pg_catalog_function": "SELECT pg_catalog.pg_get_viewdef(1) AS v",
    "current_setting": "SELECT current_setting('allowed_directories') AS s",
    "current_setting_in_lambda": "SELECT list_transform(['allowed_directories'], "
                                 "x -> current_setting(x)) AS s",
    "getvariable_in_columns": "SELECT COLUMNS(c -> getvariable(c) IS NULL) FROM t",
    "star_replace": "SELECT * REPLACE (current_setting('allowed_directories') AS x) FROM t",
    "view_definitions": "SELECT pg_get_viewdef(0) AS v",
    "catalog_functions": "SELECT current_database(), current_schemas(true)",
    "current_query": "SELECT current_query() AS q",
    "json_serialize_plan": "SELECT json_serialize_plan('SELECT * FROM pg_settings') AS p",
    "sequences": "SELECT nextval('s') AS n",
    "sleep": "SELECT pg_sleep(3600) AS s",
    "write_log": "SELECT write_log('x') AS w",
}


@pytest.mark.parametrize("template", SYSTEM_AND_INTERNAL.values(), ids=SYSTEM_AND_INTERNAL.keys())
def test_system_and_internal_names_are_refused(world, template: str) -> None:
    _run(world, template, ForbiddenError)


# Files named as tables, every way DuckDB would read them.
FILES_AS_TABLES = {
    "string_literal": f"SELECT * FROM '{H}.csv'",
    "relative_string": "SELECT * FROM 'x.csv'",
    "quoted_identifier": f'SELECT * FROM "{H}.parquet"',
    "two_part_name": f'SELECT * FROM "{H}".csv',
    "glob_string": "SELECT * FROM '{lake}/*.csv'",
    "gzip": f"SELECT * FROM '{H}.csv.gz'",
    "tsv": f"SELECT * FROM '{H}.tsv'",
    "json": f"SELECT * FROM '{H}.json'",
    "file_in_declared_folder": "SELECT * FROM '{lake}/t/stray.csv'",
    "url": "SELECT * FROM 's3://bucket/x.parquet'",
    "from_first": f"FROM '{H}.csv' SELECT *",
    "table_statement": f'TABLE "{H}.csv"',
    "in_join": f'SELECT * FROM frames f JOIN "{H}.parquet" h ON true',
    "in_derived_table": f"SELECT * FROM t, (SELECT * FROM '{H}.csv') h",
    "in_cte": f"WITH h AS (SELECT * FROM '{H}.json') SELECT * FROM h",
    "in_materialized_cte": f"WITH h AS MATERIALIZED (SELECT * FROM '{H}.csv') SELECT * FROM h",
    "describe_path": f"DESCRIBE '{H}.csv'",
    "describe_query": f"DESCRIBE SELECT * FROM '{H}.csv'",
}


@pytest.mark.parametrize("template", FILES_AS_TABLES.values(), ids=FILES_AS_TABLES.keys())
def test_files_named_as_tables_are_refused(world, template: str) -> None:
    _run(world, template, ForbiddenError)


# Statements DuckDB has beyond a query, and one statement hidden behind another.
STATEMENTS = {
    "table_of_system_view": "TABLE pg_settings",
    "from_first_system_view": "FROM pg_settings SELECT name",
    "summarize": "SUMMARIZE frames",
    "summarize_in_subquery": "SELECT * FROM (SUMMARIZE frames)",
    "summarize_system_view": "SELECT * FROM (SUMMARIZE pg_settings)",
    "pivot_statement": "PIVOT pg_settings ON name USING count(*)",
    "pivot_of_file_in_subquery": f"SELECT * FROM (PIVOT '{H}.csv' ON secret USING count(*))",
    "describe_in_subquery": "SELECT * FROM (DESCRIBE frames)",
    "describe_system_view": "DESCRIBE pg_settings",
    "desc_system_view": "DESC duckdb_databases",
    "describe_table_function": "DESCRIBE duckdb_settings()",
    "describe_select_of_view": "DESCRIBE SELECT * FROM duckdb_views",
    "show_databases": "SHOW databases",
    "show_system_view": "SHOW pg_settings",
    "explain": "EXPLAIN SELECT * FROM pg_settings",
    "explain_analyze": "EXPLAIN ANALYZE SELECT 1",
    "explain_after_comment": "/* plan */ explain SELECT 1",
    "second_statement": "SELECT 1; SELECT * FROM pg_settings",
    "second_statement_after_dollar_string": "SELECT $$;$$; SELECT name FROM pg_settings",
    "second_statement_after_comment": "SELECT 1 /* ; */; FROM duckdb_databases",
    "attach_after_newline_comment": "SELECT 1;\n-- note\nATTACH '{root}/w.duckdb' AS x",
    "set_after_select": "SELECT 1; SET enable_external_access = true",
    "load_after_select": "SELECT 1; LOAD httpfs",
    "call_pragma": "CALL pragma_version()",
    "pragma_after_select": "SELECT 1; PRAGMA database_list",
}


@pytest.mark.parametrize("template", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_other_statements_are_refused(world, template: str) -> None:
    _run(world, template, ForbiddenError)


# Look-alike characters: either another name that does not exist, or a parse error.
LOOKALIKES = {
    "cyrillic_s_in_view_name": ("SELECT * FROM pg_\u0455ettings", PlanError),
    "zero_width_space": ('SELECT * FROM "pg_settings\u200b"', PlanError),
    "cyrillic_e_in_reader": (f"SELECT * FROM r\u0435ad_csv('{H}.csv')", ForbiddenError),
    "fullwidth_keyword": ("\uff33\uff25\uff2c\uff25\uff23\uff34 1", ParseError),
    "fullwidth_table_name": ("SELECT * FROM \uff50g_settings", PlanError),
    "kelvin_sign_table_name": ("SELECT * FROM \"duc\u212adb_databases\"", PlanError),
    "no_break_spaces": ("SELECT\u00a0*\u00a0FROM\u00a0pg_settings", ForbiddenError),
}


@pytest.mark.parametrize("template, error", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_lookalike_characters(world, template: str, error: type[Exception]) -> None:
    _run(world, template, error)


def test_harmless_texts_that_look_like_attacks(world) -> None:
    """A statement in a comment or a string is just that."""
    con, _ = world
    assert con.sql("SELECT 1 AS a -- ; SELECT * FROM pg_settings").fetchall() == [(1,)]
    assert con.sql("SELECT 'a'';SELECT * FROM pg_settings;--' AS s").fetchall() == [
        ("a';SELECT * FROM pg_settings;--",)]
    assert con.sql("SELECT 1 AS a /* ; ATTACH 'x' */").fetchall() == [(1,)]
    assert con.sql("SHOW ALL TABLES").fetchall() == [("frames",), ("t",), ("w.frames",),
                                                      ("w.main.frames",)]


# The session's identity and catalog, as functions and as the bare names DuckDB (and PostgreSQL,
# where a fragment may carry them) call as functions.
SESSION = {
    "current_user": "SELECT current_user AS u, id FROM frames",
    "current_user_call": "SELECT CURRENT_USER() AS u FROM frames",
    "session_user": "SELECT session_user AS u, count(*) FROM frames GROUP BY 1",
    "current_role": "SELECT current_role AS u FROM frames",
    "current_schema_bare": "SELECT current_schema AS s, id FROM frames",
    "current_schema_quoted": 'SELECT "current_schema" AS s FROM frames',
    "current_catalog_bare": "SELECT current_catalog AS c FROM frames",
    "version": "SELECT version() AS v, id FROM frames",
    "privileges": "SELECT id FROM frames WHERE has_table_privilege('frames', 'SELECT')",
    "server_address": "SELECT inet_server_addr() AS a FROM frames",
}


@pytest.mark.parametrize("template", SESSION.values(), ids=SESSION.keys())
def test_session_identity_is_refused(world, template: str) -> None:
    _run(world, template, ForbiddenError)


def test_columns_named_like_session_functions_are_read_with_their_table(world) -> None:
    con, _ = world
    sql = "SELECT s.current_schema, s.user FROM (SELECT 'a' AS current_schema, 'b' AS user) s"
    assert con.sql(sql).fetchall() == [("a", "b")]


# fedquery's own table functions, pointed at what they must not reach.
FEDQUERY_TABLE_FUNCTIONS = {
    "vector_search_system_view": ("SELECT * FROM vector_search('pg_settings', [1.0, 2.0], 3)",
                                  ForbiddenError),
    "vector_search_file": (f"SELECT * FROM vector_search('{H}.csv', [1.0], 3)", ForbiddenError),
    "vector_search_two_part_file": (f"SELECT * FROM vector_search('\"{H}\".csv', [1.0], 3)",
                                    ForbiddenError),
    "vector_search_internal": ("SELECT * FROM vector_search('__f0', [1.0], 3)", ForbiddenError),
    "timeline_of_system_view": ("SELECT * FROM timeline('pg_settings', 'frames')", PlanError),
}


@pytest.mark.parametrize("template, error", FEDQUERY_TABLE_FUNCTIONS.values(),
                         ids=FEDQUERY_TABLE_FUNCTIONS.keys())
def test_fedquery_table_functions_reach_only_the_catalog(world, template: str,
                                                         error: type[Exception]) -> None:
    _run(world, template, error)


def test_refusals_hold_under_threads(world) -> None:
    """Eight threads on one connection, each attack many times: every one refused with its
    own error class, none answered."""
    from concurrent.futures import ThreadPoolExecutor

    con, root = world
    cases = [(t.format(lake=root / "lake", root=root), ForbiddenError)
             for t in (*CTE_SCOPE.values(), *TABLE_POSITIONS.values(), *SESSION.values())]

    def attempt(case: tuple[str, type]) -> str | None:
        sql, error = case
        try:
            con.sql(sql).fetchall()
        except fedquery.FedQueryError as exc:
            return None if type(exc) is error else f"{type(exc).__name__}: {sql}"
        return f"answered: {sql}"

    with ThreadPoolExecutor(8) as pool:
        wrong = [w for w in pool.map(attempt, cases * 4) if w]
    assert not wrong, wrong[:5]
