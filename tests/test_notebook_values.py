"""The notebook table's shape line, column types and nested values (compact nested tables or
JSON, never Python reprs), on real query results."""

from __future__ import annotations

import json
import re

import pytest

import fedquery
from fedquery import notebook
from fedquery.notebook_values import JSON_ITEMS, NESTED_KEYS, compact_json
from fedquery.result import HTML_ROWS
from tests.html_tree import parse

REPRS = re.compile(r"\{'|\['|\('|array\(|datetime\.|Decimal\(|UUID\(|np\.float|b'")


@pytest.fixture(scope="module")
def con(sample):
    connection = fedquery.connect(sample)
    yield connection
    connection.close()


def _shape(page: str) -> str:
    return parse(page).one("div", **{"class": "fedquery"}).children[0].text


def _types(page: str) -> list[str]:
    return [th.text for th in parse(page).one("tr", **{"class": "fq-types"}).children]


def test_shape_before_and_after_fetching(con) -> None:
    res = con.sql("SELECT frame_id, camera FROM frames ORDER BY frame_id LIMIT 57")
    assert _shape(res._repr_html_()) == f"at least {HTML_ROWS + 1} rows × 2 columns (the first 20 shown)"
    res.fetchall()
    assert _shape(res._repr_html_()) == "57 rows × 2 columns (the first 20 shown)"
    small = con.sql("SELECT 1 AS one")
    assert _shape(small._repr_html_()) == "1 row × 1 column"


def test_shape_uses_the_count_it_is_given() -> None:
    page = notebook.render_html(["a"], [(1,), (2,)], more=True, row_count=1234)
    assert _shape(page) == "1,234 rows × 1 column (the first 2 shown)"
    page = notebook.render_html(["a"], [(1,), (2,)], more=True)
    assert _shape(page) == "at least 3 rows × 1 column (the first 2 shown)"


def test_each_column_shows_its_duckdb_type(con) -> None:
    res = con.sql("SELECT frame_id, camera, ts, [1.5, 2]::FLOAT[2] AS e, "
                  "image_info(image_uri) AS info FROM frames LIMIT 1")
    types = _types(res._repr_html_())
    assert types[:4] == ["BIGINT", "VARCHAR", "TIMESTAMP", "FLOAT[2]"]
    assert types[4].startswith("STRUCT(format VARCHAR") and types[4].endswith("…")
    full = parse(res._repr_html_()).one("tr", **{"class": "fq-types"}).children[4].attrs["title"]
    assert full == res._plan.types[4]


def test_nested_values_are_compact_not_python_reprs(con) -> None:
    page = con.sql("""
        SELECT {'a': 1, 'b': [1, 2], 'when': DATE '2024-03-04'} AS s,
               MAP {'k': 1.5, 'l': NULL} AS m,
               [{'x': 1, 'y': 'u'}, {'x': 2, 'y': 'v'}] AS ls,
               [[1, 2], [3]] AS lists,
               [0.25, -1.5, 3]::DOUBLE[] AS d,
               image_info(image_uri) AS info,
               [uuid(), NULL] AS ids,
               [1.25::DECIMAL(5,2)] AS dec
        FROM frames ORDER BY frame_id LIMIT 1""")._repr_html_()
    assert not REPRS.search(page), REPRS.search(page)
    tree = parse(page)
    nested = tree.all("table", **{"class": "fq-nested"})
    heads = [[th.text for th in t.children[0].children] for t in nested]
    assert ["a", "b", "when"] in heads and ["k", "l"] in heads and ["x", "y"] in heads
    assert ["format", "width", "height", "mode", "bytes", "error"] in heads
    codes = [c.text for c in tree.iter("code")]
    assert "[1, 2]" in codes and "[[1, 2], [3]]" in codes and "[0.25, -1.5, 3]" in codes
    assert "[1.25]" in codes


def test_embeddings_are_cut(con) -> None:
    res = con.sql("SELECT frame_id, embedding FROM frame_embeddings ORDER BY frame_id LIMIT 2")
    page = res._repr_html_()
    vector = res.fetchall()[0][1]
    assert not REPRS.search(page)
    first = parse(page).all("code")[0].text
    assert first.startswith("[") and first.endswith(f", … {len(vector) - JSON_ITEMS:,} more]")
    assert json.loads(first.split(", …")[0] + "]") == pytest.approx(vector[:JSON_ITEMS], rel=1e-5)


def test_compact_json_is_bounded() -> None:
    huge = list(range(1_000_000))
    assert compact_json(huge) == "[0, 1, 2, 3, 4, 5, 6, 7, … 999,992 more]"
    deep = [[[[[[1]]]]]]
    assert compact_json(deep) == "[[[[[…]]]]]"
    text = compact_json({"k": "x" * 5000}, limit=50)
    assert len(text) == 50 and text.endswith("…")
    assert compact_json([float("nan"), float("inf"), None, True]) == "[NaN, Infinity, null, true]"
    assert compact_json([("a", 1), ("b", 2)]) == '{"a": 1, "b": 2}'  # a map as Arrow gives it


def test_wide_structs_and_long_lists_are_capped(con) -> None:
    fields = ", ".join(f"'f{i}': {i}" for i in range(40))
    page = con.sql(f"SELECT {{{fields}}} AS wide, "
                   "list_transform(range(50), lambda i: {'i': i}) AS many")._repr_html_()
    tables = parse(page).all("table", **{"class": "fq-nested"})
    wide = [th.text for th in tables[0].children[0].children]
    assert len(wide) == NESTED_KEYS + 1 and wide[-1] == f"… {40 - NESTED_KEYS} more"
    assert "… 46 more (50 in all)" in tables[1].text
    assert len(page) < 20_000


def test_values_that_cannot_be_shown_do_not_break_the_table() -> None:
    class Odd:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    page = notebook.render_html(["a", "b"], [({"k": Odd()}, 1)], more=False)
    assert "<td>1</td>" in page
