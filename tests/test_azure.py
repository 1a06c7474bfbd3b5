"""Sources on Azure Blob Storage, against Azurite (a real emulator on 127.0.0.1): a files root
``az://container/prefix`` (listing and blob functions through pyarrow's Azure filesystem) and a
LanceDB database ``az://container/db`` (Lance's object store), with the same options."""

from __future__ import annotations

import io

import pyarrow as pa
import pytest
from PIL import Image

import fedquery
from tests.services.azure import AZURITE_ACCOUNT, AZURITE_KEY, azure_filesystem

CONTAINER = "fleet"


def options(endpoint: str, **extra) -> dict:
    return {"account_name": AZURITE_ACCOUNT, "account_key": "${FQ_AZURE_KEY}",
            "endpoint_url": endpoint, **extra}


@pytest.fixture(scope="module")
def azure(azurite_endpoint: str) -> str:
    """The container with three images under camera/ and a Lance table under db/."""
    import lance

    filesystem = azure_filesystem(azurite_endpoint)
    filesystem.create_dir(CONTAINER)
    for name, size in (("a.png", (32, 16)), ("b.png", (8, 8)), ("deep/c.png", (5, 40))):
        out = io.BytesIO()
        Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
        with filesystem.open_output_stream(f"{CONTAINER}/camera/{name}") as stream:
            stream.write(out.getvalue())
    table = pa.table({"id": pa.array(range(20), pa.int32()), "name": [f"n{i % 4}" for i in range(20)]})
    storage = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY, "allow_http": "true",
               "azure_storage_endpoint": f"{azurite_endpoint}/{AZURITE_ACCOUNT}"}
    lance.write_dataset(table, f"az://{CONTAINER}/db/items.lance", storage_options=storage)
    return azurite_endpoint


@pytest.fixture()
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FQ_AZURE_KEY", AZURITE_KEY)
    return AZURITE_KEY


def test_files_root_on_azure_lists_and_reads_images(azure: str, key: str) -> None:
    catalog = {"sources": {"cam": {"kind": "files", "root": f"az://{CONTAINER}/camera",
                                   "options": options(azure)}},
               "tables": {"camera_files": {"source": "cam"}}}
    with fedquery.connect(catalog) as con:
        rows = con.sql("SELECT uri, size > 0 FROM camera_files ORDER BY uri").fetchall()
        assert rows == [("a.png", True), ("b.png", True), ("deep/c.png", True)]
        sizes = con.sql("SELECT uri, image_info(uri).width, image_info(uri).height "
                        "FROM camera_files ORDER BY uri").fetchall()
        assert sizes == [("a.png", 32, 16), ("b.png", 8, 8), ("deep/c.png", 5, 40)]
        assert key not in con.explain("SELECT * FROM camera_files")


def test_lancedb_on_azure_answers_like_the_rows_written(azure: str, key: str) -> None:
    catalog = {"sources": {"vec": {"kind": "lancedb", "uri": f"az://{CONTAINER}/db",
                                   "options": options(azure)}},
               "tables": {"items": {"source": "vec", "table": "items"}}}
    with fedquery.connect(catalog) as con:
        assert con.sql("SELECT count(*), sum(id) FROM items WHERE name = 'n1'").fetchall() == [(5, 45)]
        assert key not in repr(con._session.connectors["vec"].describe(
            con._session.connectors["vec"].tables()[0]))


def test_wrong_account_key_is_a_source_error_without_the_key(azure: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "d3Jvbmcta2V5LW9mLXRoZS1yaWdodC1sZW5ndGgtZm9yLWF6dXJlLWFjY291bnRzLXRoYXQtaXMtbG9uZw=="
    monkeypatch.setenv("FQ_AZURE_KEY", wrong)
    catalog = {"sources": {"cam": {"kind": "files", "root": f"az://{CONTAINER}/camera",
                                   "options": options(azure)}},
               "tables": {"camera_files": {"source": "cam"}}}
    with fedquery.connect(catalog) as con, pytest.raises(fedquery.SourceError) as info:
        con.sql("SELECT count(*) FROM camera_files").fetchall()
    assert wrong not in str(info.value) and info.value.source == "cam"


@pytest.mark.parametrize("given, message", [
    ({"account_key": "k"}, r"sources\.cam\.options\.account_name: required for an az:// root"),
    ({"account_name": "a", "region": "x"}, r"sources\.cam\.options\.region: unknown Azure option"),
])
def test_azure_options_are_checked_where_the_catalog_loads(given: dict, message: str) -> None:
    catalog = {"sources": {"cam": {"kind": "files", "root": "az://c/p", "options": given}}}
    with pytest.raises(fedquery.CatalogError, match=message):
        fedquery.catalog.load_catalog(catalog)
