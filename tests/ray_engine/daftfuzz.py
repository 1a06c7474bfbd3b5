"""Random queries aimed at the boundary of the Ray engine's Daft stage (``fedquery/ray/daft_stage.py``).

Each query is one SELECT over two or three small tables of a local parquet lake (and now and
then one), with columns of every family: int32 and int64 (some rows near 2^62 and at the
limits), float64 (NaN, NULL, -0.0, inf), decimal(15,2) and decimal(38,10) (some rows at the
limit, so sums overflow), strings (NULL, '', unicode, newlines, regex characters), dates,
timestamps and booleans. Joins are inner, left and comma joins on keys with NULLs (also of
mixed types, and with extra conditions in ON); filters are comparisons, BETWEEN, IN lists (with
NULL), LIKE (with % _ and escapes), IS NULL, NOT, AND/OR; projections are arithmetic on every
family, CASE, casts and functions; aggregates count/count(*)/sum/avg/min/max/count(DISTINCT)
under GROUP BY columns, GROUP BY ALL and HAVING; ORDER BY with ASC/DESC NULLS FIRST/LAST,
LIMIT and OFFSET.

Most queries are drawn from what the Daft stage's whitelist admits (so that Daft really answers
them); the rest mix in what it must refuse. Every query is deterministic per seed, and every
LIMIT or OFFSET follows an ORDER BY over all output columns (other answers may differ
legitimately). ``tests/ray_engine/test_daft_stage_fuzz.py`` compares the local engine's answers with
the Ray engine's; a longer campaign runs from the shell:

    python -m tests.ray_engine.daftfuzz --count 500 --seed 1 [--ray-address HOST:PORT]
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DATA_SEED = 20_260_101
ROWS = {"ta": 1200, "tb": 800, "tc": 300}
KEYS = 400  # join keys are drawn from range(KEYS): a two-table join has ~2,000 rows
INT, FLOAT, DEC, STR, DATE, TS, BOOL = "int", "float", "dec", "str", "date", "ts", "bool"
NUMBERS = (INT, FLOAT, DEC)
COLUMNS: dict[str, tuple[str, pa.DataType]] = {
    "id": (INT, pa.int64()),
    "k": (INT, pa.int32()),
    "k64": (INT, pa.int64()),
    "i32": (INT, pa.int32()),
    "i64": (INT, pa.int64()),
    "f": (FLOAT, pa.float64()),
    "d2": (DEC, pa.decimal128(15, 2)),
    "d10": (DEC, pa.decimal128(38, 10)),
    "s": (STR, pa.string()),
    "dt": (DATE, pa.date32()),
    "ts": (TS, pa.timestamp("us")),
    "flag": (BOOL, pa.bool_()),
}
BY_FAMILY = {fam: [c for c, (f, _) in COLUMNS.items() if f == fam] for fam in
             (INT, FLOAT, DEC, STR, DATE, TS, BOOL)}
STRINGS = ["", "a", "A", "abc", "ABC", "a%b", "a_b", "é", "éa", "Ünïcödé", "日本語", "a\nb",
           " a", "a ", "x.y", "(x)", "[ab]", "a*b", "a+b", "^a$", "a|b", "{1}", "it's", "ß",
           "🙂", "naïve", "zzz", "a\\b", "%", "_"]
BIG_DEC10 = decimal.Decimal("9999999999999999999999999999.9999999999")
INT_LITERALS = ["0", "1", "-1", "2", "7", "42", "100", "399", "1000", "2147483647", "-2147483648",
                "2147483648", "4611686018427387904", "4611686018427387905", "9223372036854775807",
                "9223372036854775808"]
DEC_LITERALS = ["0.5", "1.25", "-3.75", "0.25", "99.99", "4611686018427387904.5",
                "12345678901234567.1", "0.0000000001", "9999999999999.99", "1.10", "-0.0"]
FLOAT_LITERALS = ["1e300", "2.5e0", "-0.0e0", "1e-5", "CAST('NaN' AS DOUBLE)",
                  "CAST('inf' AS DOUBLE)", "0.1e1"]
PATTERNS = ["%", "_", "a%", "%a", "%b", "a_b", "a%b", "%é%", "_%", "%.%", "x.y", "[ab]", "[ab]%",
            "a*b", "(x)", "^a$", "a|b", "{1}", "a\nb", "a_", "%\n%", "__", "", "%ß", "A%", "it''s",
            "é_", "_a", "a+b", "日%", "%🙂"]
DATE_LITERALS = ["2020-01-01", "2020-02-29", "1970-01-01", "2030-12-31", "0001-01-01",
                 "9999-12-31", "2021-02-29"]
TS_LITERALS = ["2020-01-01 00:00:00", "2020-01-01 12:30:00.123456", "1990-06-01 00:00:00"]


# ------------------------------------------------------------------------------------ data


def _table(name: str, rows: int) -> pa.Table:
    rng = random.Random(f"{DATA_SEED}-{name}")
    dec = decimal.Decimal
    day = lambda first, days: first + dt.timedelta(days=rng.randint(*days))  # noqa: E731
    draws: dict[str, list[tuple[float, Any]]] = {
        "i32": [(0.8, lambda: rng.randint(-1000, 1000)), (0.05, None),
                (0.05, lambda: rng.choice([2**31 - 1, -(2**31)])), (0.1, lambda: rng.randint(-8, 8))],
        "i64": [(0.72, lambda: rng.randint(-10**6, 10**6)), (0.05, None),
                (0.1, lambda: 2**62 + rng.randint(-5, 5)), (0.05, lambda: -(2**62) - rng.randint(0, 5)),
                (0.03, lambda: rng.choice([2**63 - 1, -(2**63)])), (0.05, lambda: rng.randint(-8, 8))],
        # multiples of 1/4 below 2^16: sums are exact in any order
        "f": [(0.66, lambda: rng.randint(-2**18, 2**18) / 4), (0.06, None), (0.05, math.nan),
              (0.04, 0.0), (0.03, -0.0), (0.02, math.inf), (0.14, lambda: rng.randint(-8, 8) / 4)],
        # quarters, as doubles exact: a sum of them cast to DOUBLE does not depend on order
        "d2": [(0.75, lambda: dec(rng.randint(-4 * 10**5, 4 * 10**5)) / 4), (0.05, None),
               (0.05, lambda: rng.choice([dec("9999999999999.75"), dec("-9999999999999.75")])),
               (0.15, lambda: dec(rng.randint(-8, 8)) / 4)],
        # only positive values at the limit: whether a sum overflows does not depend on order
        "d10": [(0.7, lambda: dec(rng.randint(-10**15, 10**15)).scaleb(-10)), (0.05, None),
                (0.005, BIG_DEC10), (0.03, dec("4611686018427387904.5")),
                (0.04, dec("12345678901234567.1")), (0.175, lambda: dec(rng.randint(-8, 8)) / 4)],
        "s": [(0.08, None), (0.92, lambda: rng.choice(STRINGS))],
        "dt": [(0.6, lambda: day(dt.date(1970, 1, 1), (0, 60 * 365))), (0.05, None),
               (0.02, dt.date(1, 1, 1)), (0.02, dt.date(9999, 12, 31)),
               (0.31, lambda: day(dt.date(2020, 1, 1), (-30, 30)))],
        "ts": [(0.7, lambda: dt.datetime(2020, 1, 1) + dt.timedelta(
                   seconds=rng.randint(-10**8, 10**8), microseconds=rng.randint(0, 999_999))),
               (0.05, None),
               (0.25, lambda: dt.datetime(2020, 1, 1) + dt.timedelta(hours=rng.randint(-48, 48)))],
        "flag": [(0.45, True), (0.45, False), (0.1, None)],
    }
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for i in range(rows):
        k = None if rng.random() < 0.1 else rng.randrange(KEYS)
        cols["id"].append(i)
        cols["k"].append(k)
        cols["k64"].append(k)
        for column, choices in draws.items():
            cols[column].append(_pick(rng, choices))
    return pa.table({c: pa.array(v, COLUMNS[c][1]) for c, v in cols.items()})


def _pick(rng: random.Random, choices: list[tuple[float, Any]]) -> Any:
    r = rng.random()
    for weight, value in choices:
        if r < weight:
            return value() if callable(value) else value
        r -= weight
    value = choices[-1][1]
    return value() if callable(value) else value


def build_lake(root: Path) -> dict[str, Any]:
    """Write the tables under ``root`` (``ta`` in two files); return the catalog (a dict)."""
    root.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, rows in ROWS.items():
        table = _table(name, rows)
        folder = root / name
        folder.mkdir(exist_ok=True)
        half = rows // 2 if name == "ta" else rows
        pq.write_table(table.slice(0, half), folder / "part-0.parquet", row_group_size=256)
        if half < rows:
            pq.write_table(table.slice(half), folder / "part-1.parquet", row_group_size=256)
        tables[name] = {"source": "lake", "path": f"{name}/"}
    return {"sources": {"lake": {"kind": "parquet", "root": str(root)}}, "tables": tables}


# ------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class Drawn:
    """A query and whether its rows come in a defined order (an ORDER BY over all columns)."""

    sql: str
    ordered: bool


class DaftQuery:
    """Draws one random SELECT from a seed (``query``)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.safe = self.rng.random() < 0.8  # mostly what the Daft stage admits
        self.aliases: list[str] = []
        self.filtering = False  # drawing a filter: nothing that may fail on a row
        self.narrow = False  # decimals of 15 digits only (d2): no overflow in sums

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def unsafe(self, p: float = 0.25) -> bool:
        """Whether to draw a construct the Daft stage must refuse here."""
        return self.rng.random() < (p * 0.15 if self.safe else p)

    # ---------------------------------------------------------------- FROM and joins

    def query(self) -> Drawn:
        count = self.rng.choices([1, 2, 3], [2, 5, 3])[0]
        tables = [self.rng.choice(list(ROWS)) for _ in range(count)]
        if count == 3 and "tc" not in tables:
            tables[2] = "tc"  # keeps three-way joins small
        self.aliases = ["a", "b", "c"][:count]
        if self.unsafe(0.15):  # an alias that is also a column's name
            self.aliases[self.rng.randrange(count)] = self.rng.choice(["s", "k", "flag"])
        parts = [f"{tables[0]} AS {self.aliases[0]}"]
        where: list[str] = []
        comma = count > 1 and self.chance(0.25)
        for i in range(1, count):
            alias = self.aliases[i]
            other = self.rng.choice(self.aliases[:i])
            condition = self._join_condition(other, alias)
            if comma:
                parts.append(f", {tables[i]} AS {alias}")
                where.append(condition)
                continue
            kind = self.rng.choices(["JOIN", "INNER JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN",
                                     "LEFT OUTER JOIN"],
                                    [4, 2, 4, 0.6 if self.safe else 2, 0.3 if self.safe else 1,
                                     0.3 if self.safe else 1])[0]
            if self.chance(0.3) and self.unsafe(0.8):  # Daft joins on equalities only
                condition += " AND " + self._filter(1, [self.rng.choice(self.aliases[:i + 1])])
            parts.append(f" {kind} {tables[i]} AS {alias} ON {condition}")
        for _ in range(self.rng.choice([0, 1, 1, 2, 3])):
            where.append(self._filter(2))
        sql = "SELECT " + ("DISTINCT " if self.unsafe(0.1) else "")
        shape = self.rng.choices(["plain", "group", "global"], [4, 4, 2])[0]
        items, group, having = self._shape(shape)
        sql += ", ".join(text for text, _ in items) + " FROM " + "".join(parts)
        if where:
            sql += " WHERE " + " AND ".join(f"({w})" if " OR " in w else w for w in where)
        if group:
            sql += " GROUP BY " + group
        if having:
            sql += " HAVING " + having
        ordered = self.chance(0.6)
        if ordered:
            sql += " ORDER BY " + self._order(items)
            if self.chance(0.5):
                sql += f" LIMIT {self.rng.choice([0, 1, 3, 10, 50, 200])}"
            if self.chance(0.25):
                sql += f" OFFSET {self.rng.choice([0, 1, 5, 40])}"
        return Drawn(sql, ordered)

    def _join_condition(self, left: str, right: str) -> str:
        pairs = [("k", "k"), ("k", "k64"), ("k64", "k64"), ("s", "s"), ("dt", "dt"), ("d2", "d2"),
                 ("k", "i32"), ("i64", "i64"), ("d10", "d10"), ("d2", "d10")]
        weights = [8, 3, 2, 1, 1, 1, 1, 1, 1, 1]
        if self.unsafe(0.5):  # keys Daft must not join on: floats, an integer and a decimal
            pairs, weights = [("f", "f"), ("d2", "f"), ("k", "d2"), ("i64", "d10")], [1, 1, 1, 1]
        pair = self.rng.choices(pairs, weights)[0]
        if self.chance(0.5):
            pair = pair[::-1]
        return f"{left}.{pair[0]} = {right}.{pair[1]}"

    # ------------------------------------------------------------------ SELECT list

    def _shape(self, shape: str) -> tuple[list[tuple[str, str]], str | None, str | None]:
        """(projection text, its output name) pairs, GROUP BY and HAVING."""
        items: list[tuple[str, str]] = []
        group = having = None
        if shape == "plain":
            for _ in range(self.rng.randint(1, 4)):
                items.append(self._output(self._projection(), items))
            return items, None, None
        keys: list[str] = []
        if shape == "group":
            for _ in range(self.rng.choice([1, 1, 2])):
                names = [c for c in COLUMNS if c != "f" or self.unsafe(0.5)]  # Daft: -0.0 apart
                keys.append(self._column(self.rng.choice(names)))
            keys = list(dict.fromkeys(keys))
            for key in keys:
                if self.chance(0.85):
                    items.append(self._output(key, items))
            if self.unsafe(0.3) and self.chance(0.5):  # an expression of the keys
                items.append(self._output(f"{self.rng.choice(keys)} IS NULL", items))
            group = self._group_by(keys, items)
        for _ in range(self.rng.randint(1, 3)):
            items.append(self._output(self._aggregate(), items))
        if self.chance(0.25):
            having = self._having()
        return items, group, having

    def _group_by(self, keys: list[str], items: list[tuple[str, str]]) -> str:
        if self.unsafe(0.3):
            if self.chance(0.5) and len(items) == len(keys):
                return "ALL"
            positions = [str(i + 1) for i, (text, _) in enumerate(items) if text.split(" AS ")[0] in keys]
            if positions and len(positions) == len(keys) and self.chance(0.5):
                return ", ".join(positions)
        return ", ".join(keys)

    def _output(self, text: str, items: list[tuple[str, str]]) -> tuple[str, str]:
        taken, bare = {other for _, other in items}, text.split(".")[-1]
        if bare in COLUMNS and " " not in text and self.chance(0.15) and bare not in taken:
            return text, bare  # no alias: the column's name
        name = f"c{len(items)}"
        if self.chance(0.08):  # an output named as a column (GROUP BY, HAVING may read either)
            name = self.rng.choice(["k", "s", "d2", "id", "flag"])
            if name in taken:  # unique names: ORDER BY names each output once
                name = f"c{len(items)}"
        return f"{text} AS {name}", name

    def _column(self, name: str, aliases: list[str] | None = None) -> str:
        aliases = aliases or self.aliases
        if len(self.aliases) == 1 and self.chance(0.3):
            return name  # unqualified
        return f"{self.rng.choice(aliases)}.{name}"

    def _projection(self) -> str:
        fam = self.rng.choice([INT, FLOAT, FLOAT, DEC, DEC, STR, DATE, TS, BOOL, BOOL])
        return self._value(fam, 2)

    def _aggregate(self) -> str:
        kind = self.rng.choices(["count", "count*", "sum", "avg", "min", "max", "distinct"],
                                [2, 2, 4, 3, 3, 3, 1 if self.safe else 3])[0]
        if kind == "count*":
            return "count(*)"
        if kind in ("count", "min", "max"):
            fams = [INT, DEC, STR, DATE, TS, BOOL] + [FLOAT] * (kind == "count" or self.unsafe(0.8))
            return f"{kind}({self._value(self.rng.choice(fams), 1 if self.unsafe(0.7) else 0)})"
        if kind == "distinct":
            fam = self.rng.choice([INT, FLOAT, DEC, STR])
            func = self.rng.choice(["count", "count", "sum"]) if fam in NUMBERS else "count"
            return f"{func}(DISTINCT {self._value(fam, 0)})"
        if self.unsafe(0.6):  # Daft sums integers wrapping, averages decimals as decimals
            fam = self.rng.choice([FLOAT, DEC, INT])
        else:
            fam = self.rng.choice([FLOAT, DEC] if kind == "sum" else [FLOAT])
        self.narrow = not self.unsafe(0.5)
        try:
            return f"{kind}({self._value(fam, 1)})"
        finally:
            self.narrow = False

    def _having(self) -> str:
        agg = self._aggregate()
        if agg.startswith("count"):
            return f"{agg} {self.rng.choice(['>', '>=', '=', '<'])} {self.rng.choice('0125')}"
        fam = FLOAT if "(a.f" in agg or "(b.f" in agg or "(c.f" in agg else None
        literal = self._literal(fam or self.rng.choice([INT, DEC]))
        numbers = BY_FAMILY[INT] + BY_FAMILY[FLOAT] + BY_FAMILY[DEC]
        if agg.startswith(("min(", "max(")) and not any(f".{c}" in agg for c in numbers):
            return f"{agg} IS NOT NULL"
        return f"{agg} {self.rng.choice(['>', '<', '<>', '>='])} {literal}"

    def _order(self, items: list[tuple[str, str]]) -> str:
        keys = []
        positions = list(range(len(items)))
        self.rng.shuffle(positions)
        for i in positions:
            text, name = items[i]
            form = self.rng.choices(["name", "position", "expression"], [7, 0.2 if self.safe else 1, 1])[0]
            expression = text.rsplit(" AS ", 1)[0]
            if form == "expression" and not expression[-1].isdigit() and expression[-1] != "'":
                key = expression
            else:
                key = str(i + 1) if form == "position" else name
            key += self.rng.choice(["", " ASC", " DESC"])
            key += self.rng.choice(["", "", " NULLS FIRST", " NULLS LAST"])
            keys.append(key)
        return ", ".join(keys)

    # ------------------------------------------------------------------- values

    def _value(self, fam: str, depth: int) -> str:
        """An expression of the family ``fam``."""
        if fam == BOOL:
            return f"({self._predicate(depth)})"
        r = self.rng.random()
        if depth <= 0 or r < 0.45:
            if self.chance(0.15) and not (self.narrow and self.safe):  # sum(literal): no Daft
                return self._literal(fam)
            if fam == DEC and self.narrow:
                return self._column("d2")
            return self._column(self.rng.choice(BY_FAMILY[fam]))
        if fam in NUMBERS and r < 0.8:
            return self._arithmetic(fam, depth)
        if self.unsafe(0.6):
            return self._function(fam, depth)
        return self._column(self.rng.choice(BY_FAMILY[fam]))

    def _arithmetic(self, fam: str, depth: int) -> str:
        ops = ["+", "-", "*"]
        if self.unsafe(0.4):
            ops += ["/", "%"]
        op = self.rng.choice(ops)
        if fam == INT and not self.unsafe(0.6) or self.filtering and fam != FLOAT:
            fam = self.rng.choice([FLOAT, DEC])  # integer arithmetic is never Daft's
        if self.filtering:  # no overflow: d2 + d2 cannot, floats become inf
            op = self.rng.choice(["+", "-"]) if fam == DEC else op
            fam = FLOAT if op == "*" else fam
            saved, self.narrow = self.narrow, True
            try:
                return self._operation(fam, op, depth)
            finally:
                self.narrow = saved
        return self._operation(fam, op, depth)

    def _operation(self, fam: str, op: str, depth: int) -> str:
        other = fam
        if self.chance(0.3):
            other = self.rng.choice([FLOAT, DEC] if fam != INT else [INT, FLOAT, DEC])
        left, right = self._value(fam, depth - 1), self._value(other, depth - 1)
        if self.chance(0.35):  # a decimal's fraction literal: a float64 in Daft
            right = self._literal(INT if other == DEC and not self.unsafe(0.5) else other)
        if self.chance(0.5):
            left, right = right, left
        if left[0].isdigit() and right[0].isdigit():
            left = self._column(self.rng.choice(BY_FAMILY[fam]))
        text = f"{left} {op} {right}"
        if self.unsafe(0.15):
            return f"-({text})"
        return f"({text})"

    def _function(self, fam: str, depth: int) -> str:
        inner = self._value(fam, depth - 1)
        if self.filtering:  # functions that fail on no value
            safe = {INT: [f"length({self._value(STR, 0)})", f"coalesce({inner}, 7)"],
                    FLOAT: [f"abs({inner})", f"coalesce({inner}, 2.5)",
                            f"CAST({self._value(DEC, 0)} AS DOUBLE)"],
                    DEC: [f"coalesce({inner}, 0.25)", f"round({inner}, 1)"],
                    STR: [f"lower({inner})", f"coalesce({inner}, '')", f"{inner} || 'x'"],
                    DATE: [f"coalesce({inner}, DATE '2020-01-01')"],
                    TS: [f"coalesce({inner}, {self._literal(TS)})"]}
            return self.rng.choice(safe[fam])
        choices: dict[str, list[str]] = {
            INT: [f"abs({inner})", f"coalesce({inner}, {self._literal(INT)})", f"CAST({inner} AS BIGINT)",
                  f"length({self._value(STR, 0)})", f"CAST({self._value(FLOAT, 0)} AS INTEGER)",
                  f"sign({inner})", f"{inner} // {self._literal(INT)}"],
            FLOAT: [f"abs({inner})", f"round({inner}, {self.rng.randint(0, 3)})",
                    f"coalesce({inner}, {self._literal(FLOAT)})", f"CAST({self._value(INT, 0)} AS DOUBLE)",
                    f"CAST({self._value(DEC, 0)} AS DOUBLE)", f"sqrt(abs({inner}))", f"ceil({inner})",
                    f"greatest({inner}, {self._literal(FLOAT)})"],
            DEC: [f"abs({inner})", f"round({inner}, {self.rng.randint(0, 3)})",
                  f"coalesce({inner}, {self._literal(DEC)})", f"CAST({inner} AS DECIMAL(18,3))",
                  f"CAST({self._value(INT, 0)} AS DECIMAL(20,2))", f"floor({inner})"],
            STR: [f"lower({inner})", f"upper({inner})", f"coalesce({inner}, '')",
                  f"{inner} || {self._value(STR, 0)}", f"substr({inner}, 1, 2)", f"trim({inner})",
                  f"CAST({self._value(INT, 0)} AS VARCHAR)",
                  f"replace({inner}, 'a', 'é')", f"concat({inner}, 'x')"],
            DATE: [f"coalesce({inner}, {self._literal(DATE)})", f"CAST({self._value(TS, 0)} AS DATE)",
                   f"{inner} + 1", f"date_trunc('month', {inner})"],
            TS: [f"CAST({self._value(DATE, 0)} AS TIMESTAMP)", f"coalesce({inner}, {self._literal(TS)})",
                 f"date_trunc('hour', {inner})"],
        }
        if self.chance(0.25):
            return (f"CASE WHEN {self._predicate(depth - 1)} THEN {inner} "
                    f"ELSE {self._value(fam, depth - 1)} END")
        return self.rng.choice(choices[fam])

    def _literal(self, fam: str) -> str:
        if fam == INT:
            return self.rng.choice(INT_LITERALS if self.unsafe(0.5) else _positive(INT_LITERALS))
        if fam == DEC:
            return self.rng.choice(DEC_LITERALS if self.unsafe(0.5) else _positive(DEC_LITERALS))
        if fam == FLOAT:
            if self.unsafe(0.3):
                return self.rng.choice(FLOAT_LITERALS)
            return self.rng.choice(["2.5", "0.25", "-1.75", "1000.5", "1e300", "0.1", "-0.0"])
        if fam == STR:
            return "'" + self.rng.choice(STRINGS).replace("'", "''") + "'"
        if fam == DATE:
            invalid = self.unsafe(0.2) and not self.filtering  # (a filter may never run it)
            text = self.rng.choice(DATE_LITERALS[:-1] + DATE_LITERALS[-1:] * invalid)
            return self.rng.choice([f"DATE '{text}'", f"CAST('{text}' AS DATE)"])
        if fam == TS:
            text = self.rng.choice(TS_LITERALS)
            return self.rng.choice([f"TIMESTAMP '{text}'", f"CAST('{text}' AS TIMESTAMP)"])
        return self.rng.choice(["TRUE", "FALSE"])

    # --------------------------------------------------------------- predicates

    def _filter(self, depth: int, aliases: list[str] | None = None) -> str:
        """A predicate of WHERE or ON: nothing in it fails on a row (which rows a filter sees
        first is the engine's choice, so an error there may or may not happen)."""
        saved = self.aliases, self.filtering
        self.filtering = True
        if aliases is not None:
            self.aliases = aliases
        try:
            return self._predicate_in(depth)
        finally:
            self.aliases, self.filtering = saved

    def _predicate(self, depth: int) -> str:
        return self._predicate_in(depth)

    def _predicate_in(self, depth: int) -> str:
        r = self.rng.random()
        if depth > 0 and r < 0.2:
            op = self.rng.choice([" AND ", " OR "])
            return f"({self._predicate_in(depth - 1)}{op}{self._predicate_in(depth - 1)})"
        if depth > 0 and r < 0.27:
            return f"NOT ({self._predicate_in(depth - 1)})"
        kind = self.rng.choices(["cmp", "between", "in", "like", "null", "bool"], [8, 2, 2, 3, 2, 1])[0]
        fam = self.rng.choice([INT, INT, DEC, DEC, STR, STR, DATE, TS, BOOL]
                              + [FLOAT, FLOAT] * self.unsafe(0.6))  # Daft compares no floats
        if kind == "cmp":
            left = self._value(fam, min(depth, 1))
            right_fam = fam
            if fam in NUMBERS and self.unsafe(0.4):  # Daft: no integer = decimal
                right_fam = self.rng.choice(NUMBERS)
            if self.unsafe(0.1) and not self.filtering:  # implicit casts (may fail on a row)
                right_fam = self.rng.choice([INT, FLOAT, DEC, STR, DATE, TS, BOOL])
            right = self._literal(right_fam) if self.chance(0.5) else self._value(right_fam, 0)
            if fam == DATE and right_fam == DATE and self.unsafe(0.3):
                right = "'" + self.rng.choice(DATE_LITERALS) + "'"  # a string compared to a date
            return f"{left} {self.rng.choice(['=', '<>', '<', '<=', '>', '>=', '!='])} {right}"
        if kind == "between":
            fam = BOOL if fam == BOOL else fam
            low, high = self._literal(fam), self._literal(fam)
            if self.chance(0.3):
                low = self._value(fam, 0)
            neg = " NOT" if self.chance(0.2) else ""
            return f"{self._value(fam, 0)}{neg} BETWEEN {low} AND {high}"
        if kind == "in":
            values = [self._literal(fam) for _ in range(self.rng.randint(1, 4))]
            if self.unsafe(0.3):
                values.append("NULL")
            neg = " NOT" if self.chance(0.25) else ""
            return f"{self._value(fam, 0)}{neg} IN ({', '.join(values)})"
        if kind == "like":
            pattern = self.rng.choice(PATTERNS).replace("'", "''") if self.chance(0.8) else \
                self._literal(STR)[1:-1]
            neg = " NOT" if self.chance(0.2) else ""
            subject = self._value(STR, 0)
            if self.unsafe(0.3):
                escape = self.rng.choice(["!", "\\"])
                pattern = self.rng.choice([f"a{escape}%%", f"{escape}_%", f"%{escape}%", f"a{escape}_b"])
                return f"{subject}{neg} LIKE '{pattern}' ESCAPE '{escape}'"
            if self.unsafe(0.15):
                return f"{subject}{neg} ILIKE '{pattern}'"
            return f"{subject}{neg} LIKE '{pattern}'"
        if kind == "null":
            test = self.rng.choice(["IS NULL", "IS NOT NULL", "IS NULL", "IS NOT NULL", "IS TRUE",
                                    "IS NOT FALSE"])
            if test.endswith(("TRUE", "FALSE")):
                return f"({self._predicate_in(0)}) {test}"
            return f"{self._value(fam, 0)} {test}"
        return self._column("flag")


