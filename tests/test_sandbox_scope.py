"""Table names resolve by scope, as DuckDB resolves them: a CTE only where a WITH in scope defines
it, everything else a catalog table. The answers equal plain DuckDB's over the same data, and
the binder's older behaviours stay: a CTE reading the table it shadows, quoted and
case-insensitive names, ``source.table`` names, suggestions and file-path refusals."""

from __future__ import annotations

import duckdb
import pytest
from sqlglot import exp

import fedquery
from fedquery import ForbiddenError, PlanError
from fedquery.bind import cte_for
from fedquery.parse import parse
from tests.sandbox_world import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scope")
    con = fedquery.connect(build_world(root))
    ref = duckdb.connect()
    ref.execute(f"ATTACH '{root / 'w.duckdb'}' AS w (READ_ONLY)")
    ref.execute("CREATE VIEW frames AS SELECT * FROM w.frames")
    ref.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{root / 'lake' / 't'}/*.parquet')")
    yield con, ref
    ref.close()
    con.close()


# CTE names that collide with catalog names, in every place a name can stand.
SCOPED = {
    "cte_shadows_catalog_table": "WITH frames AS (SELECT 10 AS id) SELECT count(*) FROM frames",
    "cte_reads_the_table_it_shadows": "WITH frames AS (SELECT * FROM frames WHERE id > 1) "
                                      "SELECT count(*) FROM frames",
    "cte_in_subquery_not_outside": "SELECT (SELECT count(*) FROM (WITH frames AS (SELECT 1 AS id) "
                                   "SELECT * FROM frames)) AS a, (SELECT count(*) FROM frames) AS b",
    "cte_in_derived_table_not_beside_it": "SELECT a.n, count(*) FROM (WITH t AS (SELECT 7 AS n) "
                                          "SELECT n FROM t) a, t GROUP BY a.n",
    "cte_in_union_arm_not_the_other": "(WITH t AS (SELECT 100 AS x) SELECT x FROM t) "
                                      "UNION ALL SELECT x FROM t ORDER BY 1",
    "with_over_union_covers_both_arms": "WITH t AS (SELECT 100 AS x) SELECT x FROM t "
                                        "UNION ALL SELECT x FROM t",
    "outer_cte_seen_in_subqueries": "WITH f AS (SELECT id FROM frames WHERE id < 3) SELECT "
                                    "(SELECT count(*) FROM f), (SELECT max(x) FROM t WHERE x IN "
                                    "(SELECT id FROM f))",
    "later_cte_sees_earlier": "WITH a AS (SELECT id FROM frames), b AS (SELECT id * 2 AS id FROM a) "
                              "SELECT sum(id) FROM b",
    "earlier_cte_reads_catalog_name_of_later": "WITH a AS (SELECT count(*) AS n FROM t), "
                                               "t AS (SELECT 1 AS x) SELECT n FROM a",
    "nested_with_reads_outer_cte": "WITH t AS (SELECT 5 AS x) SELECT * FROM (WITH u AS "
                                   "(SELECT x + 1 AS x FROM t) SELECT x FROM u)",
    "inner_cte_reads_outer_of_same_name": "WITH t AS (SELECT 5 AS x) SELECT * FROM (WITH t AS "
                                          "(SELECT x + 1 AS x FROM t) SELECT x FROM t)",
    "recursive": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
                 "SELECT sum(n) FROM r",
    "recursive_anchor_reads_catalog": "WITH RECURSIVE t AS (SELECT x FROM t UNION "
                                      "SELECT x + 1 FROM t WHERE x < 5) SELECT sum(x) FROM t",
    "recursive_by_name_reads_catalog": "WITH RECURSIVE t AS (SELECT 9 AS x UNION ALL BY NAME "
                                       "SELECT x FROM t) SELECT sum(x) FROM t",
    "cte_in_lateral": "SELECT t.x, l.y FROM t, LATERAL (WITH d AS (SELECT t.x * 2 AS y) "
                      "SELECT y FROM d) l ORDER BY 1",
    "case_insensitive_cte": 'WITH "Frames" AS (SELECT 1 AS id) SELECT count(*) FROM FRAMES',
}


@pytest.mark.parametrize("sql", SCOPED.values(), ids=SCOPED.keys())
def test_answers_equal_duckdb(world, sql: str) -> None:
    con, ref = world
    assert con.sql(sql).fetchall() == ref.execute(sql).fetchall()


def test_cte_for_follows_duckdb() -> None:
    """The main query's tables first: ``c`` in the subquery that defines it, ``b``, the last
    ``c`` (defined only inside that subquery); then in b's body ``a`` (an earlier CTE) and ``c``."""
    tree = parse("WITH a AS (SELECT 1), b AS (SELECT * FROM a, c) "
                 "SELECT * FROM (WITH c AS (SELECT 2) SELECT * FROM c), b, c")
    tables = [t for t in tree.find_all(exp.Table, bfs=False)]
    assert [(t.name, cte_for(t) is not None) for t in tables] == [
        ("c", True), ("b", True), ("c", False), ("a", True), ("c", False)]


BEHAVIOURS = {
    "quoted": ('SELECT count(*) FROM "frames"', [(3,)]),
    "upper_case": ("SELECT count(*) FROM FRAMES", [(3,)]),
    "source_table": ("SELECT count(*) FROM w.frames", [(3,)]),
    "source_schema_table": ("SELECT count(*) FROM W.Main.Frames", [(3,)]),
    "alias_kept": ("SELECT f.id FROM frames f WHERE f.id = 2", [(2,)]),
}


@pytest.mark.parametrize("sql, rows", BEHAVIOURS.values(), ids=BEHAVIOURS.keys())
def test_names_still_resolve(world, sql: str, rows: list) -> None:
    con, _ = world
    assert con.sql(sql).fetchall() == rows


def test_unknown_names_suggest_and_paths_are_refused(world) -> None:
    con, _ = world
    with pytest.raises(PlanError, match="did you mean 'frames'"):
        con.sql("SELECT * FROM frame")
    with pytest.raises(PlanError, match="did you mean 'w.frames'"):
        con.sql("SELECT * FROM w.frame")
    with pytest.raises(ForbiddenError, match="direct file access 'data.parquet'"):
        con.sql('SELECT * FROM "data.parquet"')
