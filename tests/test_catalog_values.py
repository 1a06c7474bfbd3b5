"""A catalog file that is not valid YAML, or holds a value YAML cannot build or the OS cannot
take, is a CatalogError naming the file, the line and column or the key path, and never the
text of the line (a catalog line may hold a password written out).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import fedquery
from fedquery import cli

SECRET = "S3CR3T_pw_Xy7Q"
HEAD = "sources:\n  lake:\n    kind: parquet\n    root: s3://b/\n"

BROKEN = [
    # (id, catalog text, "line L, column C" the error names)
    ("flow_list_unclosed", HEAD + f"    options: {{key: AKIAFAKE, secret: {SECRET}, region: [}}\n",
     "line 5, column 63"),
    ("quote_unterminated",
     f"sources:\n  pg:\n    kind: postgres\n    dsn: 'host=h password={SECRET}\tx: }}\n",
     "line 5, column 1"),
    ("password_read_as_alias", HEAD + f"    options: {{key: AKIAFAKE, secret: *{SECRET}}}\n",
     "line 5, column 38"),
    ("password_read_as_tag", HEAD + f"    options: {{key: AKIAFAKE, secret: !{SECRET} x}}\n",
     "line 5, column 38"),
    ("tag_with_a_quote", HEAD + f"    options: {{key: AKIAFAKE, secret: !{SECRET}'x y}}\n",
     "line 5, column 38"),
    ("password_read_as_anchor_twice", HEAD + f"    options: {{key: &{SECRET} a, secret: &{SECRET} b}}\n",
     "line 5, column 47"),
    ("tab_after_password", HEAD + f"    options:\n      secret: {SECRET}\n\t  key: x\n", "line 7, column 1"),
    ("bad_escape", HEAD + f'    options: {{secret: "{SECRET}\\q"}}\n', "line 5, column 39"),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "where"), [(t, w) for _, t, w in BROKEN], ids=[i for i, _, _ in BROKEN])
def test_syntax_error_names_the_place_not_the_text(tmp_path: Path, text: str, where: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect(path)
    message = str(info.value)
    assert SECRET not in message and SECRET not in repr(info.value)
    assert message.startswith(f"{path}: {where}: not valid YAML: "), message
    assert "\n" not in message  # one line: no quoted line, no caret


@pytest.mark.parametrize(("text", "where"), [(t, w) for _, t, w in BROKEN[:2]],
                         ids=[i for i, _, _ in BROKEN[:2]])
def test_cli_prints_no_line_of_a_broken_catalog(tmp_path: Path, capsys, text: str, where: str) -> None:
    path = _write(tmp_path, text)
    assert cli.main(["tables", str(path)]) == 1
    err = capsys.readouterr().err
    assert SECRET not in err
    assert f"{where}: not valid YAML" in err


def test_syntax_error_keeps_what_is_wrong(tmp_path: Path) -> None:
    """PyYAML's description of the problem is kept (one unexpected character is shown)."""
    path = _write(tmp_path, HEAD + "    options: {region: [}\n")
    with pytest.raises(fedquery.CatalogError, match=r"expected the node content, but found '}'"):
        fedquery.connect(path)


def test_alias_hint_says_to_quote(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + f"    options: {{key: k, secret: *{SECRET}}}\n")
    with pytest.raises(fedquery.CatalogError, match=r"starts with \* is read as an alias: quote it"):
        fedquery.connect(path)


def test_control_character_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + f"    options: {{secret: {SECRET}\x07}}\n")
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect(path)
    assert str(info.value) == (f"{path}: line 5, column 37: not valid YAML: control character #x0007 "
                               "(write it as an escape in a double-quoted string)")


VALUES = [
    # (id, value as written after "path: ", what the error says)
    ("date_that_does_not_exist", "2024-02-30", "cannot be read as a date or timestamp (day is out "
                                               "of range for month); quote it to keep it as text"),
    ("timestamp_tag", '!!timestamp "2024-13-45"', "cannot be read as a date or timestamp (month "
                                                  "must be in 1..12)"),
    ("int_tag", '!!int "abc"', "cannot be read as an integer"),
    ("float_tag", '!!float "abc"', "cannot be read as a number"),
    ("int_too_long", "9" * 5000, "cannot be read as an integer (too many digits); quote it"),
]


