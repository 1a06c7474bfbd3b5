"""Every key of a catalog has its type checked: a value of the wrong type is a CatalogError that
names the file, the key path and what was expected, never a raw Python error.

The test is generated: each key of a valid catalog (every kind of source, tables, blobs,
entities, S3 options, PostgreSQL settings) is set to each wrong type in turn, and each name
(of a source, table, blob column, entity, member) is replaced by a non-string.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import fedquery

WRONG_VALUES = {"int": 5, "bool": True, "list": [1, "x"], "dict": {"a": 1}, "none": None, "empty": ""}
WRONG_NAMES = {"int": 5, "bool": True, "none": None, "empty": ""}
# Keys whose value must be a string: any other type must be refused at exactly that key path.
STRING_KEYS = {"kind", "path", "root", "uri", "dsn", "source", "table", "partitioning", "key",
               "root_key", "time", "endpoint_url", "secret", "token", "region"}
NAMED_SECTIONS = ("sources", "tables", "blobs", "entities", "members")
FILE_NAME = "mutated-catalog.yaml"


def local_catalog(root: Path, blobs: Path) -> dict[str, Any]:
    """The shop catalog with a files source, a blob column and an entity: every local kind."""
    return {
        "sources": {
            "shop": {"kind": "duckdb", "path": str(root / "shop.duckdb")},
            "lake": {"kind": "parquet", "root": str(root / "lake"), "options": {}},
            "vec": {"kind": "lancedb", "uri": str(root / "vectors")},
            "cam": {"kind": "files", "root": str(blobs)},
        },
        "tables": {
            "clients": {"source": "shop", "table": "customers"},
            "targets": {"source": "shop", "table": "sales.targets"},
            "orders": {"source": "lake", "path": "orders/", "partitioning": "hive"},
            "product_vectors": {"source": "vec", "table": "product_vectors"},
            "cam_files": {"source": "cam"},
        },
        "blobs": {"cam_files.uri": "cam"},
        "entities": {"customer": {"table": "clients", "key": "customer_id", "members": {
            "orders": {"table": "orders", "key": "customer_id", "root_key": "customer_id",
                       "time": "ordered_at"}}}},
    }


def s3_catalog(endpoint: str) -> dict[str, Any]:
    return {"sources": {"s3lake": {"kind": "parquet", "root": "s3://fq-types/lake/", "options": {
        "endpoint_url": endpoint, "key": "fedquery-test-key", "secret": "fedquery-test-secret",
        "region": "us-east-1", "anonymous": False, "max_attempts": 2, "connect_timeout": 2,
        "request_timeout": 5, "read_timeout": 30, "min_read_speed": 1000}}},
        "tables": {"events": {"source": "s3lake", "path": "events/"}}}


def postgres_catalog(dsn: str) -> dict[str, Any]:
    return {"sources": {"pg": {"kind": "postgres", "dsn": dsn, "connect_timeout": 5,
                               "statement_timeout": "30s", "batch_rows": 1000, "pool_size": 2}}}


def key_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """The path of every key in a nested mapping, parents before children."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from key_paths(item, (*prefix, key))


