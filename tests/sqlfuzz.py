"""A random SQL generator for differential tests against plain DuckDB.

Queries are drawn over the shop data set of ``tests/conftest.py`` (the catalog's names), from
a seed: joins of every kind along the shop's keys, filters with literals that need quoting,
IN / EXISTS / scalar subqueries (correlated or not), CTEs, derived tables, set operations,
aggregates, windows, DISTINCT and ORDER BY ... LIMIT. Aliases are drawn from a small pool on
purpose, so that subqueries, CTEs and derived tables reuse the aliases of the query around
them. Every query is deterministic: a LIMIT always follows an ORDER BY over every output
column, windows that number rows order by a unique key.

Run a campaign from the shell (the same checks as ``tests/test_fuzz_differential.py``):

    python -m tests.sqlfuzz --count 2000 --seed 7 --config local [--engine ray]
"""

from __future__ import annotations

import decimal
import random
import re
from dataclasses import dataclass, field
from typing import Any

INT, BIGINT, TEXT, DEC, TS = "int", "bigint", "text", "decimal", "timestamp"
NUMERIC = (INT, BIGINT, DEC)

TABLES: dict[str, dict[str, str]] = {
    "clients": {"customer_id": INT, "name": TEXT, "segment": TEXT, "country": TEXT},
    "products": {"product_id": INT, "title": TEXT, "category": TEXT, "price": DEC},
    "targets": {"segment": TEXT, "country": TEXT, "quarter": INT, "target": DEC},
    "orders": {"order_id": BIGINT, "customer_id": INT, "product_id": INT, "qty": INT,
               "ordered_at": TS, "note": TEXT, "region": TEXT},
    "returns": {"order_id": BIGINT, "reason": TEXT},
}
UNIQUE = {"clients": "customer_id", "products": "product_id", "orders": "order_id"}
EDGES = [  # (table, column, table, column): the shop's join keys
    ("orders", "customer_id", "clients", "customer_id"),
    ("orders", "product_id", "products", "product_id"),
    ("returns", "order_id", "orders", "order_id"),
    ("targets", "country", "clients", "country"),
    ("products", "product_id", "clients", "customer_id"),  # no meaning: two warehouse tables
    ("targets", "quarter", "products", "product_id"),      # that a source can join itself
]
VALUES = {
    "segment": ["consumer", "corporate", "home_office", "nobody"],
    "country": ["DE", "FR", "US", "JP", "BR", "XX"],
    "category": ["garden", "kitchen", "toys", "books"],
    "region": ["east", "north", "south", "west"],
    "reason": ["damaged", "late", "wrong item"],
    "note": ["gift", "express", "", "call first", "it's", "back\\slash"],
    "name": ["Ada Smith", "Bo Ng", "O'Brien", "Cy%", "Dee_Rossi"],
    "title": ["Red Lamp", "Tiny Robot", "Smart Novel"],
}
ALIASES = ["a", "b", "c", "o", "t", "x"]
JOINS = ["JOIN", "JOIN", "JOIN", "LEFT JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]
CMP = ["=", "<>", "<", "<=", ">", ">="]


@dataclass
class Source:
    """A FROM item in one scope: its alias, table and columns with types."""

    alias: str
    table: str
    columns: dict[str, str]


@dataclass
class Scope:
    """What one SELECT being built can read: its sources, and the scope around it."""

    sources: list[Source] = field(default_factory=list)
    outer: Scope | None = None
    pending: list[str] = field(default_factory=list)  # join conditions of comma joins


class QueryGenerator:
    """Draws one random, deterministic SELECT at a time from a seed."""

    def __init__(self, seed: int, *, max_depth: int = 2, parameters: bool = False) -> None:
        self.rng = random.Random(seed)
        self.max_depth = max_depth
        self.parameters = parameters
        self.params: dict[str, Any] = {}

    # ------------------------------------------------------------------ top level

    def query(self) -> str:
        r = self.rng.random()
        if r < 0.15:
            return self._set_operation()
        if r < 0.35:
            return self._with_cte()
        return self._select(depth=0, top=True)

    def _with_cte(self) -> str:
        name = self.rng.choice(["recent", "x", "orders_cte", "o"])
        body, columns = self._projection_query(depth=1)
        main = self._select(depth=0, top=True, extra_tables={name: columns})
        return f"WITH {name} AS ({body}) {main}"

    def _set_operation(self) -> str:
        table = self.rng.choice(list(TABLES))
        column = self.rng.choice([c for c, t in TABLES[table].items() if t == TEXT])
        op = self.rng.choice(["UNION", "UNION ALL", "INTERSECT", "EXCEPT", "EXCEPT ALL"])
        other = self.rng.choice([t for t, cols in TABLES.items() if TEXT in cols.values()])
        other_col = self.rng.choice([c for c, t in TABLES[other].items() if t == TEXT])
        alias = self._alias()
        where = self._where(Scope(sources=[Source(alias, table, TABLES[table])]), depth=1)
        left = f"SELECT {alias}.{column} AS v FROM {table} {alias}" + (f" WHERE {where}" if where else "")
        right = f"SELECT {other_col} FROM {other} {self._alias()}"
        tail = " ORDER BY v NULLS FIRST LIMIT 20" if self.rng.random() < 0.5 else ""
        return f"{left} {op} {right}{tail}"

    # ------------------------------------------------------------------ one SELECT

    def _select(self, depth: int, top: bool = False, outer: Scope | None = None,
                extra_tables: dict[str, dict[str, str]] | None = None) -> str:
        scope = Scope(outer=outer)
        from_sql = self._from(scope, depth, extra_tables or {})
        where = self._where(scope, depth)
        if self.rng.random() < 0.4:
            return self._aggregate(scope, from_sql, where, top)
        columns = self._pick_columns(scope, self.rng.randint(1, 4))
        projections = [f"{s.alias}.{c} AS c{i}" for i, (s, c) in enumerate(columns)]
        if self.rng.random() < 0.3:
            projections.append(f"{self._expression(scope)} AS e0")
        if self.rng.random() < 0.2 and top:
            projections.append(self._window(scope) + " AS w0")
        distinct = "DISTINCT " if self.rng.random() < 0.15 else ""
        sql = f"SELECT {distinct}{', '.join(projections)} FROM {from_sql}"
        if where:
            sql += f" WHERE {where}"
        if top and self.rng.random() < 0.5:
            sql += self._order_limit(len(projections))
        return sql

    def _aggregate(self, scope: Scope, from_sql: str, where: str, top: bool) -> str:
        keys = self._pick_columns(scope, self.rng.randint(0, 2))
        groups = [f"{s.alias}.{c}" for s, c in keys]
        aggregates = []
        for i in range(self.rng.randint(1, 3)):
            aggregates.append(f"{self._aggregate_call(scope)} AS g{i}")
        projections = [f"{g} AS k{i}" for i, g in enumerate(groups)] + aggregates
        sql = f"SELECT {', '.join(projections)} FROM {from_sql}"
        if where:
            sql += f" WHERE {where}"
        if groups:
            sql += f" GROUP BY {', '.join(groups)}"
            if self.rng.random() < 0.3:
                sql += f" HAVING count(*) {self.rng.choice(CMP)} {self.rng.randint(0, 5)}"
        if top and self.rng.random() < 0.5:
            sql += self._order_limit(len(projections))
        return sql

    def _order_limit(self, width: int) -> str:
        keys = [f"{i + 1} {self.rng.choice(['ASC', 'DESC'])} NULLS {self.rng.choice(['FIRST', 'LAST'])}"
                for i in range(width)]
        sql = f" ORDER BY {', '.join(keys)}"
        if self.rng.random() < 0.8:
            sql += f" LIMIT {self.rng.randint(0, 30)}"
            if self.rng.random() < 0.3:
                sql += f" OFFSET {self.rng.randint(0, 10)}"
        return sql

    # ------------------------------------------------------------------ FROM

    def _from(self, scope: Scope, depth: int, extra: dict[str, dict[str, str]]) -> str:
        chosen = self._join_path(self.rng.choices([1, 2, 3, 4], [3, 4, 3, 2])[0])
        parts, pending = [], []
        inner_only = self.rng.random() < 0.5  # all inner: joins a source may run itself
        for i, (table, link) in enumerate(chosen):
            taken = {s.alias for s in scope.sources}
            text, source = self._source(table, depth, extra if i == 0 else {}, taken)
            if link is None:
                parts.append(text)
            else:
                left, left_col, right_col = scope.sources[link[0]], link[1], link[2]
                if left_col not in left.columns or right_col not in source.columns:
                    break  # a derived table without the key: no cross product of the rest
                condition = f"{left.alias}.{left_col} = {source.alias}.{right_col}"
                join = "JOIN" if inner_only else self.rng.choice(JOINS)
                if join == "JOIN" and self.rng.random() < 0.2:
                    parts.append(f", {text}")
                    pending.append(condition)
                else:
                    parts.append(f" {join} {text} ON {condition}")
            scope.sources.append(source)
        scope.pending = pending
        return "".join(parts)

    def _join_path(self, n: int) -> list[tuple[str, tuple[int, str, str] | None]]:
        """Tables linked by the shop's keys: (table, (index of the left table, its column,
        this table's column))."""
        chosen: list = [(self.rng.choice(list(TABLES)), None)]
        for _ in range(n - 1):
            options = []
            for i, (table, _) in enumerate(chosen):
                for a, ac, b, bc in EDGES:
                    if a == table:
                        options.append((b, (i, ac, bc)))
                    if b == table:
                        options.append((a, (i, bc, ac)))
            chosen.append(self.rng.choice(options))
        return chosen

    def _source(self, table: str, depth: int, extra: dict[str, dict[str, str]], taken: set[str]):
        alias = self.rng.choice([a for a in ALIASES if a not in taken])
        if extra and self.rng.random() < 0.7:
            name, columns = next(iter(extra.items()))
            return f"{name} {alias}", Source(alias, name, columns)
        if depth < self.max_depth and self.rng.random() < 0.15:
            body, columns = self._projection_query(depth + 1, table=table)
            return f"({body}) {alias}", Source(alias, table, columns)
        return f"{table} {alias}", Source(alias, table, TABLES[table])

    def _projection_query(self, depth: int, table: str | None = None) -> tuple[str, dict[str, str]]:
        """A derived table or CTE body with known output columns (named as the table's)."""
        table = table or self.rng.choice(list(TABLES))
        alias = self._alias()
        columns = dict(self.rng.sample(list(TABLES[table].items()),
                                       self.rng.randint(1, len(TABLES[table]))))
        keys = {ac for a, ac, _, _ in EDGES if a == table} | {bc for _, _, b, bc in EDGES if b == table}
        for column in sorted(keys):
            columns.setdefault(column, TABLES[table][column])
        inner = Scope(sources=[Source(alias, table, TABLES[table])])
        select = ", ".join(f"{alias}.{c}" for c in columns)
        sql = f"SELECT {select} FROM {table} {alias}"
        where = self._where(inner, depth)
        if where:
            sql += f" WHERE {where}"
        if self.rng.random() < 0.2:  # a top-N the source may run: ordered by every column
            order = ", ".join(f"{alias}.{c} {self.rng.choice(['ASC', 'DESC'])} NULLS "
                              f"{self.rng.choice(['FIRST', 'LAST'])}" for c in columns)
            sql += f" ORDER BY {order} LIMIT {self.rng.randint(1, 40)}"
        return sql, columns

    # ------------------------------------------------------------------ WHERE

    def _where(self, scope: Scope, depth: int) -> str:
        conditions = list(scope.pending)
        for _ in range(self.rng.choices([0, 1, 2, 3], [3, 4, 2, 1])[0]):
            conditions.append(self._predicate(scope, depth))
        if len(conditions) > 1 and self.rng.random() < 0.2:
            i = self.rng.randrange(len(conditions) - 1)
            conditions[i:i + 2] = [f"({conditions[i]} OR {conditions[i + 1]})"]
        return " AND ".join(conditions)

    def _predicate(self, scope: Scope, depth: int) -> str:
        r = self.rng.random()
        if depth < self.max_depth and r < 0.16:
            return self._in_subquery(scope, depth)
        if depth < self.max_depth and r < 0.26:
            return self._exists(scope, depth)
        if depth < self.max_depth and r < 0.32:
            return self._scalar_subquery(scope, depth)
        source, column = self._pick_columns(scope, 1)[0]
        ref = f"{source.alias}.{column}"
        kind = source.columns[column]
        r = self.rng.random()
        if r < 0.15:
            return f"{ref} IS {self.rng.choice(['', 'NOT '])}NULL"
        if kind == TEXT:
            if r < 0.4:
                values = ", ".join(self._literal(column, kind) for _ in range(self.rng.randint(1, 3)))
                return f"{ref} {self.rng.choice(['', 'NOT '])}IN ({values})"
            if r < 0.55:
                return f"{ref} LIKE '{self.rng.choice(['%a%', 'A%', '%_%', '%'])}'"
            return f"{ref} {self.rng.choice(CMP)} {self._literal(column, kind)}"
        if kind == TS:
            low = self.rng.randint(1, 11)
            return f"{ref} BETWEEN TIMESTAMP '2024-{low:02d}-01' AND TIMESTAMP '2024-{low + 1:02d}-15'"
        if r < 0.35:
            low = self.rng.randint(0, 300)
            return f"{ref} BETWEEN {low} AND {low + self.rng.randint(0, 300)}"
        return f"{ref} {self.rng.choice(CMP)} {self._literal(column, kind)}"

    def _link(self, scope: Scope) -> tuple[Source, str, str, str] | None:
        """A source of the scope and a key joining it to another table: (source, its column,
        the other table, that table's column), or None."""
        a, ac, b, bc = self.rng.choice(EDGES)
        outer = self._source_of(scope, a) or self._source_of(scope, b)
        if outer is None:
            return None
        column, table, target = (ac, b, bc) if outer.table == a else (bc, a, ac)
        return (outer, column, table, target) if column in outer.columns else None

    def _in_subquery(self, scope: Scope, depth: int) -> str:
        link = self._link(scope)
        if link is None:
            return "TRUE"
        outer, column, table, target = link
        alias = self._alias()  # often an alias of the scope around: a reuse on purpose
        inner = Scope(sources=[Source(alias, table, TABLES[table])], outer=scope)
        where = self._where(inner, depth + 1)
        body = f"SELECT {alias}.{target} FROM {table} {alias}" + (f" WHERE {where}" if where else "")
        negate = "NOT " if self.rng.random() < 0.25 else ""
        if negate:  # NOT IN over NULLs is empty: keep it, DuckDB and fedquery must agree
            body += f" AND {alias}.{target} IS NOT NULL" if where else f" WHERE {alias}.{target} IS NOT NULL"
        return f"{outer.alias}.{column} {negate}IN ({body})"

    def _exists(self, scope: Scope, depth: int) -> str:
        link = self._link(scope)
        if link is None:
            return "TRUE"
        outer, column, table, target = link
        alias = self._alias()
        if alias == outer.alias:
            alias = alias + "2"  # a correlated reference must reach the outer source
        inner = Scope(sources=[Source(alias, table, TABLES[table])], outer=scope)
        where = self._where(inner, depth + 1)
        condition = f"{alias}.{target} = {outer.alias}.{column}" + (f" AND {where}" if where else "")
        negate = "NOT " if self.rng.random() < 0.3 else ""
        return f"{negate}EXISTS (SELECT 1 FROM {table} {alias} WHERE {condition})"

    def _scalar_subquery(self, scope: Scope, depth: int) -> str:
        numeric = [(s, c) for s in scope.sources for c, t in s.columns.items() if t in NUMERIC]
        if not numeric:
            return "TRUE"
        source, column = self.rng.choice(numeric)
        table = self.rng.choice([t for t, cols in TABLES.items() if any(v in NUMERIC for v in cols.values())])
        inner_col = self.rng.choice([c for c, t in TABLES[table].items() if t in NUMERIC])
        alias = self._alias()
        inner = Scope(sources=[Source(alias, table, TABLES[table])], outer=scope)
        where = self._where(inner, depth + 1)
        agg = self.rng.choice(["max", "min", "count", "avg"])
        body = f"SELECT {agg}({alias}.{inner_col}) FROM {table} {alias}"
        body += f" WHERE {where}" if where else ""
        return f"{source.alias}.{column} {self.rng.choice(CMP)} ({body})"

    # ------------------------------------------------------------------ expressions

    def _expression(self, scope: Scope) -> str:
        source, column = self._pick_columns(scope, 1)[0]
        ref, kind = f"{source.alias}.{column}", source.columns[column]
        if kind in NUMERIC:
            return self.rng.choice([f"{ref} * 2 + 1", f"{ref} / 4", f"{ref} // 3", f"{ref} % 7",
                                    f"abs({ref} - 100)", f"CASE WHEN {ref} > 50 THEN 'big' ELSE 'small' END",
                                    f"coalesce({ref}, -1)", f"round({ref} / 3.0, 2)"])
        if kind == TS:
            return self.rng.choice([f"date_trunc('month', {ref})", f"extract(hour FROM {ref})",
                                    f"CAST({ref} AS DATE)", f"strftime({ref}, '%Y-%m')"])
        return self.rng.choice([f"upper({ref})", f"length({ref})", f"coalesce({ref}, '?')",
                                f"{ref} || '-x'", f"substr({ref}, 2, 3)", f"lower({ref}) LIKE '%o%'",
                                f"replace({ref}, 'a', 'A')", f"CASE {ref} WHEN 'DE' THEN 1 ELSE 0 END"])

    def _aggregate_call(self, scope: Scope) -> str:
        numeric = [(s, c) for s in scope.sources for c, t in s.columns.items() if t in NUMERIC]
        any_col = self._pick_columns(scope, 1)[0]
        options = ["count(*)", f"count({any_col[0].alias}.{any_col[1]})",
                   f"count(DISTINCT {any_col[0].alias}.{any_col[1]})"]
        if numeric:
            s, c = self.rng.choice(numeric)
            options += [f"sum({s.alias}.{c})", f"min({s.alias}.{c})", f"max({s.alias}.{c})",
                        f"avg({s.alias}.{c})", f"sum({s.alias}.{c}) FILTER (WHERE {s.alias}.{c} > 3)"]
        return self.rng.choice(options)

    def _window(self, scope: Scope) -> str:
        keyed = [s for s in scope.sources if UNIQUE.get(s.table) in s.columns]
        partition_source, partition = self._pick_columns(scope, 1)[0]
        if keyed and len(scope.sources) == 1:
            key = keyed[0]
            return (f"row_number() OVER (PARTITION BY {partition_source.alias}.{partition} "
                    f"ORDER BY {key.alias}.{UNIQUE[key.table]})")
        numeric = [(s, c) for s in scope.sources for c, t in s.columns.items() if t in NUMERIC]
        if numeric:
            s, c = self.rng.choice(numeric)
            return f"sum({s.alias}.{c}) OVER (PARTITION BY {partition_source.alias}.{partition})"
        return f"count(*) OVER (PARTITION BY {partition_source.alias}.{partition})"

    # ------------------------------------------------------------------ helpers

    def _pick_columns(self, scope: Scope, n: int) -> list[tuple[Source, str]]:
        pairs = [(s, c) for s in scope.sources for c in s.columns]
        return self.rng.sample(pairs, min(n, len(pairs)))

    def _source_of(self, scope: Scope, table: str) -> Source | None:
        found = [s for s in scope.sources if s.table == table]
        return self.rng.choice(found) if found else None

    def _alias(self) -> str:
        return self.rng.choice(ALIASES)

    def _literal(self, column: str, kind: str) -> str:
        if kind == TEXT:
            value: Any = self.rng.choice(VALUES.get(column, ["a", "it's"]))
            text = "'" + value.replace("'", "''") + "'"
        elif kind == DEC:
            value = decimal.Decimal(f"{self.rng.randint(0, 500)}.{self.rng.randint(0, 99):02d}")
            text = str(value)
        else:
            value = self.rng.choice([0, 1, 3, 7, 42, 150, 300, 600, 2000, -1])
            text = str(value)
        if self.parameters and self.rng.random() < 0.4:
            name = f"p{len(self.params)}"
            self.params[name] = value
            return f"${name}"
        return text


def generate(seed: int, count: int) -> list[str]:
    """``count`` queries from ``seed`` (the same list every time)."""
    return [QueryGenerator(seed * 100_003 + i).query() for i in range(count)]


def generate_with_parameters(seed: int, count: int) -> list[tuple[str, Any]]:
    """``count`` (query, params) pairs: literals replaced by ``$p0``... (values in a dict) or,
    for one query in three, by ``?`` (values in a list, in the order they appear)."""
    pairs = []
    for i in range(count):
        generator = QueryGenerator(seed * 100_003 + i, parameters=True)
        sql, params = generator.query(), generator.params
        if params and generator.rng.random() < 0.33:
            order = [m.group(1) for m in re.finditer(r"\$(p\d+)\b", sql)]
            sql = re.sub(r"\$p\d+\b", "?", sql)
            pairs.append((sql, [params[name] for name in order]))
        else:
            pairs.append((sql, {k: v for k, v in params.items() if f"${k}" in sql} or None))
    return pairs


def main(argv: list[str] | None = None) -> int:
    """Run a campaign: generate, answer with fedquery and DuckDB, print every mismatch."""
    import argparse
    import collections
    import contextlib
    import tempfile
    from pathlib import Path

    import fedquery
    from tests.conftest import build_unseen, reference_connection
    from tests.fuzz_check import Mismatch, check
    from tests.fuzz_layouts import LAYOUTS, layout_catalog
    from tests.services.launch import postgres_server
    from tests.services.postgres import PgDatabase, load_shop, shop_catalog_in_postgres

    parser = argparse.ArgumentParser(prog="python -m tests.sqlfuzz")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", choices=["local", "pg", *LAYOUTS], default="local")
    parser.add_argument("--params", action="store_true", help="literals as $p0 / ? parameters")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="ray: the Ray engine (a local cluster unless FEDQUERY_RAY_ADDRESS)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        root = Path(folder)
        catalog = build_unseen(root)
        if args.config == "pg":
            dsn = stack.enter_context(postgres_server())
            load_shop(PgDatabase("postgres", dsn), root)
            catalog = shop_catalog_in_postgres(catalog, dsn)
        ref = reference_connection(root)
        if args.config in LAYOUTS:
            (root / args.config).mkdir()
            catalog = layout_catalog(args.config, root / args.config, catalog, ref)
        con = fedquery.connect(catalog, engine=args.engine)
        outcomes: collections.Counter = collections.Counter()
        residuals: collections.Counter = collections.Counter()  # ray: where residuals ran
        pairs = (generate_with_parameters(args.seed, args.count) if args.params
                 else [(sql, None) for sql in generate(args.seed, args.count)])
        for i, (sql, params) in enumerate(pairs):
            if args.engine == "ray":
                con._session.engine.last_residual = None
            try:
                outcomes[check(con, ref, sql, params)] += 1
                if args.engine == "ray":
                    residuals[con._session.engine.last_residual] += 1
            except Mismatch as exc:
                outcomes["mismatch"] += 1
                print(f"--- query {i} (seed {args.seed}) params={params!r}\n{exc}\n", flush=True)
        print(dict(outcomes), f"residuals: {dict(residuals)}" if args.engine == "ray" else "")
        return 1 if outcomes["mismatch"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
