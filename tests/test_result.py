"""``Result`` as a DuckDB relation: run once and kept, previews that compute only the rows they
show, Arrow's PyCapsule stream, ``pl()``, ``fetchone``/``fetchmany``, ``types`` and ``shape``.

Runs are counted by the calls of a registered image embedder over 3,000 distinct files:
image vectors are cached per run only, so every run of the query embeds its rows again.
"""

from __future__ import annotations

import io
import re
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery
from fedquery.result import FETCH_BLOCK, HTML_ROWS

N_IMAGES = 3000
QUERY = "SELECT id, uri, embed_image(uri, 'counting') AS v FROM images"


@pytest.fixture(scope="module")
def image_catalog(tmp_path_factory):
    """3,000 distinct 4x4 PNGs and a Parquet table of their URIs (ids 0..2999)."""
    root = tmp_path_factory.mktemp("thousands")
    (root / "blobs").mkdir()
    for i in range(N_IMAGES):
        out = io.BytesIO()
        Image.new("RGB", (4, 4), (i % 256, i // 256, 7)).save(out, "PNG")
        (root / "blobs" / f"{i}.png").write_bytes(out.getvalue())
    (root / "lake").mkdir()
    pq.write_table(pa.table({"id": pa.array(range(N_IMAGES), pa.int64()),
                             "uri": [f"{i}.png" for i in range(N_IMAGES)]}),
                   root / "lake" / "images.parquet", row_group_size=500)
    return {"sources": {"lake": {"kind": "parquet", "root": str(root / "lake")},
                        "pics": {"kind": "files", "root": str(root / "blobs")}},
            "tables": {"images": {"source": "lake", "path": "images.parquet"}},
            "blobs": {"images.uri": "pics"}}


@pytest.fixture()
def counted(image_catalog, registry):
    """(connection, list of batch sizes the 'counting' embedder was called with)."""
    calls: list[int] = []

    def counting(images: list[bytes]) -> np.ndarray:
        calls.append(len(images))
        return np.ones((len(images), 2), dtype=np.float32)

    fedquery.register_embedder("counting", counting, 2)
    with fedquery.connect(image_catalog) as con:
        yield con, calls


def _rows_shown(page: str) -> int:
    return len(re.findall(r"<tr>", page.split("<tbody>", 1)[1]))


def test_preview_computes_only_the_rows_it_shows(counted) -> None:
    con, calls = counted
    res = con.sql(QUERY)
    page = res._repr_html_()
    assert _rows_shown(page) == HTML_ROWS and "at least 21 rows" in page
    assert 0 < sum(calls) <= HTML_ROWS + 1, "only the shown rows (and one to tell there are more)"
    assert res.shape == (None, 3), "rows are not known from a preview"
    assert repr(res).startswith(f"<fedquery.Result {HTML_ROWS}+ rows x 3 columns>")


def test_displaying_twice_runs_once(counted) -> None:
    con, calls = counted
    res = con.sql(QUERY)
    first = res._repr_html_()
    shown = sum(calls)
    assert res._repr_html_() == first and repr(res) and sum(calls) == shown


def test_full_fetch_runs_once_after_a_preview_and_is_kept(counted) -> None:
    con, calls = counted
    res = con.sql(QUERY)
    res._repr_html_()
    previewed = sum(calls)
    table = res.arrow()
    assert table.num_rows == N_IMAGES and sum(calls) == previewed + N_IMAGES
    assert repr(res).startswith(f"<fedquery.Result {N_IMAGES:,} rows x 3 columns>")
    assert res.shape == (N_IMAGES, 3) and len(res) == N_IMAGES
    res._repr_html_(), res.df(), res.fetchall(), res.pl(), pa.table(res), res.fetchone()
    assert sum(calls) == previewed + N_IMAGES, "every later read uses the kept table"
    assert res.arrow() is table


def test_a_preview_holding_every_row_is_the_result(counted) -> None:
    con, calls = counted
    res = con.sql("SELECT id, uri, embed_image(uri, 'counting') AS v FROM images WHERE id < 7")
    res._repr_html_()
    assert sum(calls) == 7 and res.shape == (7, 3)
    assert [r[0] for r in res.fetchall()] == list(range(7)) and sum(calls) == 7


@pytest.mark.parametrize(("sql", "first"), [
    ("SELECT id FROM images ORDER BY id DESC", [2999, 2998, 2997]),
    ("SELECT id FROM images WHERE id % 2 = 1 ORDER BY id", [1, 3, 5]),
    ("SELECT id FROM images WHERE id < 3 UNION ALL SELECT id FROM images WHERE id > 2996 "
     "ORDER BY id", [0, 1, 2, 2997]),
    ("SELECT id FROM images ORDER BY id LIMIT 50 OFFSET 10", [10, 11, 12]),
    ("SELECT * FROM (SELECT id FROM images ORDER BY id) LIMIT 100", [0, 1, 2]),
])
def test_preview_rows_are_the_first_rows(counted, sql: str, first: list[int]) -> None:
    con, _ = counted
    res = con.sql(sql)
    text = repr(res)
    shown = [int(line.split()[0]) for line in text.splitlines()[4:] if line[:1].isdigit()]
    assert shown[:len(first)] == first
    assert shown == [r[0] for r in res.fetchall()[:len(shown)]]


def test_preview_with_parameters(counted) -> None:
    con, _ = counted
    named = con.sql("SELECT id FROM images WHERE id >= $low ORDER BY id", params={"low": 2990})
    positional = con.sql("SELECT id FROM images WHERE id >= ? ORDER BY id", params=[2990])
    for res in (named, positional):
        assert "2990" in res._repr_html_() and res.shape == (10, 1)


def test_statement_without_a_limited_form_still_displays(counted) -> None:
    con, _ = counted
    res = con.sql("VALUES (1, 'a'), (2, 'b')")
    assert "<td>a</td>" in res._repr_html_() and res.shape == (2, 2)


def test_arrow_stream_readers(counted) -> None:
    con, calls = counted
    res = con.sql("SELECT id, uri FROM images WHERE id < 1000")
    expected = res.arrow()
    assert pa.table(res).equals(expected)
    import polars as pl

    frame = pl.DataFrame(res)
    assert frame.shape == (1000, 2) and frame["id"].to_list() == expected["id"].to_pylist()
    assert res.pl().equals(frame)
    assert duckdb.sql("SELECT count(*), sum(id) FROM res").fetchall() == [(1000, 499500)]
    capsule = res.__arrow_c_stream__(None)
    assert type(capsule).__name__ == "PyCapsule"


def test_arrow_stream_runs_the_query_once(counted) -> None:
    con, calls = counted
    res = con.sql("SELECT id, embed_image(uri, 'counting') AS v FROM images WHERE id < 100")
    pa.table(res)
    duckdb.sql("SELECT count(*) FROM res").fetchall()
    assert sum(calls) == 100


def test_fetchone_and_fetchmany_walk_the_kept_table(counted) -> None:
    con, _ = counted
    res = con.sql("SELECT id, uri FROM images ORDER BY id")
    every = res.fetchall()
    assert res.fetchone() == every[0]
    assert res.fetchmany(2) == every[1:3]
    assert res.fetchmany() == every[3:4]
    walked = every[:4]
    while batch := res.fetchmany(FETCH_BLOCK - 7):  # blocks that do not line up with conversion
        walked += batch
    assert walked == every and len(every) == N_IMAGES
    assert res.fetchone() is None and res.fetchmany(5) == []
    assert res.fetchall() == every, "fetchall gives every row, whatever fetchone read"


@pytest.mark.parametrize("n", [-1, 1.5, "3", True])
def test_fetchmany_needs_a_count(counted, n) -> None:
    con, _ = counted
    with pytest.raises(fedquery.PlanError, match="fetchmany: n must be a count of rows"):
        con.sql("SELECT 1").fetchmany(n)


def test_types_are_duckdbs_names(counted) -> None:
    con, _ = counted
    sql = ("SELECT id, sum(id) OVER () AS s, avg(id) OVER () AS a, uri, [id] AS l, "
           "{'k': id} AS st, embed_image(uri, 'counting') AS v FROM images LIMIT 1")
    res = con.sql(sql)
    assert res.types == ["BIGINT", "HUGEINT", "DOUBLE", "VARCHAR", "BIGINT[]", "STRUCT(k BIGINT)",
                         "FLOAT[2]"]
    reference = duckdb.sql("SELECT 1::BIGINT AS id, sum(1::BIGINT) OVER () AS s, "
                           "avg(1::BIGINT) OVER () AS a, 'x' AS uri, [1::BIGINT] AS l, "
                           "{'k': 1::BIGINT} AS st")
    assert res.types[:6] == [str(t) for t in reference.types]
    assert con.sql("SHOW TABLES").types == ["VARCHAR"]


def test_pl_without_polars_says_what_to_install(counted, monkeypatch) -> None:
    con, _ = counted
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(fedquery.FedQueryError, match=r"needs polars: pip install polars"):
        con.sql("SELECT 1").pl()


def test_pl_of_a_type_polars_cannot_hold(counted) -> None:
    con, _ = counted
    with pytest.raises(fedquery.PlanError, match=r"polars cannot hold the result .*month_day_nano"):
        con.sql("SELECT INTERVAL 1 DAY AS i").pl()


@pytest.mark.parametrize("read", [lambda r: r.fetchone(), lambda r: r.pl(),
                                  lambda r: pa.table(r), lambda r: r.fetchmany(3)])
def test_reading_after_close(image_catalog, read) -> None:
    con = fedquery.connect(image_catalog)
    res = con.sql("SELECT id FROM images")
    con.close()
    with pytest.raises(fedquery.FedQueryError, match="the connection is closed"):
        read(res)


def test_repr_after_close_says_so_and_never_raises(image_catalog) -> None:
    """A repr (what a console or notebook prints) shows the error in one line instead of a
    traceback from the printer."""
    con = fedquery.connect(image_catalog)
    res = con.sql("SELECT id FROM images")
    con.close()
    text = repr(res)
    assert "FedQueryError" in text and "the connection is closed" in text
