"""Conformance of ``kind: lancedb``: a LanceDB table, with a fixed-size vector column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fedquery
from fedquery.connectors.base import TableRef
from fedquery.connectors.conformance import Case, ConnectorConformance, kinds_table

DIM = 4


def with_vectors(table: pa.Table) -> pa.Table:
    values = np.random.default_rng(5).standard_normal((table.num_rows, DIM)).astype(np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), DIM)
    return table.append_column("vec", vectors)


class TestLanceDBConformance(ConnectorConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        import lancedb

        uri = tmp_path_factory.mktemp("lance-conformance") / "db"
        table = with_vectors(kinds_table())
        lancedb.connect(str(uri)).create_table("kinds", table)
        con = fedquery.connect({"sources": {"vec": {"kind": "lancedb", "uri": str(uri)}},
                                "tables": {"items": {"source": "vec", "table": "kinds"}}})
        yield Case(con, "vec", TableRef("main", "items"), table, "items")
        con.close()

    def test_vector_column_projection(self, case: Case) -> None:
        got = self.scan(case, columns=("id", "vec"), filter="id = 3")
        want = case.expected.filter(pc.equal(case.expected["id"], 3)).select(["id", "vec"])
        assert got.to_pylist() == want.to_pylist()
        assert got.schema.field("vec").type == pa.list_(pa.float32(), DIM)


def _tree(folder) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in folder.rglob("*")}


@pytest.mark.parametrize("uri", ["{tmp}/newdir/deeper/vectors", "file://{tmp}/newdir/deeper/vectors",
                                 "file://localhost{tmp}/newdir/vectors"])
def test_a_missing_database_is_an_error_and_nothing_is_created(tmp_path, uri: str) -> None:
    catalog = {"sources": {"v": {"kind": "lancedb", "uri": uri.format(tmp=tmp_path)}}}
    with pytest.raises(fedquery.SourceError, match="does not exist: sources are only read") as info:
        fedquery.connect(catalog)
    assert info.value.source == "v"
    assert _tree(tmp_path) == {}


@pytest.mark.parametrize("uri", ["{tmp}/file.lance", "file://{tmp}/file.lance",
                                 "file://elsewhere{tmp}/db"])
def test_a_database_that_is_not_a_local_folder_is_an_error(tmp_path, uri: str) -> None:
    (tmp_path / "file.lance").write_bytes(b"not a folder")
    with pytest.raises(fedquery.SourceError, match="not a folder|not one on another host"):
        fedquery.connect({"sources": {"v": {"kind": "lancedb", "uri": uri.format(tmp=tmp_path)}}})
    assert _tree(tmp_path) == {"file.lance": (12, (tmp_path / "file.lance").stat().st_mtime_ns)}


def test_reading_a_database_writes_nothing(tmp_path) -> None:
    import lancedb

    lancedb.connect(str(tmp_path / "db")).create_table("kinds", with_vectors(kinds_table()))
    before = _tree(tmp_path)
    for uri in (str(tmp_path / "db"), f"file://{tmp_path}/db"):
        with fedquery.connect({"sources": {"vec": {"kind": "lancedb", "uri": uri}},
                               "tables": {"items": {"source": "vec", "table": "kinds"}}}) as con:
            assert con.sql("SELECT count(*) FROM items").fetchall() == [(kinds_table().num_rows,)]
    assert _tree(tmp_path) == before
