"""Errors say what was wrong and where: SQL line and column with a caret, catalog file and key
path, a suggestion where one exists, and never a secret read from the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import fedquery

SECRET = "hunter2-Zq9xW4"


# ------------------------------------------------------------------------------------ SQL text


def _position(sql: str, needle: str, occurrence: int = 1) -> tuple[int, int, int]:
    """1-based line, first and last column of the ``occurrence``-th ``needle`` in ``sql``."""
    index = -1
    for _ in range(occurrence):
        index = sql.index(needle, index + 1)
    line = sql.count("\n", 0, index) + 1
    first = index - (sql.rfind("\n", 0, index) + 1) + 1
    return line, first, first + len(needle) - 1


def _caret_column(message: str, source_line: str) -> int:
    """The 1-based column, in ``source_line``, of the caret under that line in a ParseError message."""
    lines = message.splitlines()
    echoed = next(i for i, text in enumerate(lines) if text.endswith(source_line) and text.strip())
    indent = len(lines[echoed]) - len(source_line)
    return lines[echoed + 1].index("^") - indent + 1


PARSE_ERRORS = {
    # name: (sql, the text the error must point at, which occurrence of it)
    "doubled_and": ("SELECT c.name,\n       count(*) AS n\nFROM clients c\n"
                    "WHERE c.country = 'US' AND AND c.segment = 'x'\nGROUP BY c.name", "AND", 2),
    "misspelt_limit": ("SELECT c.name\n  FROM clients c\n WHERE c.country = 'US'\n ORDER BY c.name LIMT 5",
                       "LIMT", 1),
    "unclosed_paren": ("SELECT c.name, (\n  SELECT max(o.qty) FROM orders o\n  WHERE o.customer_id = "
                       "c.customer_id\nFROM clients c", "FROM", 2),
}


@pytest.mark.parametrize("sql, target, occurrence", PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys())
def test_parse_error_points_at_the_token(fq: fedquery.Connection, sql: str, target: str,
                                         occurrence: int) -> None:
    line, first, last = _position(sql, target, occurrence)
    with pytest.raises(fedquery.ParseError) as info:
        fq.sql(sql)
    error = info.value
    assert error.line == line
    assert first <= error.col <= last
    message = str(error)
    assert f"line {line}" in message
    assert first <= _caret_column(message, sql.splitlines()[line - 1]) <= last


def test_parse_error_unclosed_string(fq: fedquery.Connection) -> None:
    sql = "SELECT c.name\nFROM clients c\nWHERE c.name = 'Ada"
    with pytest.raises(fedquery.ParseError) as info:
        fq.sql(sql)
    assert (info.value.line, info.value.col) == _position(sql, "'Ada")[:2]
    assert "^" in str(info.value)


def test_parse_error_from_explain(fq: fedquery.Connection) -> None:
    with pytest.raises(fedquery.ParseError) as info:
        fq.explain("SELECT 1\nFROM clients WHERE")
    assert info.value.line == 2


# ---------------------------------------------------------------------- unknown tables, columns

UNKNOWN_TABLES = {
    "client": "clients",
    "prodcts": "products",
    "shop.customer": "shop.customers",
    "shop.sales.target": "shop.sales.targets",
}


@pytest.mark.parametrize("name, suggestion", UNKNOWN_TABLES.items(), ids=UNKNOWN_TABLES.keys())
def test_unknown_table_suggests(fq: fedquery.Connection, name: str, suggestion: str) -> None:
    with pytest.raises(fedquery.PlanError, match=rf"did you mean '{suggestion}'\?") as info:
        fq.sql(f"SELECT count(*) FROM {name} x JOIN orders o ON true")
    assert repr(name) in str(info.value)


def test_unknown_table_in_schema(fq: fedquery.Connection) -> None:
    with pytest.raises(fedquery.PlanError, match="did you mean 'clients'"):
        fq.schema("clinets")


@pytest.mark.parametrize("sql, column", [
    ("SELECT c.nmae FROM clients c", "nmae"),
    ("SELECT nmae FROM clients", "nmae"),
    ("SELECT o.qty FROM orders o JOIN clients c ON c.customer_id = o.custmer_id", "custmer_id"),
    ("SELECT count(*) FROM product_vectors WHERE modle = 'm1'", "modle"),
], ids=["qualified", "unqualified", "join_condition", "vector_table"])
def test_unknown_column_named(fq: fedquery.Connection, sql: str, column: str) -> None:
    with pytest.raises(fedquery.PlanError, match=column):
        fq.sql(sql)


def test_missing_parameter_named(fq: fedquery.Connection) -> None:
    with pytest.raises(fedquery.PlanError, match=r"\$region"):
        fq.sql("SELECT count(*) FROM orders WHERE region = $region AND qty = $q", params={"q": 1})


# -------------------------------------------------------------------------------- bad catalogs


def _write(folder: Path, name: str, catalog: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(catalog))
    return path


BAD_CATALOGS = {
    "missing_sources": ({"tables": {"clients": {"source": "shop", "table": "customers"}}},
                        "sources", "missing"),
    "unknown_kind": ({"sources": {"shop": {"kind": "duckdbb", "path": "shop.duckdb"}}},
                     "sources.shop.kind", "did you mean 'duckdb'"),
    "unknown_source_in_table": ({"sources": {"shop": {"kind": "duckdb", "path": "{root}/shop.duckdb"}},
                                 "tables": {"clients": {"source": "shpo", "table": "customers"}}},
                                "tables.clients.source", "did you mean 'shop'"),
    "parquet_table_without_path": ({"sources": {"lake": {"kind": "parquet", "root": "{root}/lake"}},
                                    "tables": {"orders": {"source": "lake", "partitioning": "hive"}}},
                                   "tables.orders.path", "required"),
    "unset_variable": ({"sources": {"shop": {"kind": "duckdb",
                                             "path": "${FQ_TEST_UNSET_VARIABLE}/shop.duckdb"}}},
                       "sources.shop.path", "FQ_TEST_UNSET_VARIABLE"),
    "unknown_table_key": ({"sources": {"lake": {"kind": "parquet", "root": "{root}/lake"}},
                           "tables": {"orders": {"source": "lake", "paht": "orders/"}}},
                          "tables.orders.paht", "unknown key"),
}


def _with_root(value, root: Path):
    if isinstance(value, dict):
        return {k: _with_root(v, root) for k, v in value.items()}
    return value.replace("{root}", str(root)) if isinstance(value, str) else value


@pytest.mark.parametrize("catalog, keypath, hint", BAD_CATALOGS.values(), ids=BAD_CATALOGS.keys())
def test_bad_catalog(tmp_path: Path, unseen_root: Path, monkeypatch: pytest.MonkeyPatch, catalog: dict,
                     keypath: str, hint: str) -> None:
    monkeypatch.delenv("FQ_TEST_UNSET_VARIABLE", raising=False)
    path = _write(tmp_path, "broken-catalog.yaml", _with_root(catalog, unseen_root))
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect(path)
    message = str(info.value)
    assert "broken-catalog.yaml" in message
    assert f"{keypath}:" in message
    assert hint in message


def test_catalog_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(fedquery.CatalogError, match="nowhere.yaml"):
        fedquery.connect(tmp_path / "nowhere.yaml")


def test_missing_database_file_is_a_source_error(tmp_path: Path) -> None:
    catalog = {"sources": {"shop": {"kind": "duckdb", "path": str(tmp_path / "gone.duckdb")}}}
    with pytest.raises(fedquery.SourceError) as info:
        fedquery.connect(catalog)
    assert info.value.source == "shop"
    assert "gone.duckdb" in str(info.value)


def test_missing_lance_table_is_a_source_error(unseen_root: Path) -> None:
    catalog = {"sources": {"vec": {"kind": "lancedb", "uri": str(unseen_root / "vectors")}},
               "tables": {"embeddings": {"source": "vec", "table": "product_vectorz"}}}
    with pytest.raises(fedquery.SourceError) as info:
        fedquery.connect(catalog)
    assert info.value.source == "vec"
    assert "product_vectorz" in str(info.value)


def test_corrupt_lake_file_is_a_source_error(tmp_path: Path) -> None:
    """A file that is not Parquet fails the query that reads it, naming the lake."""
    folder = tmp_path / "lake" / "t"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2]}), folder / "good.parquet")
    (folder / "bad.parquet").write_bytes(b"not parquet at all")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")}},
               "tables": {"t": {"source": "lake", "path": "t/"}}}
    with fedquery.connect(catalog) as con, pytest.raises(fedquery.SourceError) as info:
        con.sql("SELECT sum(x) FROM t").fetchall()
    assert info.value.source == "lake"
    assert "bad.parquet" in str(info.value)


def test_lake_table_without_files_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "lake" / "empty").mkdir(parents=True)
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")}},
               "tables": {"t": {"source": "lake", "path": "empty/"}}}
    with fedquery.connect(catalog) as con:
        with pytest.raises(fedquery.SourceError) as info:
            con.sql("SELECT * FROM t")
        assert info.value.source == "lake" and "table 't'" in str(info.value)
        assert con.sql("SELECT 1 AS one").fetchall() == [(1,)]  # the rest still works


def test_unsupported_kind_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(fedquery.CatalogError, match=r"sources\.db\.kind.*'parquett'.*did you mean 'parquet'"):
        fedquery.connect({"sources": {"db": {"kind": "parquett", "root": "x"}}})


def test_every_env_value_is_secret(tmp_path: Path, unseen_root: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Any value read from ${VAR}, whatever its key, never shows in an error."""
    monkeypatch.setenv("FQ_TEST_ROOT", str(tmp_path / "hidden-place"))
    catalog = {"sources": {"lake": {"kind": "parquet", "root": "${FQ_TEST_ROOT}"}}}
    with pytest.raises(fedquery.SourceError) as info:
        fedquery.connect(catalog)
    assert "hidden-place" not in str(info.value) and "***" in str(info.value)