def _positive(literals: list[str]) -> list[str]:
    return [text for text in literals if not text.startswith("-")]


def generate(seed: int, count: int) -> list[Drawn]:
    """``count`` queries from ``seed`` (the same list every time)."""
    return [DaftQuery(seed * 100_003 + i).query() for i in range(count)]


# ------------------------------------------------------------------------ the check


class Mismatch(AssertionError):
    """The Ray engine's answer differs from the local engine's (or one failed, the other not)."""


def answer(con, sql: str) -> tuple[str, Any]:
    """("rows", table) or ("error", exception): a non-FedQueryError is raised as a Mismatch."""
    import fedquery

    try:
        return "rows", con.sql(sql).arrow()
    except fedquery.FedQueryError as exc:
        return "error", exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - what the user must never see (a Rust panic too)
        raise Mismatch(f"a non-FedQueryError {type(exc).__module__}.{type(exc).__name__}: "
                       f"{str(exc)[:300]}") from exc


def compare(local, ray, drawn: Drawn) -> str:
    """Run ``drawn`` on both connections; raise ``Mismatch`` unless they agree. Returns where
    the Ray engine ran the residual (``daft`` or ``duckdb``), plus ``:error`` when both refused."""
    want_kind, want = answer(local, drawn.sql)
    ray._session.engine.last_residual = None
    try:
        got_kind, got = answer(ray, drawn.sql)
    except Mismatch as exc:
        raise Mismatch(f"ray: {exc}; local: {_brief(want_kind, want)}") from exc
    where = ray._session.engine.last_residual or "none"
    if want_kind == "error" or got_kind == "error":
        if want_kind != got_kind:
            raise Mismatch(f"local: {_brief(want_kind, want)}; ray ({where}): {_brief(got_kind, got)}")
        if type(want) is not type(got):
            raise Mismatch(f"error kinds differ: local {_brief(want_kind, want)}; "
                           f"ray ({where}) {_brief(got_kind, got)}")
        return where + ":error"
    if got.column_names != want.column_names:
        raise Mismatch(f"columns {got.column_names} (ray, {where}) != {want.column_names} (local)")
    if got.schema.types != want.schema.types:
        raise Mismatch(f"types {got.schema.types} (ray, {where}) != {want.schema.types} (local)")
    rows_got, rows_want = _rows(got), _rows(want)
    if not drawn.ordered:
        rows_got.sort(key=_sort_key)
        rows_want.sort(key=_sort_key)
    if len(rows_got) != len(rows_want) or not all(
            _same_row(a, b) for a, b in zip(rows_got, rows_want, strict=True)):
        if not drawn.ordered and _same_multiset(rows_got, rows_want):
            return where  # floats within 1e-9 sorted apart
        diff = [(a, b) for a, b in zip(rows_got, rows_want, strict=False) if not _same_row(a, b)][:3]
        raise Mismatch(f"ray ({where}) {len(rows_got)} rows, local {len(rows_want)}; "
                       f"first differences (ray, local): {diff}")
    return where


