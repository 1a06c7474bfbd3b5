"""A catalog file is read with limits: a small file cannot expand to billions of values through
YAML aliases, nest without end, or run code; each refusal is a CatalogError naming the file."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

import fedquery
from fedquery.catalog import load_catalog
from fedquery.catalog_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES

HEAD = "sources:\n  wh:\n    kind: duckdb\n    path: w.duckdb\n"


def _mapping_bomb(levels: int = 9, width: int = 9) -> str:
    """Nested mappings, each level ``width`` aliases of the one below: width**levels values."""
    keys = [f"k{i}" for i in range(width)]
    lines = [HEAD, "    l0: &l0 {" + ", ".join(f"{k}: lol" for k in keys) + "}\n"]
    for n in range(1, levels):
        lines.append(f"    l{n}: &l{n} {{" + ", ".join(f"{k}: *l{n - 1}" for k in keys) + "}\n")
    return "".join(lines)


def _list_bomb(levels: int = 9) -> str:
    lines = [HEAD, '    a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    for n in range(1, levels):
        lines.append(f"    a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]\n")
    return "".join(lines)


def _write(tmp_path: Path, text: str, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("bomb", [_mapping_bomb, _list_bomb], ids=["mappings", "lists"])
def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path, bomb) -> None:
    text = bomb()
    assert len(text.encode()) < 1024  # under a kilobyte, standing for 9**9 values
    path = _write(tmp_path, text, "bomb.yaml")
    tracemalloc.start()
    try:
        with pytest.raises(fedquery.CatalogError) as info:
            load_catalog(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert str(path) in message
    assert f"more than {MAX_NODES} values" in message and "aliases" in message
    assert peak < 20 * 2**20  # nothing was expanded (the bomb would take gigabytes)


def test_aliases_within_the_budget_still_work(tmp_path: Path, unseen_root: Path) -> None:
    """Aliases are ordinary YAML: a shared options block is read as written out."""
    text = (f"sources:\n"
            f"  lake: &lake {{kind: parquet, root: {unseen_root / 'lake'}}}\n"
            f"  lake2: *lake\n"
            f"tables:\n"
            f"  orders: &orders {{source: lake, path: orders/, partitioning: hive}}\n"
            f"  orders2: {{<<: *orders, source: lake2}}\n")
    with fedquery.connect(_write(tmp_path, text)) as con:
        assert con.sql("SELECT count(*) FROM orders").fetchall() == \
            con.sql("SELECT count(*) FROM orders2").fetchall()


def test_recursive_alias(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "    loop: &loop {again: *loop}\n")
    with pytest.raises(fedquery.CatalogError, match=r"line 5: an alias refers to a value that contains it"):
        load_catalog(path)


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")], ids=["lists", "mappings"])
def test_deep_nesting(tmp_path: Path, opening: str, closing: str) -> None:
    depth = 20_000
    path = _write(tmp_path, HEAD + "    deep: " + opening * depth + "1" + closing * depth + "\n")
    with pytest.raises(fedquery.CatalogError, match=rf"nested more than {MAX_DEPTH} deep") as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_nesting_within_the_limit_is_read(tmp_path: Path) -> None:
    depth = MAX_DEPTH - 5  # a source setting that holds any mapping: a local lake's options
    head = "sources:\n  wh:\n    kind: parquet\n    root: .\n    options:\n"
    path = _write(tmp_path, head + "      deep: " + "[" * depth + "1" + "]" * depth + "\n")
    catalog = load_catalog(path)
    value = catalog.sources["wh"].settings["options"]["deep"]
    for _ in range(depth):
        (value,) = value
    assert value == 1


def test_too_many_values_without_aliases(tmp_path: Path) -> None:
    items = ",".join(["1"] * (MAX_NODES + 10))
    path = _write(tmp_path, HEAD + f"    many: [{items}]\n")
    assert path.stat().st_size < MAX_BYTES
    with pytest.raises(fedquery.CatalogError, match=f"more than {MAX_NODES} values"):
        load_catalog(path)


def test_file_too_big(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "# " + "x" * MAX_BYTES + "\n", "huge.yaml")
    with pytest.raises(fedquery.CatalogError, match=rf"huge.yaml: the file has \d+ bytes; a catalog "
                                                     rf"may have at most {MAX_BYTES}"):
        load_catalog(path)


def test_python_tags_do_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _write(tmp_path, HEAD + f"    x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(fedquery.CatalogError, match="not valid YAML"):
        load_catalog(path)
    assert not marker.exists()


def test_key_written_twice(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "    path: other.duckdb\n")
    with pytest.raises(fedquery.CatalogError, match=r"line 5: key 'path' is written twice"):
        load_catalog(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + b"    note: caf\xe9\n")
    with pytest.raises(fedquery.CatalogError, match=r"latin1.yaml: not UTF-8 text"):
        load_catalog(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD)
    path.chmod(0)
    with pytest.raises(fedquery.CatalogError, match="cannot read the catalog"):
        load_catalog(path)


def test_empty_file_names_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(fedquery.CatalogError, match=r"empty.yaml: sources: missing"):
        load_catalog(_write(tmp_path, "# nothing here\n", "empty.yaml"))


@pytest.mark.parametrize("catalog", [5, None, b"catalog.yaml", ["catalog.yaml"], 1.5],
                         ids=["int", "none", "bytes", "list", "float"])
def test_catalog_argument_of_the_wrong_type(catalog) -> None:
    with pytest.raises(fedquery.CatalogError, match="expected a catalog: the path of a YAML file or a dict"):
        fedquery.connect(catalog)