@pytest.mark.parametrize(("value", "says"), [(v, s) for _, v, s in VALUES], ids=[i for i, _, _ in VALUES])
def test_value_yaml_cannot_build(tmp_path: Path, value: str, says: str) -> None:
    path = _write(tmp_path, f"sources:\n  wh:\n    kind: duckdb\n    path: {value}\n")
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect(path)
    message = str(info.value)
    assert message.startswith(f"{path}: sources.wh.path: line 4, column 11: {says}"), message
    assert "abc" not in message  # the text of the value is never shown


def test_value_in_a_list_and_as_a_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "sources:\n  wh: {kind: duckdb, path: w.duckdb, x: [1, !!float nope]}\n")
    with pytest.raises(fedquery.CatalogError,
                       match=r": sources\.wh\.x\[1\]: line 2, column 45: cannot be read as a number$"):
        fedquery.connect(path)
    path = _write(tmp_path, "sources:\n  2024-02-31: {kind: duckdb, path: w.duckdb}\n")
    with pytest.raises(fedquery.CatalogError, match=r": sources\.2024-02-31 \(a key\): line 2, column 3: "):
        fedquery.connect(path)


@pytest.mark.parametrize(("kind", "key"), [("duckdb", "path"), ("parquet", "root"), ("lancedb", "uri"),
                                           ("files", "root")])
@pytest.mark.parametrize("written", ["dict", "yaml"])
def test_nul_in_a_path(tmp_path: Path, kind: str, key: str, written: str) -> None:
    source = {"kind": kind, key: f"{tmp_path}/a\x00b"}
    if written == "yaml":
        catalog = _write(tmp_path, f'sources:\n  s: {{kind: {kind}, {key}: "{tmp_path}/a\\x00b"}}\n')
        origin = str(catalog)
    else:
        catalog, origin = {"sources": {"s": source}}, "<dict>"
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect(catalog)
    assert str(info.value) == (f"{origin}: sources.s.{key}: contains a NUL character (\\x00), which "
                               "no path, URL or setting can hold")


def test_nul_in_a_table_path(tmp_path: Path) -> None:
    catalog = {"sources": {"s": {"kind": "parquet", "root": str(tmp_path)}},
               "tables": {"t": {"source": "s", "path": "a\x00b/"}}}
    with pytest.raises(fedquery.CatalogError, match=r"^<dict>: tables\.t\.path: contains a NUL"):
        fedquery.connect(catalog)


MALFORMED_URLS = [
    ("postgres", {"kind": "postgres", "dsn": "postgresql://u:x@[::1/db"}, "dsn"),
    ("postgres_close_only", {"kind": "postgres", "dsn": "postgresql://u:x@::1]/db"}, "dsn"),
    ("parquet_endpoint", {"kind": "parquet", "root": "s3://b/", "options": {
        "endpoint_url": "http://[::1:9000", "key": "k", "secret": "s"}}, "options.endpoint_url"),
    ("files_endpoint", {"kind": "files", "root": "s3://b/", "options": {"endpoint_url": "http://[::1:9000"}},
     "options.endpoint_url"),
    ("root_url", {"kind": "parquet", "root": "s3://[bucket/"}, "root"),
]


@pytest.mark.parametrize(("source", "key"), [(s, k) for _, s, k in MALFORMED_URLS],
                         ids=[i for i, _, _ in MALFORMED_URLS])
def test_malformed_ipv6_url(source: dict, key: str) -> None:
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect({"sources": {"s": source}})
    assert str(info.value) == (f"<dict>: sources.s.{key}: not a valid URL: an IPv6 host must be "
                               "written in brackets, [::1], with the bracket closed")


def test_endpoint_port_not_a_number() -> None:
    source = {"kind": "files", "root": "s3://b/", "options": {"endpoint_url": f"http://h:{SECRET}"}}
    with pytest.raises(fedquery.CatalogError) as info:
        fedquery.connect({"sources": {"s": source}})
    assert str(info.value) == ("<dict>: sources.s.options.endpoint_url: not a valid URL: the port is "
                               "not a number from 0 to 65535")


def test_libpq_multi_host_dsn_is_not_refused_by_the_catalog() -> None:
    """libpq reads ``h1:5432,h2:5433`` (Python's parser cannot read its port): the catalog
    lets it through; connecting fails at the source, not as a catalog error."""
    from fedquery.catalog import load_catalog

    dsn = "postgresql://u:x@127.0.0.1:9,[::1]:9/db?connect_timeout=2"
    assert load_catalog({"sources": {"pg": {"kind": "postgres", "dsn": dsn}}}).sources["pg"]
