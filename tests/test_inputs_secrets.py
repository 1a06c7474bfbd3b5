"""Secrets never show, in any form fedquery derives from them: a ``${VAR}`` path once resolved,
normalised or ``~``-expanded, a URL without its scheme, percent-encoded or decoded, and a DSN
password holding an unencoded ``@`` (libpq ends the user info at the first ``@`` and prints
the rest as the host name). For every kind of source, every error, ``repr``, log record
(DEBUG) and ``explain`` text is collected and searched for a marker that every form of the
secret contains.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

import fedquery

MARK = "Zq9xW4mark"


def _error_texts(exc: BaseException) -> list[str]:
    """Everything an error shows: message, repr, and each exception its traceback prints
    (the chained causes; the code lines are fedquery's and the test's own)."""
    texts = [str(exc), repr(exc)]
    for line in traceback.format_exception(exc):
        if not line.startswith("  "):  # skip "  File ..., line N" and the code under it
            texts.append(line)
    return texts


def _failure(action: Callable[[], object]) -> list[str]:
    """Run ``action``; it must fail with a FedQueryError, whose texts are returned."""
    with pytest.raises(fedquery.FedQueryError) as info:
        action()
    return _error_texts(info.value)


def _assert_hidden(texts: list[str], caplog: pytest.LogCaptureFixture, *, masked: bool = True) -> None:
    """No text shows the marker; with ``masked``, some text showed a form of the secret (as
    ``***``), so the test did reach a message that would have leaked it."""
    shown = [*texts, caplog.text, *(r.getMessage() for r in caplog.records)]
    leaks = [t for t in shown if MARK in t]
    assert not leaks, leaks[0]
    if masked:
        assert any("***" in t for t in texts)


@pytest.fixture()
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture()
def marked_copy(tmp_path: Path, unseen_root: Path) -> Path:
    """A copy of the shop data set in a folder whose name is the marker."""
    folder = tmp_path / MARK
    shutil.copytree(unseen_root, folder)
    return folder


def _shop_queries(con: fedquery.Connection) -> list[str]:
    """explain texts, reprs and a query error over a working connection."""
    texts = [repr(con), repr(con.catalog), repr(list(con.catalog.sources.values()))]
    tables = [t for t in ("orders", "clients", "product_vectors") if t in con.catalog.tables]
    for table in tables:
        texts.append(con.explain(f"SELECT count(*) FROM {table}"))
        texts.append(con.explain(f"SELECT count(*) FROM {table}", analyze=True))
        texts += _failure(lambda t=table: con.sql(f"SELECT CAST('x' AS INTEGER) FROM {t}").fetchall())
    return texts


# ---------------------------------------------------------------------------- local paths


def test_duckdb_path_resolved(marked_copy: Path, monkeypatch, debug_logs) -> None:
    """``./`` and ``..`` in a secret path are folded when it is resolved."""
    monkeypatch.setenv("FQ_WH", f"{marked_copy}/./sub/../shop.duckdb")
    catalog = {"sources": {"shop": {"kind": "duckdb", "path": "${FQ_WH}"}},
               "tables": {"clients": {"source": "shop", "table": "customers"}}}
    with fedquery.connect(catalog) as con:
        texts = _shop_queries(con)
        texts += _failure(lambda: con.sql("SELECT * FROM shop.nowhere"))
    monkeypatch.setenv("FQ_WH", f"{marked_copy}/./sub/../missing.duckdb")
    texts += _failure(lambda: fedquery.connect(catalog))
    _assert_hidden(texts, debug_logs)


def test_duckdb_path_with_home(marked_copy: Path, monkeypatch, debug_logs) -> None:
    """``~`` in a secret path is expanded before anything prints it."""
    monkeypatch.setenv("HOME", str(marked_copy.parent))
    monkeypatch.setenv("FQ_WH", f"~/{MARK}/./missing.duckdb")
    texts = _failure(lambda: fedquery.connect({"sources": {"s": {"kind": "duckdb", "path": "${FQ_WH}"}}}))
    _assert_hidden(texts, debug_logs)


def test_secret_component_of_a_relative_path(marked_copy: Path, tmp_path: Path, monkeypatch,
                                             debug_logs) -> None:
    """A ``${VAR}`` inside a relative path, the catalog file elsewhere: resolved against the
    catalog's folder, with ``..`` in the variable."""
    import yaml

    monkeypatch.setenv("FQ_PART", f"x/../{MARK}")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"sources": {"s": {"kind": "duckdb",
                                                         "path": "./${FQ_PART}/./none.duckdb"}}}))
    texts = _failure(lambda: fedquery.connect(catalog))
    _assert_hidden(texts, debug_logs)


