"""The profile report: what a set of files holds, as a page people look at.

``render_html(profile)`` is the fragment ``Profile._repr_html_`` shows in a notebook;
``render_page(profile)`` the self-contained page ``Profile.save_html`` writes. Both hold the
counts, a histogram per measure split by group (inline SVG), a thumbnail grid per group, the
flagged files (dark, blurry, corrupt, missing, ...) with their thumbnails, duplicate sets as
rows of thumbnails, a 2-D map of the embeddings (PCA) coloured by group, and summary tables.

Nothing is fetched: thumbnails are ``data:`` URIs (capped, see ``report_files``), charts are
SVG text, styles are inline, and the page's Content-Security-Policy forbids any other source.
URIs and group values are user data and are escaped everywhere. Groups beyond ``MAX_GROUPS``
(the largest kept) are drawn together as one "other" group.

    html = render_html(con.profile("SELECT f.image_uri, d.weather FROM frames f JOIN drives d "
                                   "USING (drive_id)", by="weather"))
"""

from __future__ import annotations

import json
from collections import Counter
from html import escape
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedquery import report_files as rf
from fedquery.functions import image_content, pointcloud_content
from fedquery.report_svg import OTHER_COLOUR, PALETTE, Series, histogram_svg, scatter_svg

MAX_GROUPS = len(PALETTE)  # groups drawn in their own colour; the rest are "other"
ALL = "all files"
MEASURES = (("brightness", ""), ("contrast", ""), ("sharpness", ""), ("colourfulness", ""),
            ("entropy", ""), ("width", "px"), ("height", "px"), ("bytes", "bytes"),
            ("points", ""), ("density", ""))
MAP_POINTS = 2000  # embeddings drawn in the map at most (a seeded sample beyond)
MAP_SEED = 0
GROUP_ROWS_SHOWN = 200
# Columns of Profile.to_arrow() that are not `by` columns: a `by` column of the same name
# is called by_<name> there.
FIXED_COLUMNS = frozenset({"uri", "kind", "status", "error", "duplicate_set", "near_duplicate_set",
                           *image_content.FIELDS, *pointcloud_content.FIELDS})


def render_html(profile: Any) -> str:
    """The report as an HTML fragment (with its own scoped ``<style>``) for a notebook."""
    return f'<div class="fq-profile"><style>{CSS}</style>{_body(profile)}</div>'


def render_page(profile: Any) -> str:
    """The report as a whole HTML page that renders offline: nothing outside it is loaded."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(_title(profile))}</title><style>{PAGE_CSS}{CSS}</style></head>"
            f'<body><div class="fq-profile">{_body(profile)}</div></body></html>')


CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _title(profile: Any) -> str:
    source = str(profile.source)
    if _is_query(source):
        return f"Profile of {profile.column or 'the files'} from a query"
    return f"Profile of {source}.{profile.column}" if profile.column else f"Profile of {source}"


def _is_query(source: str) -> bool:
    """A SELECT source (its text has spaces) rather than a table or files source's name."""
    return any(c.isspace() for c in source.strip())


def _source_text(profile: Any) -> str:
    source = str(profile.source).strip()
    return f'<pre class="fq-sql">{escape(source)}</pre>' if _is_query(source) else ""


def _body(profile: Any) -> str:
    files = profile.to_arrow()
    by = list(profile.by or [])
    labels, shown = group_labels(files, by)
    colours = {label: (OTHER_COLOUR if label == _other(shown) else PALETTE[i % len(PALETTE)])
               for i, label in enumerate(shown)}
    pictures = rf.Pictures(dict(profile.thumbnails or {}))
    uris = files["uri"].to_pylist()
    sections = [
        _section("Measures", _histograms(files, labels, shown, colours), "measures"),
        _section("Embedding map", _embedding_map(profile.embeddings, uris, labels, colours), "map"),
        _section(f"Thumbnails{_by_words(by)}", rf.thumbnail_grids(pictures, uris, labels, shown),
                 "thumbnails"),
        _section("Flagged files", rf.flagged(pictures, files), "flagged"),
        _section("Duplicates", rf.duplicate_sets(pictures, files), "duplicates"),
        _groups_table(profile.groups, by),
        _section("Summary", _summary_tables(profile.summary), "summary"),
    ]
    note = (f'<p class="fq-note">{pictures.left_out} thumbnails left out to keep the page under '
            f"{rf.IMAGE_BUDGET >> 20} MB</p>" if pictures.left_out else "")
    return (f"<h2>{escape(_title(profile))}</h2>{_source_text(profile)}{_header(profile, files, shown)}"
            f"{_legend(shown, colours, by)}{''.join(sections)}{note}")


def _by_words(by: list[str]) -> str:
    return f" by {', '.join(by)}" if by else ""


def _section(title: str, body: str, name: str) -> str:
    return f'<section class="fq-{name}"><h3>{escape(title)}</h3>{body}</section>' if body else ""


# ---------------------------------------------------------------- groups


