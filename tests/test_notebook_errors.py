"""Errors in a notebook: a user-facing ``FedQueryError`` from ``con.sql`` (planning) shows one
fedquery frame, the public method, and nothing of sqlglot or DuckDB; an internal error keeps
its whole chain; a query that fails when a result is displayed shows its error, not a render
traceback. Formatted by IPython itself (a real ``InteractiveShell``)."""

from __future__ import annotations

import re
import traceback

import pytest
from IPython.core.interactiveshell import InteractiveShell

import fedquery

FRAME = re.compile(r"^File (\S+?):\d+, in (\S+)\(", re.M)


@pytest.fixture(scope="module")
def shell(sample):
    shell = InteractiveShell.instance(colors="nocolor")
    shell.user_ns["catalog"] = str(sample)
    assert shell.run_cell("import fedquery; con = fedquery.connect(catalog)").success
    yield shell
    shell.run_cell("con.close()")


def _shown(shell: InteractiveShell, cell: str) -> tuple[BaseException, str]:
    """The error a cell raises and its traceback as IPython shows it."""
    result = shell.run_cell(cell)
    error = result.error_in_exec
    assert error is not None, cell
    lines = shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)
    return error, shell.InteractiveTB.stb2text(lines)


def _frames(text: str) -> list[tuple[str, str]]:
    return FRAME.findall(text)


@pytest.mark.parametrize(("cell", "kind", "message"), [
    ("con.sql('SELECT 1 +')", fedquery.ParseError, "syntax error"),
    ("con.sql('SELECT * FROM frame')", fedquery.PlanError, "did you mean 'frames'?"),
    ("con.sql('SELECT nosuchcol FROM frames')", fedquery.PlanError, "nosuchcol"),
    ("con.sql('SELECT $x', params={'y': 1})", fedquery.PlanError, "no value for parameter $x"),
    ("con.sql(\"COPY drives TO 'x.csv'\")", fedquery.ForbiddenError, "COPY is not allowed"),
    ("con.sql('SELECT 1', parms={})", fedquery.PlanError, "did you mean 'params'?"),
])
def test_planning_error_shows_one_frame(shell, cell: str, kind: type, message: str) -> None:
    error, text = _shown(shell, cell)
    assert isinstance(error, kind) and message in str(error)
    frames = _frames(text)
    assert [(path.rsplit("/", 2)[-2:], name) for path, name in frames] == [
        (["fedquery", "connection.py"], "Connection.sql")], text
    assert not re.search(r"^File \S*(sqlglot|duckdb)", text, re.M), text  # none of theirs
    assert "During handling" not in text and "direct cause" not in text
    assert text.count("Traceback (most recent call last)") == 1


@pytest.mark.parametrize("cell", ["con.schema('nope')", "con.explain('SELECT * FROM frame')",
                                  "con.sql('DESCRIBE nope')"])
def test_nested_public_methods_show_the_outer_one(shell, cell: str) -> None:
    _, text = _shown(shell, cell)
    method = cell.split("(")[0].split(".")[1]
    assert [name for _, name in _frames(text)] == [f"Connection.{method}"], text


def test_plain_python_traceback_is_short_too(fleet) -> None:
    con, _ = fleet
    with pytest.raises(fedquery.PlanError) as info:
        con.sql("SELECT * FROM frame")
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert names == ["test_plain_python_traceback_is_short_too", "sql"]


def test_internal_error_keeps_its_whole_chain(shell, monkeypatch) -> None:
    """A bug is reported with everything needed to find it: the original error and its frames."""
    from fedquery import planner

    def broken(self, sql, params=None):
        return {}["no such key"]

    monkeypatch.setattr(planner.Planner, "cached_plan", broken)
    error, text = _shown(shell, "con.sql('SELECT 42')")
    assert "internal error: KeyError" in str(error)
    assert isinstance(error.__cause__, KeyError)
    assert "The above exception was the direct cause" in text
    names = [name for _, name in _frames(text)]
    assert "Connection._sql" in names and any(n.endswith(".broken") for n in names)


def test_display_of_a_failing_query_shows_its_error(shell, capsys) -> None:
    """Lazy results fail when displayed: the display shows the short error instead of a
    traceback of the HTML rendering."""
    assert shell.run_cell("res = con.sql(\"SELECT frame_id, error('boom ' || frame_id) "
                          "FROM frames ORDER BY frame_id\")").success
    capsys.readouterr()
    data, _ = shell.display_formatter.format(shell.user_ns["res"], include=["text/html"])
    out = capsys.readouterr()
    page = data["text/html"]
    assert 'class="fq-error"' in page and "PlanError: " in page and "boom " in page
    assert "Traceback" not in page + out.out + out.err and "notebook.py" not in page
