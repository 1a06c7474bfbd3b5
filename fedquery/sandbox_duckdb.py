"""The second reading: DuckDB's own parser must find in a query only what fedquery's checks saw.

sqlglot and DuckDB read some texts differently (``FROM mod('x', 1)`` is a table named ``x`` to
sqlglot and a table function to DuckDB; ``FROM apply('x')`` a table with column aliases to one
and a call to the other). The executor hands DuckDB the user's text to describe and sqlglot's
rendering to run, so each is read again by DuckDB's parser (``json_serialize_sql``: nothing is
bound or run) and refused unless, as DuckDB reads it, every table function is allowed, every
function is on the allow-list, and every table is a CTE in scope or a name fedquery's reading
binds to the catalog (which the binder then checks).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from fedquery.bind import cte_for, reserved_name
from fedquery.errors import ForbiddenError, PlanError
from fedquery.sandbox_functions import (
    check_bare_name,
    check_function,
    check_table_function,
    fold,
    parse_with_duckdb,
)

# DuckDB's TableReferenceType names, and the ones a query may hold.
TABLE_REF_TYPES = {"INVALID", "BASE_TABLE", "SUBQUERY", "JOIN", "TABLE_FUNCTION", "EXPRESSION_LIST",
                   "CTE", "EMPTY", "EMPTY_FROM", "PIVOT", "SHOW_REF", "COLUMN_DATA", "DELIM_GET",
                   "BOUND_TABLE_REF"}
ALLOWED_TABLE_REFS = {"BASE_TABLE", "TABLE_FUNCTION", "SUBQUERY", "JOIN", "EMPTY",
                      "EXPRESSION_LIST", "PIVOT"}
SHOW_TABLES = {'"tables"', "__show_tables_expanded"}
# DuckDB samples the FROM result before WHERE; fedquery applies WHERE, LIMIT and top-k at the
# sources, below where the residual would sample: the answer would change.
USING_SAMPLE = ("USING SAMPLE is not supported: fedquery applies the query's filters and limits "
                "at the sources, before DuckDB would take the sample, which changes the answer; "
                "sample a table instead (FROM frames TABLESAMPLE 10%, or TABLESAMPLE 100 ROWS)")


def check_duckdb_reading(sql: str, trees: list[exp.Expr]) -> None:
    """Refuse ``sql`` unless DuckDB's parser reads in it only what the checks of ``trees``
    (fedquery's reading of the same text) allowed."""
    parsed = parse_with_duckdb(sql)
    if parsed.get("error"):
        _unreadable(parsed)
        return
    statements = parsed["statements"]
    if len(statements) != len(trees):
        raise ForbiddenError(f"DuckDB reads {len(statements)} statement(s) in this text where "
                             f"fedquery reads {len(trees)}: write one plain query")
    reader = _Reader(_catalog_names(trees))
    for statement in statements:
        reader.statement(statement["node"])


def _unreadable(parsed: dict[str, Any]) -> None:
    """A text DuckDB cannot parse it cannot run either; one it parses as another kind of
    statement is refused."""
    message = parsed.get("error_message", "")
    if message.startswith("Only SELECT statements"):
        raise ForbiddenError("DuckDB reads this as a statement other than a query: fedquery is "
                             "read-only (SELECT, WITH, VALUES, DESCRIBE, SHOW TABLES)")
    if parsed.get("error_type") not in ("parser", "not implemented"):
        raise ForbiddenError(f"the query could not be checked: {message}")


def _catalog_names(trees: list[exp.Expr]) -> set[str]:
    """The names fedquery binds to the catalog (or refuses), folded and dotted."""
    return {".".join(fold(p.name) for p in table.parts)
            for tree in trees for table in tree.find_all(exp.Table)
            if not isinstance(table.this, exp.Func) and table.name and cte_for(table) is None}


def _table_ref_type(node: dict[str, Any]) -> str | None:
    """The ``type`` of a table reference; other nodes may hold a mapping there (a constant's
    value type, as in ``USING SAMPLE 1``)."""
    kind = node.get("type")
    return kind if isinstance(kind, str) else None


class _Reader:
    """Walks DuckDB's parse tree with the CTE names in scope."""

    def __init__(self, catalog_names: set[str]) -> None:
        self.catalog_names = catalog_names

    def statement(self, node: dict[str, Any]) -> None:
        show = node.get("from_table") or {}
        if show.get("type") == "SHOW_REF":  # DESCRIBE ..., SHOW TABLES: answered by fedquery
            if show.get("show_type") == "DESCRIBE" and show.get("query"):
                self.walk(show["query"], frozenset())
            elif show.get("show_type") != "SHOW_SPECIAL" or show.get("table_name") not in SHOW_TABLES:
                raise ForbiddenError(f"{show.get('show_type', 'SHOW').lower()} is not allowed: "
                                     "only DESCRIBE and SHOW TABLES")
            return
        self.walk(node, frozenset())

    def walk(self, node: Any, ctes: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, ctes)
            return
        if not isinstance(node, dict):
            return
        if "class" not in node and _table_ref_type(node) in TABLE_REF_TYPES:
            self.table_ref(node, ctes)
            return
        if "cte_map" in node:
            ctes = self._ctes(node["cte_map"], ctes)
        if node.get("type") == "SELECT_NODE" and node.get("sample"):
            raise PlanError(USING_SAMPLE)
        if node.get("type") == "RECURSIVE_CTE_NODE":  # the name is defined in the recursive term
            self.walk(node["left"], ctes)
            self.walk(node["right"], ctes | {fold(node["cte_name"])})
            return
        if node.get("class") == "FUNCTION":
            check_function(node["function_name"])
        elif node.get("class") == "COLUMN_REF" and len(node.get("column_names", [])) == 1:
            check_bare_name(node["column_names"][0])
        if "from_table" in node:
            self.table_ref(node["from_table"], ctes)
        self._rest(node, ctes, "cte_map", "from_table")

    def _rest(self, node: dict[str, Any], ctes: frozenset[str], *done: str) -> None:
        for key, value in node.items():
            if key not in done:
                self.walk(value, ctes)

    def _ctes(self, cte_map: dict[str, Any], ctes: frozenset[str]) -> frozenset[str]:
        """Each CTE's body sees the CTEs before it; the query sees them all."""
        for entry in cte_map.get("map", []):
            self.walk(entry["value"]["query_node"], ctes)
            ctes = ctes | {fold(entry["key"])}
        return ctes

    def table_ref(self, ref: dict[str, Any], ctes: frozenset[str]) -> None:
        """One table reference: a table, a table function, a join, a subquery, VALUES, PIVOT."""
        kind = ref.get("type") if isinstance(ref, dict) else None
        if kind not in ALLOWED_TABLE_REFS:
            raise ForbiddenError(f"{str(kind).lower()} is not allowed inside a query")
        if kind == "BASE_TABLE":
            self._table(ref, ctes)
        elif kind == "TABLE_FUNCTION":
            function = ref["function"]
            check_table_function(function["function_name"],
                                 qualified=bool(function.get("schema") or function.get("catalog")))
            self.walk(function.get("arguments"), ctes)
            self._rest(ref, ctes, "function")
        elif kind == "JOIN":
            self.table_ref(ref["left"], ctes)
            self.table_ref(ref["right"], ctes)
            self._rest(ref, ctes, "left", "right")
        elif kind == "PIVOT":
            self.table_ref(ref["source"], ctes)
            self._rest(ref, ctes, "source")
        else:
            self._rest(ref, ctes)

    def _table(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        # DuckDB evaluates the expressions of AT (VERSION => ...) and TABLESAMPLE when it binds
        self.walk([node.get("at_clause"), node.get("sample")], ctes)
        parts = [p for p in (node.get("catalog_name"), node.get("schema_name"), node["table_name"]) if p]
        if len(parts) == 1 and fold(parts[0]) in ctes:
            return
        reserved = reserved_name(parts)
        if reserved:
            raise ForbiddenError(reserved)
        if ".".join(fold(p) for p in parts) not in self.catalog_names:
            raise ForbiddenError(f"DuckDB would read {'.'.join(parts)!r} as a table where "
                                 "fedquery reads none (the two parsers disagree on this text)")

