"""A seeded fuzz of inputs: truncations and mutations of the differential suite's queries, deep
nesting, huge literals, odd unicode, NUL bytes, identifiers holding quotes, semicolons and dots,
and random parameters, through ``sql(...).fetchall()`` and ``explain(...)`` on the shop
connection. Every failure must be a FedQueryError.

``FEDQUERY_FUZZ_SEED`` and ``FEDQUERY_FUZZ_CASES`` run another seed or more cases; a failure
prints the seed, the case number, the SQL and the parameters to reproduce it. Numbers are not
made huge in recursive CTEs or ``range``: that makes a valid query that runs for hours.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

import fedquery
from fedquery.parse import MAX_DEPTH, MAX_NESTING
from tests.test_differential import CASES

SEED = int(os.environ.get("FEDQUERY_FUZZ_SEED", "20240817"))
N_CASES = int(os.environ.get("FEDQUERY_FUZZ_CASES", "3000"))
EXPLAIN_EVERY = 4

FRAGMENTS = [
    "(", ")", "[", "]", "{", "}", "'", '"', ";", "; SELECT 1", "--", "/*", "*/", "\x00", "\\",
    "$1", "?", "$q", "$name", ",", ".", "::", "->", "->>", "||", "NOT ", "-", "*", "%",
    " SELECT ", " FROM ", " WHERE ", " JOIN ", " UNION ALL ", " GROUP BY ", " ORDER BY ", " LIMIT ",
    " LIMIT -1", " OFFSET 99999999999", " WITH x AS (SELECT 1) ", " LATERAL ", " QUALIFY ",
    " COLLATE nocase", " ESCAPE '\\'", " INTERVAL '1' DAY", " CASE WHEN ", " END ", " OVER () ",
    "read_csv('x.csv')", "glob('*')", "pg_settings", "duckdb_databases()", "getenv('HOME')",
    "\u202e", "\u200b", "\ufeff", "é", "ǅ", "😀", "\ud800", "\U0010ffff", "ß", "İ",
    '"c;d"', '"a""b"', '"x.y"', '"; DROP TABLE x; --"', "`x`", "[x]", "\"\"", "''''",
    "1e999", "-1e999", "9223372036854775808", "-9223372036854775809", "0x7fffffff", "1_000",
    "NULL", "NaN", "'NaN'::DOUBLE", "E'\\x00'", "$$dollar$$", "'\x00'", "'\n'", "\r\n", "\t",
    "vector_search('x\"; --', [1,2], 3)", "embed_text(NULL)", "image_info('/etc/passwd')",
    "orders.*", "clients c", "c.nmae", "COLUMNS('.*')", "#1", "* EXCLUDE (name)",
]
# A bound made huge turns these into queries that run for hours, rightly (no timeout= yet)
_UNBOUNDED = re.compile(r"RECURSIVE|range\s*\(|generate_series", re.I)
ODD_IDENTIFIERS = ['"c;d"', '"a""b"', '"x.y"', '"  "', '"\x00"', '"é😀"', '"select"', "`name`",
                   '"' + "n" * 300 + '"', "\"'\"", '";--"']


def _deep(rng: random.Random) -> str:
    depth = rng.choice([MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, MAX_DEPTH, 1000, 5000])
    opening, closing = rng.choice([("(", ")"), ("[", "]"), ("abs(", ")"), ("NOT ", ""),
                                   ("CASE WHEN true THEN ", " END"), ("(SELECT ", ")"),
                                   ("- ", ""), ("{'a': ", "}")])
    inner = opening * depth + rng.choice(["1", "qty", "true", "'x'"]) + closing * depth
    return rng.choice([f"SELECT {inner}", f"SELECT count(*) FROM orders WHERE qty = {inner}",
                       " UNION ALL ".join(["SELECT 1"] * depth)])


def _huge(rng: random.Random) -> str:
    """Long literals and lists. (Sizes stop at 100,000 digits for numbers: DuckDB takes ~10 s
    to bind a 1,000,000-digit integer, which is slow, not wrong.)"""
    n = rng.choice([1000, 100_000])
    return rng.choice([f"SELECT {'9' * n}", f"SELECT '{'x' * 10 * n}'", f"SELECT {'1.' + '5' * n}",
                       f"SELECT count(*) FROM clients WHERE name = '{'é' * n}'",
                       "SELECT " + ", ".join(["1"] * (n // 500)),
                       "SELECT count(*) FROM clients WHERE customer_id IN ("
                       + ", ".join(map(str, range(n // 100))) + ")"])


def _mutate(rng: random.Random, sql: str) -> str:
    for _ in range(rng.randint(1, 3)):
        if not sql:
            return sql
        i, j = sorted(rng.randrange(len(sql) + 1) for _ in range(2))
        op = rng.randrange(7)
        if op == 0:
            sql = sql[:i]                                   # truncate
        elif op == 1:
            sql = sql[:i] + sql[j:]                         # delete a span
        elif op == 2:
            sql = sql[:j] + sql[i:j] + sql[j:]              # repeat a span
        elif op == 3:
            sql = sql[:i] + rng.choice(FRAGMENTS) + sql[i:]  # insert a fragment
        elif op == 4:
            words = list(re.finditer(r"\b[a-z_]+\b", sql))
            if words:
                word = rng.choice(words)
                sql = sql[:word.start()] + rng.choice(ODD_IDENTIFIERS) + sql[word.end():]
        elif op == 5:
            tokens = sql.split()
            if len(tokens) > 1:
                a, b = rng.randrange(len(tokens)), rng.randrange(len(tokens))
                tokens[a], tokens[b] = tokens[b], tokens[a]
                sql = " ".join(tokens)
        elif not _UNBOUNDED.search(sql):
            numbers = list(re.finditer(r"\b\d+\b", sql))
            if numbers:
                number = rng.choice(numbers)
                sql = sql[:number.start()] + rng.choice(["9" * 40, "-0", "1e308", "0.0"]) + sql[number.end():]
    return sql


def _value(rng: random.Random, depth: int = 0) -> Any:
    choices = [
        lambda: rng.randint(-10, 10), lambda: 2 ** rng.choice([31, 63, 64, 127, 200]),
        lambda: -(2 ** 63) - 1, lambda: rng.choice([float("nan"), float("inf"), -0.0, 1e308]),
        lambda: rng.choice(["east", "", "x\x00y", "é😀", "\ud800", "'; DROP TABLE t; --", "$q"]),
        lambda: b"\x00\xff", lambda: None, lambda: rng.random() < 0.5,
        lambda: Decimal(rng.choice(["1.5", "1e400", "NaN", "-0"])),
        lambda: dt.datetime(2024, 6, 1), lambda: dt.date(1, 1, 1), lambda: dt.timedelta(days=3),
        lambda: np.linspace(-1, 1, rng.choice([8, 3, 0])).astype(rng.choice([np.float32, np.float64])),
        lambda: np.int64(7), lambda: object(), lambda: {1, 2}, lambda: (x for x in range(2)),
    ]
    if depth < 2:
        choices += [lambda: [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
                    lambda: {"a": _value(rng, depth + 1)}]
    return rng.choice(choices)()


def _params(rng: random.Random, sql: str) -> Any:
    names = sorted(set(re.findall(r"\$([A-Za-z_]\w*)", sql)))
    shape = rng.randrange(8)
    if shape == 0:
        return None
    if shape <= 3:
        return {n: _value(rng) for n in names if rng.random() < 0.9}
    if shape == 4:
        return [_value(rng) for _ in range(rng.randint(0, 3))]
    if shape == 5:
        return {**{n: _value(rng) for n in names}, rng.choice(["extra", b"q", 1, None]): 1}
    return rng.choice([5, "abc", {1}, (1, 2), b"x", 1.5, object(), (x for x in [1])])


def _case(rng: random.Random, corpus: list[tuple[str, Any]]) -> tuple[str, Any]:
    kind = rng.random()
    sql, params = rng.choice(corpus)
    if kind < 0.04:
        sql = _deep(rng)
    elif kind < 0.06:
        sql = _huge(rng)
    elif kind < 0.9:
        sql = _mutate(rng, sql)
    return sql, params if rng.random() < 0.3 else _params(rng, sql)


def _run(action, run: dict, number: int, sql: str, params: Any, what: str) -> None:
    """One call; its outcome counted, a raw exception or an internal error recorded."""
    try:
        action()
        outcome = "answered"
    except fedquery.FedQueryError as exc:
        outcome = type(exc).__name__
        if "this is a bug in fedquery" in str(exc):
            run["internal"].append(_report(number, what, exc, sql, params))
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        outcome = "raw"
        run["raw"].append(_report(number, what, exc, sql, params))
    run["outcomes"][outcome] = run["outcomes"].get(outcome, 0) + 1


def _report(number: int, what: str, exc: BaseException, sql: str, params: Any) -> str:
    return (f"case {number} ({what}): {type(exc).__name__}: {str(exc)[:200]}\n"
            f"    sql={sql[:300]!r}\n    params={params!r:.200}")


@pytest.fixture(scope="module")
def fuzz_run(fq: fedquery.Connection) -> dict:
    """Every case through ``sql(...).fetchall()``, every ``EXPLAIN_EVERY``-th through
    ``explain`` too: outcomes counted, raw exceptions and internal errors recorded."""
    rng = random.Random(SEED)
    corpus = [(" ".join(c.sql.split()), c.params) for c in CASES]
    run: dict = {"raw": [], "internal": [], "outcomes": {}}
    for number in range(N_CASES):
        sql, params = _case(rng, corpus)
        _run(lambda s=sql, p=params: fq.sql(s, p).fetchall(), run, number, sql, params, "fetchall")
        if number % EXPLAIN_EVERY == 0:
            _run(lambda s=sql, p=params: fq.explain(s, p), run, number, sql, params, "explain")
    return run


def test_fuzzed_inputs_fail_only_with_fedquery_errors(fuzz_run: dict) -> None:
    assert not fuzz_run["raw"], (f"seed {SEED}: {len(fuzz_run['raw'])} raw errors\n"
                                 + "\n".join(fuzz_run["raw"][:10]))


def test_fuzz_reaches_every_outcome(fuzz_run: dict) -> None:
    """The generator is not vacuous: many cases answer, fail to parse, fail to plan."""
    outcomes = fuzz_run["outcomes"]
    assert all(outcomes.get(k, 0) > N_CASES // 20 for k in ("answered", "ParseError", "PlanError")), \
        outcomes


def test_fuzz_reaches_no_internal_error(fuzz_run: dict) -> None:
    assert not fuzz_run["internal"], (f"seed {SEED}: {len(fuzz_run['internal'])} internal "
                                      "errors\n" + "\n".join(fuzz_run["internal"][:10]))


@pytest.mark.parametrize("params", [None, {"q": 1}, [1]], ids=["none", "dict", "list"])
def test_nul_and_unicode_in_sql(fq: fedquery.Connection, params) -> None:
    run: dict = {"raw": [], "internal": [], "outcomes": {}}
    for number, sql in enumerate(["SELECT 'a\x00b' AS x", "SELECT 1 AS \"\x00\"", "SELECT\x00 1",
                                  "SELECT '\ud800'", "SELECT 1 -- \x00", "SELECT 'é😀' AS \"é😀\"",
                                  "\ufeffSELECT 1", "SELECT '\U0010ffff'"]):
        _run(lambda s=sql: fq.sql(s, params).fetchall(), run, number, sql, params, "fetchall")
    assert not run["raw"] and not run["internal"], run
    assert run["outcomes"].get("answered", 0) >= 3, run["outcomes"]
