"""Settings a connector declares, checked where the catalog is loaded, with key-path errors.

A connector lists its keys in ``Connector.SETTINGS`` (and the keys a table of it may carry in
``TABLE_SETTINGS``) as ``Setting`` values; ``check`` refuses an unknown key, a missing required
one and a value of the wrong type, naming the key path (``catalog.yaml: sources.pg.pool_size:
expected a positive integer, got 'x'``). The vocabulary is small on purpose: text, paths,
numbers, flags, mappings and the S3 options every remote root shares.

>>> SETTINGS = {"path": Setting(text, required=True), "rows": Setting(positive_int)}
>>> check(SETTINGS, {"path": "a.db", "rows": 3}, "sources.w", "duckdb")
>>> check(SETTINGS, {"rows": 3}, "sources.w", "duckdb")
Traceback (most recent call last):
fedquery.errors.CatalogError: sources.w.path: required for kind 'duckdb'
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fedquery.errors import CatalogError

Check = Callable[[Any, str], None]


@dataclass(frozen=True)
class Setting:
    """One key: how its value is checked, whether it must be given, what it means."""

    check: Check
    required: bool = False
    doc: str = ""


def check(declared: Mapping[str, Setting], given: Mapping[str, Any], where: str, kind: str, *,
          what: str = "setting for a {kind} source") -> None:
    """Refuse unknown keys, missing required keys and values of the wrong type."""
    unknown = sorted(str(k) for k in set(given) - set(declared))
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(declared), n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        expected = f"expected one of: {', '.join(sorted(declared))}" if declared else "it takes none"
        raise CatalogError(f"{where}.{unknown[0]}: unknown {what.format(kind=kind)}; "
                           f"{expected}{did}")
    for key, setting in declared.items():
        value = given.get(key)
        if value is None or (setting.required and isinstance(value, str) and not value.strip()):
            if setting.required:
                got = "" if value is None else "; got an empty string"
                doc = f" ({setting.doc})" if setting.doc else ""
                raise CatalogError(f"{where}.{key}: required for kind {kind!r}{doc}{got}")
            continue
        setting.check(value, f"{where}.{key}")


def describe(value: Any) -> str:
    """A value's type in words, with a short rendering of it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return "an empty string" if not value else f"a string ({short(value)})"
    if isinstance(value, int | float):
        return f"a number ({short(value)})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text(value: Any, where: str) -> None:
    """A non-empty string without a NUL character (no path, URL or setting can hold one)."""
    if not isinstance(value, str):
        raise CatalogError(f"{where}: expected a string, got {describe(value)}")
    if not value.strip():
        raise CatalogError(f"{where}: expected a non-empty string (omit the key for the default)")
    if "\x00" in value:
        raise CatalogError(f"{where}: contains a NUL character (\\x00), which no path, URL or "
                           "setting can hold")


