"""DuckDB's answers from a PostgreSQL source whose settings differ from what the SQL assumes.

The database here has every default against fedquery: ``standard_conforming_strings = off``
(a backslash escapes in a literal), another DateStyle, IntervalStyle and TimeZone, and an ICU
collation that orders ``'a'`` before ``'B'``. Values with quotes and backslashes, as literals
and as parameters, LIKE patterns, text order and rounding must still give exactly DuckDB's
answer over the same rows.
"""

from __future__ import annotations

import datetime as dt
import os

import duckdb
import pyarrow as pa
import pytest
from sqlglot import exp

import fedquery
from tests.services.postgres import PgDatabase, with_database

UNFRIENDLY = {"standard_conforming_strings": "off", "DateStyle": "SQL, DMY",
              "IntervalStyle": "sql_standard", "TimeZone": "Asia/Kolkata",
              "extra_float_digits": "-10", "bytea_output": "escape", "escape_string_warning": "off"}
WORDS = ["a\\", "a\\' OR 1=1 --", "\\'", "O'Brien\\", "\\\\x41", "back\\slash", "it's", "a%",
         "a_b", "ab", "B", "a", "b", "Zed", "zed", "éclair", "Éclair", None, "", "100%", "50\\%",
         "a\\%", "'; DROP TABLE words; --"]
PRICES = [0.5, 1.5, 2.5, -2.5, 2.345, 0.125, -0.5, 3.14159, None, 1e9 + 0.5]
WORDS_DDL = "CREATE TABLE public.words (id integer, word text, price double precision, day date)"


def words_table() -> pa.Table:
    n = len(WORDS)
    return pa.table({
        "id": pa.array(range(n), pa.int32()),
        "word": pa.array(WORDS),
        "price": pa.array([PRICES[i % len(PRICES)] for i in range(n)], pa.float64()),
        "day": pa.array([dt.date(2024, 1 + i % 12, 1 + i % 28) for i in range(n)]),
    })


@pytest.fixture(scope="module")
def unfriendly(postgres_dsn: str):
    """A database with an ICU collation (when the server has ICU) and settings against us."""
    admin = PgDatabase("postgres", postgres_dsn)
    name = f"fq_unfriendly_{os.getpid()}"
    quoted = exp.to_identifier(name, quoted=True).sql("postgres")
    try:
        admin.execute(f"CREATE DATABASE {quoted} TEMPLATE template0 LOCALE_PROVIDER icu "
                      "ICU_LOCALE 'und' LOCALE 'C.UTF-8'")
    except Exception:  # a server without ICU: the settings are still tested
        admin.execute(f"CREATE DATABASE {quoted}")
    try:
        admin.execute(*(f"ALTER DATABASE {quoted} SET {key} = '{value}'"
                        for key, value in UNFRIENDLY.items()))
        db = PgDatabase(name, with_database(postgres_dsn, name))
        db.load("public.words", words_table(), WORDS_DDL)
        yield db
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


@pytest.fixture(scope="module")
def con(unfriendly):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FQ_UNFRIENDLY_DSN", unfriendly.dsn)
        connection = fedquery.connect({
            "sources": {"pg": {"kind": "postgres", "dsn": "${FQ_UNFRIENDLY_DSN}"}},
            "tables": {"words": {"source": "pg", "table": "words"}}})
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def ref():
    ref = duckdb.connect()
    ref.register("words_arrow", words_table())
    ref.execute("CREATE TABLE words AS SELECT * FROM words_arrow")
    yield ref
    ref.close()


def test_the_server_really_is_unfriendly(unfriendly) -> None:
    with unfriendly.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_setting('standard_conforming_strings'), "
                       "length('a\\\\b'), 'B' < 'a'")  # off: \\ is one backslash
        assert cursor.fetchall()[0][:2] == ("off", 3)


def literal(value: str) -> str:
    return exp.Literal.string(value).sql("duckdb")


def same(con, ref, sql: str, params=None, *, ordered: bool = False) -> list:
    got = con.sql(sql, params=params).fetchall()
    want = ref.execute(sql, params).fetchall()
    if not ordered:
        got, want = sorted(got, key=repr), sorted(want, key=repr)
    assert got == want, sql
    return got


def sent(con) -> str:
    return con._session.connectors["pg"].sent[-1]


@pytest.mark.parametrize("value", [w for w in WORDS if w is not None], ids=repr)
def test_a_value_with_quotes_and_backslashes_as_a_literal(con, ref, value: str) -> None:
    got = same(con, ref, f"SELECT id FROM words WHERE word = {literal(value)}")
    assert len(got) == 1
    assert "WHERE" in sent(con)  # the filter ran in PostgreSQL


