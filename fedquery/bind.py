"""Name resolution: every table a query names becomes ``source.schema.table`` of the catalog.

A one-part name is a CTE where a WITH in scope defines it (as DuckDB resolves names); other
names are catalog names (``frames``) and, for SQL sources, ``<source>.<table>`` and
``<source>.<schema>.<table>``. Anything else is a ``PlanError`` with a suggestion, or a
``ForbiddenError`` for a file path (``FROM 'x.csv'``), a system view or catalog
(``pg_settings``, ``system.main.x``) or an internal name (``__f0``). A last pass checks that
every table position holds a bound table, a CTE in scope or an allowed table function.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sqlglot import exp

from fedquery.connectors.base import TableRef
from fedquery.errors import ForbiddenError, PlanError
from fedquery.parse import DIALECT
from fedquery.sandbox_functions import (
    SYSTEM_CATALOGS,
    SYSTEM_SCHEMAS,
    check_table_function,
    fold,
    is_internal,
    system_views,
    table_function_name,
)

SOURCE = "source"  # meta key of a bound exp.Table: the source it lives in
_LOOKS_LIKE_FILE = re.compile(r"[/\\]|\.[A-Za-z0-9]{1,8}$|^[a-z]+://")
_PATH = re.compile(r"[/\\]|^[a-z]+:")


@dataclass(frozen=True)
class BoundTable:
    """A table of one source, as the planner knows it."""

    source: str
    ref: TableRef

    @property
    def key(self) -> str:
        return f"{self.source}.{self.ref.schema}.{self.ref.name}"


class TableIndex:
    """Every name SQL may use for a table, mapped to its ``BoundTable``."""

    def __init__(self) -> None:
        self._names: dict[str, BoundTable] = {}
        self.catalog_names: dict[str, BoundTable] = {}

    def add(self, bound: BoundTable, *names: str) -> None:
        for name in names:
            self._names.setdefault(fold(name), bound)

    def add_catalog_table(self, name: str, bound: BoundTable) -> None:
        self.catalog_names[name] = bound
        self._names[fold(name)] = bound

    def remove(self, name: str) -> None:
        """Forget a name added by ``add_catalog_table`` (a table registered from Python)."""
        self.catalog_names.pop(name, None)
        self._names.pop(fold(name), None)

    def add_source_table(self, bound: BoundTable, default_schema: str) -> None:
        """A table of a SQL source, reachable as source.table and source.schema.table."""
        self.add(bound, bound.key)
        if bound.ref.schema == default_schema:
            self.add(bound, f"{bound.source}.{bound.ref.name}")

    def lookup(self, name: str) -> BoundTable | None:
        return self._names.get(fold(name))

    def sources(self) -> set[str]:
        """The sources the names lead to, folded."""
        return {fold(bound.source) for bound in self._names.values()}

    def suggest(self, name: str) -> str:
        names = sorted(set(self.catalog_names) | {n for n in self._names if "." in n})
        hint = difflib.get_close_matches(fold(name), names, n=1, cutoff=0.6)
        return f" (did you mean {hint[0]!r}?)" if hint else ""

    def names(self) -> list[str]:
        """Every name a query may use for a table."""
        return list(self._names)


def bind_tables(expression: exp.Expr, index: TableIndex) -> exp.Expr:
    """Rewrite table references to ``source.schema.table AS alias``; mark them with meta.

    A one-part name is a CTE only where DuckDB sees that CTE (``cte_for``); every other name
    must be a catalog table, and after binding every table position must hold a bound table,
    a CTE in scope or an allowed table function (``check_resolved``)."""
    for table in list(expression.find_all(exp.Table)):
        if isinstance(table.this, exp.Func) or not table.name or cte_for(table) is not None:
            continue  # a table without a name is refused by check_resolved
        parts = [p.name for p in table.parts]
        reserved = reserved_name(parts)
        bound = None if reserved else index.lookup(".".join(parts))
        if bound is None:
            raise ForbiddenError(reserved) if reserved else _unknown(parts, index)
        if table.args.get("when") or table.args.get("version"):
            raise PlanError(f"time travel in SQL ({table.sql(DIALECT)!r}) is not supported: "
                            "declare a catalog table pinned to the snapshot or version "
                            "(snapshot_id, as_of or ref for iceberg; version or as_of for delta)")
        _rewrite(table, bound)
    check_resolved(expression, index)
    return expression


def cte_for(table: exp.Table) -> exp.CTE | None:
    """The CTE a table name refers to where it stands, as DuckDB resolves it, else None.

    Walking out from the table: a WITH of an enclosing query defines its CTEs for the whole
    query; inside a CTE's body only the earlier CTEs of its WITH are defined, and the CTE itself
    only in the recursive term (right of a UNION, not BY NAME) of a WITH RECURSIVE. sqlglot's
    Scope also lets a recursive CTE's anchor see itself; DuckDB does not, so DuckDB is followed.
    Names compare as DuckDB compares them (``fold``); qualified names are never CTEs.
    """
    if table.args.get("db") or table.args.get("catalog") or not isinstance(table.this, exp.Identifier):
        return None
    name, child, node = fold(table.name), table, table.parent
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            ctes = node.expressions[:next(i for i, c in enumerate(node.expressions) if c is child)]
            if node.args.get("recursive") and _in_recursive_term(table, child):
                ctes.append(child)
            child, node = node.parent, node.parent.parent if node.parent else None
        else:
            with_ = node.args.get("with_")
            ctes = with_.expressions if isinstance(with_, exp.With) and with_ is not child else []
            child, node = node, node.parent
        found = next((c for c in ctes if fold(c.alias_or_name) == name), None)
        if found is not None:
            return found
    return None


def _in_recursive_term(table: exp.Table, cte: exp.CTE) -> bool:
    body = cte.this
    while isinstance(body, exp.Subquery):
        body = body.this
    if not isinstance(body, exp.Union) or body.args.get("by_name"):
        return False
    term = body.expression
    return any(node is term for node in _ancestors(table))


def _ancestors(node: exp.Expr):
    while node is not None:
        yield node
        node = node.parent


def reserved_name(parts: list[str]) -> str | None:
    """Why a table name is never a catalog table, or None: internal names (``__f0``), DuckDB's
    system catalogs and schemas (``system.main.x``, ``pg_catalog.x``) and system views."""
    folded = [fold(p) for p in parts]
    if any(is_internal(p) for p in folded):
        return f"{'.'.join(parts)!r} is an internal name: query the catalog's tables"
    if folded[0] in SYSTEM_CATALOGS | SYSTEM_SCHEMAS or (len(folded) == 3 and folded[1] in SYSTEM_SCHEMAS):
        return (f"{'.'.join(parts)!r} is one of DuckDB's system objects, not a catalog table: "
                "query the catalog's tables (SHOW TABLES lists them)")
    if len(folded) <= 2 and folded[-1] in system_views():
        return (f"{'.'.join(parts)!r} is one of DuckDB's system views, not a catalog table: "
                "query the catalog's tables (SHOW TABLES lists them)")
    return None


def check_resolved(expression: exp.Expr, index: TableIndex) -> None:
    """Refuse anything in a table position that is not a bound table, a CTE in scope or an
    allowed table function, and function calls qualified by a source or a system catalog
    (they would reach macros stored in a source's database file)."""
    for node in expression.walk():
        if isinstance(node, exp.Table):
            _check_table(node)
        elif isinstance(node, exp.From | exp.Join) and not isinstance(node.this, TABLE_SOURCES):
            raise ForbiddenError(f"{node.this.sql(DIALECT)!r} cannot be read as a table")
        elif isinstance(node, exp.Lateral) and not isinstance(node.this, exp.Subquery | exp.Query):
            _check_table_function_node(node.this)
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            _check_qualified_call(node, index)


TABLE_SOURCES = (exp.Table, exp.Subquery, exp.Unnest, exp.Lateral, exp.Values)


def _check_table(table: exp.Table) -> None:
    if isinstance(table.this, exp.Func):
        _check_table_function_node(table.this, qualified=bool(table.args.get("db")))
    elif SOURCE not in table.meta and cte_for(table) is None:
        raise ForbiddenError(f"table {table.sql(DIALECT)!r} resolves to no catalog table")


def _check_table_function_node(func: exp.Expr, *, qualified: bool = False) -> None:
    if not isinstance(func, exp.Func):
        raise ForbiddenError(f"{func.sql(DIALECT)!r} cannot be read as a table")
    check_table_function(table_function_name(func), qualified=qualified)


def _check_qualified_call(dot: exp.Dot, index: TableIndex) -> None:
    first = dot
    while isinstance(first, exp.Dot):
        first = first.this
    if isinstance(first, exp.Column):
        first = first.parts[0]
    qualifier = fold(first.name) if isinstance(first, exp.Identifier) else ""
    if qualifier in SYSTEM_CATALOGS | SYSTEM_SCHEMAS | {"main"} | index.sources():
        name = dot.expression.name if isinstance(dot.expression, exp.Anonymous) else dot.expression.sql_name()
        raise ForbiddenError(f"{dot.sql(DIALECT)!r}: functions are called by their name alone "
                             f"(write {name.lower()}(...) without {first.name!r})")


def _rewrite(table: exp.Table, bound: BoundTable) -> None:
    alias = table.alias or table.name
    table.set("catalog", exp.to_identifier(bound.source))
    table.set("db", exp.to_identifier(bound.ref.schema))
    table.set("this", exp.to_identifier(bound.ref.name))
    if not table.args.get("alias"):
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    table.meta[SOURCE] = bound.source


def _unknown(parts: list[str], index: TableIndex) -> Exception:
    name = ".".join(parts)
    if (len(parts) == 1 and _LOOKS_LIKE_FILE.search(name)) or is_path(parts):
        return file_access(name)
    return PlanError(f"unknown table {name!r}{index.suggest(name)}")


def is_path(parts: list[str]) -> bool:
    """A table name with a path separator or a URL scheme in it: never a catalog name."""
    return any(_PATH.search(p) for p in parts)


def file_access(name: str) -> ForbiddenError:
    return ForbiddenError(f"direct file access {name!r} is not allowed: declare the files as a "
                          "table in the catalog")
