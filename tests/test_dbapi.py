"""``fedquery.dbapi``: a PEP 249 smoke test through every required attribute and method, and
the error tree that is PEP 249's and fedquery's at once."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

import fedquery
from fedquery import dbapi

REQUIRED_ERRORS = ["Warning", "Error", "InterfaceError", "DatabaseError", "DataError",
                   "OperationalError", "IntegrityError", "InternalError", "ProgrammingError",
                   "NotSupportedError"]


@pytest.fixture()
def con(unseen):
    catalog, _ = unseen
    connection = dbapi.connect(catalog)
    yield connection
    connection.close()


def test_module_globals() -> None:
    assert dbapi.apilevel == "2.0"
    assert dbapi.threadsafety in (0, 1, 2, 3)
    assert dbapi.paramstyle == "qmark"
    assert callable(dbapi.connect)


def test_exception_tree() -> None:
    for name in REQUIRED_ERRORS:
        assert issubclass(getattr(dbapi, name), Exception)
    assert issubclass(dbapi.Error, fedquery.FedQueryError)
    for name in ["InterfaceError", "DatabaseError"]:
        assert issubclass(getattr(dbapi, name), dbapi.Error)
    for name in ["DataError", "OperationalError", "IntegrityError", "InternalError",
                 "ProgrammingError", "NotSupportedError"]:
        assert issubclass(getattr(dbapi, name), dbapi.DatabaseError)


def test_connection_methods(con) -> None:
    assert callable(con.close) and callable(con.commit) and callable(con.cursor)
    con.commit()
    con.rollback()  # nothing to roll back: fedquery only reads
    for name in REQUIRED_ERRORS:
        assert getattr(con, name) is getattr(dbapi, name)
    assert isinstance(con.fedquery, fedquery.Connection)


def test_cursor_attributes_before_execute(con) -> None:
    cur = con.cursor()
    assert cur.description is None and cur.rowcount == -1 and cur.arraysize == 1
    assert cur.connection is con
    cur.setinputsizes([10])
    cur.setoutputsize(10)
    with pytest.raises(dbapi.ProgrammingError, match="no result to fetch"):
        cur.fetchone()


def test_execute_with_qmark_parameters(con, unseen) -> None:
    _, ref = unseen
    sql = ("SELECT country, count(*) AS n, sum(customer_id) AS s FROM clients "
           "WHERE segment = ? AND customer_id < ? GROUP BY country ORDER BY country NULLS LAST")
    cur = con.cursor()
    assert cur.execute(sql, ("corporate", 400)) is cur
    expected = ref.execute(sql, ["corporate", 400]).fetchall()
    assert cur.rowcount == len(expected) > 3
    assert [d[0] for d in cur.description] == ["country", "n", "s"]
    assert all(len(d) == 7 for d in cur.description)
    assert [d[1] for d in cur.description] == ["VARCHAR", "BIGINT", "HUGEINT"]
    assert cur.description[0][1] == dbapi.STRING and cur.description[1][1] == dbapi.NUMBER
    assert cur.description[2][1] == dbapi.NUMBER and cur.description[0][1] != dbapi.NUMBER
    assert cur.fetchone() == expected[0]
    assert cur.fetchmany() == expected[1:2]  # arraysize rows
    cur.arraysize = 2
    assert cur.fetchmany() == expected[2:4]
    assert cur.fetchmany(1) == expected[4:5]
    assert cur.fetchall() == expected[5:]
    assert cur.fetchone() is None and cur.fetchmany(3) == [] and cur.fetchall() == []
    assert type(expected[0][2]) is int


def test_execute_with_named_parameters_and_iteration(con) -> None:
    cur = con.cursor()
    cur.execute("SELECT customer_id FROM clients WHERE customer_id <= $top ORDER BY 1", {"top": 3})
    assert list(cur) == [(1,), (2,), (3,)]
    cur.execute("SELECT customer_id FROM clients WHERE customer_id <= ? ORDER BY 1", [2])
    assert [row for row in cur] == [(1,), (2,)]


def test_description_of_decimals_and_dates(con) -> None:
    cur = con.cursor()
    cur.execute("SELECT price, DATE '2024-01-02' AS d, 'x'::BLOB AS b FROM products "
                "WHERE price IS NOT NULL LIMIT 1")
    price, day, blob = cur.description
    assert price[1] == "DECIMAL(10,2)" and price[4:6] == (10, 2) and price[1] == dbapi.NUMBER
    assert day[1] == dbapi.DATETIME and blob[1] == dbapi.BINARY
    row = cur.fetchone()
    assert isinstance(row[0], Decimal) and row[1] == dbapi.Date(2024, 1, 2) and row[2] == b"x"


def test_type_constructors() -> None:
    assert dbapi.Date(2024, 1, 2) == datetime.date(2024, 1, 2)
    assert dbapi.Time(10, 30, 0) == datetime.time(10, 30)
    assert dbapi.Timestamp(2024, 1, 2, 10, 30, 0) == datetime.datetime(2024, 1, 2, 10, 30)
    assert dbapi.DateFromTicks(0) == datetime.date.fromtimestamp(0)
    assert dbapi.TimestampFromTicks(86400.5) == datetime.datetime.fromtimestamp(86400).replace(
        microsecond=0)
    assert dbapi.TimeFromTicks(3600) == datetime.datetime.fromtimestamp(3600).time()
    assert dbapi.Binary(b"ab") == b"ab"
    for kind in (dbapi.STRING, dbapi.BINARY, dbapi.NUMBER, dbapi.DATETIME, dbapi.ROWID):
        assert kind != "NO SUCH TYPE"


def test_binding_parameters_to_a_query_vector(con) -> None:
    cur = con.cursor()
    cur.execute("SELECT product_id FROM product_vectors WHERE model = ? "
                "ORDER BY array_cosine_distance(vec, ?), product_id LIMIT 3", ["m1", [1.0] * 8])
    assert cur.rowcount == 3


def test_executemany_is_not_supported(con) -> None:
    with pytest.raises(dbapi.NotSupportedError, match="executemany: fedquery only reads"):
        con.cursor().executemany("SELECT ?", [(1,), (2,)])


@pytest.mark.parametrize(("sql", "pep", "ours"), [
    ("SELEC 1", dbapi.ProgrammingError, fedquery.ParseError),
    ("SELECT * FROM no_such_table", dbapi.ProgrammingError, fedquery.PlanError),
    ("DROP TABLE clients", dbapi.NotSupportedError, fedquery.ForbiddenError),
    ("SELECT * FROM read_csv('/etc/passwd')", dbapi.NotSupportedError, fedquery.ForbiddenError),
    ("SELECT 1 // 0", dbapi.ProgrammingError, fedquery.PlanError),
])
def test_errors_are_both_pep249s_and_fedquerys(con, sql: str, pep, ours) -> None:
    cur = con.cursor()
    with pytest.raises(pep) as info:
        cur.execute(sql)
    assert isinstance(info.value, ours) and isinstance(info.value, dbapi.DatabaseError)
    assert isinstance(info.value, fedquery.FedQueryError)
    with pytest.raises(ours):  # fedquery's own except works on the same error
        cur.execute(sql)


def test_parse_error_keeps_its_position(con) -> None:
    with pytest.raises(dbapi.ProgrammingError) as info:
        con.cursor().execute("SELECT 1,\n  2 +* 3")
    assert isinstance(info.value, fedquery.ParseError) and info.value.line == 2
    assert "line 2" in str(info.value)


def test_source_error_is_operational(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
    con = dbapi.connect({"sources": {"lake": {"kind": "parquet", "root": str(tmp_path)}},
                         "tables": {"t": {"source": "lake", "path": "t.parquet"}}})
    cur = con.cursor()
    cur.execute("SELECT * FROM t")  # planned and read: the file exists
    (tmp_path / "t.parquet").write_bytes(b"not parquet")
    with pytest.raises(dbapi.OperationalError) as info:
        cur.execute("SELECT * FROM t")
    assert isinstance(info.value, fedquery.SourceError) and info.value.source == "lake"
    con.close()


@pytest.mark.parametrize(("catalog", "pep"), [
    ({"sources": {"x": {"kind": "nope"}}}, dbapi.OperationalError),
    ("/no/such/catalog.yaml", dbapi.OperationalError),
])
def test_connect_errors(catalog, pep) -> None:
    with pytest.raises(pep) as info:
        dbapi.connect(catalog)
    assert isinstance(info.value, fedquery.CatalogError)


@pytest.mark.parametrize("params", ["abc", 5, {1, 2}])
def test_parameters_must_be_a_sequence_or_mapping(con, params) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="parameters must be a sequence"):
        con.cursor().execute("SELECT ?", params)


def test_closed_cursor_and_connection(unseen) -> None:
    catalog, _ = unseen
    con = dbapi.connect(catalog)
    cur = con.cursor()
    cur.execute("SELECT 1")
    cur.close()
    for call in (cur.fetchone, cur.fetchall, lambda: cur.execute("SELECT 1")):
        with pytest.raises(dbapi.InterfaceError, match="the cursor is closed"):
            call()
    other = con.cursor()
    con.close()
    con.close()  # closing twice is allowed
    with pytest.raises(dbapi.InterfaceError, match="the connection is closed"):
        other.execute("SELECT 1")
    with pytest.raises(dbapi.InterfaceError):
        con.cursor()
    with pytest.raises(dbapi.InterfaceError):
        con.commit()


def test_context_managers(unseen) -> None:
    catalog, _ = unseen
    with dbapi.connect(catalog) as con, con.cursor() as cur:
        assert cur.execute("SELECT 42").fetchall() == [(42,)]
    assert cur.closed and con.closed


def test_threads_share_a_connection(con) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(i: int):
        cur = con.cursor()  # a cursor per thread (threadsafety 2)
        return cur.execute("SELECT count(*) + ? FROM clients", [i]).fetchone()[0]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(run, range(8))) == [600 + i for i in range(8)]