# --------------------------------------------------------------------------------------- secrets


@pytest.fixture()
def secret_catalog(tmp_path: Path, unseen_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shop catalog with a password read from the environment on the warehouse source."""
    monkeypatch.setenv("FQ_TEST_SECRET", SECRET)
    catalog = {
        "sources": {
            "shop": {"kind": "duckdb", "path": str(unseen_root / "shop.duckdb")},
            "lake": {"kind": "parquet", "root": str(unseen_root / "lake"),
                     "options": {"password": "${FQ_TEST_SECRET}"}},
        },
        "tables": {
            "clients": {"source": "shop", "table": "customers"},
            "orders": {"source": "lake", "path": "orders/", "partitioning": "hive"},
        },
    }
    return _write(tmp_path, "secret-catalog.yaml", catalog)


def test_secret_not_in_repr_explain_or_errors(secret_catalog: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with fedquery.connect(secret_catalog) as con:
        assert con.catalog.sources["lake"].settings["options"]["password"] == SECRET  # the value was read
        shown = [repr(con), repr(con.catalog), repr(con.catalog.sources), str(con.catalog.sources)]
        shown.append(con.explain("SELECT c.name FROM clients c JOIN orders o USING (customer_id)"))
        # A value that equals the secret, echoed back by explain and by DuckDB's error message
        shown.append(con.explain(f"SELECT count(*) FROM clients WHERE name = '{SECRET}'"))
        with pytest.raises(fedquery.PlanError) as info:
            con.sql(f"SELECT CAST('{SECRET}' AS INTEGER) AS x FROM clients").fetchall()
        shown.append(str(info.value))
        with pytest.raises(fedquery.PlanError) as info:
            con.sql("SELECT nope FROM clients")
        shown.append(str(info.value))
    shown.append(caplog.text)
    for text in shown:
        assert SECRET not in text
    assert "***" in shown[5] and "***" in shown[6]


def test_secret_in_dsn_not_in_connect_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A source that cannot be opened names itself, never the password in its DSN."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FQ_TEST_SECRET", SECRET)
    path = _write(tmp_path, "pg-catalog.yaml", {"sources": {
        "pg": {"kind": "postgres", "dsn": "postgresql://fq:${FQ_TEST_SECRET}@127.0.0.1:9/fleet"}}})
    with pytest.raises(fedquery.FedQueryError) as info:
        fedquery.connect(path)
    assert "pg" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in caplog.text


def test_binder_caret_points_at_the_column_on_line_one(fq: fedquery.Connection) -> None:
    with pytest.raises(fedquery.PlanError) as info:
        fq.sql("SELECT nmae FROM clients")
    lines = str(info.value).splitlines()
    quoted = next(i for i, line in enumerate(lines) if line.startswith("LINE 1:"))
    assert "DESCRIBE" not in str(info.value)
    assert lines[quoted + 1].index("^") == lines[quoted].index("nmae")


# ------------------------------------------------------------------------------------ pickling


@pytest.mark.parametrize("error", [
    fedquery.SourceError("Conversion Error: date field value out of range", source="lake"),
    fedquery.ParseError("syntax error", sql="SELECT FROM", line=1, col=8),
    fedquery.PlanError("Overflow in multiplication of INT64"),
    fedquery.QueryTimeout("the query ran past its timeout of 1 s"),
], ids=lambda error: type(error).__name__)
def test_an_error_pickles_whole(error: fedquery.FedQueryError) -> None:
    """An error raised in a Ray task reaches the driver pickled (a SourceError did not unpickle:
    its ``source`` is no argument of the message)."""
    import pickle

    restored = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(restored) is type(error)
    assert (str(restored), restored.args, vars(restored)) == (str(error), error.args, vars(error))
