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

from fedquery.errors import CatalogError
from fedquery.secrets import Secrets

SOURCE_KINDS = {
    "duckdb": ("path",),
    "postgres": ("dsn",),
    "parquet": ("root",),
    "lancedb": ("uri",),
    "files": ("root",),
}
SQL_KINDS = {"duckdb", "postgres"}
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


@dataclass
class Catalog:
    """A checked catalog; build it with ``load_catalog``."""

    origin: str
    sources: dict[str, SourceSpec]
    tables: dict[str, TableSpec]
    blobs: dict[str, str]
    entities: dict[str, EntitySpec]
    secrets: Secrets = field(repr=False)

    def entity(self, name: str) -> EntitySpec | None:
        """The entity SQL names ``name`` (case-insensitive), if any."""
        return next((e for n, e in self.entities.items() if n.lower() == name.lower()), None)

    def __repr__(self) -> str:
        return f"Catalog({self.origin!r}, sources={list(self.sources)}, tables={list(self.tables)})"


def _plugin_kind(kind: str) -> bool:
    """True for a kind a third-party package registers (entry point ``fedquery.connectors``)."""
    if kind in SOURCE_KINDS:
        return False
    from importlib.metadata import entry_points

    return bool(entry_points(group="fedquery.connectors", name=kind))


def load_catalog(catalog: str | os.PathLike | Mapping[str, Any]) -> Catalog:
    """Read and check a catalog from a YAML path or a dict.

    >>> load_catalog({"sources": {"lake": {"kind": "parquet", "root": "."}}, "tables": {}})
    Catalog('<dict>', sources=['lake'], tables=[])
    """
    if isinstance(catalog, Mapping):
        return _Loader("<dict>", Path.cwd()).load(catalog)
    path = Path(catalog)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    return _Loader(str(path), path.parent.resolve()).load(data or {})


