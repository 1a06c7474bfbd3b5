"""``con.profile(source, column=None, by=None, sample=None)``: what a set of files holds.

The files are a ``files`` source's, or those a table's or a SELECT's URI column points at, so
the unstructured data is seen through the structured data it is linked to: ``by`` groups them
by any output column of the query (``weather`` of ``drives``, joined to ``frames``), or by
several. Every distinct file is read once (``profile_measure``): images for their pixels
(brightness, contrast, sharpness, colourfulness, entropy), EXIF, hashes and quality flags,
point clouds for their extent, density, intensity and returns, anything else for its size; then
exact and near-duplicate sets are found over all of them. A missing, corrupt or refused file is
counted, never fatal. ``sample=n`` (or a fraction) measures a seeded random subset chosen in SQL.

    profile = con.profile("SELECT f.image_uri, d.weather FROM frames f JOIN drives d "
                          "USING (drive_id)", by="weather")
    profile.summary["flags"]["dark"], profile.groups, profile.to_arrow()
"""

from __future__ import annotations

import functools
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from fedquery import profile_media, profile_source
from fedquery.errors import PlanError
from fedquery.profile_measure import MEASURE_NAMES, NEAR_DUPLICATE_BITS, SETS, distinct, measure
from fedquery.profile_media import EMBEDDINGS_MAX, FLAGGED_SHOWN, THUMBS_PER_GROUP
from fedquery.profile_summary import GROUP_COLUMNS, group_counts, summarize

if TYPE_CHECKING:
    from fedquery.connection import Connection

__all__ = ["EMBEDDINGS_MAX", "FLAGGED_SHOWN", "NEAR_DUPLICATE_BITS", "THUMBS_PER_GROUP", "Profile",
           "build_profile"]

GROUP_ROWS_SHOWN = 200
_TAKEN = {*MEASURE_NAMES, *(name for name, _ in SETS), *GROUP_COLUMNS}


@dataclass
class Profile:
    """A measured set of files: ``summary`` (counts, ranges, flags, duplicates), ``to_arrow()``
    (a row per file and group), ``groups`` (a row per combination of ``by`` values),
    ``thumbnails`` (URI -> small JPEG) and ``embeddings`` (URI, vector) for the report."""

    source: str
    column: str | None
    by: list[str]
    files: pa.Table = field(repr=False)
    summary: dict[str, Any] = field(repr=False)
    groups: pa.Table | None = field(default=None, repr=False)
    thumbnails: dict[str, bytes] = field(default_factory=dict, repr=False)
    embeddings: pa.Table | None = field(default=None, repr=False)

    def to_arrow(self) -> pa.Table:
        """One row per file (and ``by`` value): ``uri``, the ``by`` columns, kind, status,
        error, every measure, ``duplicate_set`` and ``near_duplicate_set``."""
        return self.files

    def __repr__(self) -> str:
        s = self.summary
        what = self.source if len(self.source) <= 60 else self.source[:57] + "..."
        what = f"{what}.{self.column}" if self.column and what == self.source else what
        forbidden = f", {s['forbidden']} forbidden" if s["forbidden"] else ""
        return (f"<Profile {what}: {s['total']} files, {s['ok']} ok, {s['missing']} missing, "
                f"{s['corrupt']} corrupt{forbidden}>")

    def _repr_html_(self) -> str:
        report = _report()
        return report.render_html(self) if report is not None else fallback_html(self)

    def save_html(self, path: str | os.PathLike) -> None:
        """One self-contained HTML page of the profile (no network, no other files), in UTF-8.
        A ``path`` that is not a file path is a ``PlanError``; a page that cannot be written,
        the ``OSError`` of its kind naming the path (``FileNotFoundError``, ...)."""
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise PlanError(f"save_html: expected a file path (str or os.PathLike), got "
                            f"{type(path).__name__}")
        report = _report()
        page = report.render_page(self) if report is not None else (
            f"<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(repr(self))}</title></head><body>{fallback_html(self)}</body></html>")
        try:
            Path(path).write_text(page, encoding="utf-8")
        except ValueError as exc:  # a NUL in the path
            raise PlanError(f"save_html: not a usable file path: {exc}") from None


