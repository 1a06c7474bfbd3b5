"""``con.register(name, data)``: pandas, polars and Arrow data queried by name beside the
catalog's tables, joined with them, planned and sandboxed like them."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import fedquery

PICKED = [3, 17, 250, 599]


@pytest.fixture()
def con(unseen):
    catalog, _ = unseen
    with fedquery.connect(catalog) as connection:
        yield connection


def _kinds(tmp_path):
    """The same two columns as each kind of object ``register`` takes."""
    table = pa.table({"customer_id": pa.array(PICKED, pa.int32()), "tag": ["a", "b", "c", "d"]})
    pq.write_table(table, tmp_path / "picked.parquet")
    return {
        "pandas": lambda: table.to_pandas(),
        "polars": lambda: pl.from_arrow(table),
        "arrow_table": lambda: table,
        "record_batch": lambda: table.to_batches()[0],
        "reader": lambda: table.to_reader(),
        "dataset": lambda: ds.dataset(tmp_path / "picked.parquet"),
        "capsule": lambda: _Capsule(table),
    }


class _Capsule:
    """An object offering only the Arrow PyCapsule stream interface."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow_table", "record_batch", "reader",
                                  "dataset", "capsule"])
def test_registered_data_joins_a_catalog_table(con, unseen, tmp_path, kind: str) -> None:
    _, ref = unseen
    data = _kinds(tmp_path)[kind]()
    con.register("picked", data)
    sql = ("SELECT p.tag, c.name, c.country FROM clients c JOIN picked p USING (customer_id) "
           "ORDER BY p.tag")
    expected = ref.sql(f"SELECT p.tag, c.name, c.country FROM clients c JOIN (SELECT unnest("
                       f"{PICKED}) AS customer_id, unnest(['a', 'b', 'c', 'd']) AS tag) p "
                       "USING (customer_id) ORDER BY p.tag").fetchall()
    assert con.sql(sql).fetchall() == expected and len(expected) == 4
    assert con.sql(sql).fetchall() == expected, "a registered name is read again and again"
    assert "picked" in con.tables()
    assert con.schema("picked").names == ["customer_id", "tag"]


def test_register_again_replaces(con) -> None:
    con.register("numbers", pd.DataFrame({"n": [1, 2, 3]}))
    assert con.sql("SELECT sum(n) FROM numbers").fetchall() == [(6,)]
    con.register("numbers", pd.DataFrame({"n": [10, 20], "m": ["x", "y"]}))
    assert con.sql("SELECT sum(n) FROM numbers").fetchall() == [(30,)]
    assert con.sql("SELECT * FROM numbers ORDER BY n").columns == ["n", "m"]
    con.register("NUMBERS", pa.table({"k": [5]}))  # names compare as DuckDB compares them
    assert con.sql("SELECT * FROM numbers").fetchall() == [(5,)]


def test_unregister(con) -> None:
    con.register("gone", pa.table({"a": [1]}))
    assert con.sql("SELECT a FROM gone").fetchall() == [(1,)]
    con.unregister("gone")
    with pytest.raises(fedquery.PlanError, match="unknown table 'gone'"):
        con.sql("SELECT a FROM gone")
    assert "gone" not in con.tables()
    con.unregister("never-registered")  # as DuckDB's unregister: nothing to do
    with pytest.raises(fedquery.CatalogError, match="'clients' is a table of the catalog"):
        con.unregister("clients")
    con.register("gone", pa.table({"b": [2]}))
    assert con.sql("SELECT * FROM gone").fetchall() == [(2,)]


def test_filters_and_columns_reach_a_registered_dataset(con, tmp_path) -> None:
    pq.write_table(pa.table({"k": range(1000), "v": [str(i) for i in range(1000)]}),
                   tmp_path / "big.parquet")
    con.register("big", ds.dataset(tmp_path / "big.parquet"))
    plan = con.explain("SELECT v FROM big WHERE k = 7")
    assert "] python (python, scanned by DuckDB)" in plan and "filter:  k = 7" in plan
    assert "columns: v\n" in plan and "object=pyarrow.FileSystemDataset" in plan
    assert con.sql("SELECT v FROM big WHERE k = 7").fetchall() == [("7",)]


