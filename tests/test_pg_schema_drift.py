"""A PostgreSQL table altered after fedquery read its schema: never an answer cast to old types.

fedquery reads a table's column types once per connection. Each case alters a table under an
open connection and runs the same query again, whole in PostgreSQL and as a scan joined in
DuckDB, through ``arrow()`` and ``batches()``: the answer is a ``SourceError`` naming the
table, the column, the old and the new type and saying to reconnect; a new connection then
answers with the table as it is (what PostgreSQL itself returns).
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pyarrow as pa
import pytest

import fedquery
from fedquery.connectors import _postgres_drift as drift
from fedquery.connectors.base import TableRef
from fedquery.errors import SourceError

_NAMES = itertools.count()
RECONNECT = "the table changed since fedquery read its schema; reconnect"
CREATE = ("CREATE TABLE public.{t} (id integer, ok boolean, r real, n numeric(10, 2), "
          "label varchar(5), steps numeric(5, 1)[])")
ROWS = ("INSERT INTO public.{t} VALUES (1, true, 0.1, 1.25, 'a', '{{1.5}}'), "
        "(2, false, 0.2, 2.5, 'b', '{{}}'), (3, true, 0.3, 3, 'c', NULL)")
CHANGES = {  # statements, the column read, what the message says, the new values
    "bool_to_integer": (["ALTER TABLE public.{t} ALTER ok TYPE integer "
                         "USING (CASE WHEN ok THEN 5 ELSE 0 END)",
                         "UPDATE public.{t} SET ok = 2 WHERE id = 3"],
                        "ok", "column 'ok' of table public.{t} is now integer, it was boolean",
                        [5, 0, 2]),
    "real_to_double": (["ALTER TABLE public.{t} ALTER r TYPE double precision",
                        "UPDATE public.{t} SET r = id / 10.0"],
                       "r", "is now double precision, it was real", [0.1, 0.2, 0.3]),
    "numeric_scale": (["ALTER TABLE public.{t} ALTER n TYPE numeric(10, 4)",
                       "UPDATE public.{t} SET n = 1.2345 WHERE id = 1"],
                      "n", "is now numeric(10,4), it was numeric(10,2)",
                      [Decimal("1.2345"), Decimal("2.5000"), Decimal("3.0000")]),
    "numeric_array_scale": (["ALTER TABLE public.{t} ALTER steps TYPE numeric(6, 2)[]"],
                            "steps", "is now numeric(6,2)[], it was numeric(5,1)[]",
                            [[Decimal("1.50")], [], None]),
    "recreated_without_it": (["DROP TABLE public.{t}",
                              "CREATE TABLE public.{t} (id integer, other text)",
                              "INSERT INTO public.{t} VALUES (1, 'x')"],
                             "ok", "column 'ok' of table public.{t} (boolean) no longer exists",
                             None),
    "dropped": (["DROP TABLE public.{t}"], "ok", "table public.{t} no longer exists", None),
}
SHAPES = {  # the query's shape: whole in PostgreSQL, or a scan joined in DuckDB
    "whole": "SELECT id, {c} FROM pg.public.{t} ORDER BY id",
    "scan": "SELECT t.id, t.{c} FROM pg.public.{t} AS t, (VALUES (1)) AS v(x) WHERE t.id >= v.x "
            "ORDER BY 1",
}


@pytest.fixture(scope="module")
def db(postgres_database):
    return postgres_database


def table(db) -> str:
    name = f"drift_{next(_NAMES)}"
    db.execute(CREATE.format(t=name), ROWS.format(t=name))
    return name


def connect(db) -> fedquery.Connection:
    return fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": db.dsn}}})


def values(result: pa.Table) -> list:
    return result.column(1).to_pylist()


@pytest.mark.parametrize("read", ["arrow", "batches"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_column_is_an_error_naming_it(db, change: str, shape: str, read: str) -> None:
    statements, column, words, now = CHANGES[change]
    name = table(db)
    sql = SHAPES[shape].format(t=name, c=column)
    with connect(db) as con:
        assert ("scan" in con.explain(sql).split("\n")[1]) == (shape == "scan")
        before = con.sql(sql).arrow()
        db.execute(*(s.format(t=name) for s in statements))
        with pytest.raises(SourceError) as caught:
            result = con.sql(sql)
            result.arrow() if read == "arrow" else result.batches().read_all()
        assert caught.value.source == "pg"
        assert words.format(t=name) in str(caught.value) and RECONNECT in str(caught.value)
        with pytest.raises(SourceError, match=RECONNECT):  # until the user reconnects
            con.sql(sql).arrow()
        assert before.num_rows == 3
    if now is not None:
        with connect(db) as fresh:
            assert values(fresh.sql(sql).arrow()) == now


def test_changes_a_query_cannot_see_are_no_error(db) -> None:
    """A column added, a column the query does not read altered, a varchar's length changed:
    the same answer, no error."""
    name = table(db)
    sql = f"SELECT id, ok, label FROM pg.public.{name} ORDER BY id"
    with connect(db) as con:
        before = con.sql(sql).arrow()
        db.execute(f"ALTER TABLE public.{name} ADD COLUMN more integer",
                   f"ALTER TABLE public.{name} ALTER r TYPE double precision",
                   f"ALTER TABLE public.{name} ALTER label TYPE varchar(10)")
        assert con.sql(sql).arrow() == before
        scan = f"SELECT t.id, t.ok FROM pg.public.{name} AS t, (VALUES (1)) AS v(x) WHERE t.id >= v.x"
        assert sorted(con.sql(scan).fetchall()) == [(1, True), (2, False), (3, True)]


RACES = {  # the shape, the change made between the check and the statement, what is said
    "scan_type": ("scan", "ALTER TABLE public.{t} ALTER ok TYPE integer "
                  "USING (CASE WHEN ok THEN 5 ELSE 0 END)",
                  "column 'ok' of table public.{t} now reads as int32, it was bool: " + RECONNECT),
    "whole_dropped": ("whole", "ALTER TABLE public.{t} DROP COLUMN ok",
                      "if the table changed since fedquery read its schema, reconnect"),
}


@pytest.mark.parametrize("race", RACES)
def test_a_change_between_the_check_and_the_statement(db, monkeypatch, race: str) -> None:
    """The table altered after the check ran and before the statement: a scan compares the
    types its result reports (its columns are the table's); a column gone is PostgreSQL's own
    error, with the hint to reconnect."""
    shape, change, words = RACES[race]
    name = table(db)
    sql = SHAPES[shape].format(t=name, c="ok")
    with connect(db) as con:
        pg = con._session.connectors["pg"]
        assert values(con.sql(sql).arrow()) == [True, False, True]
        unchanged = pg._unchanged

        def then_alter(reads):
            check = unchanged(reads)

            def run(conn) -> None:
                check(conn)
                db.execute(change.format(t=name))

            return run

        monkeypatch.setattr(pg, "_unchanged", then_alter)
        with pytest.raises(SourceError) as caught:
            con.sql(sql).arrow()
        assert words.format(t=name) in str(caught.value)
        monkeypatch.undo()
        assert pg.run_sql("SELECT 1 AS one").read_all().num_rows == 1


def test_result_changes_reads_the_servers_own_description(db) -> None:
    name = table(db)
    with connect(db) as con:
        pg = con._session.connectors["pg"]
        planned = pg.schema(TableRef("public", name))
    columns = ("ok", "r", "n", "steps")
    probe = f"SELECT {', '.join(columns)} FROM public.{name} LIMIT 0"

    def described() -> pa.Schema:
        with db.connect() as conn, conn.cursor() as cursor:
            cursor.execute(probe)
            reader = cursor.fetch_record_batch()
            schema = reader.schema
            reader.close()
            return schema

    wanted = pa.schema([planned.field(c) for c in columns])
    assert drift.result_changes(TableRef("public", name), described(), wanted) is None
    db.execute(f"ALTER TABLE public.{name} ALTER n TYPE numeric(10, 4)")
    assert "column 'n' of table public." in drift.result_changes(
        TableRef("public", name), described(), wanted)
