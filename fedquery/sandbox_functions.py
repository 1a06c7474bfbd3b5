"""Which functions and names a query may use, derived from DuckDB's own catalogue.

DuckDB 2.0 has about a thousand scalar, aggregate, window and macro functions; nearly all of them
compute on their arguments alone. The ones that reach beyond them (files, settings, secrets,
variables, the catalog, sequences, logs, the executor's own state) are denied here by name or
by family, after review; a macro is allowed only when its body, as DuckDB parses it, calls
allowed functions and reads no table. Table functions and table macros are a short allow-list:
anything else in a table position is refused. ``tests/test_sandbox_functions.py`` calls every
DuckDB function in every position to hold these lists to that.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

from sqlglot import exp

from fedquery.errors import ForbiddenError

ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "vector_search",
                                     "timeline"})
FEDQUERY_FUNCTIONS = frozenset({"image_info", "thumbnail", "read_blob", "pointcloud_info",
                                "read_pointcloud", "embed_image", "embed_text", "image_stats",
                                "pointcloud_stats"})
# Reviewed: what each of these reaches besides its arguments.
DENIED_FUNCTIONS = frozenset({
    # settings, environment, variables, secrets
    "current_setting", "getenv", "getvariable", "which_secret",
    # the catalog and the executor's state
    "current_database", "current_catalog", "current_schema", "current_schemas", "in_search_path",
    "current_query", "current_query_id", "current_connection_id", "current_transaction_id",
    "txid_current", "index_key", "stats",
    # files, SQL in a string, plans
    "read_blob", "read_text", "read_csv", "read_csv_auto", "read_json", "read_json_auto",
    "read_ndjson", "read_parquet", "parquet_scan", "glob", "query", "query_table", "sniff_csv",
    "json_execute_serialized_sql", "json_serialize_plan",
    # state a query would change for the next one, logs, sleeping
    "nextval", "currval", "setval", "setseed", "write_log", "sleep_ms", "pg_sleep",
    # the session's identity: pushed into a PostgreSQL source they name its role and server
    "current_user", "current_role", "session_user", "user", "version",
})
DENIED_PREFIXES = ("__", "duckdb_", "pragma_", "parquet_", "read_", "sniff_", "json_execute")
# Denied functions DuckDB also calls when written as a bare name (``SELECT current_schema``),
# where no column of that name is in scope; PostgreSQL does the same.
BARE_FUNCTIONS = frozenset({"current_catalog", "current_schema", "current_role", "current_user",
                            "session_user"})
# Names DuckDB's parser gives syntax that duckdb_functions() does not list as scalar.
SYNTAX_FUNCTIONS = frozenset({"unnest", "grouping", "grouping_id"})
SYSTEM_CATALOGS = frozenset({"system", "temp", "memory"})
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema"})

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """A name as DuckDB compares names: ASCII letters lower-cased, nothing else (so a Kelvin
    sign never equals ``k``, as it would with ``str.lower``)."""
    return name.translate(_ASCII_LOWER)


def is_denied(name: str) -> bool:
    """A function name on the reviewed deny-list, in a denied family, or one of DuckDB's
    PostgreSQL look-alikes (``pg_catalog``): their PostgreSQL namesakes read the server's
    catalog, privileges and addresses, and a fragment may carry them into a source."""
    name = fold(name)
    return (name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)
            or name in _pg_catalog_functions())


def is_internal(name: str) -> bool:
    """fedquery's and DuckDB's internal names (``__fq_keys``, ``__f0``, ``__internal_*``)."""
    return name.startswith("__")


def table_function_name(func: exp.Func) -> str:
    """The name DuckDB calls a function in a table position by (sqlglot types some of them)."""
    if isinstance(func, exp.Anonymous):
        return fold(func.name)
    if isinstance(func, exp.Unnest | exp.Explode):
        return "unnest"
    if isinstance(func, exp.GenerateSeries):
        return "range" if func.args.get("is_end_exclusive") else "generate_series"
    return fold(func.sql_name())


def check_table_function(name: str, *, qualified: bool = False) -> None:
    """Refuse a table function or table macro that is not on the short allow-list, or is named
    with a catalog or schema (a source's database file may hold a table macro of any name)."""
    if qualified:
        raise ForbiddenError(f"table function {name}() must be called by its name alone, "
                             "without a catalog or schema")
    if fold(name) not in ALLOWED_TABLE_FUNCTIONS:
        raise ForbiddenError(f"table function {name}() is not allowed: only "
                             f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))} and catalog tables")


def check_bare_name(name: str) -> None:
    """Refuse an unqualified column name that DuckDB (and PostgreSQL) would call as a function."""
    if fold(name) in BARE_FUNCTIONS:
        raise ForbiddenError(f"{name} is not allowed in fedquery queries (it names the session; "
                             f"a column of that name is read with its table: t.{name})")