class _Loader:
    """Walks the raw mapping, expanding ``${VAR}`` and checking every key path."""

    def __init__(self, origin: str, base_dir: Path) -> None:
        self.origin, self.base_dir, self.secrets = origin, base_dir, Secrets()

    def fail(self, keypath: str, message: str) -> CatalogError:
        return CatalogError(f"{self.origin}: {keypath}: {message}")

    def load(self, data: Any) -> Catalog:
        self.mapping(data, "(top level)")
        unknown = set(data) - {"sources", "tables", "blobs", "entities"}
        if unknown:
            raise self.fail(sorted(unknown)[0], "unknown key; expected sources, tables, blobs, entities")
        sources = self.sources(data.get("sources"))
        tables = self.tables(data.get("tables") or {}, sources)
        blobs = self.blobs(data.get("blobs") or {}, sources, tables)
        entities = self.entities(data.get("entities") or {}, tables)
        return Catalog(self.origin, sources, tables, blobs, entities, self.secrets)

    def mapping(self, value: Any, keypath: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(keypath, f"expected a mapping, got {type(value).__name__}")
        return value

    def choice(self, value: Any, options: Mapping | set, keypath: str, what: str) -> str:
        if not isinstance(value, str) or value not in options:
            names = sorted(options)
            hint = difflib.get_close_matches(str(value), names, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise self.fail(keypath, f"unknown {what} {value!r}; expected one of: "
                            f"{', '.join(names) or '(none declared)'}{did}")
        return value

    def expand(self, value: Any, keypath: str) -> Any:
        """Replace ``${VAR}`` from the environment; remember secret-looking values."""
        if isinstance(value, Mapping):
            return {k: self.expand(v, f"{keypath}.{k}") for k, v in value.items()}
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise self.fail(keypath, f"environment variable {var} is not set")
            self.secrets.add_setting(os.environ[var])
            return os.environ[var]

        expanded = _VAR.sub(substitute, value)
        if _SECRET_KEYS.search(keypath.rsplit(".", 1)[-1]):
            self.secrets.add_setting(expanded)
        return expanded

    def sources(self, raw: Any) -> dict[str, SourceSpec]:
        if raw is None:
            raise self.fail("sources", "missing; declare at least one source")
        out = {}
        for name, spec in self.mapping(raw, "sources").items():
            keypath = f"sources.{name}"
            spec = self.mapping(spec, keypath)
            kind = spec.get("kind")
            if not (isinstance(kind, str) and _plugin_kind(kind)):
                kind = self.choice(kind, SOURCE_KINDS, f"{keypath}.kind", "source kind")
            for required in SOURCE_KINDS.get(kind, ()):
                if not spec.get(required):
                    raise self.fail(f"{keypath}.{required}", f"required for kind {kind!r}")
            settings = self.expand({k: v for k, v in spec.items() if k != "kind"}, keypath)
            self.check_options(settings, keypath)
            out[name] = SourceSpec(name, kind, settings, self.base_dir)
        return out

    def check_options(self, settings: Mapping[str, Any], keypath: str) -> None:
        """``options`` of a source on S3: known keys, key and secret together."""
        root = str(settings.get("root", ""))
        if not root.startswith("s3://"):
            return
        from connectors.remote_fs import S3_OPTIONS

        options = self.mapping(settings.get("options") or {}, f"{keypath}.options")
        for key in options:
            if key not in S3_OPTIONS:
                self.choice(key, set(S3_OPTIONS), f"{keypath}.options.{key}", "S3 option")
        if bool(options.get("key")) != bool(options.get("secret")):
            raise self.fail(f"{keypath}.options", "give both key and secret, or neither (to use "
                            "the environment's credentials or anonymous: true)")

    def tables(self, raw: Any, sources: dict[str, SourceSpec]) -> dict[str, TableSpec]:
        out = {}
        for name, spec in self.mapping(raw, "tables").items():
            keypath = f"tables.{name}"
            spec = self.mapping(spec, keypath)
            source = sources[self.choice(spec.get("source"), sources, f"{keypath}.source", "source")]
            unknown = set(spec) - {"source", "table", "path", "partitioning"}
            if unknown:
                raise self.fail(f"{keypath}.{sorted(unknown)[0]}",
                                "unknown key; expected source, table, path, partitioning")
            if source.kind == "parquet" and not spec.get("path"):
                raise self.fail(f"{keypath}.path", "required for a parquet source (folder, glob or file)")
            if spec.get("partitioning") not in (None, "hive", "none"):
                raise self.fail(f"{keypath}.partitioning", "expected 'hive' or 'none'")
            table = spec.get("table") or (None if source.kind in ("parquet", "files") else name)
            out[name] = TableSpec(name, source.name, table, spec.get("path"), spec.get("partitioning"))
        return out

    def blobs(self, raw: Any, sources: dict, tables: dict) -> dict[str, str]:
        out = {}
        for column, source in self.mapping(raw, "blobs").items():
            keypath = f"blobs.{column}"
            table, _, col = str(column).partition(".")
            if not col:
                raise self.fail(keypath, "expected a key of the form <table>.<column>")
            self.choice(table, tables, keypath, "table")
            files = {n for n, s in sources.items() if s.kind == "files"}
            out[str(column)] = self.choice(source, files, keypath, "files source")
        return out

    def entities(self, raw: Any, tables: dict) -> dict[str, EntitySpec]:
        out = {}
        for name, spec in self.mapping(raw, "entities").items():
            keypath = f"entities.{name}"
            if name.lower() in {t.lower() for t in tables}:
                raise self.fail(keypath, "an entity needs a name no table has (FROM <name> reads it)")
            spec = self.mapping(spec, keypath)
            table = self.choice(spec.get("table"), tables, f"{keypath}.table", "table")
            key = spec.get("key")
            if not isinstance(key, str):
                raise self.fail(f"{keypath}.key", "required: the root table's key column")
            members = {}
            for member, m in self.mapping(spec.get("members") or {}, f"{keypath}.members").items():
                mpath = f"{keypath}.members.{member}"
                m = self.mapping(m, mpath)
                mtable = self.choice(m.get("table"), tables, f"{mpath}.table", "table")
                mkey = m.get("key") or key
                members[member] = MemberSpec(member, mtable, mkey, m.get("root_key") or key, m.get("time"))
            out[name] = EntitySpec(name, table, key, members)
        return out
