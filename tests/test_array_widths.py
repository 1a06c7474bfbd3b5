"""Vectors of two widths compared by a distance: a PlanError naming both sides and the models."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import fedquery


@pytest.fixture()
def con(tmp_path: Path):
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as wh:
        wh.execute("CREATE TABLE shots AS SELECT i AS id, [i, 1, 2, 3]::FLOAT[4] AS embedding "
                   "FROM range(5) t(i)")
    with fedquery.connect({"sources": {"wh": {"kind": "duckdb", "path": str(path)}},
                           "tables": {"shots": {"source": "wh", "table": "shots"}}}) as con:
        yield con


def test_a_column_against_embed_text_names_both_widths_and_the_model(con) -> None:
    with pytest.raises(fedquery.PlanError) as info:
        con.sql("SELECT id FROM shots s ORDER BY array_cosine_distance(s.embedding, "
                "embed_text('rainy street at night')) LIMIT 3").fetchall()
    text = str(info.value)
    assert "4 and 256 dimensions" in text and "column s.embedding (FLOAT[4])" in text
    assert "embed_text with model 'numpy-trigram-256' (256 dims)" in text
    assert "Registered embedders:" in text and "numpy-colorhist-64 (image, 64 dims)" in text
    assert "Array arguments must be of the same size" not in text


@pytest.mark.parametrize("other, width", [("[1.0, 2.0]::FLOAT[2]", 2), ("[1, 2, 3]::DOUBLE[3]", 3)])
def test_a_value_of_another_width(con, other: str, width: int) -> None:
    with pytest.raises(fedquery.PlanError) as info:
        con.sql(f"SELECT array_distance(embedding, {other}) FROM shots").fetchall()
    assert f"compares vectors of 4 and {width} dimensions" in str(info.value)


def test_equal_widths_still_answer(con) -> None:
    rows = con.sql("SELECT id FROM shots ORDER BY array_distance(embedding, "
                   "[0, 1, 2, 3]::FLOAT[4]) LIMIT 1").fetchall()
    assert rows == [(0,)]
