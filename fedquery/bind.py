"""Name resolution: every table a query names becomes ``source.schema.table`` of the catalog.

Catalog names (``frames``) and, for SQL sources, ``<source>.<table>`` and
``<source>.<schema>.<table>`` resolve; anything else is a ``PlanError`` with a suggestion, or a
``ForbiddenError`` when it looks like a file path (``FROM 'x.csv'``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sqlglot import exp

from connectors.base import TableRef
from fedquery.errors import ForbiddenError, PlanError

SOURCE = "source"  # meta key of a bound exp.Table: the source it lives in
_LOOKS_LIKE_FILE = re.compile(r"[/\\]|\.[A-Za-z0-9]{1,8}$|^[a-z]+://")


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
            self._names.setdefault(name.lower(), bound)

    def add_catalog_table(self, name: str, bound: BoundTable) -> None:
        self.catalog_names[name] = bound
        self._names[name.lower()] = bound

    def add_source_table(self, bound: BoundTable, default_schema: str) -> None:
        """A table of a SQL source, reachable as source.table and source.schema.table."""
        self.add(bound, bound.key)
        if bound.ref.schema == default_schema:
            self.add(bound, f"{bound.source}.{bound.ref.name}")

    def lookup(self, name: str) -> BoundTable | None:
        return self._names.get(name.lower())

    def suggest(self, name: str) -> str:
        names = sorted(set(self.catalog_names) | {n for n in self._names if "." in n})
        hint = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
        return f" (did you mean {hint[0]!r}?)" if hint else ""

    def names(self) -> list[str]:
        """Every name a query may use for a table."""
        return list(self._names)


def bind_tables(expression: exp.Expr, index: TableIndex) -> exp.Expr:
    """Rewrite table references to ``source.schema.table AS alias``; mark them with meta."""
    ctes = {cte.alias_or_name.lower() for cte in expression.find_all(exp.CTE)}
    for table in list(expression.find_all(exp.Table)):
        if isinstance(table.this, exp.Func) or not table.name:
            continue
        name = ".".join(p.name for p in table.parts)
        if not table.db and name.lower() in ctes and not _in_own_cte(table, name):
            continue
        bound = index.lookup(name)
        if bound is None:
            raise _unknown(name, index, single_part=len(table.parts) == 1)
        _rewrite(table, bound)
    return expression


def _in_own_cte(table: exp.Table, name: str) -> bool:
    """A name read inside the body of the (non-recursive) CTE of that name: the table it
    shadows (``WITH frames AS (SELECT * FROM frames WHERE ...)``)."""
    cte = table.find_ancestor(exp.CTE)
    with_ = cte.parent if cte is not None else None
    return (cte is not None and cte.alias_or_name.lower() == name.lower()
            and not (isinstance(with_, exp.With) and with_.args.get("recursive")))


def _rewrite(table: exp.Table, bound: BoundTable) -> None:
    alias = table.alias or table.name
    table.set("catalog", exp.to_identifier(bound.source))
    table.set("db", exp.to_identifier(bound.ref.schema))
    table.set("this", exp.to_identifier(bound.ref.name))
    if not table.args.get("alias"):
        table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    table.meta[SOURCE] = bound.source


def _unknown(name: str, index: TableIndex, *, single_part: bool) -> Exception:
    if single_part and _LOOKS_LIKE_FILE.search(name):
        return ForbiddenError(f"direct file access {name!r} is not allowed: declare the files as "
                              "a table in the catalog")
    return PlanError(f"unknown table {name!r}{index.suggest(name)}")
