"""Conformance of ``kind: files``: its tables have one fixed shape (the listing of a root), so it
runs the contract part of the suite, and its own checks of what a scan of the listing answers
(filters, keys, limits, ties, parameters) against plain DuckDB over the listing."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

import fedquery
from fedquery.connectors.base import KeySet, ScanRequest, TableRef
from fedquery.connectors.conformance import Case, ContractConformance

FILES = {"a.jpg": 10, "b.png": 300, "c/d.jpg": 300, "c/e.las": 5, "f.JPG": 40, "g.txt": 300}


class TestFilesConformance(ContractConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def case(cls, tmp_path_factory: pytest.TempPathFactory) -> Case:
        root = tmp_path_factory.mktemp("files-conformance")
        for name, size in FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"x" * size)
        con = fedquery.connect({"sources": {"cam": {"kind": "files", "root": str(root)}},
                                "tables": {"camera_files": {"source": "cam"}}})
        listing = con.sql("SELECT * FROM camera_files").arrow()
        yield Case(con, "cam", TableRef("main", "camera_files"), listing, "camera_files")
        con.close()

    def scan(self, case: Case, **request) -> pa.Table:
        return case.connector.scan(ScanRequest(table=case.key, **request)).read_all()

    def reference(self, case: Case, sql: str, params=None) -> list:
        with duckdb.connect() as con:
            con.register("t", case.expected)
            return sorted(con.sql(sql, params=params).fetchall())

    def test_listing_holds_every_file(self, case: Case) -> None:
        assert sorted(case.expected["uri"].to_pylist()) == sorted(FILES)

    @pytest.mark.parametrize("request_, sql", [
        ({"filter": "size = 300"}, "SELECT uri FROM t WHERE size = 300"),
        ({"filter": "extension = 'jpg'"}, "SELECT uri FROM t WHERE extension = 'jpg'"),
        ({"keys": ("uri", ["b.png", "c/e.las", "nope"])},
         "SELECT uri FROM t WHERE uri IN ('b.png', 'c/e.las')"),
        ({"keys": ("uri", [f"x{i}" for i in range(3000)] + ["a.jpg"])},
         "SELECT uri FROM t WHERE uri = 'a.jpg'"),
        ({"order_by": ("size DESC",), "limit": 1, "with_ties": True},
         "SELECT uri FROM t QUALIFY rank() OVER (ORDER BY size DESC) <= 1"),
        ({"keys": ("uri", ["a.jpg", "f.JPG", "g.txt"]), "order_by": ("size",), "limit": 2},
         "SELECT uri FROM t WHERE uri IN ('a.jpg', 'f.JPG')"),
    ], ids=["filter", "extension", "keys", "many_keys", "ties", "keys_before_limit"])
    def test_scans_answer_like_duckdb(self, case: Case, request_: dict, sql: str) -> None:
        request = dict(request_)
        if "keys" in request:
            column, values = request.pop("keys")
            request["keys"] = KeySet(column, pa.array(values))
        got = self.scan(case, columns=("uri",), **request)
        assert sorted((u,) for u in got["uri"].to_pylist()) == self.reference(case, sql)

    def test_parameters_are_values(self, case: Case) -> None:
        for value in ("a.jpg", "x' OR '1'='1"):
            got = self.scan(case, columns=("uri",), filter="uri = $u", params={"u": value})
            assert sorted((u,) for u in got["uri"].to_pylist()) == self.reference(
                case, "SELECT uri FROM t WHERE uri = $u", {"u": value})
