"""A value read from the environment is a secret in every part fedquery or a driver may print
alone: the bucket of an S3 root, a leading part of a path, a host, a port, a database. And an
error whose message is masked keeps no ``__cause__`` or ``__context__`` that shows the secret
(code can read them even when a traceback would not print them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import fedquery
from fedquery.secrets import Secrets

MARK = "Envsec_Kq42"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception reachable through ``__cause__`` or ``__context__``,
    suppressed or not."""
    found: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is f for f in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__]
    return found


def _texts(exc: BaseException) -> list[str]:
    return [text for e in _chain(exc) for text in (str(e), repr(e), *getattr(e, "__notes__", []))]


def _failure(action) -> list[str]:
    with pytest.raises(fedquery.FedQueryError) as info:
        action()
    return _texts(info.value)


def _assert_hidden(texts: list[str], *secrets: str) -> None:
    leaks = [t for t in texts for s in secrets if s in t]
    assert not leaks, leaks[0]
    assert any("***" in t for t in texts), texts  # the message that would have leaked was reached


def test_missing_bucket_of_an_s3_root(s3_endpoint: str, s3_credentials: dict, monkeypatch) -> None:
    bucket = f"nobucket-{MARK.lower().replace('_', '-')}-v"
    monkeypatch.setenv("FQ_ROOT", f"s3://{bucket}/lake/")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": "${FQ_ROOT}", "options": {
        "endpoint_url": s3_endpoint, "key": s3_credentials["AWS_ACCESS_KEY_ID"],
        "secret": s3_credentials["AWS_SECRET_ACCESS_KEY"], "max_attempts": 1}}},
        "tables": {"t": {"source": "lake", "path": "t/"}}}
    with fedquery.connect(catalog) as con:
        texts = _failure(lambda: con.sql("SELECT count(*) FROM t").fetchall())
        texts += _failure(lambda: con.schema("t"))
        texts.append(con.explain("SELECT 1"))
    _assert_hidden(texts, bucket)


def test_leading_part_of_a_lancedb_uri(monkeypatch) -> None:
    """LanceDB prints the folder it could not make: ``/proc/<secret>`` of ``/proc/<secret>/x``."""
    monkeypatch.setenv("FQ_V", f"/proc/{MARK}/x")
    texts = _failure(lambda: fedquery.connect({"sources": {"v": {"kind": "lancedb", "uri": "${FQ_V}"}},
                                               "tables": {"t": {"source": "v"}}}))
    _assert_hidden(texts, MARK)


def test_secret_path_component_of_a_duckdb_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FQ_DIR", f"{tmp_path}/{MARK}/sub")
    catalog = {"sources": {"wh": {"kind": "duckdb", "path": "${FQ_DIR}/none.duckdb"}}}
    _assert_hidden(_failure(lambda: fedquery.connect(catalog)), MARK)


@pytest.mark.parametrize("dsn", ["host=127.0.0.1 port=${FQ_ENV_SECRET} dbname=db connect_timeout=2",
                                 "postgresql://u:pw@127.0.0.1:${FQ_ENV_SECRET}/db"],
                         ids=["key_value", "url"])
def test_driver_error_in_the_context_is_cut(dsn: str, monkeypatch) -> None:
    """libpq's error quotes the port; fedquery's message masks it, and the driver's exception
    is neither the cause nor the context of the error raised."""
    pytest.importorskip("adbc_driver_postgresql")
    monkeypatch.setenv("FQ_ENV_SECRET", MARK)
    with pytest.raises(fedquery.FedQueryError) as info:
        fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": dsn}}})
    leaks = [t for t in _texts(info.value) if MARK in t]
    assert not leaks, leaks[0]


@pytest.fixture(scope="module")
def pg_table(postgres_database) -> str:
    """The DSN of a database with one table, ``pg.public.things``."""
    postgres_database.execute("CREATE TABLE things (id integer)", "INSERT INTO things VALUES (1)")
    return postgres_database.dsn


