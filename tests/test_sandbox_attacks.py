"""Attacks on the sandbox: each must fail with the exact error class, before anything runs, and
no undeclared file, system view, setting or secret may show in an answer or an error.

The catalog (``tests/sandbox_world.py``) declares one warehouse table and one lake table; the
lake root also holds undeclared CSV, TSV, Parquet, JSON and gzip files and a catalog file with
an S3 secret, all of which the executor's DuckDB could read (the root is an allowed directory).
"""

from __future__ import annotations

import pytest

import fedquery
from fedquery import ForbiddenError
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