@pytest.mark.parametrize(("name", "error", "message"), [
    ("clients", fedquery.CatalogError, "register: 'clients' is a table of the catalog (source "
                                       "'shop'); register the data under another name"),
    ("CLIENTS", fedquery.CatalogError, "is a table of the catalog"),
    ("shop.customers", fedquery.PlanError, "cannot name a table (a name has no dots"),
    ("__fq_keys", fedquery.PlanError, "cannot name a table"),
    ("duckdb_tables", fedquery.PlanError, "cannot name a table"),
    ("", fedquery.PlanError, "the name must be a non-empty string"),
    (7, fedquery.PlanError, "the name must be a non-empty string, got 7"),
])
def test_names_register_refuses(con, name, error, message: str) -> None:
    with pytest.raises(error) as info:
        con.register(name, pa.table({"a": [1]}))
    assert message in str(info.value)


def test_an_entity_name_is_refused(sample) -> None:
    with fedquery.connect(sample) as fleet, pytest.raises(fedquery.CatalogError,
                                                          match="'drive' is an entity"):
        fleet.register("drive", pa.table({"a": [1]}))


@pytest.mark.parametrize("data", [[1, 2], {"a": [1]}, "a,b", 5])
def test_data_register_refuses(con, data) -> None:
    with pytest.raises(fedquery.PlanError, match="register: expected a pandas or polars DataFrame"):
        con.register("x", data)


def test_the_sandbox_covers_registered_names(con) -> None:
    con.register("local", pa.table({"a": [1, 2]}))
    for sql in ["COPY local TO '/tmp/x.csv'", "INSERT INTO local VALUES (3)",
                "SELECT * FROM read_csv('/etc/passwd')", "CREATE TABLE t AS SELECT * FROM local"]:
        with pytest.raises(fedquery.ForbiddenError):
            con.sql(sql)
    internal = next(iter(con._registered.relations()))
    with pytest.raises(fedquery.ForbiddenError, match="internal name"):
        con.sql(f'SELECT * FROM "{internal}"')
    with pytest.raises(fedquery.PlanError, match="unknown table 'python.main.local'"):
        con.sql("SELECT * FROM python.main.local")


def test_registered_data_and_a_result(con) -> None:
    """A Result offers __arrow_c_stream__, so one query's answer can be registered for the next."""
    top = con.sql("SELECT customer_id, count(*) AS n FROM orders GROUP BY ALL ORDER BY n DESC, "
                  "customer_id LIMIT 5")
    con.register("top", top)
    rows = con.sql("SELECT t.customer_id, t.n, c.name FROM top t JOIN clients c "
                   "USING (customer_id) ORDER BY t.n DESC, t.customer_id").fetchall()
    names = dict(con.sql("SELECT customer_id, name FROM clients").fetchall())
    assert rows == [(c, n, names[c]) for c, n in top.fetchall() if c in names] and rows


def test_registered_data_in_threads(con) -> None:
    from concurrent.futures import ThreadPoolExecutor

    con.register("shared", pa.table({"a": list(range(100))}))
    with ThreadPoolExecutor(4) as pool:
        sums = list(pool.map(lambda i: con.sql(f"SELECT sum(a) + {i} FROM shared").fetchall(),
                             range(16)))
    assert sums == [[(4950 + i,)] for i in range(16)]


def test_register_on_a_closed_connection(unseen) -> None:
    catalog, _ = unseen
    con = fedquery.connect(catalog)
    con.close()
    with pytest.raises(fedquery.FedQueryError, match="the connection is closed"):
        con.register("x", pa.table({"a": [1]}))


def test_a_catalog_source_named_python(tmp_path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
    catalog = {"sources": {"python": {"kind": "parquet", "root": str(tmp_path)}},
               "tables": {"t": {"source": "python", "path": "t.parquet"}}}
    with fedquery.connect(catalog) as con:
        con.register("r", pa.table({"a": [1], "b": ["x"]}))
        assert con.sql("SELECT b FROM t JOIN r USING (a)").fetchall() == [("x",)]
        assert "python_1 (python" in con.explain("SELECT b FROM t JOIN r USING (a)")
