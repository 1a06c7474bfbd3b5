"""Bad input is a clear FedQueryError, never a raw Python error: SQL nested too deeply, odd
identifiers, a ``vector_search`` table name holding SQL, a query or ``params`` of the wrong
type, ``explain(sql, params)``, unknown keyword arguments. Under the checks, a net at the API
boundary turns any other exception into a FedQueryError that says it is a bug, secrets
masked, the original chained; Ctrl-C and ``SystemExit`` pass through.

Root causes in modules this part does not own are ``xfail(strict=True)`` tests naming them.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedquery
from fedquery.parse import MAX_DEPTH, MAX_NESTING

# ------------------------------------------------------------------------------ deep nesting

NESTED = {
    # form: (SQL nested d levels, how many levels of the parse tree one nesting level adds)
    "parens": lambda d: "SELECT " + "(" * d + "1" + ")" * d,
    "function_calls": lambda d: "SELECT " + "abs(" * d + "customer_id" + ")" * d + " FROM clients",
    "not": lambda d: "SELECT count(*) FROM clients WHERE " + "NOT " * d + "customer_id > 3",
    "minus": lambda d: "SELECT " + "- " * d + "1",
    "case": lambda d: "SELECT " + "CASE WHEN true THEN " * d + "1" + " END" * d,
    "lists": lambda d: "SELECT " + "[" * d + "1" + "]" * d,
    "subqueries": lambda d: "SELECT count(*) FROM " + "(SELECT * FROM " * d + "clients" + ") t" * d,
    "in_subqueries": lambda d: ("SELECT count(*) FROM clients WHERE customer_id IN " + "(SELECT "
                                "customer_id FROM clients WHERE customer_id IN " * d + "(1, 2)"
                                + ")" * d),
    "plus_chain": lambda d: "SELECT " + " + ".join(["qty"] * d) + " FROM orders",
    "union_chain": lambda d: " UNION ALL ".join(["SELECT 1 AS x"] * d),
}


def _outcome(action) -> str:
    try:
        action()
    except fedquery.ParseError:
        return "ParseError"
    except fedquery.FedQueryError as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize("form", NESTED)
@pytest.mark.parametrize("depth", [10, MAX_NESTING // 2, MAX_NESTING, MAX_NESTING + 1, 2 * MAX_DEPTH,
                                   3000])
def test_nesting_never_exhausts_the_stack(fq: fedquery.Connection, form: str, depth: int) -> None:
    """Every depth gives an answer or a FedQueryError (a RecursionError would escape this);
    shallow queries run and a query past the limits is a ParseError."""
    sql = NESTED[form](depth)
    outcomes = {_outcome(lambda: fq.sql(sql).fetchall()), _outcome(lambda: fq.explain(sql)),
                _outcome(lambda: fq.explain(sql, analyze=True))}
    if depth <= 10 or (depth <= MAX_NESTING // 2 and form not in ("subqueries", "in_subqueries")):
        assert outcomes == {"ok"}
    if depth > 2 * MAX_DEPTH // 3:
        assert outcomes == {"ParseError"}


def test_500_nested_parentheses_point_at_the_first_too_deep(fq: fedquery.Connection) -> None:
    sql = "SELECT count(*)\nFROM clients\nWHERE customer_id = " + "(" * 500 + "1" + ")" * 500
    with pytest.raises(fedquery.ParseError, match=f"more than {MAX_NESTING} deep") as info:
        fq.sql(sql)
    assert info.value.line == 3
    assert info.value.col == len("WHERE customer_id = ") + MAX_NESTING + 1
    assert "line 3, column" in str(info.value) and "^" in str(info.value)


def test_long_operator_chain_points_into_the_query(fq: fedquery.Connection) -> None:
    sql = "SELECT 1 AS x\n" + "UNION ALL SELECT 1\n" * (MAX_DEPTH + 50)
    with pytest.raises(fedquery.ParseError, match=f"more than {MAX_DEPTH} levels deep") as info:
        fq.sql(sql)
    assert info.value.line is not None and 1 < info.value.line <= MAX_DEPTH + 51


def test_long_and_chains_are_not_deep(fq: fedquery.Connection) -> None:
    """AND and OR chains are walked without recursion: thousands of conditions still run."""
    conditions = " OR ".join(f"customer_id = {i}" for i in range(1, 3001))
    assert fq.sql(f"SELECT count(*) FROM clients WHERE {conditions}").fetchall() == [(600,)]


@pytest.mark.parametrize("sql, near", [
    ("SELECT o.order_id ->>FROM orders o", "->>"),
    ("SELECT 1 FROM orders o WHERE o.qty ->> FROM", "->>"),
], ids=["json_arrow_before_from", "json_arrow_at_end"])
def test_sqlglot_builder_errors_are_parse_errors(fq: fedquery.Connection, sql: str, near: str) -> None:
    """sqlglot's builders raise TypeError on some malformed input: a ParseError at the token."""
    with pytest.raises(fedquery.ParseError, match=f"syntax error near '{near}'") as info:
        fq.sql(sql)
    assert info.value.line == 1 and sql[info.value.col - len(near):info.value.col] == near


