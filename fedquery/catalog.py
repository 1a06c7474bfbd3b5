"""The catalog: which sources exist, which table names SQL sees, blob columns and entities.

A catalog is a YAML file or a dict of the same shape (see docs/catalog.md). Loading it checks
every key and raises ``CatalogError`` naming the file, the key path and what was expected.
``${VAR}`` reads the environment; every value read that way, and every setting whose key names a
secret (dsn, password, secret, token, key, credential), is redacted from every message
fedquery produces.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedquery.catalog_yaml import read_yaml
from fedquery.connectors import connector_class, known_kinds
from fedquery.connectors.base import SearchSettings
from fedquery.connectors.settings import describe, parse_search_settings, positive_seconds
from fedquery.connectors.settings import short as _short
from fedquery.errors import CatalogError
from fedquery.secrets import Secrets

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEYS = re.compile(r"dsn|password|secret|token|key|credential", re.I)


@dataclass(frozen=True)
class SourceSpec:
    """One declared source: its name, kind and settings (secrets never shown in repr)."""

    name: str
    kind: str
    settings: Mapping[str, Any] = field(repr=False)
    base_dir: Path = field(repr=False)

    def resolve(self, value: str) -> str:
        """A local path relative to the catalog file; URLs (``s3://``) are returned as is."""
        if "://" in value:
            return value
        return str((self.base_dir / os.path.expanduser(value)).resolve())


@dataclass(frozen=True)
class TableSpec:
    """A table name SQL sees, bound to a source and what locates it there."""

    name: str
    source: str
    table: str | None = None
    path: str | None = None
    partitioning: str | None = None
    vector_search: SearchSettings | None = None  # a LanceDB table's ANN search defaults
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # every key, checked


@dataclass(frozen=True)
class MemberSpec:
    """One member of an entity: a table linked to the root by a key, with a time column."""

    name: str
    table: str
    key: str
    root_key: str
    time: str | None = None


@dataclass(frozen=True)
class EntitySpec:
    """A logical entity: a root table, its key and the member tables linked to it."""

    name: str
    table: str
    key: str
    members: Mapping[str, MemberSpec]


@dataclass(frozen=True)
class Settings:
    """The connection's limits and manners (``settings:`` in the catalog): a query's
    ``timeout`` in seconds, DuckDB's ``memory_limit`` (``"4GB"``), the most rows a result may
    hold (``max_rows``), and whether long queries show a progress bar (``auto``, ``true``,
    ``false``)."""

    timeout: float | None = None
    memory_limit: str | None = None
    max_rows: int | None = None
    progress: str | bool = "auto"


@dataclass
class Catalog:
    """A checked catalog; build it with ``load_catalog``."""

    origin: str
    sources: dict[str, SourceSpec]
    tables: dict[str, TableSpec]
    blobs: dict[str, str]
    entities: dict[str, EntitySpec]
    secrets: Secrets = field(repr=False)
    settings: Settings = field(default_factory=Settings)

    def entity(self, name: str) -> EntitySpec | None:
        """The entity SQL names ``name`` (case-insensitive), if any."""
        return next((e for n, e in self.entities.items() if n.lower() == name.lower()), None)

    def __repr__(self) -> str:
        return f"Catalog({self.origin!r}, sources={list(self.sources)}, tables={list(self.tables)})"


def load_catalog(catalog: str | os.PathLike | Mapping[str, Any]) -> Catalog:
    """Read and check a catalog from a YAML path or a dict.

    >>> load_catalog({"sources": {"lake": {"kind": "parquet", "root": "."}}, "tables": {}})
    Catalog('<dict>', sources=['lake'], tables=[])
    """
    if isinstance(catalog, Mapping):
        return _Loader("<dict>", Path.cwd()).load(catalog)
    if not isinstance(catalog, str | os.PathLike):
        raise CatalogError(f"expected a catalog: the path of a YAML file or a dict, got "
                           f"{describe(catalog)}")
    path = Path(os.path.expanduser(catalog))
    if path.is_dir():
        hint = " (it holds a catalog.yaml: pass that)" if (path / "catalog.yaml").is_file() else ""
        raise CatalogError(f"{path}: is a folder, not a catalog file{hint}")
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    data = read_yaml(path)
    return _Loader(str(path), path.parent.resolve()).load({} if data is None else data)


class _Loader:
    """Walks the raw mapping, expanding ``${VAR}`` and checking every key path: its type, its
    value, and that the keys of a mapping are names."""

    def __init__(self, origin: str, base_dir: Path) -> None:
        self.origin, self.base_dir, self.secrets = origin, base_dir, Secrets()

    def fail(self, keypath: str, message: str) -> CatalogError:
        """The error for one key path (a value it shows that is a secret is masked)."""
        return CatalogError(self.secrets.redact(f"{self.origin}: {keypath}: {message}"))

    def load(self, data: Any) -> Catalog:
        self.mapping(data, "(top level)")
        for key in data:
            if key not in TOP_LEVEL:
                raise self.fail(str(key), f"unknown key; expected {', '.join(TOP_LEVEL)}")
        sources = self.sources(data.get("sources"))
        tables = self.tables(data.get("tables"), sources)
        blobs = self.blobs(data.get("blobs"), sources, tables)
        entities = self.entities(data.get("entities"), tables)
        settings = self.settings(data.get("settings"))
        return Catalog(self.origin, sources, tables, blobs, entities, self.secrets, settings)

    def settings(self, value: Any) -> Settings:
        """``settings:``: each key optional, checked for its type."""
        spec = self.mapping(value, "settings", optional=True)
        self.known_keys(spec, SETTING_KEYS, "settings")
        timeout = spec.get("timeout")
        if timeout is not None:
            self.checked(positive_seconds, timeout, "settings.timeout")
            timeout = float(timeout)
        max_rows = spec.get("max_rows")
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                                     or max_rows <= 0):
            raise self.fail("settings.max_rows",
                            f"expected a positive integer, got {describe(max_rows)}")
        memory = self.text(spec.get("memory_limit"), "settings.memory_limit")
        if memory is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMGT]i?B|B|%)?\s*",
                                                   memory, re.IGNORECASE):
            raise self.fail("settings.memory_limit", f"expected a size such as 4GB, 512MiB or "
                            f"50% (of the machine's memory), got {describe(memory)}")
        progress = spec.get("progress", "auto")
        if isinstance(progress, str) and progress.strip().lower() in _FLAGS | {"auto"}:
            word = progress.strip().lower()
            progress = "auto" if word == "auto" else word in ("true", "1", "yes")
        if progress not in (True, False, "auto"):
            raise self.fail("settings.progress", f"expected auto, true or false, got "
                            f"{describe(progress)}")
        return Settings(timeout, memory, max_rows, progress)

    # ------------------------------------------------------------------ typed values

    def mapping(self, value: Any, keypath: str, *, optional: bool = False) -> Mapping[str, Any]:
        """A mapping (``{}`` for null when ``optional``)."""
        if value is None and optional:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(keypath, f"expected a mapping, got {describe(value)}")
        return value

    def entries(self, value: Any, keypath: str, what: str) -> list[tuple[str, Any, str]]:
        """(name, value, key path) of an optional mapping whose keys are names."""
        out = []
        for name, item in self.mapping(value, keypath, optional=True).items():
            if not isinstance(name, str) or not name.strip():
                raise self.fail(f"{keypath}.{name}", f"a {what} name must be a non-empty "
                                f"string, got {describe(name)}")
            out.append((name, item, f"{keypath}.{name}"))
        return out

    def text(self, value: Any, keypath: str, *, required: str | None = None) -> str | None:
        """A non-empty string, or None when absent (an error saying ``required`` if given)."""
        if value is None:
            if required:
                raise self.fail(keypath, required)
            return None
        if not isinstance(value, str):
            raise self.fail(keypath, f"expected a string, got {describe(value)}")
        if not value.strip():
            raise self.fail(keypath, "expected a non-empty string (omit the key for the default)"
                            if not required else f"{required}; got an empty string")
        self.printable(value, keypath)
        return value

    def printable(self, value: str, keypath: str) -> None:
        """No NUL character: no path, URL or setting can hold one (the OS refuses it)."""
        if "\x00" in value:
            raise self.fail(keypath, "contains a NUL character (\\x00), which no path, URL or "
                            "setting can hold")

    def url(self, value: str, keypath: str, *, port: bool) -> None:
        """A URL that Python's parser can read: its IPv6 brackets and, with ``port``, its port
        (not for a DSN: libpq reads ``host1:5432,host2:5433``). The message never shows the
        value, which may be a secret."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            if port:
                _ = parts.port
        except ValueError as exc:
            problem = ("an IPv6 host must be written in brackets, [::1], with the bracket "
                       "closed" if "IPv6" in str(exc) else "the port is not a number from 0 to "
                       "65535")
            raise self.fail(keypath, f"not a valid URL: {problem}") from None

    def known_keys(self, spec: Mapping, allowed: tuple[str, ...], keypath: str) -> None:
        unknown = sorted(str(k) for k in spec if k not in allowed)
        if unknown:
            raise self.fail(f"{keypath}.{unknown[0]}", f"unknown key; expected {', '.join(allowed)}")

    def choice(self, value: Any, options: Mapping | set, keypath: str, what: str) -> str:
        if not isinstance(value, str) or value not in options:
            names = sorted(options)
            hint = difflib.get_close_matches(value, names, n=1) if isinstance(value, str) else []
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            given = _short(value) if isinstance(value, str) else describe(value)
            problem = f"missing {what}" if value is None else f"unknown {what} {given}"
            raise self.fail(keypath, f"{problem}; expected one of: "
                            f"{', '.join(names) or '(none declared)'}{did}")
        return value

    # ------------------------------------------------------------------ ${VAR} and secrets

    def expand(self, value: Any, keypath: str, depth: int = 0) -> Any:
        """Replace ``${VAR}`` from the environment in strings (also in nested mappings);
        remember every value read that way, and every setting whose key names a secret, in
        each form fedquery may print."""
        if depth > MAX_SETTING_DEPTH:
            raise self.fail(keypath, f"nested more than {MAX_SETTING_DEPTH} deep")
        if isinstance(value, Mapping):  # a null setting is one not given
            return {k: self.expand(v, f"{keypath}.{k}", depth + 1) for k, v in value.items()
                    if v is not None}
        key = keypath.rsplit(".", 1)[-1]
        if not isinstance(value, str):
            if _SECRET_KEYS.search(key):
                self.remember_leaves(value)
            return value
        path_like = key in PATH_KEYS
        found: list[str] = []

        def substitute(match: re.Match) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise self.fail(keypath, f"environment variable {var} is not set")
            found.append(os.environ[var])
            return os.environ[var]

        expanded = _VAR.sub(substitute, value)
        for secret in found:
            self.secrets.add_setting(secret, base_dir=self.base_dir if path_like else None,
                                     environment=True)
        if found or _SECRET_KEYS.search(key):
            self.secrets.add_setting(expanded, base_dir=self.base_dir if path_like else None)
        self.printable(expanded, keypath)
        if key in URL_KEYS or (path_like and "://" in expanded):
            self.url(expanded, keypath, port=key != "dsn")
        return expanded

    def remember_leaves(self, value: Any) -> None:
        """A secret-named setting that is not a string: each number or string in it."""
        if isinstance(value, Mapping):
            value = list(value.values())
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                self.secrets.add_setting(str(item))
            elif isinstance(item, Mapping | list | tuple):
                self.remember_leaves(item)

    # ------------------------------------------------------------------ sections

    def sources(self, raw: Any) -> dict[str, SourceSpec]:
        if raw is None:
            raise self.fail("sources", "missing; declare at least one source")
        self.mapping(raw, "sources")
        out = {}
        for name, spec, keypath in self.entries(raw, "sources", "source"):
            spec = self.mapping(spec, keypath)
            kind = self.choice(spec.get("kind"), known_kinds(), f"{keypath}.kind", "source kind")
            settings = self.expand({k: v for k, v in spec.items() if k != "kind"}, keypath)
            connector = self.connector(kind, keypath)
            self.checked(connector.check_settings, settings, keypath)
            out[name] = SourceSpec(name, kind, settings, self.base_dir)
        return out

    def connector(self, kind: str, keypath: str):
        """The connector class of a kind: it owns and checks its settings."""
        try:
            return connector_class(kind, f"{self.origin}: {keypath}")
        except CatalogError as exc:
            raise CatalogError(self.secrets.redact(str(exc))) from exc.__cause__

    def checked(self, check, settings: Mapping[str, Any], keypath: str) -> None:
        """Run a connector's check of some settings; its errors name the key path and never
        show a secret."""
        try:
            check(settings, f"{self.origin}: {keypath}")
        except CatalogError as exc:
            raise CatalogError(self.secrets.redact(str(exc))) from None

    def tables(self, raw: Any, sources: dict[str, SourceSpec]) -> dict[str, TableSpec]:
        out = {}
        for name, spec, keypath in self.entries(raw, "tables", "table"):
            spec = self.mapping(spec, keypath)
            source = sources[self.choice(spec.get("source"), sources, f"{keypath}.source", "source")]
            connector = self.connector(source.kind, f"sources.{source.name}")
            options = {k: v for k, v in spec.items() if k != "source" and v is not None}
            self.checked(connector.check_table, options, keypath)
            table = options.get("table")
            if table is None and "table" in connector.TABLE_SETTINGS and "path" not in options:
                table = name  # a SQL source's table named as the catalog names it
            search = options.get("vector_search")
            search = parse_search_settings(search, keypath) if search is not None else None
            out[name] = TableSpec(name, source.name, table, options.get("path"),
                                  options.get("partitioning"), search, options)
        return out

    def blobs(self, raw: Any, sources: dict, tables: dict) -> dict[str, str]:
        out = {}
        files = {n for n, s in sources.items() if s.kind == "files"}
        for column, source, keypath in self.entries(raw, "blobs", "blob column"):
            table, _, col = column.partition(".")
            if not col:
                raise self.fail(keypath, "expected a key of the form <table>.<column>")
            self.choice(table, tables, keypath, "table")
            out[column] = self.choice(source, files, keypath, "files source")
        return out

    def entities(self, raw: Any, tables: dict) -> dict[str, EntitySpec]:
        out = {}
        for name, spec, keypath in self.entries(raw, "entities", "entity"):
            if name.lower() in {t.lower() for t in tables}:
                raise self.fail(keypath, "an entity needs a name no table has (FROM <name> reads it)")
            spec = self.mapping(spec, keypath)
            self.known_keys(spec, ("table", "key", "members"), keypath)
            table = self.choice(spec.get("table"), tables, f"{keypath}.table", "table")
            key = self.text(spec.get("key"), f"{keypath}.key",
                            required="required: the root table's key column")
            members = {member: self.member(member, m, mpath, tables, key)
                       for member, m, mpath in self.entries(spec.get("members"),
                                                            f"{keypath}.members", "member")}
            out[name] = EntitySpec(name, table, key, members)
        return out

    def member(self, name: str, spec: Any, keypath: str, tables: dict, key: str) -> MemberSpec:
        spec = self.mapping(spec, keypath)
        self.known_keys(spec, ("table", "key", "root_key", "time"), keypath)
        table = self.choice(spec.get("table"), tables, f"{keypath}.table", "table")
        mkey = self.text(spec.get("key"), f"{keypath}.key") or key
        root_key = self.text(spec.get("root_key"), f"{keypath}.root_key") or key
        return MemberSpec(name, table, mkey, root_key, self.text(spec.get("time"), f"{keypath}.time"))


TOP_LEVEL = ("sources", "tables", "blobs", "entities", "settings")
SETTING_KEYS = ("timeout", "memory_limit", "max_rows", "progress")
PATH_KEYS = {"path", "root", "uri"}
URL_KEYS = {"dsn", "endpoint_url"}  # a dsn may also be libpq's key=value form
MAX_SETTING_DEPTH = 16
_FLAGS = {"true", "false", "1", "0", "yes", "no"}
