"""``connect(engine=...)`` and ``--engine``: checked before anything opens; ``engine="ray"``
without Ray and Daft installed says what to install (the Ray engine's own tests run in the
Ray environment: tests/ray_engine)."""

from __future__ import annotations

import importlib.util

import pytest

import fedquery
from fedquery.cli import main

CATALOG = {"sources": {"lake": {"kind": "parquet", "root": "."}}, "tables": {}}
HAS_RAY = all(importlib.util.find_spec(m) for m in ("ray", "daft"))


@pytest.mark.parametrize("engine", ["spark", "", None, 1])
def test_an_unknown_engine_is_a_catalog_error(engine) -> None:
    with pytest.raises(fedquery.CatalogError, match="engine must be one of 'local', 'ray'"):
        fedquery.connect(CATALOG, engine=engine)


def test_a_ray_address_needs_the_ray_engine() -> None:
    with pytest.raises(fedquery.CatalogError, match="ray_address is for engine='ray'"):
        fedquery.connect(CATALOG, ray_address="127.0.0.1:6379")
    with pytest.raises(fedquery.CatalogError, match="ray_address must be a string"):
        fedquery.connect(CATALOG, engine="ray", ray_address=6379)


@pytest.mark.skipif(HAS_RAY, reason="Ray and Daft are installed here (tests/ray covers them)")
def test_the_ray_engine_without_ray_says_what_to_install(capsys, tmp_path) -> None:
    with pytest.raises(fedquery.CatalogError, match=r"pip install 'fedquery\[ray\]'"):
        fedquery.connect(CATALOG, engine="ray")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("sources: {lake: {kind: parquet, root: .}}\ntables: {}\n")
    assert main(["sql", "--engine", "ray", str(catalog), "SELECT 1"]) != 0
    assert "pip install 'fedquery[ray]'" in capsys.readouterr().err
