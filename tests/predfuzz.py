"""Random WHERE clauses over one table of every type, answered by a source and by DuckDB.

The table ``things`` holds integers (negative, zero, large), decimals, doubles, text with quotes,
``%``, ``_``, backslashes, case variants and empty strings, timestamps with fractions, dates and
booleans, each with NULLs. The same rows are written into a SQLite file (``kind: adbc``), an
Iceberg table partitioned by text and a Delta table partitioned by an integer; a predicate pushed
to any of them (SQLite's rewrites, the pruning filters of ``_lake_filter``) must keep DuckDB's
answer. Predicates mix comparisons with literals of every type (NULL too), LIKE/ILIKE patterns,
BETWEEN, IN lists with NULL, IS [NOT] DISTINCT FROM, CASE, COALESCE, arithmetic with division and
modulo, and casts.

    python -m tests.predfuzz --count 3000 --seed 1 --source sqlite
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

SOURCES = ("sqlite", "iceberg", "delta")
STRINGS = ["a", "A", "abc", "ABC", "Abc", "", " ", "it's", "50%", "5_0", "a_b", "a%b", "back\\slash",
           "ünï", "Z", "z", "10", "9", "2024-01-01", "x y", "%", "_", "[a]", "a*b", "?"]
PATTERNS = ["%", "a%", "A%", "%a", "%b%", "_", "__", "a_c", "%\\%", "%''%", "it''s", "", "%\\_%",
            "5!%0", "[%", "%*%", "?%", "%c", "AB%", "%Ü%"]


def things(seed: int = 5, n: int = 160) -> pa.Table:
    """The rows every source holds (the same each time)."""
    rng = random.Random(seed)

    def maybe(value: Any, p: float = 0.15) -> Any:
        return None if rng.random() < p else value

    base = dt.datetime(2024, 2, 28, 23, 59, 59)
    rows = []
    for k in range(n):
        stamp = base + dt.timedelta(seconds=rng.choice([0, 1, 3600, 86400, -86400, 86401]),
                                    microseconds=rng.choice([0, 0, 500000, 1, 999999, 100000]))
        rows.append({
            "id": k,
            "i": maybe(rng.choice([-7, -1, 0, 1, 2, 3, 5, 10, 42, 100, -100, 2147483647])),
            "b": maybe(rng.choice([-(2**40), -3, 0, 1, 7, 2**40, 10**12, 9007199254740993])),
            "d": maybe(Decimal(rng.choice(["-2.50", "0.00", "0.01", "1.50", "2.50", "3.33", "-0.01",
                                           "99999.99", "10.00", "7.25"]))),
            "f": maybe(rng.choice([-1.5, 0.0, 0.1, 2.5, 1e10, -0.0, 3.0, 0.3])),
            "s": maybe(rng.choice(STRINGS)),
            "t": maybe(stamp),
            "dd": maybe((base + dt.timedelta(days=rng.randint(-3, 3))).date()),
            "flag": maybe(rng.random() < 0.5),
        })
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.int64()), ("i", pa.int32()), ("b", pa.int64()), ("d", pa.decimal128(10, 2)),
        ("f", pa.float64()), ("s", pa.string()), ("t", pa.timestamp("us")), ("dd", pa.date32()),
        ("flag", pa.bool_())]))


# ---------------------------------------------------------------------- the sources


def _sqlite(folder: Path, rows: pa.Table) -> dict[str, Any]:
    con = sqlite3.connect(folder / "things.sqlite")
    con.execute("CREATE TABLE things (id INTEGER, i INTEGER, b INTEGER, d DECIMAL(10, 2), f REAL, "
                "s TEXT, t TIMESTAMP, dd DATE, flag BOOLEAN)")

    def stored(v: Any, k: int) -> Any:
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, dt.datetime):  # the forms tools write: 'T' or space, zeros or none
            return v.isoformat("T" if k % 2 else " ", "microseconds" if k % 3 == 0 else "auto")
        if isinstance(v, dt.date):
            return v.isoformat()
        return v

    con.executemany("INSERT INTO things VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [tuple(stored(v, r["id"]) for v in r.values()) for r in rows.to_pylist()])
    con.commit()
    con.close()
    return {"kind": "adbc", "driver": "sqlite", "uri": str(folder / "things.sqlite")}, \
        {"source": "src", "table": "main.things"}


def _iceberg(folder: Path, rows: pa.Table) -> tuple[dict, dict]:
    from tests.lakes import iceberg_catalog, iceberg_source

    table = iceberg_catalog(folder, "p").create_table("p.things", schema=rows.schema)
    with table.update_spec() as spec:
        spec.add_identity("s")
    for start in range(0, rows.num_rows, 40):
        table.append(rows.slice(start, 40))
    return iceberg_source(folder), {"source": "src", "table": "p.things"}


def _delta(folder: Path, rows: pa.Table) -> tuple[dict, dict]:
    from deltalake import write_deltalake

    for start in range(0, rows.num_rows, 40):
        write_deltalake(folder / "things", rows.slice(start, 40), partition_by=["i"], mode="append")
    return {"kind": "delta", "root": str(folder)}, {"source": "src", "path": "things"}


def catalog(source: str, folder: Path, rows: pa.Table) -> dict[str, Any]:
    made, table = {"sqlite": _sqlite, "iceberg": _iceberg, "delta": _delta}[source](folder, rows)
    return {"sources": {"src": made}, "tables": {"things": table}}


def reference_rows(source: str, rows: pa.Table) -> pa.Table:
    """The rows as the source types them (SQLite: integers BIGINT, decimals DOUBLE)."""
    if source != "sqlite":
        return rows
    return rows.cast(pa.schema([(f.name, pa.int64() if pa.types.is_integer(f.type) else
                                 pa.float64() if pa.types.is_decimal(f.type) else f.type)
                                for f in rows.schema]))


# ---------------------------------------------------------------------- the generator

INT, DEC, FLOAT, TEXT, TS, DATE, BOOL = "int", "dec", "float", "text", "ts", "date", "bool"
COLUMNS = {INT: ["i", "b", "id"], DEC: ["d"], FLOAT: ["f"], TEXT: ["s"], TS: ["t"], DATE: ["dd"],
           BOOL: ["flag"]}
CMP = ["=", "<>", "<", "<=", ">", ">=", "!="]


class PredicateGenerator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, options: list) -> Any:
        return self.rng.choice(options)

    # values ---------------------------------------------------------------

    def literal(self, kind: str) -> str:
        r = self.rng
        if r.random() < 0.07:
            return "NULL"
        if kind == INT:
            return str(r.choice([0, 1, -1, 2, 3, 5, 7, 10, 42, 100, -100, 2147483647, 2**40,
                                 -(2**40), 3000000000, 9007199254740993]))
        if kind == DEC:
            return r.choice(["1.5", "-2.5", "0.01", "2.50", "3.333", "0", "-0.01", "10", "1e1"])
        if kind == FLOAT:
            return r.choice(["0.1", "2.5", "-1.5", "1e10", "0.30000000000000004", "3"])
        if kind == TEXT:
            text = r.choice(STRINGS + ["b", "abd", "a ", "Ab", "aBc"])
            return "'" + text.replace("'", "''") + "'"
        if kind == TS:
            return r.choice(["TIMESTAMP '2024-02-29 00:00:00'", "TIMESTAMP '2024-02-28 23:59:59.5'",
                             "TIMESTAMP '2024-02-29 23:59:59.999999'", "'2024-02-29 00:59:59'",
                             "TIMESTAMP '2024-02-28 23:59:59'", "'2024-02-29T00:00:00.100'",
                             "TIMESTAMP '2024-03-01'", "'2024-02-29'", "DATE '2024-02-29'"])
        if kind == DATE:
            return r.choice(["DATE '2024-02-29'", "'2024-02-27'", "DATE '2024-03-02'",
                             "'2024-02-29 00:00:00'", "TIMESTAMP '2024-02-28 12:00:00'"])
        return r.choice(["TRUE", "FALSE"])

    def value(self, kind: str, depth: int = 0) -> str:
        r = self.rng.random()
        if r < 0.45 or depth > 1:
            return self.choice(COLUMNS[kind])
        if r < 0.65:
            return self.literal(kind)
        d = depth + 1
        if kind in (INT, DEC, FLOAT):
            other = self.choice([INT, INT, DEC, FLOAT]) if kind != INT else INT
            a, b = self.value(kind, d), self.value(other, d)
            return self.choice([f"({a} + {b})", f"({a} - {b})", f"({a} * {b})", f"({a} / {b})",
                                f"({a} // {b})", f"({a} % {b})", f"(-{a})", f"abs({a})",
                                f"coalesce({a}, {self.literal(kind)})",
                                f"CASE WHEN {self.predicate(d)} THEN {a} ELSE {b} END",
                                f"CAST({self.value(TEXT, d)} AS INTEGER)" if kind == INT else
                                f"CAST({a} AS DOUBLE)",
                                f"TRY_CAST(s AS {'BIGINT' if kind == INT else 'DOUBLE'})",
                                f"length({self.value(TEXT, d)})" if kind == INT else f"round({a}, 1)",
                                f"CAST({a} AS DECIMAL(12, 3))" if kind == DEC else f"sign({a})"])
        if kind == TEXT:
            a = self.value(TEXT, d)
            return self.choice([f"upper({a})", f"lower({a})", f"({a} || 'x')", f"coalesce({a}, '')",
                                f"substr({a}, 2)", f"CAST({self.value(INT, d)} AS VARCHAR)",
                                f"trim({a})", f"replace({a}, 'a', '%')",
                                f"CASE WHEN {self.predicate(d)} THEN {a} ELSE 'zz' END"])
        if kind == TS:
            return self.choice(["t + INTERVAL 1 DAY", "CAST(dd AS TIMESTAMP)",
                                "date_trunc('hour', t)", "coalesce(t, TIMESTAMP '2024-02-29 00:00:00')"])
        if kind == DATE:
            return self.choice(["CAST(t AS DATE)", "dd + 1", "coalesce(dd, DATE '2024-02-29')"])
        return self.predicate(d)

    # predicates -----------------------------------------------------------

    def predicate(self, depth: int = 0) -> str:
        r = self.rng.random()
        if depth < 2 and r < 0.2:
            a, b = self.predicate(depth + 1), self.predicate(depth + 1)
            return self.choice([f"({a} AND {b})", f"({a} OR {b})", f"NOT ({a})"])
        kind = self.choice([INT, INT, DEC, FLOAT, TEXT, TEXT, TS, DATE, BOOL])
        x = self.value(kind, depth + 1)
        r = self.rng.random()
        if r < 0.3:
            other = kind
            if kind in (INT, DEC, FLOAT) and self.rng.random() < 0.3:
                other = self.choice([INT, DEC, FLOAT])
            elif self.rng.random() < 0.06:
                other = self.choice([INT, TEXT, DATE, TS])  # mixed types: DuckDB casts
            return f"{x} {self.choice(CMP)} {self.value(other, depth + 1)}"
        if r < 0.4:
            return f"{x} IS {self.choice(['', 'NOT '])}NULL"
        if r < 0.48:
            return f"{x} IS {self.choice(['', 'NOT '])}DISTINCT FROM {self.literal(kind)}"
        if r < 0.58:
            return (f"{x} {self.choice(['', 'NOT '])}BETWEEN {self.literal(kind)} AND "
                    f"{self.literal(kind)}")
        if r < 0.7:
            values = ", ".join(self.literal(kind) for _ in range(self.rng.randint(1, 4)))
            return f"{x} {self.choice(['', 'NOT '])}IN ({values})"
        if kind == TEXT and r < 0.9:
            op = self.choice(["LIKE", "LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"])
            pattern = self.choice(PATTERNS)
            escape = " ESCAPE '!'" if "!" in pattern or self.rng.random() < 0.1 else ""
            if "\\" in pattern and not escape:
                escape = " ESCAPE '\\'"
            return f"{x} {op} '{pattern}'{escape}"
        if kind == BOOL:
            return self.choice([x, f"{x} = TRUE", f"NOT {x}", f"coalesce({x}, FALSE)"])
        return f"{x} {self.choice(CMP)} {self.literal(kind)}"

    def query(self) -> str:
        where = self.predicate()
        r = self.rng.random()
        if r < 0.6:
            return f"SELECT id FROM things WHERE {where}"
        if r < 0.75:
            column = self.choice(["i", "b", "d", "f", "s", "t", "dd", "flag"])
            return (f"SELECT id, {column} FROM things WHERE {where} ORDER BY {column} "
                    f"{self.choice(['ASC', 'DESC'])} NULLS {self.choice(['FIRST', 'LAST'])}, id "
                    f"LIMIT {self.rng.randint(0, 20)}")
        if r < 0.88:
            kind = self.choice([INT, DEC, TEXT, TS, DATE, BOOL])
            return f"SELECT id, {self.value(kind, 1)} AS v FROM things WHERE {where}"
        column = self.choice(["i", "b", "d", "s", "t", "dd"])
        return (f"SELECT count(*) AS n, count({column}) AS c, min({column}) AS lo, "
                f"max({column}) AS hi, count(DISTINCT {column}) AS k FROM things WHERE {where}")


def generate(seed: int, count: int) -> list[str]:
    return [PredicateGenerator(seed * 100_003 + i).query() for i in range(count)]


def open_source(source: str, folder: Path):
    """(fedquery connection, DuckDB reference) over ``things`` in ``source``."""
    import duckdb

    import fedquery

    rows = things()
    con = fedquery.connect(catalog(source, folder, rows))
    ref = duckdb.connect()
    ref.register("things_arrow", reference_rows(source, rows))
    ref.execute("CREATE TABLE things AS SELECT * FROM things_arrow")
    return con, ref


def main(argv: list[str] | None = None) -> int:
    import argparse
    import collections
    import tempfile

    from tests.fuzz_check import Mismatch, check

    parser = argparse.ArgumentParser(prog="python -m tests.predfuzz")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--source", choices=SOURCES, default="sqlite")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        con, ref = open_source(args.source, Path(folder))
        outcomes: collections.Counter = collections.Counter()
        for i, sql in enumerate(generate(args.seed, args.count)):
            try:
                outcomes[check(con, ref, sql)] += 1
            except Mismatch as exc:
                outcomes["mismatch"] += 1
                print(f"--- query {i} (seed {args.seed})\n{exc}\n", flush=True)
        print(dict(outcomes))
        return 1 if outcomes["mismatch"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