def mutated(catalog: dict, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(catalog)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = copy.deepcopy(value)
    return out


def renamed(catalog: dict, path: tuple, name: Any) -> dict:
    out = copy.deepcopy(catalog)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    parent[name] = parent.pop(path[-1])
    return out


def _outcome(tmp_path: Path, catalog: dict) -> BaseException | None:
    """Connect through a YAML file; the exception raised, or None for a clean connect."""
    path = tmp_path / FILE_NAME
    path.write_text(yaml.safe_dump(catalog))
    try:
        fedquery.connect(path).close()
    except Exception as exc:  # noqa: BLE001 - the test sorts every kind of outcome
        return exc
    return None


def _check_mutation(tmp_path: Path, catalog: dict, path: tuple, kind: str, value: Any) -> str:
    """Apply one mutation and check its outcome; returns the outcome's name."""
    error = _outcome(tmp_path, mutated(catalog, path, value))
    keypath = ".".join(map(str, path))
    where = f"{keypath} = {value!r}"
    assert error is None or isinstance(error, fedquery.CatalogError | fedquery.SourceError), \
        f"{where}: {type(error).__name__}: {error}"
    if path[-1] in STRING_KEYS and kind in ("int", "bool", "list", "dict"):
        assert isinstance(error, fedquery.CatalogError), f"{where}: {error!r}"
        assert f"{FILE_NAME}: {keypath}: " in str(error), f"{where}: {error}"
    if isinstance(error, fedquery.CatalogError):
        message = str(error)
        assert FILE_NAME in message, f"{where}: {message}"
        named = message.split(f"{FILE_NAME}: ", 1)[1].split(":", 1)[0]
        # the key itself, a parent of it, a key inside the new value, or a reference to a name
        # the mutation took away (a table's source, a blob's table)
        assert (keypath.startswith(named) or named.startswith(keypath)
                or "expected one of" in message), f"{where}: {message}"
    return type(error).__name__ if error else "connected"


def _check_catalog(tmp_path: Path, catalog: dict) -> dict[str, int]:
    assert _outcome(tmp_path, catalog) is None  # the unmutated catalog is valid
    seen: dict[str, int] = {}
    for path in key_paths(catalog):
        for kind, value in WRONG_VALUES.items():
            outcome = _check_mutation(tmp_path, catalog, path, kind, value)
            seen[outcome] = seen.get(outcome, 0) + 1
    return seen


@pytest.fixture()
def blobs_root(tmp_path: Path) -> Path:
    folder = tmp_path / "blobs"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    return folder


def test_every_key_of_a_local_catalog(tmp_path: Path, unseen_root: Path, blobs_root: Path) -> None:
    seen = _check_catalog(tmp_path, local_catalog(unseen_root, blobs_root))
    assert seen["CatalogError"] > 100 and seen.get("connected", 0) > 0


def test_every_key_of_an_s3_lake(tmp_path: Path, s3_endpoint: str, s3_credentials: dict) -> None:
    seen = _check_catalog(tmp_path, s3_catalog(s3_endpoint))
    assert seen["CatalogError"] > 30


def test_every_setting_of_a_postgres_source(tmp_path: Path, postgres_dsn: str) -> None:
    seen = _check_catalog(tmp_path, postgres_catalog(postgres_dsn))
    assert seen["CatalogError"] > 10


@pytest.mark.parametrize("kind", WRONG_NAMES)
def test_names_must_be_strings(tmp_path: Path, unseen_root: Path, blobs_root: Path, kind: str) -> None:
    catalog = local_catalog(unseen_root, blobs_root)
    named = [p for p in key_paths(catalog) if len(p) >= 2 and p[-2] in NAMED_SECTIONS]
    assert len(named) > 10
    for path in named:
        error = _outcome(tmp_path, renamed(catalog, path, WRONG_NAMES[kind]))
        where = f"{'.'.join(map(str, path))} renamed to {WRONG_NAMES[kind]!r}"
        assert isinstance(error, fedquery.CatalogError), f"{where}: {error!r}"
        section = ".".join(map(str, path[:-1]))
        assert f"{FILE_NAME}: {section}." in str(error), f"{where}: {error}"


CASES = {
    # the reported reproducers, with the message each must give
    "path_number": ({"kind": "duckdb", "path": 5}, "sources.s.path: expected a string, got a number (5)"),
    "root_true": ({"kind": "parquet", "root": True},
                  "sources.s.root: expected a string, got a boolean (true)"),
    "options_string": ({"kind": "files", "root": ".", "options": "x"},
                       "sources.s.options: expected a mapping, got a string ('x')"),
    "options_list_s3": ({"kind": "parquet", "root": "s3://b/", "options": ["key"]},
                        "sources.s.options: expected a mapping, got a list"),
    "nested_null": ({"kind": "parquet", "root": "s3://b/", "options": {"region": {"x": None}}},
                    "sources.s.options.region: expected a string, got a mapping"),
    "max_attempts_text": ({"kind": "parquet", "root": "s3://b/", "options": {"max_attempts": "many"}},
                          "sources.s.options.max_attempts: expected a positive integer, "
                          "got a string ('many')"),
    "anonymous_number": ({"kind": "parquet", "root": "s3://b/", "options": {"anonymous": 2}},
                         "sources.s.options.anonymous: expected true or false, got a number (2)"),
    "kind_list": ({"kind": ["duckdb"], "path": "x"}, "sources.s.kind: unknown source kind a list"),
    "secret_number": ({"kind": "duckdb", "path": "x", "password": 123456},
                      "sources.s.password: unknown setting for a duckdb source; expected one of: path"),
}


@pytest.mark.parametrize("source, expected", CASES.values(), ids=CASES.keys())
def test_reported_values(source: dict, expected: str | None, tmp_path: Path) -> None:
    catalog = {"sources": {"s": source}}
    if expected is None:  # loads; the secret is remembered as text
        loaded = fedquery.catalog.load_catalog(catalog)
        assert loaded.secrets.redact("pw 123456") == "pw ***"
        return
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect(catalog)
    assert str(info.value) == f"<dict>: {expected}" or str(info.value).startswith(f"<dict>: {expected}")


def test_table_name_as_number_in_yaml(tmp_path: Path, unseen_root: Path) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(f"sources:\n  shop: {{kind: duckdb, path: {unseen_root / 'shop.duckdb'}}}\n"
                    f"tables:\n  2024: {{source: shop, table: customers}}\n")
    with pytest.raises(fedquery.CatalogError, match=r"numbers.yaml: tables.2024: a table name must be "
                                                    r"a non-empty string, got a number \(2024\)"):
        fedquery.connect(path)


def test_cyclic_dict_catalog() -> None:
    options: dict = {}
    options["self"] = options
    with pytest.raises(fedquery.CatalogError,
                       match=r"<dict>: sources.s.extra(.self)+: nested more than 16 deep"):
        fedquery.connect({"sources": {"s": {"kind": "files", "root": ".", "extra": options}}})