@pytest.mark.parametrize("sql", ["SELECT o.order_id FROM orders o WHERE o",
                                 "SELECT c.name FROM clients c JOIN orders o USING (customer_id) "
                                 "WHERE c AND o.qty > 3"], ids=["alone", "with_join"])
def test_table_reference_as_a_condition(fq: fedquery.Connection, sql: str) -> None:
    """A bare table reference as a WHERE condition (``WHERE o``) is planned (it used to raise
    TypeError in the rules) and fails when run, with DuckDB's cast error."""
    assert "residual" in fq.explain(sql)
    with pytest.raises(fedquery.PlanError, match="cast") as info:
        fq.sql(sql).fetchall()
    assert "internal error" not in str(info.value)


# ------------------------------------------------------------------------- odd identifiers


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory):
    """Tables whose columns are named ``c;d``, ``a"b``, ``e.f`` and ``k``: a Parquet lake and
    a DuckDB file, with the same rows."""
    root = tmp_path_factory.mktemp("odd")
    table = pa.table({"c;d": [1, 2, 3], 'a"b': ["x", "y", "z"], "e.f": [1.5, 2.5, 3.5], "k": [1, 2, 3]})
    (root / "lake" / "t").mkdir(parents=True)
    pq.write_table(table, root / "lake" / "t" / "part.parquet")
    with duckdb.connect(str(root / "w.duckdb")) as con:
        con.register("incoming", table)
        con.execute("CREATE TABLE w AS SELECT * FROM incoming")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(root / "lake")},
                           "wh": {"kind": "duckdb", "path": str(root / "w.duckdb")}},
               "tables": {"t": {"source": "lake", "path": "t/"}, "w": {"source": "wh", "table": "w"}}}
    with fedquery.connect(catalog) as con:
        yield con


ODD_QUERIES = {
    "semicolon": ('SELECT "c;d" FROM t ORDER BY 1', [(1,), (2,), (3,)]),
    "quote": ('SELECT "a""b" FROM w ORDER BY 1', [("x",), ("y",), ("z",)]),
    "join_filter": ('SELECT t."c;d", w."a""b" FROM t JOIN w ON t.k = w.k WHERE t."c;d" > 1 '
                    'AND w."a""b" <> \'z\'', [(2, "y")]),
    "group_by": ('SELECT "a""b", count(*) FROM t GROUP BY "a""b" ORDER BY 1 LIMIT 2',
                 [("x", 1), ("y", 1)]),
    "dot": ('SELECT "e.f" FROM t WHERE "e.f" > 2 ORDER BY 1', [(2.5,), (3.5,)]),
}


@pytest.mark.parametrize("sql, expected", ODD_QUERIES.values(), ids=ODD_QUERIES.keys())
def test_odd_column_names_never_raise_raw_errors(odd: fedquery.Connection, sql: str, expected) -> None:
    """Either the right rows, or a FedQueryError (the net): never a TypeError."""
    for action in (lambda: odd.sql(sql).fetchall(), lambda: odd.explain(sql),
                   lambda: odd.explain(sql, analyze=True), lambda: odd.sql(f"DESCRIBE {sql}").fetchall()):
        with contextlib.suppress(fedquery.FedQueryError):
            action()
    try:
        rows = odd.sql(sql).fetchall()
    except fedquery.FedQueryError:
        return
    assert rows == expected


@pytest.mark.parametrize("sql, expected", ODD_QUERIES.values(), ids=ODD_QUERIES.keys())
def test_odd_column_names_answer(odd: fedquery.Connection, sql: str, expected) -> None:
    assert odd.sql(sql).fetchall() == expected
    assert "internal error" not in odd.explain(sql, analyze=True)


# ---------------------------------------------------------------------------- vector_search


