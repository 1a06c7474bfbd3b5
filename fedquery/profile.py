"""``con.profile(source, column=None, by=None, sample=None)``: what a set of files holds.

The files are those of a ``files`` source (its listing), or those a table's blob column points
at (``con.profile('frames')``, with ``by='camera'`` to group them by a column of the table, so
the unstructured data is seen through its structured metadata). Each file is measured by
what its extension says it is: images by their headers (``image_info``), point clouds by
``pointcloud_info``, anything else by its size; nothing is decoded beyond that. A missing file
(or NULL URI) and a corrupt one are counted, never fatal. ``sample=n`` (or a fraction) measures
a seeded random sample of the files.
"""

from __future__ import annotations

import html
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from fedquery.errors import ForbiddenError, PlanError
from fedquery.functions.blobs import kind_of as blob_kind
from fedquery.functions.udfs import BlobFunctions

if TYPE_CHECKING:
    from fedquery.connection import Connection

BATCH = 512
GROUP_ROWS_SHOWN = 200
SAMPLE_SEED = 0
FIELDS = pa.schema([
    ("uri", pa.string()), ("kind", pa.string()), ("status", pa.string()),
    ("format", pa.string()), ("bytes", pa.int64()), ("width", pa.int32()),
    ("height", pa.int32()), ("mode", pa.string()), ("points", pa.int64()),
    ("min_x", pa.float64()), ("min_y", pa.float64()), ("min_z", pa.float64()),
    ("max_x", pa.float64()), ("max_y", pa.float64()), ("max_z", pa.float64()),
    ("error", pa.string()),
])


@dataclass
class Profile:
    """A measured set of files: ``summary`` (counts and ranges), ``to_arrow()`` (a row per
    file), ``groups`` (a row per ``by`` value, when grouped)."""

    source: str
    column: str | None
    by: str | None
    files: pa.Table = field(repr=False)
    summary: dict[str, Any] = field(repr=False)
    groups: pa.Table | None = field(default=None, repr=False)

    def to_arrow(self) -> pa.Table:
        """One row per file: ``uri``, the ``by`` value, kind, status, every measured value, error."""
        return self.files

    def __repr__(self) -> str:
        s = self.summary
        what = f"{self.source}.{self.column}" if self.column else self.source
        forbidden = f", {s['forbidden']} forbidden" if s["forbidden"] else ""
        return (f"<Profile {what}: {s['total']} files, {s['ok']} ok, {s['missing']} missing, "
                f"{s['corrupt']} corrupt{forbidden}>")

    def _repr_html_(self) -> str:
        return render_html(self)

    def save_html(self, path: str | os.PathLike) -> None:
        """A standalone HTML page of the profile, in UTF-8 (as its ``meta`` says). A ``path``
        that is not a file path is a ``PlanError``; a page that cannot be written, the ``OSError``
        of its kind naming the path (``FileNotFoundError``, ``IsADirectoryError``...)."""
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise PlanError(f"save_html: expected a file path (str or os.PathLike), got "
                            f"{type(path).__name__}")
        title = html.escape(repr(self))
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}"
                f"</title></head><body>{render_html(self)}</body></html>")
        try:
            Path(path).write_text(page, encoding="utf-8")
        except ValueError as exc:  # a NUL in the path
            raise PlanError(f"save_html: not a usable file path: {exc}") from None