def test_parquet_root_local(marked_copy: Path, monkeypatch, debug_logs) -> None:
    monkeypatch.setenv("FQ_LAKE", f"{marked_copy}/lake/./")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": "${FQ_LAKE}"}},
               "tables": {"orders": {"source": "lake", "path": "orders/", "partitioning": "hive"},
                          "empty": {"source": "lake", "path": "nothing/here/"}}}
    with fedquery.connect(catalog) as con:
        texts = _shop_queries(con)
        texts += _failure(lambda: con.sql("SELECT * FROM empty").fetchall())
        texts += _failure(lambda: con.schema("empty"))
    monkeypatch.setenv("FQ_LAKE", f"{marked_copy}/./nolake")
    texts += _failure(lambda: fedquery.connect(catalog))
    _assert_hidden(texts, debug_logs)


def test_lancedb_uri(marked_copy: Path, monkeypatch, debug_logs) -> None:
    monkeypatch.setenv("FQ_VEC", f"{marked_copy}/./vectors/")
    catalog = {"sources": {"vec": {"kind": "lancedb", "uri": "${FQ_VEC}"}},
               "tables": {"product_vectors": {"source": "vec"}}}
    with fedquery.connect(catalog) as con:
        texts = _shop_queries(con)
    catalog["tables"]["nope"] = {"source": "vec", "table": "no_such_table"}
    texts += _failure(lambda: fedquery.connect(catalog))
    _assert_hidden(texts, debug_logs)


def test_files_root(marked_copy: Path, monkeypatch, debug_logs) -> None:
    blobs = marked_copy / "blobs"
    blobs.mkdir()
    (blobs / "a.txt").write_text("hello")
    monkeypatch.setenv("FQ_BLOBS", f"{blobs}/../blobs/")
    catalog = {"sources": {"cam": {"kind": "files", "root": "${FQ_BLOBS}"}},
               "tables": {"cam_files": {"source": "cam"}}}
    with fedquery.connect(catalog, strict=True) as con:
        texts = [con.explain("SELECT uri, size FROM cam_files"), repr(con)]
        assert con.sql("SELECT uri FROM cam_files").fetchall() == [("a.txt",)]
        texts += _failure(lambda: con.sql(f"SELECT read_blob('{blobs}/missing.bin')").fetchall())
        texts += _failure(lambda: con.sql(f"SELECT read_blob('{blobs}/../../x')").fetchall())
    monkeypatch.setenv("FQ_BLOBS", f"{blobs}/./not-here")
    texts += _failure(lambda: fedquery.connect(catalog))
    _assert_hidden(texts, debug_logs)


# ---------------------------------------------------------------------------- S3


def test_parquet_root_on_s3_with_options(tmp_path: Path, unseen_root: Path, s3_endpoint: str,
                                         s3_credentials: dict, monkeypatch, debug_logs) -> None:
    from tests.services.s3 import upload_tree

    upload_tree(unseen_root / "lake", "fq-secrets", f"{MARK}/lake", endpoint=s3_endpoint)
    debug_logs.clear()  # the upload's own log records name the keys
    monkeypatch.setenv("FQ_PREFIX", f"{MARK}/lake")
    monkeypatch.setenv("FQ_KEY", f"key-{MARK}")
    monkeypatch.setenv("FQ_SECRET", f"secret/{MARK}+x")
    monkeypatch.setenv("FQ_ENDPOINT", f"{s3_endpoint}/")
    lake = {"kind": "parquet", "root": "s3://fq-secrets/${FQ_PREFIX}/",
            "options": {"endpoint_url": "${FQ_ENDPOINT}", "key": "${FQ_KEY}",
                        "secret": "${FQ_SECRET}", "max_attempts": 2, "connect_timeout": 2}}
    catalog = {"sources": {"lake": lake},
               "tables": {"orders": {"source": "lake", "path": "orders/", "partitioning": "hive"},
                          "empty": {"source": "lake", "path": "nothing/"}}}
    with fedquery.connect(catalog) as con:
        texts = _shop_queries(con)
        texts += _failure(lambda: con.sql("SELECT * FROM empty").fetchall())
    lake["options"]["endpoint_url"] = "http://127.0.0.1:1/"
    lake["options"]["max_attempts"] = 1
    with fedquery.connect(catalog) as con:
        texts += _failure(lambda: con.sql("SELECT count(*) FROM orders").fetchall())
    _assert_hidden(texts, debug_logs)


# ---------------------------------------------------------------------------- PostgreSQL