def build_profile(con: Connection, source: str, column: str | None = None,
                  by: str | list[str] | None = None, sample: int | float | None = None) -> Profile:
    """Measure the files of ``source`` (see module doc)."""
    profile_source.check_sample(sample)
    selection = profile_source.resolve(con, source, column, by)
    rows = profile_source.rows(con, selection, sample)
    functions = _functions(con)
    uris = distinct(rows.column("uri"))
    if con.engine == "ray":  # every file measured on the cluster's workers
        measured = con._session.engine.measure(uris, selection.files_source)
    else:
        measured = measure(functions, uris, selection.files_source,
                           redact=con.catalog.secrets.redact, label=f"profile {_label(source)}")
    names = [name if name not in _TAKEN else f"by_{name}" for name in selection.by]
    if len(set(names)) < len(names):
        raise PlanError(f"profile: by columns {selection.by} give the same column name twice")
    files = _with_groups(measured, rows, names) if names else measured
    shown = profile_media.thumbnail_uris(files, names)
    if con.engine == "ray":  # the report's thumbnails and embeddings made on the workers too
        engine = con._session.engine
        thumbnails = engine.thumbnails(shown, selection.files_source)
        embed = engine.embedded
    else:
        thumbnails = profile_media.thumbnails(functions, shown, selection.files_source)
        embed = functools.partial(profile_media.embedded, functions)
    return Profile(
        source, selection.shown_column, list(selection.by), files,
        summarize(measured, rows.num_rows),
        group_counts(files, names) if names else None, thumbnails,
        profile_media.embeddings(con, selection, profile_media.embedding_uris(files), embed))


def _functions(con: Connection):
    """The blob functions over the connection's roots, errors counted rather than raised."""
    from fedquery.functions.udfs import BlobFunctions

    return BlobFunctions(con._session.functions.blobs, strict=False)


def _label(source: str) -> str:
    one_line = " ".join(source.split())
    return one_line if len(one_line) <= 30 else one_line[:29] + "…"


def _with_groups(measured: pa.Table, rows: pa.Table, names: list[str]) -> pa.Table:
    """A row per distinct (file, ``by`` values) of the source, in the order first seen, with
    the file's measures: ``uri``, the ``by`` columns under ``names``, then the measures."""
    keys = [f"by_{i}" for i in range(len(names))]
    rows = rows.append_column("pos_", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    con = duckdb.connect()
    try:
        con.register("rows_", rows)
        con.register("measured", measured)
        picked = ", ".join(f'r.{k} AS "{n.replace(chr(34), chr(34) * 2)}"'
                           for k, n in zip(keys, names, strict=True))
        return con.sql(f"""
            SELECT r.uri, {picked}, m.* EXCLUDE (uri)
            FROM (SELECT uri, {', '.join(keys)}, min(pos_) AS pos_ FROM rows_ GROUP BY ALL) r
            JOIN measured m ON m.uri IS NOT DISTINCT FROM r.uri
            ORDER BY r.pos_""").to_arrow_table()
    finally:
        con.close()


def _report():
    """The report module (``render_html``, ``render_page``), when it is there."""
    try:
        from fedquery import profile_report
    except ImportError:
        return None
    return profile_report


def fallback_html(profile: Profile) -> str:
    """The summary and the groups as plain HTML tables, every value escaped (used until the
    report module is installed)."""
    s = profile.summary
    rows = [(k, s[k]) for k in ("total", "rows", "ok", "missing", "corrupt", "forbidden",
                                "formats", "bytes", "flags", "duplicates", "near_duplicates",
                                "errors")]
    parts = [f"<h4>{html.escape(repr(profile))}</h4>", "<table>"]
    parts += [f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
              f"<td style='text-align:left'>{html.escape(_inline(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if profile.groups is not None:
        groups = profile.groups
        parts.append(f"<h4>by {html.escape(', '.join(profile.by))}</h4><table><tr>"
                     + "".join(f"<th>{html.escape(n)}</th>" for n in groups.column_names) + "</tr>")
        for row in groups.slice(0, GROUP_ROWS_SHOWN).to_pylist():
            parts.append("<tr>" + "".join(f"<td>{html.escape(_inline(v))}</td>"
                                          for v in row.values()) + "</tr>")
        parts.append("</table>")
    return "".join(parts)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)