def _same_multiset(mine: list[tuple], theirs: list[tuple]) -> bool:
    """Whether each row of ``mine`` pairs with its own row of ``theirs`` (``_same_row``): rows
    whose floats differ in the last digits may sort in another order."""
    if len(mine) != len(theirs):
        return False
    exact = lambda row: repr(tuple(v for v in row if not isinstance(v, float)))  # noqa: E731
    pending: dict[str, list[tuple]] = {}
    for row in theirs:
        pending.setdefault(exact(row), []).append(row)
    for row in mine:
        candidates = pending.get(exact(row), [])
        match = next((i for i, other in enumerate(candidates) if _same_row(row, other)), None)
        if match is None:
            return False
        candidates.pop(match)
    return True


def _brief(kind: str, value: Any) -> str:
    if kind == "error":
        return f"{type(value).__name__}: {str(value).splitlines()[0][:200]}"
    return f"{value.num_rows} rows"


def _sort_key(row: tuple) -> str:
    """Exact but for floats (9 significant digits: sums in another order differ at the last)."""
    return repr(tuple(_coarse(v) for v in row))


def _coarse(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value + 0.0:.9g}"
    return value


def _rows(table: pa.Table) -> list[tuple]:
    """The rows as tuples; dates and timestamps as numbers (Python's cannot hold year 10000)."""
    columns = []
    for column in table.columns:
        if pa.types.is_date32(column.type):
            column = column.cast(pa.int32())
        elif pa.types.is_timestamp(column.type) or pa.types.is_date64(column.type):
            column = column.cast(pa.int64())
        columns.append(column.to_pylist())
    return list(zip(*columns, strict=True)) if columns else [() for _ in range(table.num_rows)]