def by_column(files: pa.Table, name: str) -> str:
    """The column of ``files`` that holds the ``by`` value ``name`` (by_<name> on a clash)."""
    prefixed = f"by_{name}"
    if name in FIXED_COLUMNS or name not in files.column_names:
        return prefixed if prefixed in files.column_names else name
    return name


def group_labels(files: pa.Table, by: list[str]) -> tuple[list[str], list[str]]:
    """A group label per row, and the labels shown: the MAX_GROUPS largest (by distinct
    files), then one "other" label standing for every smaller group."""
    if not by:
        return [ALL] * files.num_rows, [ALL]
    columns = [files[by_column(files, name)].to_pylist() for name in by]
    labels = [" · ".join(_value(v) for v in values) for values in zip(*columns, strict=True)]
    sizes = Counter(label for label, _ in dict.fromkeys(zip(labels, files["uri"].to_pylist(), strict=True)))
    ranked = sorted(sizes, key=lambda label: (-sizes[label], label))
    if len(ranked) <= MAX_GROUPS:
        return labels, ranked
    kept = set(ranked[:MAX_GROUPS])
    other = f"other ({len(ranked) - MAX_GROUPS:,} groups)"
    return [label if label in kept else other for label in labels], [*ranked[:MAX_GROUPS], other]


def _other(shown: list[str]) -> str | None:
    return shown[-1] if len(shown) > MAX_GROUPS else None


def _value(value: Any) -> str:
    return "(null)" if value is None else str(value)


def _legend(shown: list[str], colours: dict[str, str], by: list[str]) -> str:
    if not by:
        return ""
    items = "".join(f'<span class="fq-key"><i style="background:{colours[label]}"></i>{escape(label)}</span>'
                    for label in shown)
    return f'<div class="fq-legend"><b>{escape(", ".join(by))}:</b> {items}</div>'


# ---------------------------------------------------------------- header and tables


def _header(profile: Any, files: pa.Table, shown: list[str]) -> str:
    s = profile.summary
    flagged = {u for flag in rf.FLAGS if flag in files.column_names
               for u in files.filter(pc.fill_null(files[flag], False))["uri"].to_pylist()}
    tiles = [("files", s["total"]), ("rows", s["rows"]), ("ok", s["ok"]), ("missing", s["missing"]),
             ("corrupt", s["corrupt"]), ("forbidden", s["forbidden"]),
             ("images", s["images"]["count"]), ("point clouds", s["pointclouds"]["count"]),
             ("flagged", len(flagged)),
             ("duplicate sets", _set_count(files, "duplicate_set")),
             ("near-duplicate sets", _set_count(files, "near_duplicate_set")),
             ("groups", len(profile.groups) if profile.groups is not None else len(shown))]
    return '<div class="fq-tiles">' + "".join(
        f'<div class="fq-tile" data-name="{escape(k)}"><b>{_count(v)}</b><span>{escape(k)}</span></div>'
        for k, v in tiles) + "</div>"


def _set_count(files: pa.Table, column: str) -> int:
    return len(rf._sets(files, column)) if column in files.column_names else 0


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def _groups_table(groups: pa.Table | None, by: list[str]) -> str:
    if groups is None:
        return ""
    more = (f"<p>first {GROUP_ROWS_SHOWN} of {groups.num_rows:,} groups (all of them in "
            "<code>Profile.groups</code>)</p>" if groups.num_rows > GROUP_ROWS_SHOWN else "")
    head = "".join(f"<th>{escape(n)}</th>" for n in groups.column_names)
    rows = "".join("<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
                   for row in groups.slice(0, GROUP_ROWS_SHOWN).to_pylist())
    return (f'<section class="fq-groups"><h3>{escape(_by_words(by).strip())}</h3>'
            f"<table><tr>{head}</tr>{rows}</table>{more}</section>")


def _summary_tables(summary: dict[str, Any]) -> str:
    """The summary dict as tables: its counts in one, each nested part in its own."""
    scalars = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    parts = [_table("counts", scalars)] if scalars else []
    parts += [_table(k, v) for k, v in summary.items() if isinstance(v, dict) and v]
    return '<div class="fq-tables">' + "".join(parts) + "</div>"


def _table(title: str, values: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_cell(v))}</td></tr>"
                   for k, v in values.items())
    return f"<table><caption>{escape(title)}</caption>{rows}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        if all(not isinstance(v, dict | list) for v in value.values()):
            return " · ".join(f"{k} {_cell(v)}" for k, v in value.items())
        return json.dumps(value, default=str)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------- charts


def _histograms(files: pa.Table, labels: list[str], shown: list[str], colours: dict[str, str]) -> str:
    ok = pc.fill_null(pc.equal(files["status"], "ok"), False).to_numpy(zero_copy_only=False)
    groups = np.array(labels, dtype=object)
    charts = []
    for name, unit in MEASURES:
        if name not in files.column_names:
            continue
        values = pc.cast(files[name], pa.float64()).to_numpy(zero_copy_only=False)
        usable = ok & np.isfinite(values)
        series = [Series(label, colours[label], values[usable & (groups == label)]) for label in shown]
        charts.append(histogram_svg(name, series, unit=unit))
    body = "".join(c for c in charts if c)
    return f'<div class="fq-charts">{body}</div>' if body else ""