PG_CLOSED = [
    # (id, DSN): a password with unencoded '@', percent-encoded, and key=value with quotes
    ("url_at_in_password", f"postgresql://fq:p@ss-{MARK}@127.0.0.1:9/fleet"),
    ("url_two_at", f"postgresql://fq:a@b-{MARK}@c@127.0.0.1:9/fleet"),
    ("url_percent_encoded", f"postgresql://fq:p%40ss-{MARK}%2F@127.0.0.1:9/fleet"),
    ("url_bad_host", f"postgresql://fq:p@ss-{MARK}@no-such-host.invalid/fleet"),
    ("key_value", f"host=127.0.0.1 port=9 user=fq password='p@ss {MARK}' dbname=fleet"),
    ("key_value_escaped_quote", f"host=127.0.0.1 port=9 user=fq password='it\\'s-{MARK}' dbname=f"),
]


def dsn_id(dsn: str) -> str:
    return next(i for i, d in PG_CLOSED if d == dsn)


@pytest.mark.parametrize("dsn", [d for _, d in PG_CLOSED], ids=[i for i, _ in PG_CLOSED])
@pytest.mark.parametrize("literal", [False, True], ids=["from_env", "written_out"])
def test_postgres_dsn_that_cannot_connect(dsn: str, literal: bool, monkeypatch, debug_logs) -> None:
    pytest.importorskip("adbc_driver_postgresql")
    monkeypatch.setenv("FQ_PG_DSN", dsn)
    source = {"kind": "postgres", "dsn": dsn if literal else "${FQ_PG_DSN}", "connect_timeout": 2}
    texts = _failure(lambda: fedquery.connect({"sources": {"pg": source}}))
    _assert_hidden(texts, debug_logs, masked="bad_host" in dsn_id(dsn))


@pytest.fixture(scope="module")
def password_role(postgres_dsn: str) -> str:
    """A role that must give its password (an ``hba`` line for it alone when the server trusts
    local connections); returns the role's name."""
    import adbc_driver_postgresql.dbapi as adbc

    role = "fq_secret_role"
    with adbc.connect(postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-password'")
        cur.execute("SELECT current_setting('hba_file')")
        hba = Path(cur.fetchone()[0])
        try:
            original = hba.read_text()
            hba.write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n"
                           + original)
        except OSError as exc:
            pytest.skip(f"cannot make the server ask {role} for a password: {exc}")
        cur.execute("SELECT pg_reload_conf()")
    yield role
    hba.write_text(original)
    with adbc.connect(postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
        cur.execute(f"DROP ROLE IF EXISTS {role}")


def _with_user(dsn: str, user: str, password: str) -> str:
    """The fixture's DSN (URI or key=value) with another user and password, written raw."""
    if "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        authority, _, tail = rest.partition("/")
        host = authority.rsplit("@", 1)[-1]
        return f"{scheme}://{user}:{password}@{host}/{tail}"
    return f"{dsn} user={user} password='{password}'"


@pytest.mark.parametrize("password", [f"wr@ng-{MARK}", f"wr%40ng-{MARK}", f"wrong-{MARK}"],
                         ids=["unencoded_at", "percent_encoded", "plain"])
def test_postgres_wrong_password(postgres_dsn: str, password_role: str, password: str,
                                 monkeypatch, debug_logs) -> None:
    monkeypatch.setenv("FQ_PG_DSN", _with_user(postgres_dsn, password_role, password))
    texts = _failure(lambda: fedquery.connect(
        {"sources": {"pg": {"kind": "postgres", "dsn": "${FQ_PG_DSN}", "connect_timeout": 5}}}))
    assert any("pg" in t for t in texts)
    _assert_hidden(texts, debug_logs, masked=False)


def test_postgres_right_password_explain_and_errors(postgres_dsn: str, password_role: str,
                                                    monkeypatch, debug_logs) -> None:
    """A working source whose DSN holds the password: explain, repr, query errors."""
    monkeypatch.setenv("FQ_PG_DSN", _with_user(postgres_dsn, password_role, "right-password"))
    catalog = {"sources": {"pg": {"kind": "postgres", "dsn": "${FQ_PG_DSN}"}}}
    with fedquery.connect(catalog) as con:
        texts = [repr(con), repr(con.catalog.sources["pg"]),
                 con.explain("SELECT count(*) FROM (VALUES (1)) t(x) WHERE x = 'right-password'")]
        texts += _failure(lambda: con.sql("SELECT * FROM pg.public.none_such").fetchall())
        texts += _failure(lambda: con.sql("SELECT CAST('right-password' AS INTEGER)").fetchall())
    leaks = [t for t in [*texts, debug_logs.text] if "right-password" in t]
    assert not leaks, leaks[0]
