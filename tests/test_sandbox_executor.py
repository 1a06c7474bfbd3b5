"""The executor's DuckDB, the second line of defence: what a residual query could reach if the
sandbox let one through. No Python variable by name, no file outside the declared roots, no
external access, and a configuration no query can change."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

import fedquery
from tests.sandbox_world import MARKER, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("executor")
    con = fedquery.connect(build_world(root))
    yield con, root
    con.close()


def _setting(con: fedquery.Connection, name: str):
    return con._session.con.execute("SELECT current_setting($n)", {"n": name}).fetchall()[0][0]


def test_no_python_variable_is_read_by_name(world) -> None:
    """DuckDB's Python client would read a DataFrame or Arrow table of the calling frame by its
    name; the executor turns that off, so only what the plan registered is reachable."""
    con, _ = world
    leak_me = pa.table({"secret": [MARKER]})  # noqa: F841 (read by name, if at all)
    cursor = con._session.cursor()
    try:
        with pytest.raises(duckdb.CatalogException):
            cursor.execute("SELECT * FROM leak_me").fetchall()
        cursor.register("registered", pa.table({"x": [1]}))
        assert cursor.execute("SELECT x FROM registered").fetchall() == [(1,)]
    finally:
        cursor.close()


def test_settings_are_locked(world) -> None:
    con, root = world
    assert _setting(con, "python_enable_replacements") is False
    assert _setting(con, "enable_external_access") is False
    assert _setting(con, "lock_configuration") is True
    allowed = _setting(con, "allowed_directories")
    assert f"{root / 'lake'}/" in allowed and not any(str(root / "blobs") in d for d in allowed)
    for statement in ("SET enable_external_access = true", "SET python_enable_replacements = true",
                      "SET allowed_directories = ['/']", "SET lock_configuration = false"):
        with pytest.raises(duckdb.InvalidInputException, match="configuration"):
            con._session.con.execute(statement)


def test_files_outside_the_roots_are_unreachable(world, tmp_path) -> None:
    """Even a query run on the executor as is cannot open a file outside the lake roots."""
    con, _ = world
    outside = tmp_path / "outside.csv"
    outside.write_text(f"secret\n{MARKER}\n")
    cursor = con._session.cursor()
    try:
        for sql in (f"SELECT * FROM '{outside}'", f"SELECT * FROM read_text('{outside}')"):
            with pytest.raises(duckdb.PermissionException):
                cursor.execute(sql).fetchall()
    finally:
        cursor.close()