def test_explain_hides_host_and_database_of_a_dsn_from_the_environment(pg_table: str,
                                                                       monkeypatch) -> None:
    from fedquery.connectors._postgres_settings import location

    where = location(pg_table)
    monkeypatch.setenv("FQ_PG_DSN", pg_table)
    with fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": "${FQ_PG_DSN}"}}}) as con:
        text = con.explain("SELECT count(*) FROM pg.public.things")
        shown = repr(con._session.connectors["pg"])
    assert "host=***" in text and "database=***" in text, text
    for part in (where["host"], where["database"]):
        assert f"={part}" not in text and part not in shown, (part, text, shown)


def test_explain_shows_host_and_database_written_in_the_catalog(pg_table: str) -> None:
    """Only what the environment gave is hidden: a DSN written out shows where the table is."""
    from fedquery.connectors._postgres_settings import location

    where = location(pg_table)
    with fedquery.connect({"sources": {"pg": {"kind": "postgres", "dsn": pg_table}}}) as con:
        text = con.explain("SELECT count(*) FROM pg.public.things")
    assert f"database={where['database']}" in text, text


# ---------------------------------------------------------------------------- the unit


def test_parts_of_an_environment_value() -> None:
    secrets = Secrets()
    secrets.add_setting("s3://bucket-of-secrets/prefix-abc/lake/", environment=True)
    assert secrets.redact("NoSuchBucket: bucket-of-secrets") == "NoSuchBucket: ***"
    assert secrets.redact("bucket-of-secrets/prefix-abc/x.parquet") == "***/x.parquet"
    assert secrets.redact("the lake") == "the lake"  # short parts are not masked alone
    secrets.add_setting("postgresql://u:pw@db-host.internal:6543/fleetdb", environment=True)
    assert secrets.redact('server at "db-host.internal", port 6543') == 'server at "***", port 6543'
    assert secrets.redact('database "fleetdb" does not exist') == 'database "***" does not exist'
    assert secrets.redact("localhost and postgres") == "localhost and postgres"


def test_parts_only_of_what_the_environment_gave() -> None:
    """A setting whose key names a secret, written in the catalog: masked whole, not in parts."""
    secrets = Secrets()
    secrets.add_setting("postgresql://u:pw@db-host.internal/fleetdb")
    assert secrets.redact("database fleetdb") == "database fleetdb"
    assert not secrets.from_environment("fleetdb")


def test_scrub_cuts_a_context_that_shows_a_secret() -> None:
    secrets = Secrets()
    secrets.add_setting(MARK)
    try:
        try:
            raise OSError(f"cannot open {MARK}")
        except OSError:
            raise fedquery.SourceError(f"cannot open {MARK}", source="s") from None
    except fedquery.SourceError as exc:
        secrets.scrub(exc)
        error = exc
    assert str(error).endswith("cannot open ***")
    assert error.__context__ is None and error.__cause__ is None


def test_scrub_keeps_a_chain_without_secrets_and_cuts_deeper_links() -> None:
    secrets = Secrets()
    secrets.add_setting(MARK)
    inner = ValueError(f"bad {MARK}")
    middle = KeyError("plain")
    middle.__context__ = inner
    outer = fedquery.PlanError("outer")
    outer.__cause__ = middle
    secrets.scrub(outer)
    assert outer.__cause__ is middle and middle.__context__ is None


@pytest.mark.parametrize("raised", [OSError(f"open {MARK} failed"),
                                    FileNotFoundError(2, "No such file", f"/x/{MARK}/y"),
                                    KeyError(MARK),
                                    UnicodeDecodeError("utf-8", MARK.encode() + b"\xff", 11, 12, "bad")],
                         ids=["message", "filename", "key", "bytes"])
def test_untranslated_error_under_the_net_is_masked_in_place(raised: BaseException) -> None:
    """The net turns an untranslated exception into a FedQueryError raised while it is handled,
    so Python makes it the new error's ``__context__`` whatever is cut: it is masked in place."""
    from fedquery.boundary import boundary

    secrets = Secrets()
    secrets.add_setting(MARK)
    with pytest.raises(fedquery.PlanError) as info, boundary(secrets):
        raise raised
    leaks = [t for t in _texts(info.value) if MARK in t]
    assert not leaks, leaks[0]
    assert info.value.__context__ is raised  # still there, to debug with