def check_function(name: str) -> None:
    """Refuse a function that is not on the allow-list (DuckDB's, less the denied, and
    fedquery's own)."""
    if fold(name) not in allowed_functions():
        raise ForbiddenError(f"function {name}() is not allowed in fedquery queries")


@functools.cache
def allowed_functions() -> frozenset[str]:
    """Every function a query may call in a scalar position: DuckDB's (folded) whose every
    definition, in every schema, is allowed, and fedquery's own."""
    rows = _query("SELECT DISTINCT function_name, function_type, macro_definition "
                  "FROM duckdb_functions() "
                  "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro')")
    plain = {fold(n) for n, kind, _ in rows if kind != "macro"}
    macros: dict[str, list[str]] = {}
    for name, kind, body in rows:
        if kind == "macro":
            macros.setdefault(fold(name), []).append(body or "NULL")
    clean = _clean_macros({n for n in plain if not is_denied(n)} | SYNTAX_FUNCTIONS, macros)
    names = {n for n in plain | set(macros) if not is_denied(n) and (n not in macros or n in clean)}
    return frozenset(names | SYNTAX_FUNCTIONS | FEDQUERY_FUNCTIONS)


def _clean_macros(allowed: set[str], macros: dict[str, list[str]]) -> set[str]:
    """Macros whose every body calls only allowed functions (or clean macros) and reads no
    table: repeated until nothing changes, since macros call macros."""
    reads = {name: [_body_reads(body) for body in bodies] for name, bodies in macros.items()}
    clean: set[str] = set()
    while True:
        known = allowed | clean
        more = {name for name, bodies in reads.items() if name not in clean and not is_denied(name)
                and all(body is not None and body <= known for body in bodies)}
        if not more:
            return clean
        clean |= more


def _body_reads(body: str) -> set[str] | None:
    """The functions a macro body calls, or None when it reads a table or cannot be read."""
    tree = parse_with_duckdb(f"SELECT {body}")
    if tree.get("error"):
        return None
    called: set[str] = set()
    for node in _dicts(tree):
        if node.get("type") in ("BASE_TABLE", "TABLE_FUNCTION", "SHOW_REF"):
            return None
        if node.get("class") == "FUNCTION":
            called.add(fold(node["function_name"]))
    return called


@functools.cache
def _pg_catalog_functions() -> frozenset[str]:
    rows = _query("SELECT DISTINCT function_name FROM duckdb_functions() "
                  "WHERE schema_name = 'pg_catalog'")
    return frozenset(fold(r[0]) for r in rows)


@functools.cache
def system_views() -> frozenset[str]:
    """Names DuckDB resolves to its own views and tables without a schema (``pg_settings``,
    ``duckdb_tables``, ``sqlite_master``), folded. ``information_schema``'s are reached only
    through that schema, which is refused by name."""
    rows = _query("SELECT view_name FROM duckdb_views() "
                  "WHERE internal AND schema_name <> 'information_schema' UNION "
                  "SELECT table_name FROM duckdb_tables() WHERE internal")
    return frozenset(fold(r[0]) for r in rows)


@functools.lru_cache(maxsize=512)
def parse_with_duckdb(sql: str) -> dict[str, Any]:
    """DuckDB's own parse tree of ``sql`` (``json_serialize_sql``): nothing is bound or run.
    Cached by text (the planner checks a statement twice); callers must not change it."""
    import duckdb

    try:
        return json.loads(_query("SELECT json_serialize_sql($sql)", {"sql": sql})[0][0])
    except duckdb.Error as exc:  # text DuckDB cannot even take (a lone UTF-16 surrogate)
        from fedquery.errors import ParseError

        raise ParseError(f"the query text cannot be read: {str(exc).splitlines()[0]}") from None


def _dicts(node: Any):
    """Every dict in a JSON tree, depth first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


_lock = threading.Lock()
_connection: list = []


def _query(sql: str, params: dict | None = None) -> list[tuple]:
    """Rows of ``sql`` on a private in-memory DuckDB that only parses and lists functions (it
    reaches nothing), one cursor a call so that threads do not share one."""
    with _lock:
        if not _connection:
            import duckdb

            con = duckdb.connect(":memory:", config={"enable_external_access": False,
                                                     "autoinstall_known_extensions": False,
                                                     "autoload_known_extensions": False,
                                                     "threads": 1})
            con.execute("SET lock_configuration = true")
            _connection.append(con)
        cursor = _connection[0].cursor()
    try:
        return cursor.execute(sql, params).fetchall()
    finally:
        cursor.close()