def build_profile(con: Connection, source: str, column: str | None = None, by: str | None = None,
                  sample: int | float | None = None) -> Profile:
    """Measure the files of a files source, or of a table's blob column (see module doc).

    Each distinct URI is measured once (``to_arrow()`` has a row per file, or per file and
    ``by`` value); ``summary["rows"]`` counts the rows that point at them."""
    spec = con.catalog.sources.get(source)
    if spec is not None and spec.kind == "files":
        uris, groups, files_source = _listed(con, source, column, by)
    else:
        uris, groups, files_source, column = _referenced(con, source, column, by)
    distinct = list(dict.fromkeys(uris))
    chosen = {distinct[i] for i in _sample(len(distinct), sample)}
    distinct = [u for u in distinct if u in chosen]
    functions = BlobFunctions(con._session.functions.blobs, strict=False)  # counted, not fatal
    measured = measure(functions, distinct, files_source)
    errors = [con.catalog.secrets.redact(e) if e else e for e in measured.column("error").to_pylist()]
    measured = measured.set_column(FIELDS.get_field_index("error"), "error", pa.array(errors, pa.string()))
    rows = sum(1 for u in uris if u in chosen)
    if groups is None:
        return Profile(source, column, by, measured, summarize(measured, rows))
    pairs = list(dict.fromkeys((u, g) for u, g in zip(uris, groups, strict=True) if u in chosen))
    name = by if by not in FIELDS.names else f"by_{by}"
    files = _with_groups(measured, pairs, name)
    return Profile(source, column, by, files, summarize(measured, rows), group_counts(files, name))


def _with_groups(measured: pa.Table, pairs: list[tuple], name: str) -> pa.Table:
    """A row per (file, ``by`` value): the file's measures with the value as column 2."""
    index = {uri: i for i, uri in enumerate(measured.column("uri").to_pylist())}
    table = measured.take(pa.array([index[u] for u, _ in pairs], pa.int64()))
    return table.add_column(1, name, pa.array([g for _, g in pairs]))


def _listed(con: Connection, source: str, column: str | None, by: str | None):
    if column not in (None, "uri"):
        raise PlanError(f"profile: files source {source!r} lists its files in column 'uri', "
                        f"not {column!r}")
    listing = con._session.connectors[source].listing()
    if by is not None and by not in listing.column_names:
        raise PlanError(f"profile: the listing of {source!r} has no column {by!r} "
                        f"(columns: {', '.join(listing.column_names)})")
    groups = listing.column(by).to_pylist() if by else None
    return listing.column("uri").to_pylist(), groups, source


def _referenced(con: Connection, table: str, column: str | None, by: str | None):
    schema = con.schema(table)  # PlanError with a suggestion for an unknown table
    blob_columns = [key.split(".", 1)[1] for key in con.catalog.blobs
                    if key.split(".", 1)[0].lower() == table.lower()]
    if column is None:
        if len(blob_columns) != 1:
            raise PlanError(f"profile: name the column of {table!r} that holds URIs (column=...); "
                            f"blob columns: {', '.join(blob_columns) or 'none declared'}")
        column = blob_columns[0]
    for name in filter(None, (column, by)):
        if name not in schema.names:
            raise PlanError(f"profile: table {table!r} has no column {name!r} "
                            f"(columns: {', '.join(schema.names)})")
    files_source = con.catalog.blobs.get(f"{table}.{column}")
    selected = [_quoted(column) + " AS uri"] + ([_quoted(by) + " AS by"] if by else [])
    rows = con.sql(f"SELECT {', '.join(selected)} FROM {_quoted(table)}").arrow()
    groups = rows.column("by").to_pylist() if by else None
    return rows.column("uri").to_pylist(), groups, files_source, column


def _quoted(name: str) -> str:
    from sqlglot import exp

    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _sample(n: int, sample: int | float | None) -> list[int]:
    """Indices of a seeded random sample (all of them without one), in order: ``sample`` is a
    count (an int) or a fraction (a float in (0, 1])."""
    if sample is None:
        return list(range(n))
    if isinstance(sample, bool) or not isinstance(sample, int | float):
        raise PlanError(f"profile: sample must be a count or a fraction, not {sample!r}")
    if isinstance(sample, int) and sample > 0:
        count = sample
    elif isinstance(sample, float) and 0 < sample <= 1:
        count = max(1, round(n * sample))
    else:
        raise PlanError(f"profile: sample must be a positive count or a fraction in (0, 1], "
                        f"not {sample!r}")
    if count >= n:
        return list(range(n))
    return sorted(random.Random(SAMPLE_SEED).sample(range(n), count))