@pytest.mark.parametrize("value", [w for w in WORDS if w is not None], ids=repr)
def test_a_value_with_quotes_and_backslashes_as_a_parameter(con, ref, value: str) -> None:
    assert len(same(con, ref, "SELECT id FROM words WHERE word = $w", {"w": value})) == 1
    assert "WHERE" in sent(con)


def test_a_value_that_matches_nothing_finds_nothing(con, ref) -> None:
    assert same(con, ref, "SELECT id FROM words WHERE word = $w OR word = 'x\\'' OR 1=1 --'",
                {"w": "a\\' OR 1=1 --x"}) == []


@pytest.mark.parametrize("pattern", ["a\\%", "%\\%", "a\\_b", "50\\%", "%\\", "a%", "_"], ids=repr)
def test_like_patterns_keep_the_backslash_ordinary(con, ref, pattern: str) -> None:
    same(con, ref, f"SELECT id FROM words WHERE word LIKE {literal(pattern)}")
    assert "ESCAPE ''" in sent(con)
    same(con, ref, "SELECT id FROM words WHERE word NOT ILIKE $p", {"p": pattern})
    same(con, ref, f"SELECT id FROM words WHERE word LIKE {literal(pattern)} ESCAPE '!'")


def test_text_is_ordered_by_its_bytes(con, ref) -> None:
    same(con, ref, "SELECT word FROM words WHERE word IS NOT NULL ORDER BY word LIMIT 8",
         ordered=True)
    assert 'COLLATE "C"' in sent(con) and "LIMIT 8" in sent(con)
    same(con, ref, "SELECT word FROM words ORDER BY word DESC NULLS FIRST, id LIMIT 5",
         ordered=True)
    same(con, ref, "SELECT id FROM words WHERE word < 'b'")
    same(con, ref, "SELECT id FROM words WHERE word BETWEEN 'B' AND 'a'")
    same(con, ref, "SELECT id FROM words WHERE lower(word) >= $w", {"w": "b"})
    same(con, ref, "SELECT min(word) AS lo, max(word) AS hi FROM words")
    same(con, ref, "SELECT greatest(word, 'b') AS g FROM words WHERE id < 12")


@pytest.mark.parametrize("sql", [
    "SELECT DISTINCT word FROM words WHERE word <> '' ORDER BY word LIMIT 6",
    "SELECT word FROM words WHERE id < 10 UNION SELECT word FROM words WHERE id > 12 "
    "ORDER BY 1 DESC LIMIT 6",
    "SELECT coalesce(word, '?') AS w, id FROM words ORDER BY w, 2 LIMIT 6",
    "SELECT word, row_number() OVER (ORDER BY word, id) AS rn FROM words",
    "SELECT string_agg(word, '|' ORDER BY word) AS s FROM words",
    "SELECT max(word) AS m, price > 1 AS big FROM words GROUP BY price > 1 ORDER BY m LIMIT 1",
], ids=["distinct", "union", "alias_and_position", "window", "string_agg", "aggregate_alias"])
def test_text_order_in_whole_queries(con, ref, sql: str) -> None:
    same(con, ref, sql, ordered=True)
    assert 'COLLATE "C"' in sent(con)


def test_halves_are_rounded_away_from_zero(con, ref) -> None:
    """round() stays in DuckDB (PostgreSQL rounds doubles half to even, and through numeric
    loses their last digits): PostgreSQL sends the values, DuckDB rounds them."""
    same(con, ref, "SELECT id, round(price) AS r, round(price, 1) AS r1, round(price / 2, 2) AS r2 "
                   "FROM words")
    assert "ROUND" not in sent(con).upper()
    same(con, ref, "SELECT round(sum(price), 1) AS s, round(avg(price), 2) AS a FROM words")
    same(con, ref, "SELECT round(CAST(id AS DOUBLE) + 0.005, 2) AS a, round(id - 0.5::DOUBLE) AS b "
                   "FROM words")


def test_dates_and_literals_read_in_iso(con, ref) -> None:
    same(con, ref, "SELECT id FROM words WHERE day = DATE '2024-02-03'")
    same(con, ref, "SELECT id FROM words WHERE day < '2024-03-01'")
    same(con, ref, "SELECT id FROM words WHERE day >= $d", {"d": dt.date(2024, 6, 1)})
    same(con, ref, "SELECT id FROM words WHERE day + INTERVAL 3 DAY > $d",
         {"d": dt.date(2024, 11, 1)})


def test_positional_parameters(con, ref) -> None:
    same(con, ref, "SELECT id FROM words WHERE word = ? OR word = ?", ["a\\", "it's"])
    same(con, ref, "SELECT id FROM words WHERE word = $2 OR day = $1",
         [dt.date(2024, 2, 2), "\\'"])
