"""explain of SHOW and DESCRIBE: answered by fedquery, never run on the executor's DuckDB."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("sql, rows", [("SHOW TABLES", None), ("SHOW ALL TABLES", None),
                                       ("DESCRIBE orders", 7), ("DESCRIBE SELECT 1 AS x", 1),
                                       ("/* c */ describe clients", 4)])
def test_explain_of_catalog_statements(fq, sql: str, rows: int | None) -> None:
    """``SHOW ALL TABLES`` used to run on the executor (listing its internal tables) and
    ``DESCRIBE orders`` with analyze failed with a parser error."""
    want = rows if rows is not None else len(fq.tables())
    assert fq.sql(sql).arrow().num_rows == want
    plain, analyzed = fq.explain(sql), fq.explain(sql, analyze=True)
    assert plain.startswith("Plan: a catalog statement") and "fragment" not in plain
    assert analyzed.endswith(f"analyze: {want:,} rows")


@pytest.mark.parametrize("sql", ["DESCRIBE FROM '/etc/passwd'", "DESCRIBE 'x.csv'",
                                 "DESCRIBE SELECT * FROM read_csv('x.csv')"])
def test_explain_refuses_what_sql_refuses(fq, sql: str) -> None:
    """explain without analyze used to print a plan for a DESCRIBE of a file path."""
    import fedquery

    refusals = []
    for run in (lambda: fq.sql(sql), lambda: fq.explain(sql)):
        with pytest.raises((fedquery.ForbiddenError, fedquery.PlanError)) as info:
            run()
        refusals.append(type(info.value))
    assert refusals[0] is refusals[1]