def _same_row(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))


def same_value(x: Any, y: Any) -> bool:
    """Equal, numbers within a relative 1e-9 (NaN equals NaN; -0.0 equals 0.0)."""
    numbers = (int, float, decimal.Decimal)
    if isinstance(x, numbers) and isinstance(y, numbers) and bool not in (type(x), type(y)):
        if type(x) is type(y) and not isinstance(x, float):  # integers, decimals: exact
            return x == y
        fx, fy = float(x), float(y)
        if math.isnan(fx) or math.isnan(fy):
            return math.isnan(fx) and math.isnan(fy)
        return fx == fy or math.isclose(fx, fy, rel_tol=1e-9)
    return type(x) is type(y) and x == y


# ------------------------------------------------------------------------- the CLI


def main(argv: list[str] | None = None) -> int:
    """A campaign: draw, answer with the local and the Ray engine, print every mismatch."""
    import argparse
    import collections
    import tempfile
    import time

    import fedquery

    parser = argparse.ArgumentParser(prog="python -m tests.ray_engine.daftfuzz")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ray-address", default=None, help="a running cluster (default: a local one)")
    parser.add_argument("--show", action="store_true", help="print every query")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        catalog = build_lake(Path(folder) / "lake")
        local = fedquery.connect(catalog)
        ray = fedquery.connect(catalog, engine="ray", ray_address=args.ray_address)
        outcomes: collections.Counter = collections.Counter()
        start = time.monotonic()
        for i, drawn in enumerate(generate(args.seed, args.count)):
            if args.show:
                print(f"-- {i}: {drawn.sql}", flush=True)
            try:
                outcomes[compare(local, ray, drawn)] += 1
            except Mismatch as exc:
                outcomes["mismatch"] += 1
                print(f"--- query {i} (seed {args.seed}): {exc}\n{drawn.sql}\n", flush=True)
        daft = sum(n for k, n in outcomes.items() if k.startswith("daft"))
        print(f"{args.count} queries in {time.monotonic() - start:.0f} s; {daft} on Daft; "
              f"{dict(sorted(outcomes.items()))}")
        local.close()
        ray.close()
        return 1 if outcomes["mismatch"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
