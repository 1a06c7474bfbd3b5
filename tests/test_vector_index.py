"""``fedquery index`` and ``Connection.create_index``: a LanceDB ANN index, and nothing else.

Real LanceDB tables of a few thousand random vectors in a temporary folder. The proofs of
"writes only an index" compare every file of the table before and after (name, size, mtime,
SHA-256): the data files stay as they were, and what appears is index files, one manifest and
its transaction. Queries through ``fedquery.connect`` leave the whole LanceDB folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import lance
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import fedquery
from fedquery import cli
from fedquery.connectors._lance_search import vector_indexes
from fedquery.vector_index import (
    KINDS,
    create_index,
    default_partitions,
    default_sub_vectors,
    index_kind,
    index_params,
)

ROWS, DIM = 3000, 32
LANCE_NAME = "item_vectors"  # the LanceDB table; the catalog calls it ``items``
HINT = "_versions/latest_version_hint.json"  # Lance rewrites it: {"version": <the newest>}
QUERY = np.random.default_rng(11).standard_normal(DIM).astype(np.float32)
TOP_K = """SELECT item_id, label, array_cosine_distance(vec, $q) AS d
           FROM items ORDER BY d LIMIT 10"""


def _vectors(rng: np.random.Generator, n: int, dim: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(rng.standard_normal(n * dim, np.float32)), dim)


@pytest.fixture()
def world(tmp_path: Path) -> Path:
    """A LanceDB folder (``items``: one vector column; ``pairs``: two), a Parquet table, and
    ``catalog.yaml`` naming them; returns the catalog's path."""
    rng = np.random.default_rng(5)
    db = lancedb.connect(str(tmp_path / "vectors"))
    db.create_table(LANCE_NAME, pa.table({
        "item_id": pa.array(range(ROWS), pa.int64()),
        "label": pa.array([f"item {i % 7}" for i in range(ROWS)]),
        "vec": _vectors(rng, ROWS, DIM)}))
    db.create_table("pairs", pa.table({"k": pa.array(range(600), pa.int32()),
                                       "a": _vectors(rng, 600, 8), "b": _vectors(rng, 600, 16)}))
    db.create_table("empty", pa.table({"vec": _vectors(rng, 0, 8)}))
    pq.write_table(pa.table({"item_id": [1, 2], "price": [3.5, 4.0]}), tmp_path / "prices.parquet")
    catalog = {"sources": {"v": {"kind": "lancedb", "uri": "vectors"},
                           "lake": {"kind": "parquet", "root": "."}},
               "tables": {"items": {"source": "v", "table": LANCE_NAME},
                          "pairs": {"source": "v"}, "empty": {"source": "v"},
                          "prices": {"source": "lake", "path": "prices.parquet"}}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: relative path -> (size, mtime in ns, SHA-256)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            stat = path.stat()
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns,
                                                    hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def table_dir(world: Path) -> Path:
    return world.parent / "vectors" / f"{LANCE_NAME}.lance"


def rows_of(world: Path) -> pa.Table:
    return lance.dataset(str(table_dir(world))).to_table().sort_by("item_id")


# ------------------------------------------------------------------ it writes only an index


def test_create_index_writes_only_index_files_and_a_manifest(world):
    folder = table_dir(world)
    before, rows_before = snapshot(folder), rows_of(world)
    version_before = lance.dataset(str(folder)).version
    assert any(p.startswith("data/") for p in before)

    info = create_index(str(world), "items", "vec", num_partitions=4, num_sub_vectors=8)

    after = snapshot(folder)
    changed = {p for p in before if after.get(p) != before[p]}
    assert changed == {HINT}  # nothing else changed, nothing went
    assert json.loads((folder / HINT).read_text()) == {"version": version_before + 1}
    data = {p: v for p, v in after.items() if p.startswith("data/")}
    assert data == {p: v for p, v in before.items() if p.startswith("data/")}
    added = sorted(set(after) - set(before))
    assert {p.split("/")[0] for p in added} == {"_indices", "_versions", "_transactions"}
    assert len([p for p in added if p.startswith("_versions/")]) == 1  # one new manifest
    assert any(p.startswith("_indices/") for p in added)
    dataset = lance.dataset(str(folder))
    assert dataset.version == version_before + 1 == info.version
    assert dataset.count_rows() == ROWS
    assert rows_of(world).equals(rows_before)
    assert (info.table, info.column, info.name, info.kind, info.metric, info.rows) == (
        "items", "vec", "vec_idx", "IVF_PQ", "cosine", ROWS)
    assert info.params == {"num_partitions": 4, "num_sub_vectors": 8}


def test_replacing_an_index_also_leaves_the_data_files(world):
    create_index(str(world), "items", num_partitions=4)
    before = snapshot(table_dir(world))
    info = create_index(str(world), "items", kind="IVF_FLAT", metric="l2", replace=True,
                        num_partitions=8)
    after = snapshot(table_dir(world))
    assert {p for p in before if after.get(p) != before[p]} == {HINT}
    assert {p.split("/")[0] for p in set(after) - set(before)} <= {"_indices", "_versions",
                                                                    "_transactions"}
    indices = _lance_indices(world)
    assert indices == [("vec_idx", "vec", "IVF_FLAT", "l2")]
    assert info.kind == "IVF_FLAT" and info.metric == "l2"


def _lance_indices(world: Path, name: str = LANCE_NAME) -> list[tuple[str, str, str, str]]:
    """(name, column, kind, metric) of each vector index of a table, read from its folder."""
    dataset = lance.dataset(str(world.parent / "vectors" / f"{name}.lance"))
    return described(vector_indexes(dataset).values())


def described(indices) -> list[tuple[str, str, str, str]]:
    return sorted((i.name, i.column, i.kind, i.metric) for i in indices)


QUERIES = [
    "SELECT count(*) FROM items",
    "SELECT label, count(*) FROM items WHERE item_id < 100 GROUP BY label ORDER BY label",
    TOP_K,
    "SELECT * FROM vector_search('items', $q, 5)",
    "SELECT i.item_id, p.price FROM items i JOIN prices p USING (item_id) ORDER BY 1",
    "SELECT k, array_distance(a, [0, 0, 0, 0, 0, 0, 0, 0]::FLOAT[8]) AS d FROM pairs "
    "ORDER BY d LIMIT 3",
]


@pytest.mark.parametrize("indexed", [False, True], ids=["no-index", "indexed"])
def test_queries_never_write(world, indexed):
    if indexed:
        create_index(str(world), "items", num_partitions=4)
    folder = world.parent / "vectors"
    before = snapshot(folder)
    with fedquery.connect(str(world)) as con:
        for query in QUERIES:
            params = {"q": QUERY} if "$q" in query else None
            con.sql(query, params=params).arrow()
            con.explain(query, analyze=True, params=params)
        con.sql("DESCRIBE items").arrow()
        con.tables(), con.indices(), con.schema("items")
    assert cli.main(["sql", str(world), "SELECT count(*) FROM items", "--format", "csv"]) == 0
    assert cli.main(["tables", str(world)]) == 0
    assert snapshot(folder) == before


# ------------------------------------------------------------------ the Python method


def test_the_connection_sees_its_new_index(world):
    with fedquery.connect(str(world)) as con:
        exact = con.sql(TOP_K, params={"q": QUERY}).arrow()
        assert con.indices() == {}
        info = con.create_index("items", num_partitions=4)
        assert str(info).startswith("IVF_PQ index 'vec_idx' on items.vec (cosine; num_partitions=4")
        assert {t: described(i) for t, i in con.indices().items()} == {
            "items": [("vec_idx", "vec", "IVF_PQ", "cosine")]}
        assert con._session.connectors["v"].indices("items") == [("vec_idx", "vec", "IVF_PQ",
                                                                   "cosine")]
        scanned = con._session.connectors["v"].relations(["items"])  # what each query registers
        assert [d.version for d in scanned.values()] == [info.version]
        assert con.sql(TOP_K, params={"q": QUERY}).arrow().equals(exact)
        assert con.sql("SELECT count(*) FROM items").fetchall() == [(ROWS,)]
        con.create_index("items", kind="IVF_HNSW_SQ", metric="dot", replace=True, num_partitions=2)
        assert described(con.indices()["items"]) == [("vec_idx", "vec", "IVF_HNSW_SQ", "dot")]
        assert con.sql(TOP_K, params={"q": QUERY}).arrow().equals(exact)


def test_its_searches_use_the_new_index_for_its_metric_only(world):
    """The connection's own top-k searches (``exact := false``: the index whenever there is one
    for the metric) go through the index built on it, and only for the index's distance."""
    search = "SELECT item_id FROM vector_search('items', $q, 10, metric := '{}', exact := false)"
    with fedquery.connect(str(world)) as con:
        def searched(metric: str) -> str:
            text = con.explain(search.format(metric), analyze=True, params={"q": QUERY})
            return next(line for line in text.splitlines() if "analyze:" in line and "search:" in line)

        assert "search: exact" in searched("cosine") and "no ANN index on vec" in searched("cosine")
        con.create_index("items", num_partitions=4)
        assert "search: index, prefiltered" in searched("cosine")
        assert "IVF_PQ index 'vec_idx' (cosine, 4 partitions)" in searched("cosine")
        assert "search: exact" in searched("l2") and "no ANN index on vec for l2" in searched("l2")
        con.create_index("items", metric="l2", replace=True, num_partitions=4)
        assert "search: index" in searched("l2") and "search: exact" in searched("cosine")


def test_other_open_connections_keep_the_version_they_opened(world):
    with fedquery.connect(str(world)) as other, fedquery.connect(str(world)) as con:
        con.create_index("items", num_partitions=4)
        assert other.indices() == {}
        assert other.sql("SELECT count(*) FROM items").fetchall() == [(ROWS,)]
    with fedquery.connect(str(world)) as again:
        assert list(again.indices()) == ["items"]


def test_the_column_is_inferred_and_metric_aliases(world):
    with fedquery.connect(str(world)) as con:
        con.create_index("pairs", "b", metric="euclidean", num_partitions=2)
        assert described(con.indices()["pairs"]) == [("b_idx", "b", "IVF_PQ", "l2")]
        con.create_index("pairs", "a", kind="ivf-flat", num_partitions=2)
        assert described(con.indices()["pairs"]) == [("a_idx", "a", "IVF_FLAT", "cosine"),
                                                  ("b_idx", "b", "IVF_PQ", "l2")]
        assert con.create_index("items", kind="IvfSq", num_partitions=2).column == "vec"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_builds_with_its_metric(world, kind):
    params = {"num_partitions": 2}
    info = create_index(str(world), "items", kind=kind, metric="dot", **params)
    assert _lance_indices(world) == [("vec_idx", "vec", kind, "dot")]
    assert info.params["num_partitions"] == 2
    assert ("num_sub_vectors" in info.params) == ("PQ" in kind)


def test_an_exhaustive_ivf_flat_index_answers_like_the_exact_query(world):
    """The index LanceDB searches is the one built: with every partition probed, IVF_FLAT is
    exact, and agrees with fedquery's own exhaustive answer."""
    with fedquery.connect(str(world)) as con:
        exact = con.sql(TOP_K, params={"q": QUERY}).arrow().column("item_id").to_pylist()
        con.create_index("items", kind="IVF_FLAT", num_partitions=4)
    table = lancedb.connect(str(world.parent / "vectors")).open_table(LANCE_NAME)
    found = (table.search(QUERY).distance_type("cosine").nprobes(4).limit(10)
             .select(["item_id", "_distance"]).to_arrow())
    assert found.column("item_id").to_pylist() == exact


# ------------------------------------------------------------------ errors


ERRORS = [
    (("prices",), {}, "only LanceDB tables take an index; prices is in lake (kind parquet)"),
    (("itemz",), {}, "unknown table 'itemz' (did you mean 'items'?)"),
    (("items", "vex"), {}, "items has no column 'vex' (did you mean 'vec'?); its vector columns: vec"),
    (("items", "label"), {}, "items.label is not a vector column (it is string)"),
    (("pairs",), {}, "pairs has 2 vector columns (a, b); name one with --column (column=)"),
    (("empty",), {}, "empty has no rows"),
    (("items",), {"kind": "IVF_PQQ"}, "unknown index kind 'IVF_PQQ' (did you mean 'IVF_PQ'?)"),
    (("items",), {"kind": "BTREE"}, "unknown index kind 'BTREE'; one of IVF_PQ, IVF_HNSW_SQ"),
    (("items",), {"metric": "hamming"}, "unknown metric 'hamming'; one of cosine, dot, euclidean, l2"),
    (("items",), {"num_partitons": 4}, "IVF_PQ takes no parameter 'num_partitons' (did you mean "
                                       "'num_partitions'?)"),
    (("items",), {"kind": "IVF_FLAT", "num_sub_vectors": 4}, "IVF_FLAT takes no parameter "
                                                             "'num_sub_vectors'"),
    (("items",), {"num_partitions": 0}, "num_partitions must be a positive integer, got 0"),
    (("items",), {"m": 2.5, "kind": "IVF_HNSW_SQ"}, "m must be a positive integer, got 2.5"),
    (("items",), {"num_sub_vectors": 5}, "num_sub_vectors must divide the dimension 32, got 5 "
                                         "(the default is 8)"),
    (("items",), {"num_partitions": 50}, "IVF_PQ: 50 partitions for 3,000 rows of items; it trains "
                                         "at most rows/sample_rate partitions (11;"),
    (("items",), {"kind": "IVF_FLAT", "num_partitions": 5000}, "at most one partition a row"),
    (("items",), {"replace": "yes"}, "replace must be True or False"),
]


@pytest.mark.parametrize(("args", "kwargs", "message"), ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors_say_what_was_wrong_and_write_nothing(world, args, kwargs, message):
    before = snapshot(world.parent / "vectors")
    with fedquery.connect(str(world)) as con, pytest.raises(fedquery.PlanError) as caught:
        con.create_index(*args, **kwargs)
    assert message in str(caught.value)
    assert snapshot(world.parent / "vectors") == before


def test_an_existing_index_is_refused_unless_replaced(world):
    create_index(str(world), "items", num_partitions=4)
    before = snapshot(world.parent / "vectors")
    with pytest.raises(fedquery.PlanError, match=r"items.vec already has the index 'vec_idx' "
                       r"\(IVF_PQ\(vec, cosine\)\); pass --replace \(replace=True\)"):
        create_index(str(world), "items", kind="IVF_FLAT", num_partitions=4)
    assert snapshot(world.parent / "vectors") == before
    assert create_index(str(world), "items", kind="IVF_FLAT", num_partitions=4,
                        replace=True).kind == "IVF_FLAT"


def test_a_closed_connection_refuses(world):
    con = fedquery.connect(str(world))
    con.close()
    with pytest.raises(fedquery.FedQueryError, match="closed"):
        con.create_index("items")


# ------------------------------------------------------------------ the command


def test_cli_builds_refuses_replaces_and_lists(world, capsys):
    catalog = str(world)
    assert cli.main(["index", catalog, "items", "--column", "vec", "--partitions", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("built IVF_PQ index 'vec_idx' on items.vec (cosine; num_partitions=4, "
                          "num_sub_vectors=8) over 3,000 rows in ")
    assert cli.main(["index", catalog, "items", "--partitions", "4"]) == 1
    assert "already has the index 'vec_idx'" in capsys.readouterr().err
    assert cli.main(["index", catalog, "items", "--kind", "ivf_hnsw_sq", "--metric", "l2",
                     "--partitions", "2", "--replace"]) == 0
    assert "IVF_HNSW_SQ index 'vec_idx' on items.vec (l2; num_partitions=2)" in capsys.readouterr().out
    assert cli.main(["tables", catalog]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "items  IVF_HNSW_SQ(vec, l2)" in lines
    assert {"pairs", "prices", "empty"} <= set(lines)
    assert cli.main(["index", catalog, "prices"]) == 1
    assert capsys.readouterr().err == ("error: PlanError: only LanceDB tables take an index; prices "
                                       "is in lake (kind parquet)\n")
    assert cli.main(["index", catalog, "items", "--sub-vectors", "3", "--replace"]) == 1
    assert "num_sub_vectors must divide the dimension 32" in capsys.readouterr().err


def test_cli_as_a_process(world):
    done = subprocess.run([sys.executable, "-m", "fedquery.cli", "index", str(world), "pairs",
                           "--column", "a", "--kind", "IVF_PQ", "--metric", "dot",
                           "--partitions", "2", "--sub-vectors", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("built IVF_PQ index 'a_idx' on pairs.a (dot; num_partitions=2, "
                                  "num_sub_vectors=2) over 600 rows")
    assert _lance_indices(world, "pairs") == [("a_idx", "a", "IVF_PQ", "dot")]




# ------------------------------------------------------------------ defaults


def test_defaults():
    assert index_params("IVF_PQ", 1_000_000, 128, {}) == {"num_partitions": 1000,
                                                          "num_sub_vectors": 32}
    assert index_params("IVF_HNSW_SQ", 5_000_000, 768, {}) == {"num_partitions": 2236}
    assert index_params("IVF_PQ", 3000, 32, {"num_partitions": 5}) == {"num_partitions": 5,
                                                                       "num_sub_vectors": 8}
    assert [default_partitions(n) for n in (0, 100, 3000, 65_536, 1_000_000, 10**8)] == [
        1, 1, 11, 256, 1000, 4096]
    assert [default_sub_vectors(d) for d in (4, 8, 32, 128, 130, 768, 1536)] == [
        1, 2, 8, 32, 26, 192, 384]
    assert [index_kind(k) for k in ("ivf_pq", "IVF-HNSW-SQ", "HnswSq", "ivfflat")] == [
        "IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_SQ", "IVF_FLAT"]


def test_a_missing_database_or_table_is_a_source_error_and_nothing_is_created(tmp_path):
    catalog = {"sources": {"v": {"kind": "lancedb", "uri": str(tmp_path / "nowhere")}},
               "tables": {"items": {"source": "v"}}}
    with pytest.raises(fedquery.SourceError, match=r"source 'v': LanceDB database .*nowhere "
                       r"does not exist"):
        create_index(catalog, "items")
    assert not (tmp_path / "nowhere").exists()
    lancedb.connect(str(tmp_path / "db"))
    (tmp_path / "db").mkdir(exist_ok=True)
    catalog["sources"]["v"]["uri"] = f"file://{tmp_path / 'db'}"
    with pytest.raises(fedquery.SourceError, match="source 'v': cannot open table 'items' of "):
        create_index(catalog, "items")
