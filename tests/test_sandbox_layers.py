"""Each layer of the sandbox on its own: fedquery's reading (sandbox checks and binder) with
DuckDB's reading switched off, and DuckDB's reading with fedquery's seeing nothing. Either one
alone refuses every attack of ``test_sandbox_attacks`` but a few named here, so one layer going
wrong is caught by the other, and a test shows it."""

from __future__ import annotations

import pytest

import fedquery
from fedquery import ForbiddenError
from fedquery import sandbox as sandbox_module
from fedquery.bind import bind_tables
from fedquery.parse import parse, parse_statements
from fedquery.sandbox_duckdb import check_duckdb_reading
from fedquery.sandbox_functions import parse_with_duckdb
from tests import test_sandbox_attacks as attacks
from tests.sandbox_world import build_world

ATTACKS = {**attacks.CTE_SCOPE, **attacks.TABLE_POSITIONS, **attacks.SYSTEM_AND_INTERNAL,
           **attacks.FILES_AS_TABLES, **attacks.STATEMENTS, **attacks.SESSION}
# What only fedquery's reading refuses: a function qualified by a source (DuckDB's parser cannot
# tell it from a method call on a column).
ONLY_FEDQUERY = {"function_qualified_by_source"}
# What only DuckDB's reading refuses: none.
ONLY_DUCKDB: set[str] = set()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("layers")
    con = fedquery.connect(build_world(root))
    yield con, root
    con.close()


def _sql(world, name: str) -> str:
    _, root = world
    return ATTACKS[name].format(lake=root / "lake", root=root)


def _fedquery_reading(con: fedquery.Connection, sql: str) -> None:
    sandbox_module.check_statement_keyword(sql)
    for tree in parse_statements(sql):
        bind_tables(tree, con._planner.index)


def test_fedquery_reading_alone(world, monkeypatch) -> None:
    con, _ = world
    monkeypatch.setattr(sandbox_module, "check_duckdb_reading", lambda sql, trees: None)
    passed = set()
    for name in ATTACKS:
        try:
            _fedquery_reading(con, _sql(world, name))
            passed.add(name)
        except fedquery.FedQueryError:
            pass
    assert passed == ONLY_DUCKDB


def test_duckdb_reading_alone(world) -> None:
    """DuckDB's parse of each attack, checked as if fedquery's reading had seen no table at all
    (one plain statement per statement DuckDB reads)."""
    passed = set()
    for name in ATTACKS:
        sql = _sql(world, name)
        try:
            check_duckdb_reading(sql, [parse("SELECT 1")] * max(1, sql.count(";") + 1))
            passed.add(name)
        except ForbiddenError:
            pass
    # With no table seen by fedquery every table DuckDB reads is refused, so only the named ones
    # pass, and texts DuckDB's parser cannot read (it could never run them either).
    unparsable = {name for name in passed if parse_with_duckdb(_sql(world, name)).get("error")}
    assert unparsable >= {"from_parenthesised_histogram", "lateral_parenthesised"}
    assert passed - unparsable == ONLY_FEDQUERY - unparsable


def test_duckdb_reading_refuses_what_fedquery_did_not_see() -> None:
    """A parser differential, simulated: DuckDB reads a table function, a table or a second
    statement that fedquery's tree does not hold."""
    harmless = [parse("SELECT * FROM t")]
    for sql in ("SELECT * FROM t, LATERAL histogram('x.csv', c)", "SELECT * FROM t, hidden",
                "SELECT * FROM t; SELECT 2", "SELECT getvariable('x') FROM t"):
        with pytest.raises(ForbiddenError):
            check_duckdb_reading(sql, harmless)
    check_duckdb_reading("SELECT * FROM T", harmless)  # the same table, as DuckDB folds names