@pytest.mark.parametrize("name", ['x"; --', "x'; DROP TABLE t; --", 'product_vectors"', "a b c",
                                  "a;b", "$q"])
def test_vector_search_table_name_is_a_name(fq: fedquery.Connection, name: str) -> None:
    literal = "'" + name.replace("'", "''") + "'"
    with pytest.raises(fedquery.PlanError, match="unknown table") as info:
        fq.sql(f"SELECT * FROM vector_search({literal}, $q, 3)", params={"q": [0.0] * 8})
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", ["", ".", "a..b", "a.b.c.d", " "])
def test_vector_search_not_a_table_name(fq: fedquery.Connection, name: str) -> None:
    with pytest.raises(fedquery.PlanError, match="is not a table name"):
        fq.sql(f"SELECT * FROM vector_search('{name}', $q, 3)", params={"q": [0.0] * 8})


def test_vector_search_name_case_and_quotes(fq: fedquery.Connection) -> None:
    q = {"q": np.linspace(-1, 1, 8).astype(np.float32)}
    expected = fq.sql("SELECT product_id FROM vector_search('product_vectors', $q, 4)", params=q).fetchall()
    assert len(expected) == 4
    assert fq.sql("SELECT product_id FROM vector_search('Product_Vectors', $q, 4)",
                  params=q).fetchall() == expected


# ------------------------------------------------------------------------ arguments of the API


@pytest.mark.parametrize("query", [5, None, b"SELECT 1", ["SELECT 1"], 1.5], ids=repr)
def test_query_must_be_a_string(fq: fedquery.Connection, query) -> None:
    with pytest.raises(fedquery.ParseError, match=f"expected the query as a string .str., got "
                                                  f"{type(query).__name__}"):
        fq.sql(query)
    with pytest.raises(fedquery.ParseError, match="expected the query as a string"):
        fq.explain(query)


@pytest.mark.parametrize("params", [5, "abc", {1, 2}, (x for x in [1]), b"x", 1.5, object(),
                                    frozenset({1})],
                         ids=["int", "str", "set", "generator", "bytes", "float", "object", "frozenset"])
def test_params_of_the_wrong_type(fq: fedquery.Connection, params) -> None:
    with pytest.raises(fedquery.PlanError, match=rf"params must be a dict of named values \(\$name\) "
                                                 rf"or a list or tuple .*got {type(params).__name__}"):
        fq.sql("SELECT count(*) FROM orders WHERE qty = ?", params=params)


@pytest.mark.parametrize("key", [b"q", 1, None, ("q",)], ids=repr)
def test_parameter_names_must_be_strings(fq: fedquery.Connection, key) -> None:
    with pytest.raises(fedquery.PlanError, match="parameter names must be strings"):
        fq.sql("SELECT count(*) FROM orders WHERE qty = $q", params={key: 1, "q": 1})


def test_params_as_tuple_and_mapping(fq: fedquery.Connection) -> None:
    from types import MappingProxyType

    expected = fq.sql("SELECT count(*) FROM orders WHERE qty = 3").fetchall()
    assert fq.sql("SELECT count(*) FROM orders WHERE qty = ?", params=(3,)).fetchall() == expected
    assert fq.sql("SELECT count(*) FROM orders WHERE qty = $q",
                  params=MappingProxyType({"q": 3})).fetchall() == expected


def test_a_parameter_named_with_its_dollar(fq: fedquery.Connection) -> None:
    """``{"$q": 3}`` is the value of ``$q`` (it said "no value for parameter $q; given: $q")."""
    expected = fq.sql("SELECT count(*) FROM orders WHERE qty = 3").fetchall()
    assert fq.sql("SELECT count(*) FROM orders WHERE qty = $q",
                  params={"$q": 3}).fetchall() == expected
    with pytest.raises(fedquery.PlanError, match=r"\$q is given twice"):
        fq.sql("SELECT count(*) FROM orders WHERE qty = $q", params={"$q": 3, "q": 4})


def test_explain_takes_params_second_like_sql(fq: fedquery.Connection) -> None:
    """``explain(sql, params)``, as ``sql(sql, params)``: the mapping is the parameters."""
    sql = "SELECT count(*) FROM orders WHERE qty = $y"
    assert fq.explain(sql, {"y": 5}) == fq.explain(sql, params={"y": 5})
    assert "analyze:" not in fq.explain(sql, {"y": 5})
    assert "analyze:" in fq.explain(sql, True, {"y": 5})
    assert "analyze:" in fq.explain("SELECT count(*) FROM orders WHERE qty = ?", analyze=True, params=[5])
    assert fq.explain("SELECT count(*) FROM orders WHERE qty = ?", [5]) == \
        fq.explain("SELECT count(*) FROM orders WHERE qty = ?", params=(5,))


