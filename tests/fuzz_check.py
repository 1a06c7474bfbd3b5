"""Compare fedquery's answer to plain DuckDB's for one query: the differential check."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import duckdb
import pyarrow as pa

import fedquery


class Mismatch(AssertionError):
    """fedquery's answer differs from DuckDB's, or one of them failed and the other did not."""


def normalise(value: Any) -> Any:
    """A value comparable across engines: every number as a float of 9 significant digits (a
    sum is a DECIMAL in one engine and a DOUBLE summed in another order in the other)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, decimal.Decimal | float | int):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return str(number)
        return float(f"{number:.9g}")
    if isinstance(value, dict):
        return tuple(sorted((k, normalise(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(normalise(v) for v in value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


HUGE = 2_000_000
BIG = 20_000  # rows past which DuckDB compares the two answers (EXCEPT ALL), not Python


def _check_big(got, want, sql: str) -> str:
    """Compare two large answers as multisets inside DuckDB: exact values, but numbers that
    either answer holds as DOUBLE or DECIMAL as doubles rounded to 4 decimals (a warehouse
    keeping decimals as doubles, as SQLite does, sums them inexactly)."""
    con = duckdb.connect()
    try:
        con.register("got", got.rename_columns([f"c{i}" for i in range(got.num_columns)]))
        con.register("want", want.rename_columns([f"c{i}" for i in range(want.num_columns)]))
        inexact = [pa.types.is_floating(a.type) or pa.types.is_decimal(a.type) or
                   pa.types.is_floating(b.type) or pa.types.is_decimal(b.type)
                   for a, b in zip(got.schema, want.schema, strict=True)]
        select = ", ".join(f"round(CAST(c{i} AS DOUBLE), 4)" if rounded else f"c{i}"
                           for i, rounded in enumerate(inexact))
        extra, missing = (con.sql(f"SELECT count(*) FROM (SELECT {select} FROM {a} EXCEPT ALL "
                                  f"SELECT {select} FROM {b})").fetchall()[0][0]
                          for a, b in (("got", "want"), ("want", "got")))
    finally:
        con.close()
    if extra or missing or got.num_rows != want.num_rows:
        raise Mismatch(f"{got.num_rows} rows, DuckDB {want.num_rows}; {extra} only in "
                       f"fedquery's, {missing} only in DuckDB's\n{sql}")
    return "ok"


def same_rows(got, want) -> bool:
    """The rows of two answers, in an order of values at 6 significant digits, pairwise equal,
    numbers within a relative 1e-9 (an exact NUMERIC average and DuckDB's DOUBLE one differ in
    the last digits, and can round to different 9-digit values)."""
    if got.num_rows != want.num_rows:
        return False
    key = lambda row: repr(tuple(_coarse(v) for v in row))  # noqa: E731
    mine = sorted((tuple(r.values()) for r in got.to_pylist()), key=key)
    theirs = sorted((tuple(r.values()) for r in want.to_pylist()), key=key)
    return all(len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
               for a, b in zip(mine, theirs, strict=True))


def _coarse(value: Any) -> Any:
    if isinstance(value, decimal.Decimal | float | int) and not isinstance(value, bool):
        return float(f"{float(value):.6g}")
    return normalise(value)


def _close(a: Any, b: Any) -> bool:
    numbers = (decimal.Decimal, float, int)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return normalise(a) == normalise(b)


def rows_of(table) -> list[tuple]:
    return sorted((tuple(normalise(v) for v in row.values()) for row in table.to_pylist()), key=repr)


def check(con: fedquery.Connection, ref: duckdb.DuckDBPyConnection, sql: str,
          params: Any = None) -> str:
    """Run ``sql`` on both; raise ``Mismatch`` unless the answers agree. Returns 'ok', or
    'invalid' when DuckDB itself refuses the query (and fedquery refused it too)."""
    try:
        want = ref.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        try:
            con.sql(sql, params=params).arrow()
        except fedquery.FedQueryError:
            return "invalid"
        except Exception as other:
            raise Mismatch(f"DuckDB refused ({exc}) and fedquery raised a non-FedQueryError "
                           f"{type(other).__name__}: {other}\n{sql}") from other
        raise Mismatch(f"DuckDB refused ({str(exc).splitlines()[0]}) but fedquery answered"
                       f"\n{sql}") from None
    try:
        got = con.sql(sql, params=params).arrow()
    except Exception as exc:
        raise Mismatch(f"fedquery failed where DuckDB answered: {type(exc).__name__}: {exc}\n{sql}") from exc
    if got.column_names != want.column_names:
        raise Mismatch(f"column names {got.column_names} != DuckDB's {want.column_names}\n{sql}")
    if want.num_rows > HUGE:
        return "huge"  # a random cross product: too slow to compare, not a finding
    if want.num_rows > BIG:
        return _check_big(got, want, sql)
    mine, theirs = rows_of(got), rows_of(want)
    if mine != theirs and not same_rows(got, want):
        extra = [r for r in mine if r not in theirs][:3]
        missing = [r for r in theirs if r not in mine][:3]
        raise Mismatch(f"{len(mine)} rows, DuckDB {len(theirs)}; only fedquery: {extra}; only "
                       f"DuckDB: {missing}\n{sql}")
    return "ok"
