"""Conformance of ``kind: lancedb``: a LanceDB table, with a fixed-size vector column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conformance import Case, ConnectorConformance, kinds_table

import fedquery
from connectors.base import TableRef

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