@pytest.mark.parametrize("analyze", ["yes", 2, None, 0.5, object()], ids=repr)
def test_explain_analyze_must_be_a_bool(fq: fedquery.Connection, analyze) -> None:
    with pytest.raises(fedquery.PlanError, match="explain: analyze must be True or False"):
        fq.explain("SELECT 1", analyze)


def test_explain_params_given_twice(fq: fedquery.Connection) -> None:
    with pytest.raises(fedquery.PlanError, match="params given twice"):
        fq.explain("SELECT $y", {"y": 1}, params={"y": 2})


@pytest.mark.parametrize("call, message", [
    (lambda con: con.sql("SELECT 1", parms={}), r"sql\(\) got an unknown argument 'parms' "
                                                 r"\(did you mean 'params'\?\); it takes params"),
    (lambda con: con.explain("SELECT 1", analyse=True), r"'analyse' \(did you mean 'analyze'\?\)"),
    (lambda con: con.sql("SELECT 1", timout=5), r"unknown argument 'timout' \(did you mean "
                                                r"'timeout'\?\); it takes params, timeout"),
], ids=["sql", "explain", "timeout"])
def test_unknown_keyword_arguments(fq: fedquery.Connection, call, message: str) -> None:
    with pytest.raises(fedquery.PlanError, match=message):
        call(fq)


def test_unknown_keyword_argument_of_connect(unseen) -> None:
    with pytest.raises(fedquery.CatalogError, match=r"connect\(\) got an unknown argument 'strcit' "
                                                    r"\(did you mean 'strict'\?\)"):
        fedquery.connect(unseen[0], strcit=True)
    with pytest.raises(fedquery.CatalogError, match="strict must be True or False"):
        fedquery.connect(unseen[0], strict="yes")


@pytest.mark.parametrize("call, message", [
    (lambda con: con.schema(5), "schema: expected a table name"),
    (lambda con: con.schema(None), "schema: expected a table name"),
    (lambda con: con.profile(5), "profile: expected a source"),
    (lambda con: con.profile("clients", column=3), "column must be a column name"),
    (lambda con: con.profile("clients", by=[1]), "by must be a column name"),
    (lambda con: con.profile("clients", sample="all"), "sample must be a count or a fraction"),
    (lambda con: con.profile("clients", sample=True), "sample must be a count or a fraction"),
], ids=["schema_int", "schema_none", "profile_int", "column", "by", "sample_str", "sample_bool"])
def test_other_methods_check_their_arguments(fq: fedquery.Connection, call, message: str) -> None:
    with pytest.raises(fedquery.PlanError, match=message):
        call(fq)


def test_closed_connection(unseen) -> None:
    con = fedquery.connect(unseen[0])
    con.close()
    for call in (lambda: con.sql("SELECT 1"), lambda: con.explain("SELECT 1"), con.tables,
                 lambda: con.schema("clients")):
        with pytest.raises(fedquery.FedQueryError, match="the connection is closed"):
            call()


# ------------------------------------------------------------------------- the net itself

SECRET = "net-secret-Qw7"


@pytest.fixture()
def netted(unseen, monkeypatch: pytest.MonkeyPatch):
    """A connection of its own over the shop, with a password read from the environment."""
    monkeypatch.setenv("FQ_NET_SECRET", SECRET)
    catalog = dict(unseen[0])
    catalog["sources"] = dict(catalog["sources"])
    lake = catalog["sources"]["lake"]  # a setting that may hold anything: a local lake's options
    catalog["sources"]["lake"] = {**lake, "options": {"password": "${FQ_NET_SECRET}"}}
    with fedquery.connect(catalog) as con:
        yield con


