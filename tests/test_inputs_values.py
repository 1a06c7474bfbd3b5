"""Values Python cannot hold, and results read after their connection closed: nothing but a
FedQueryError leaves the API, and the Python values equal DuckDB's own client's.

A date or timestamp outside Python's ``datetime`` range (year 294247, ``infinity``, a date
5.8 million years BC) made ``fetchall`` fail with an internal error and ``_repr_html_`` with
a raw ``OverflowError``; DuckDB's client gives such a value as its text and an infinite one
as ``datetime.max`` / ``datetime.min``, and so does fedquery now.
"""

from __future__ import annotations

import duckdb
import pytest

import fedquery

OUT_OF_RANGE = [
    "SELECT '294247-01-10'::TIMESTAMP AS t",
    "SELECT 'infinity'::TIMESTAMP AS t",
    "SELECT '-infinity'::TIMESTAMP AS t",
    "SELECT '-5877641-06-25'::DATE AS t",
    "SELECT 'infinity'::DATE AS t",
    "SELECT '-infinity'::DATE AS t",
    "SELECT '10000-01-01'::DATE AS t",
    "SELECT '294247-01-10'::TIMESTAMPTZ AS t",
    "SELECT 'infinity'::TIMESTAMPTZ AS t",
    "SELECT '290000-01-01'::TIMESTAMP_S AS t",
    "SELECT '0001-01-01'::TIMESTAMP - INTERVAL 1 day AS t",
    "SELECT ['294247-01-10'::TIMESTAMP, '2000-01-01'::TIMESTAMP] AS t, 5 AS x",
    "SELECT {'a': '294247-01-10'::TIMESTAMP, 'b': 'x'} AS t",
    "SELECT * FROM (VALUES ('2000-01-02 03:04:05'::TIMESTAMPTZ, 1), ('294247-01-10'::TIMESTAMPTZ, 2))"
    " v(t, n)",
    "SELECT * FROM (VALUES ('2000-01-02'::DATE), (NULL), ('infinity'::DATE)) v(t)",
]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    with fedquery.connect({"sources": {"l": {"kind": "parquet",
                                             "root": str(tmp_path_factory.mktemp("empty"))}}}) as c:
        yield c


@pytest.fixture(scope="module")
def reference():
    ref = duckdb.connect()
    ref.execute("SET TimeZone = 'Etc/UTC'")  # fedquery's results carry UTC
    yield ref
    ref.close()


@pytest.mark.parametrize("sql", OUT_OF_RANGE)
def test_fetchall_equals_duckdbs_client(con: fedquery.Connection, reference, sql: str) -> None:
    assert con.sql(sql).fetchall() == reference.execute(sql).fetchall()


@pytest.mark.parametrize("sql", OUT_OF_RANGE)
def test_html_shows_what_fetchall_gives(con: fedquery.Connection, reference, sql: str) -> None:
    import html

    page = con.sql(sql)._repr_html_()
    for row in reference.execute(sql).fetchall():
        for value in _leaves(list(row)):
            if value is not None:
                assert html.escape(str(value)) in page, (value, page)
    assert "datetime." not in page  # nested values as text, not Python reprs


def _leaves(value):
    """The scalars of a value (a struct's field values, a list's items), in order."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_in_range_values_beside_out_of_range_ones(con: fedquery.Connection) -> None:
    """Each column is converted as DuckDB's client converts it, in range or not."""
    import datetime

    rows = con.sql("SELECT '2000-01-02'::TIMESTAMP AS t, '294247-01-10'::TIMESTAMP AS u").fetchall()
    assert rows == [(datetime.datetime(2000, 1, 2), "294247-01-10 00:00:00")]


def test_df_of_a_date_pandas_cannot_hold(con: fedquery.Connection) -> None:
    with pytest.raises(fedquery.PlanError, match="outside the range pandas can hold .*; cast it to "
                                                 "VARCHAR in the query, or use arrow"):
        con.sql("SELECT 'infinity'::DATE AS t").df()


def test_df_of_a_nested_timestamp_is_duckdbs(con: fedquery.Connection, reference) -> None:
    """Nested in a struct, DuckDB's df() gives the value Python cannot hold as its text."""
    sql = "SELECT {'a': '294247-01-10'::TIMESTAMP} AS t"
    assert con.sql(sql).df()["t"].tolist() == reference.sql(sql).df()["t"].tolist() == [
        {"a": "294247-01-10 00:00:00"}]


def test_df_of_a_timestamp_pandas_holds(con: fedquery.Connection) -> None:
    frame = con.sql("SELECT '294247-01-10'::TIMESTAMP AS t").df()
    assert str(frame["t"].iloc[0]).startswith("294247-01-10")


# ---------------------------------------------------------------------------- closed connections


@pytest.fixture()
def closing(tmp_path):
    return fedquery.connect({"sources": {"l": {"kind": "parquet", "root": str(tmp_path)}}})


CLOSED = "the connection is closed; read a result before closing its connection"


@pytest.mark.parametrize("method", ["fetchall", "arrow", "df", "batches", "__len__"])
def test_result_read_after_close(closing: fedquery.Connection, method: str) -> None:
    result = closing.sql("SELECT 42 AS answer")
    closing.close()
    with pytest.raises(fedquery.FedQueryError) as info:
        getattr(result, method)()
    assert str(info.value) == CLOSED


def test_result_displayed_after_close_shows_the_error(closing: fedquery.Connection) -> None:
    """A display shows the error in place of the table (a formatter's exception would be a
    traceback of the rendering)."""
    result = closing.sql("SELECT 42 AS answer")
    closing.close()
    page = result._repr_html_()
    assert 'class="fq-error"' in page and f"FedQueryError: {CLOSED}" in page


def test_result_fetched_before_close_still_answers(closing: fedquery.Connection) -> None:
    result = closing.sql("SELECT 42 AS answer")
    assert result.fetchall() == [(42,)]
    closing.close()
    assert result.fetchall() == [(42,)] and result.arrow().num_rows == 1


@pytest.mark.parametrize(("fmt", "expected"), [
    ("json", '{"t":"294247-01-10 00:00:00","d":"9999-12-31"}\n'),  # compact JSON lines
    ("table", "294247-01-10 00:00:00 | 9999-12-31"),
])
def test_cli_prints_values_python_cannot_hold(tmp_path, capsys, fmt: str, expected: str) -> None:
    from fedquery import cli

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"sources:\n  l: {{kind: parquet, root: {tmp_path}}}\n")
    sql = "SELECT '294247-01-10'::TIMESTAMP AS t, 'infinity'::DATE AS d"
    assert cli.main(["sql", str(catalog), sql, "--format", fmt]) == 0
    assert expected in capsys.readouterr().out