def _embedding_map(embeddings: pa.Table | None, uris: list, labels: list[str],
                   colours: dict[str, str]) -> str:
    if embeddings is None or embeddings.num_rows == 0:
        return ""
    group_of = dict(zip(uris, labels, strict=True))  # a file in several groups: its last one
    vectors, names = _sampled_vectors(embeddings)
    if len(vectors) < 3:
        return f"<p>{len(vectors)} embeddings: too few for a map</p>"
    points, explained = pca_2d(vectors)
    shown = [group_of.get(n, "") for n in names]
    dots = [colours.get(g, OTHER_COLOUR) for g in shown]
    titles = [f"{n} ({g})" if g else str(n) for n, g in zip(names, shown, strict=True)]
    axes = (f"PC1 ({explained[0]:.0%} of variance)", f"PC2 ({explained[1]:.0%})")
    note = (f'<p class="fq-note">{len(vectors):,} of {embeddings.num_rows:,} embeddings '
            f"(a seeded sample), projected on their two principal components</p>")
    return scatter_svg(points, dots, titles, axes) + note


def _sampled_vectors(embeddings: pa.Table) -> tuple[np.ndarray, list]:
    """Up to MAP_POINTS finite vectors (a seeded sample beyond that) and their URIs."""
    index = np.arange(embeddings.num_rows)
    if len(index) > MAP_POINTS:
        index = np.sort(np.random.default_rng(MAP_SEED).choice(index, MAP_POINTS, replace=False))
    rows = embeddings.take(pa.array(index))
    vectors = rows["vector"].to_pylist()
    keep = [i for i, v in enumerate(vectors) if v is not None and len(v) == len(vectors[0] or [])]
    matrix = np.array([vectors[i] for i in keep], dtype=np.float64).reshape(len(keep), -1)
    finite = np.isfinite(matrix).all(axis=1) if len(keep) else np.zeros(0, bool)
    names = [rows["uri"][keep[i]].as_py() for i in np.flatnonzero(finite)]
    return matrix[finite], names


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The vectors projected on their first two principal components (SVD of the centred
    matrix), and the share of the variance each component explains."""
    centred = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2
    total = float(variance.sum()) or 1.0
    picked = components[:2]
    points = centred @ picked.T
    if points.shape[1] < 2:  # one dimension (or none left after centring): a flat second axis
        points = np.column_stack([points, np.zeros((len(points), 2 - points.shape[1]))])
    shares = (variance[:2] / total).tolist() + [0.0, 0.0]
    return points, (shares[0], shares[1])


PAGE_CSS = "body{margin:24px;font:14px/1.4 system-ui,sans-serif;color:#222;background:#fff}"
CSS = """
.fq-profile{font-family:system-ui,sans-serif;font-size:13px;color:#222;max-width:1200px}
.fq-profile h2{font-size:18px;margin:4px 0 8px}.fq-profile h3{font-size:15px;margin:18px 0 6px;
border-bottom:1px solid #ddd}.fq-profile h4{font-size:13px;margin:10px 0 4px}
.fq-tiles{display:flex;flex-wrap:wrap;gap:6px}.fq-tile{border:1px solid #ddd;border-radius:4px;
padding:4px 10px;min-width:70px}.fq-tile b{display:block;font-size:16px}.fq-tile span{color:#666}
.fq-legend{margin:8px 0}.fq-key{margin-right:12px;white-space:nowrap}.fq-key i{display:inline-block;
width:10px;height:10px;margin-right:4px;border-radius:2px}
.fq-charts{display:flex;flex-wrap:wrap;gap:8px}.fq-charts svg{width:280px;height:160px}
.fq-profile svg text{font-size:10px;fill:#333;font-family:system-ui,sans-serif}
svg.fq-map{width:420px;height:420px;display:block}
.fq-grid{display:flex;flex-wrap:wrap;gap:6px}.fq-card{margin:0;width:132px;font-size:11px}
.fq-card img{max-width:128px;max-height:128px;display:block}
.fq-none{width:128px;height:72px;background:#f3f3f3;color:#777;display:flex;align-items:center;
justify-content:center;text-align:center;overflow:hidden;font-size:10px;padding:2px;box-sizing:border-box}
.fq-card figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.fq-note{color:#777;display:block}.fq-count{color:#777;font-weight:normal;margin-right:6px}
.fq-sql{background:#f6f6f6;padding:6px;white-space:pre-wrap;font-size:12px;margin:4px 0 8px}
.fq-set{display:flex;align-items:center;gap:6px;margin:4px 0}.fq-flag summary{cursor:pointer;
font-weight:bold;margin:6px 0}
.fq-tables{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.fq-profile table{border-collapse:collapse}.fq-profile td,.fq-profile th{border:1px solid #e3e3e3;
padding:2px 6px;text-align:left;vertical-align:top}.fq-profile caption{font-weight:bold;text-align:left}
"""