def _raise(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


def test_internal_error_in_planning(netted: fedquery.Connection, monkeypatch) -> None:
    from fedquery.planner import Planner

    monkeypatch.setattr(Planner, "cached_plan", _raise(TypeError(f"bad thing near {SECRET}")))
    for call in (lambda: netted.sql("SELECT 1"), lambda: netted.explain("SELECT 1")):
        with pytest.raises(fedquery.PlanError) as info:
            call()
        message = str(info.value)
        assert message.startswith("internal error: TypeError: bad thing near ***")
        assert "this is a bug in fedquery" in message
        assert SECRET not in message
        for linked in (info.value.__cause__, info.value.__context__):  # masked in place
            assert linked is None or SECRET not in f"{linked} {linked!r}"


def test_internal_error_chains_the_original(netted: fedquery.Connection, monkeypatch) -> None:
    from fedquery.planner import Planner

    original = KeyError("no such thing")
    monkeypatch.setattr(Planner, "cached_plan", _raise(original))
    with pytest.raises(fedquery.PlanError, match="internal error: KeyError: 'no such thing'") as info:
        netted.sql("SELECT 1")
    assert info.value.__cause__ is original


def test_internal_io_error_while_running_is_a_source_error(netted: fedquery.Connection,
                                                           monkeypatch) -> None:
    from fedquery.execute import Session

    result = netted.sql("SELECT count(*) FROM orders")
    monkeypatch.setattr(Session, "_start", _raise(ConnectionResetError(f"reset by {SECRET}")))
    for call in (result.fetchall, result.arrow, result.df, result.batches, result.__len__,
                 lambda: netted.explain("SELECT count(*) FROM orders", analyze=True)):
        with pytest.raises(fedquery.SourceError) as info:
            call()
        assert info.value.source == "lake"
        assert "ConnectionResetError: reset by ***" in str(info.value)


def test_internal_error_in_a_stream(netted: fedquery.Connection, monkeypatch) -> None:
    """The reader ``batches()`` returns raises FedQueryError mid-stream, not the original."""
    from fedquery.execute import Execution

    def broken(self, source):
        yield from []
        raise ValueError(f"stream broke at {SECRET}")

    monkeypatch.setattr(Execution, "_batches", broken)
    reader = netted.sql("SELECT * FROM orders").batches()
    with pytest.raises(fedquery.PlanError, match=r"internal error: ValueError: stream broke at \*\*\*"):
        reader.read_all()


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)], ids=["ctrl_c", "exit"])
def test_interrupts_pass_through(netted: fedquery.Connection, monkeypatch, exc) -> None:
    from fedquery.execute import Session
    from fedquery.planner import Planner

    monkeypatch.setattr(Session, "_start", _raise(exc))
    result = netted.sql("SELECT count(*) FROM orders")
    with pytest.raises(type(exc)) as info:
        result.fetchall()
    assert info.value is exc
    monkeypatch.setattr(Planner, "cached_plan", _raise(exc))
    with pytest.raises(type(exc)):
        netted.sql("SELECT 2")


def test_connector_that_breaks_while_opening(unseen, monkeypatch) -> None:
    """A connector raising a raw error at connect is a SourceError naming that source."""
    from fedquery.connectors.lancedb import LanceDBConnector

    monkeypatch.setattr(LanceDBConnector, "__init__", _raise(AttributeError("oops")))
    with pytest.raises(fedquery.SourceError, match="cannot open the source: internal error: "
                                                   "AttributeError: oops") as info:
        fedquery.connect(unseen[0])
    assert info.value.source == "vec"


def test_recursion_error_in_planning_says_too_deep(netted: fedquery.Connection, monkeypatch) -> None:
    from fedquery.planner import Planner

    monkeypatch.setattr(Planner, "cached_plan", _raise(RecursionError("maximum recursion depth")))
    with pytest.raises(fedquery.PlanError, match="too deeply nested to plan"):
        netted.sql("SELECT 1")


# ------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedquery.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_bad_input_is_one_line(tmp_path: Path, unseen_root: Path) -> None:
    import yaml

    from tests.conftest import unseen_catalog

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(unseen_catalog(unseen_root)))
    done = _cli("sql", str(catalog), "SELECT " + "(" * 500 + "1" + ")" * 500)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ParseError: the query nests brackets")
    assert "Traceback" not in done.stderr
    done = _cli("sql", str(catalog), "SELECT 1 AS x", "--format", "csv", "--output",
                str(tmp_path / "no" / "such" / "folder" / "out.csv"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot write") and "Traceback" not in done.stderr


# ------------------------------------------------------------------- root causes elsewhere


def test_deeply_nested_list_result(fq: fedquery.Connection) -> None:
    depth = 70
    assert depth <= MAX_NESTING
    with pytest.raises(fedquery.PlanError) as info:
        fq.sql("SELECT " + "[" * depth + "1" + "]" * depth).fetchall()
    assert "internal error" not in str(info.value)