def kind_of(uri: str | None) -> str:
    """``image``, ``pointcloud`` or ``other``, by the URI's extension."""
    return blob_kind(uri or "") or "other"


def measure(functions: BlobFunctions, uris: list[str | None], source: str | None) -> pa.Table:
    """A row per URI (``FIELDS``), measured a batch at a time in the blob I/O pool. A URI that
    leaves every root is not read: its status is ``forbidden``."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(uris), BATCH):
        chunk = uris[start:start + BATCH]
        measured: dict[int, dict[str, Any]] = {}
        for i, uri in enumerate(chunk):
            if uri is not None:
                try:
                    functions.blobs.resolve(uri, source)
                except ForbiddenError as exc:
                    measured[i] = {"error": str(exc), "status": "forbidden"}
        chunk = [None if i in measured else u for i, u in enumerate(chunk)]
        for kind, reader in (("image", functions.image_info),
                             ("pointcloud", functions.pointcloud_info),
                             ("other", functions.file_size)):
            picked = [i for i, u in enumerate(chunk) if u is not None and kind_of(u) == kind]
            if picked:
                args = (pa.array([chunk[i] for i in picked], pa.string()),
                        pa.array([source] * len(picked), pa.string()))
                values = reader(*args).to_pylist()
                if kind == "pointcloud":  # its info has no byte count: ask for the size too
                    for value, size in zip(values, functions.file_size(*args).to_pylist(), strict=True):
                        value["bytes"] = size["bytes"]
                measured.update(zip(picked, values, strict=True))
        for i, uri in enumerate(uris[start:start + BATCH]):
            value = measured.get(i) or {"error": "no URI"}
            error = value.get("error")
            status = value.get("status") or (
                "ok" if not error else ("missing" if _is_missing(error) else "corrupt"))
            rows.append({**{f.name: value.get(f.name) for f in FIELDS}, "uri": uri,
                         "kind": kind_of(uri) if uri is not None else None, "status": status})
    return pa.Table.from_pylist(rows, schema=FIELDS)


def _is_missing(error: str) -> bool:
    return error == "no URI" or error.startswith("file not found")


def summarize(files: pa.Table, rows: int | None = None) -> dict[str, Any]:
    """Counts, formats and ranges over the per-file table: counts over every file, sizes and
    ranges over the files read without error (a truncated file's partial values are left out),
    formats over every file whose format was recognised."""
    con = duckdb.connect()
    con.register("files", files)
    ok = "status = 'ok'"
    one = con.sql(f"""
        SELECT count(*), count(*) FILTER ({ok}), count(*) FILTER (status = 'missing'),
               count(*) FILTER (status = 'corrupt'), count(*) FILTER (status = 'forbidden'),
               sum(bytes) FILTER ({ok})::BIGINT, min(bytes) FILTER ({ok}), max(bytes) FILTER ({ok}),
               avg(bytes) FILTER ({ok}),
               count(*) FILTER (kind = 'image' AND {ok}), min(width) FILTER ({ok}),
               max(width) FILTER ({ok}), avg(width) FILTER ({ok}), min(height) FILTER ({ok}),
               max(height) FILTER ({ok}), avg(height) FILTER ({ok}),
               count(*) FILTER (kind = 'pointcloud' AND {ok}), sum(points) FILTER ({ok})::BIGINT,
               min(points) FILTER ({ok}), max(points) FILTER ({ok}), avg(points) FILTER ({ok})
        FROM files""").fetchall()[0]
    counts = lambda sql: dict(con.sql(sql).fetchall())  # noqa: E731
    summary = {
        "total": one[0], "rows": one[0] if rows is None else rows, "ok": one[1],
        "missing": one[2], "corrupt": one[3], "forbidden": one[4],
        "formats": counts("SELECT format, count(*) FROM files WHERE format IS NOT NULL "
                          "GROUP BY ALL ORDER BY 2 DESC, 1"),
        "kinds": counts("SELECT kind, count(*) FROM files WHERE kind IS NOT NULL "
                        "GROUP BY ALL ORDER BY 2 DESC, 1"),
        "bytes": _range(one[5:9], total=True),
        "images": {"count": one[9], "width": _range(one[10:13]), "height": _range(one[13:16]),
                   "modes": counts(f"SELECT mode, count(*) FROM files WHERE mode IS NOT NULL AND {ok} "
                                   "GROUP BY ALL ORDER BY 2 DESC, 1")},
        "pointclouds": {"count": one[16], "points": _range(one[17:21], total=True)},
        "errors": dict(Counter(_error_kind(e, u) for e, u in zip(
            files.column("error").to_pylist(), files.column("uri").to_pylist(), strict=True)
            if e).most_common(10)),
    }
    con.close()
    return summary


def _error_kind(error: str, uri: str | None) -> str:
    """An error without the URI it names: what went wrong, to count alike errors together."""
    return error.replace(f": {uri}", "").replace(repr(uri), "").strip() if uri else error


def _range(values: tuple, *, total: bool = False) -> dict[str, Any]:
    keys = ("total", "min", "max", "mean") if total else ("min", "max", "mean")
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in zip(keys, values, strict=True)}


def group_counts(files: pa.Table, by: str) -> pa.Table:
    """A row per ``by`` value: files, ok, missing, corrupt, forbidden, bytes, mean width and
    height, points (sizes over the files read without error)."""
    con = duckdb.connect()
    con.register("files", files.rename_columns(["__by" if n == by else n for n in files.column_names]))
    ok = "status = 'ok'"
    table = con.sql(f"""
        SELECT __by, count(*) AS files, count(*) FILTER ({ok}) AS ok,
               count(*) FILTER (status = 'missing') AS missing,
               count(*) FILTER (status = 'corrupt') AS corrupt,
               count(*) FILTER (status = 'forbidden') AS forbidden,
               sum(bytes) FILTER ({ok})::BIGINT AS bytes,
               round(avg(width) FILTER ({ok}), 1) AS mean_width,
               round(avg(height) FILTER ({ok}), 1) AS mean_height,
               sum(points) FILTER ({ok})::BIGINT AS points
        FROM files GROUP BY __by ORDER BY __by NULLS LAST""").to_arrow_table()
    con.close()
    name = by if by not in table.column_names[1:] else f"by_{by}"
    return table.rename_columns([name, *table.column_names[1:]])


def render_html(profile: Profile) -> str:
    """The summary and the groups as HTML, every value escaped."""
    s = profile.summary
    rows = [("files", s["total"]), ("rows", s["rows"]), ("ok", s["ok"]),
            ("missing", s["missing"]), ("corrupt", s["corrupt"]), ("forbidden", s["forbidden"]),
            ("formats", _inline(s["formats"])),
            ("bytes", _inline(s["bytes"])), ("images", s["images"]["count"]),
            ("width", _inline(s["images"]["width"])), ("height", _inline(s["images"]["height"])),
            ("point clouds", s["pointclouds"]["count"]),
            ("points", _inline(s["pointclouds"]["points"])), ("errors", _inline(s["errors"]))]
    parts = [f"<h4>{html.escape(repr(profile))}</h4>", "<table>"]
    parts += [f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
              f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if profile.groups is not None:
        groups = profile.groups
        parts.append(f"<h4>by {html.escape(str(profile.by))}</h4><table><tr>"
                     + "".join(f"<th>{html.escape(n)}</th>" for n in groups.column_names) + "</tr>")
        for row in groups.slice(0, GROUP_ROWS_SHOWN).to_pylist():
            parts.append("<tr>" + "".join(f"<td>{html.escape(_plain(v))}</td>" for v in row.values())
                         + "</tr>")
        parts.append("</table>")
        if groups.num_rows > GROUP_ROWS_SHOWN:
            parts.append(f"<p>first {GROUP_ROWS_SHOWN} of {groups.num_rows:,} groups "
                         "(all of them in <code>Profile.groups</code>)</p>")
    return "".join(parts)


def _inline(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, dict) else str(value)


def _plain(value: Any) -> str:
    return "" if value is None else str(value)