def positive_int(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CatalogError(f"{where}: expected a positive integer, got {describe(value)}")


def seconds(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
            or not math.isfinite(value):
        raise CatalogError(f"{where}: expected a number of seconds, got {describe(value)}")


def flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise CatalogError(f"{where}: expected true or false, got {describe(value)}")


def mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise CatalogError(f"{where}: expected a mapping, got {describe(value)}")


def text_or_int(value: Any, where: str) -> None:
    """A version or a snapshot id: an integer, or a non-empty string (a timestamp, a tag)."""
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise CatalogError(f"{where}: expected an integer or a string, got {describe(value)}")


def one_of(*choices: str) -> Check:
    def check_choice(value: Any, where: str) -> None:
        if value not in choices:
            raise CatalogError(f"{where}: expected one of {', '.join(map(repr, choices))}, got "
                               f"{describe(value)}")
    return check_choice


def string_map(value: Any, where: str) -> None:
    """A mapping of names to scalar values (driver options, storage options)."""
    mapping(value, where)
    for key, item in value.items():
        if not isinstance(key, str) or isinstance(item, Mapping | list | tuple):
            raise CatalogError(f"{where}.{key}: expected a single value, got {describe(item)}")


def check_remote_options(given: Mapping[str, Any], where: str) -> None:
    """``options`` of a source whose ``root`` is on S3 (``s3://``) or Azure (``az://``), checked
    as that store's options."""
    root = given.get("root")
    if isinstance(root, str) and root.startswith(("s3://", "s3a://")) and given.get("options"):
        s3_options(given["options"], f"{where}.options")
    if isinstance(root, str) and root.startswith("az://"):
        azure_options(given.get("options") or {}, f"{where}.options")


def azure_options(value: Any, where: str) -> None:
    """``options`` of an ``az://`` root: the account's name (required) and key or SAS token."""
    from fedquery.connectors.remote_fs import AZURE_OPTIONS

    mapping(value, where)
    for key, item in value.items():
        if key not in AZURE_OPTIONS:
            raise CatalogError(f"{where}.{key}: unknown Azure option {short(key)}; expected one "
                               f"of: {', '.join(AZURE_OPTIONS)}")
        text(item, f"{where}.{key}")
    if not value.get("account_name"):
        raise CatalogError(f"{where}.account_name: required for an az:// root (the storage "
                           "account)")


def s3_options(value: Any, where: str) -> None:
    """``options`` of a root on S3: known keys of the right types, key and secret together."""
    from fedquery.connectors.remote_fs import S3_OPTIONS

    mapping(value, where)
    for key, item in value.items():
        if key not in S3_OPTIONS:
            hint = difflib.get_close_matches(str(key), sorted(S3_OPTIONS), n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise CatalogError(f"{where}.{key}: unknown S3 option {short(key)}; expected one of: "
                               f"{', '.join(sorted(S3_OPTIONS))}{did}")
        _OPTION_CHECKS.get(key, _scalar)(item, f"{where}.{key}")
    if bool(value.get("key")) != bool(value.get("secret")):
        raise CatalogError(f"{where}: give both key and secret, or neither (to use the "
                           "environment's credentials or anonymous: true)")


def _flag_text(value: Any, where: str) -> None:
    """true/false, or the words an environment variable may hold for them."""
    if isinstance(value, bool):
        return
    if not (isinstance(value, str) and value.strip().lower() in _FLAGS):
        raise CatalogError(f"{where}: expected true or false, got {describe(value)}")


def _positive_number(integer: bool) -> Check:
    def check_number(value: Any, where: str) -> None:
        try:
            number = (int if integer else float)(value) if not isinstance(value, bool) else 0
        except (TypeError, ValueError):
            number = 0
        if isinstance(value, list | tuple | Mapping) or number <= 0:
            what = "a positive integer" if integer else "a positive number of seconds"
            raise CatalogError(f"{where}: expected {what}, got {describe(value)}")
    return check_number


def _scalar(value: Any, where: str) -> None:
    if isinstance(value, Mapping | list | tuple):
        raise CatalogError(f"{where}: expected a single value, got {describe(value)}")


_FLAGS = {"true", "false", "1", "0", "yes", "no"}
positive_seconds = _positive_number(False)
_OPTION_CHECKS: dict[str, Check] = {
    "endpoint_url": text, "key": text, "secret": text, "token": text, "region": text,
    "anonymous": _flag_text, "max_attempts": _positive_number(True),
    "connect_timeout": _positive_number(False), "request_timeout": _positive_number(False),
    "read_timeout": _positive_number(False), "min_read_speed": _positive_number(False),
}


def search_settings(value: Any, where: str) -> None:
    """``vector_search: {nprobes: n, refine: n, exact: bool}`` of a vector table."""
    parse_search_settings(value, where)


def parse_search_settings(value: Any, where: str):
    """The ``SearchSettings`` a table's ``vector_search`` mapping declares, checked."""
    from fedquery.connectors.base import SearchSettings

    mapping(value, where)
    check({"nprobes": Setting(_bounded), "refine": Setting(_bounded), "exact": Setting(flag)},
          value, where, "vector_search")
    return SearchSettings(value.get("nprobes"), value.get("refine"), value.get("exact"))


def _bounded(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise CatalogError(f"{where}: expected an integer from 1 to 100000, got {describe(value)}")
