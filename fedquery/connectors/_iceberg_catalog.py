"""The settings of an Iceberg source and the pyiceberg catalog they open.

``catalog:`` holds the properties pyiceberg's ``load_catalog`` takes (``type: sql`` with a
SQLAlchemy ``uri``, ``type: rest`` with the server's ``uri``, a ``warehouse``, FileIO
properties such as ``s3.endpoint``). They are checked when the catalog file is loaded; a
relative SQLite file or warehouse folder is taken relative to the catalog file. A SQL catalog
is opened read-only in spirit: pyiceberg is told not to create its tables
(``init_catalog_tables: false``), and a local SQLite file must exist.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fedquery.connectors import settings as s
from fedquery.errors import CatalogError

CATALOG_TYPES = ("sql", "rest", "glue", "hive", "dynamodb")
_NEEDS_URI = {"sql", "rest", "hive"}
_SECRET_PROPERTY = re.compile(r"secret|password|token|credential|key", re.I)
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.I)


def check_catalog(value: Any, where: str) -> None:
    """``catalog:``: a mapping of scalar pyiceberg properties with a known ``type`` and, for
    SQL, REST and Hive catalogs, a ``uri``."""
    s.string_map(value, where)
    kind = value.get("type")
    if kind is None:
        raise CatalogError(f"{where}.type: required; one of {', '.join(CATALOG_TYPES)}")
    s.one_of(*CATALOG_TYPES)(kind, f"{where}.type")
    for key, item in value.items():
        if item is None or isinstance(item, str):
            s.text(item, f"{where}.{key}")
    if kind in _NEEDS_URI and value.get("uri") is None:
        raise CatalogError(f"{where}.uri: required for a {kind} catalog")
    if kind == "sql" and not str(value["uri"]).startswith(("sqlite:", "postgresql")):
        raise CatalogError(f"{where}.uri: expected a SQLAlchemy URL of SQLite (sqlite:///file.db)"
                           f" or PostgreSQL (postgresql+psycopg://user@host/db), got "
                           f"{s.describe(redact_url(str(value['uri'])))}")


def check_snapshot_id(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(f"{where}: expected a snapshot id (a non-negative integer), got "
                           f"{s.describe(value)}")


def check_instant(value: Any, where: str) -> None:
    """``as_of``: a timestamp (ISO 8601 text, or a YAML timestamp); no zone means UTC."""
    try:
        instant(value)
    except ValueError:
        raise CatalogError(f"{where}: expected a timestamp such as '2024-05-01 12:00:00' "
                           f"(UTC unless it has a zone), got {s.describe(value)}") from None


def instant(value: Any) -> dt.datetime:
    """``as_of`` as an aware datetime (naive values are UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str) and value.strip():
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def check_one_pin(table: Mapping[str, Any], where: str, keys: tuple[str, ...]) -> None:
    given = [k for k in keys if table.get(k) is not None]
    if len(given) > 1:
        raise CatalogError(f"{where}.{given[1]}: give one of {', '.join(keys)}, not both "
                           f"{given[0]} and {given[1]}")


def properties(settings: Mapping[str, Any], base_dir: Path) -> dict[str, str]:
    """pyiceberg's properties: strings, local paths made absolute, catalog tables never made."""
    props = {k: (str(v).lower() if isinstance(v, bool) else str(v))
             for k, v in settings["catalog"].items()}
    props.pop("name", None)  # the catalog's name: load_catalog's first argument
    if props["type"] == "sql":
        props["uri"] = _sqlite_absolute(props["uri"], base_dir)
        props["init_catalog_tables"] = "false"
    if "warehouse" in props and "://" not in props["warehouse"]:
        props["warehouse"] = (base_dir / os.path.expanduser(props["warehouse"])).resolve().as_uri()
    return props


def catalog_name(settings: Mapping[str, Any], source: str) -> str:
    """The name pyiceberg knows the catalog by (a SQL catalog keeps it in each table's row):
    ``catalog.name``, else the source's name."""
    return str(settings["catalog"].get("name") or source)


def _sqlite_absolute(uri: str, base_dir: Path) -> str:
    """``sqlite:///rel.db`` (relative to the catalog file) as ``sqlite:////abs/rel.db``."""
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:////"):
        return uri
    path, _, query = uri[len("sqlite:///"):].partition("?")
    absolute = (base_dir / os.path.expanduser(path)).resolve()
    return f"sqlite:///{absolute}" + (f"?{query}" if query else "")


def sqlite_file(uri: str) -> str | None:
    """The local file of a ``sqlite:////abs.db`` URL (None: not SQLite, or in memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].partition("?")[0]
    return path if path and path != ":memory:" else None


def secret_values(props: Mapping[str, str]) -> list[str]:
    """The values to mask in messages: secret-looking properties, a URI's password."""
    found = [v for k, v in props.items() if _SECRET_PROPERTY.search(k) and v]
    for value in props.values():
        try:
            password = urlsplit(value).password if "://" in value else None
        except ValueError:
            password = None
        if password:
            found.append(password)
    return found


def redact_url(text: str) -> str:
    """``text`` with the user information of every URL in it removed."""
    return _CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)


def describe_catalog(props: Mapping[str, str]) -> str:
    """The catalog as explain shows it: its type and URI without credentials."""
    uri = props.get("uri")
    return f"{props['type']} {redact_url(uri)}" if uri else props["type"]
