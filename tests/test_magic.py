"""``%load_ext fedquery`` and the ``%%fq`` / ``%fq`` magics, in a real IPython shell."""

from __future__ import annotations

import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

import fedquery
from fedquery.magic import parameter_names


@pytest.fixture()
def shell(sample):
    shell = InteractiveShell.instance(colors="nocolor")
    shell.reset()
    shell.user_ns["catalog"] = str(sample)
    assert shell.run_cell("%load_ext fedquery").success
    assert shell.run_cell("import fedquery\ncon = fedquery.connect(catalog)").success
    yield shell
    for value in list(shell.user_ns.values()):
        if isinstance(value, fedquery.Connection):
            value.close()
    shell.reset()


def _run(shell: InteractiveShell, cell: str):
    result = shell.run_cell(cell)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    assert result.success, result.error_before_exec
    return result.result


def _expected(shell: InteractiveShell, sql: str, params=None) -> list[tuple]:
    return shell.user_ns["con"].sql(sql, params=params).fetchall()


def test_cell_magic_runs_on_the_named_connection_with_parameters(shell) -> None:
    shell.user_ns.update(weather="rain", unrelated=object())  # only $weather is read
    result = _run(shell, "%%fq con -o rainy\n"
                         "SELECT city, count(*) AS n FROM drives\n"
                         "WHERE weather = $weather GROUP BY city ORDER BY city")
    assert isinstance(result, fedquery.Result) and shell.user_ns["rainy"] is result
    expected = _expected(shell, "SELECT city, count(*) FROM drives WHERE weather = 'rain' "
                                "GROUP BY city ORDER BY city")
    assert result.fetchall() == expected and expected
    assert "Seattle" in result._repr_html_()


def test_values_are_bound_never_spliced(shell) -> None:
    """IPython's own ``$name`` expansion is off: a value is a parameter, not SQL text."""
    shell.user_ns["w"] = "rain' OR '1'='1"
    assert _run(shell, "%%fq\nSELECT count(*) FROM drives WHERE weather = $w").fetchall() == [(0,)]
    assert _run(shell, "%fq SELECT count(*) FROM drives WHERE weather = $w").fetchall() == [(0,)]
    assert _run(shell, "%fq SELECT $w AS w").fetchall() == [("rain' OR '1'='1",)]


def test_line_magic(shell) -> None:
    result = _run(shell, "%fq con -o answer SELECT 42 AS answer")
    assert result.fetchall() == [(42,)] and shell.user_ns["answer"] is result
    assert _run(shell, "%fq SELECT count(*) FROM frames").fetchall() == _expected(
        shell, "SELECT count(*) FROM frames")


def test_the_connection_to_use(shell, sample) -> None:
    """Without a name: the one open connection; several: the user must name one."""
    _run(shell, "other = fedquery.connect(catalog)")
    with pytest.raises(Exception, match=r"several connections are open \(con, other\)"):
        _run(shell, "%%fq\nSELECT 1")
    assert _run(shell, "%%fq other\nSELECT 2 AS two").fetchall() == [(2,)]
    _run(shell, "con.close()")
    assert _run(shell, "%%fq\nSELECT 3 AS three").fetchall() == [(3,)]
    _run(shell, "other.close()")
    with pytest.raises(Exception, match="no open fedquery connection"):
        _run(shell, "%%fq\nSELECT 1")


@pytest.mark.parametrize(("cell", "message"), [
    ("%%fq catalog\nSELECT 1", "catalog is a str, not a fedquery Connection"),
    ("%%fq con SELECT 1\nFROM drives", "the SQL goes in the cell"),
    ("%%fq con\n  \n", "no SQL to run"),
    ("%%fq\nSELECT $missing_one", "no variable 'missing_one'"),
])
def test_usage_errors(shell, cell: str, message: str) -> None:
    result = shell.run_cell(cell)
    assert not result.success and message in str(result.error_in_exec or result.error_before_exec)


def test_query_errors_are_fedquery_errors(shell) -> None:
    with pytest.raises(fedquery.PlanError, match="did you mean 'frames'"):
        _run(shell, "%%fq\nSELECT * FROM frame")


def test_parameter_names() -> None:
    assert parameter_names("SELECT $a, '$b', $1, ? -- $c\n FROM t WHERE x = $a AND y = $d_2") == [
        "a", "d_2"]
    assert parameter_names("SELECT 'unclosed") == []


def test_import_fedquery_does_not_load_ipython() -> None:
    code = "import sys, fedquery; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
