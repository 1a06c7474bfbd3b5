"""The file pictures of the profile report: thumbnail grids, flagged files, duplicate sets.

Thumbnails come from ``Profile.thumbnails`` (uri -> small JPEG made at profile time) and are
inlined as ``data:`` URIs, so the page needs no file and no network. A report holds at most
``IMAGE_BUDGET`` bytes of them: past that a file shows as a captioned box, never a broken image.
A file with no thumbnail (missing, corrupt, not an image) shows the same box with its reason.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

import pyarrow as pa
import pyarrow.compute as pc

IMAGE_BUDGET = 3 << 20  # bytes of data: URIs one report may hold
THUMBS_SHOWN = 12  # files shown per group in the thumbnail grid
FLAGGED_SHOWN = 24  # files shown per flag
SETS_SHOWN = 20  # duplicate sets shown per kind
SET_MEMBERS_SHOWN = 8  # files shown per duplicate set
CAPTION = 48  # characters of a URI in a caption (the whole URI is in the tooltip)
FLAGS = ("dark", "overexposed", "blurry", "tiny", "odd_aspect", "grayscale")
STATUSES = ("corrupt", "missing", "forbidden")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"))


@dataclass
class Pictures:
    """The thumbnails, handed out as ``data:`` URIs within the page's byte budget."""

    thumbnails: dict[str, bytes]
    budget: int = IMAGE_BUDGET
    used: int = 0
    left_out: int = 0
    _cache: dict[str, str | None] = field(default_factory=dict)

    def data_uri(self, uri: str | None) -> str | None:
        """The thumbnail of ``uri`` as a data: URI; None without one or past the budget."""
        if uri is None:
            return None
        if uri not in self._cache:
            self._cache[uri] = _data_uri(self.thumbnails.get(uri))
        found = self._cache[uri]
        if found is None:
            return None
        if self.used + len(found) > self.budget:
            self.left_out += 1
            return None
        self.used += len(found)
        return found


def _data_uri(data: bytes | None) -> str | None:
    """A data: URI of known image bytes; None for anything else (never embed unknown bytes)."""
    if not data:
        return None
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}" if mime else None


def card(pictures: Pictures, uri: str | None, note: str = "") -> str:
    """One file: its thumbnail (or a box saying why there is none), a short URI caption, and
    the whole URI as the tooltip."""
    name = "(no URI)" if uri is None else uri
    src = pictures.data_uri(uri)
    if src is not None:
        media = f'<img src="{src}" alt="{escape(name)}">'
    else:
        media = f'<div class="fq-none">{escape(note or "no thumbnail")}</div>'
    detail = f'<span class="fq-note">{escape(note)}</span>' if note and src is not None else ""
    return (f'<figure class="fq-card" title="{escape(name)}">{media}'
            f"<figcaption>{escape(_short(name))}{detail}</figcaption></figure>")


def _short(uri: str) -> str:
    return uri if len(uri) <= CAPTION else "…" + uri[-(CAPTION - 1):]


def grid(pictures: Pictures, uris: Iterable[str | None], notes: dict | None = None) -> str:
    notes = notes or {}
    return '<div class="fq-grid">' + "".join(card(pictures, u, notes.get(u, "")) for u in uris) + "</div>"


def distinct(values: Sequence) -> list:
    """The values in first-seen order, once each (a file can sit in several groups)."""
    return list(dict.fromkeys(values))


def thumbnail_grids(pictures: Pictures, uris: list, labels: list[str], shown: list[str]) -> str:
    """A grid per group of the files that have a thumbnail, THUMBS_SHOWN at most."""
    members: dict[str, list] = {label: [] for label in shown}
    for uri, label in zip(uris, labels, strict=True):
        members[label].append(uri)
    parts = []
    for label in shown:
        files = distinct(members[label])
        pictured = [u for u in files if u in pictures.thumbnails][:THUMBS_SHOWN]
        parts.append(f'<div class="fq-group" data-group="{escape(label)}"><h4>{escape(label)} '
                     f'<span class="fq-count">{len(pictured)} of {len(files):,} files shown</span></h4>'
                     + (grid(pictures, pictured) if pictured else "<p>no thumbnails</p>") + "</div>")
    return "".join(parts)


def flagged(pictures: Pictures, files: pa.Table) -> str:
    """A section per flag and per bad status that any file has: the files, each with its
    thumbnail (when it has one) and URI; corrupt, missing and refused files with their error."""
    parts = []
    for flag in FLAGS:
        if flag in files.column_names:
            hit = files.filter(pc.fill_null(files[flag], False))
            parts.append(_flag_section(pictures, flag, distinct(hit["uri"].to_pylist()), {}))
    for status in STATUSES:
        hit = files.filter(pc.equal(files["status"], status))
        errors = dict(zip(hit["uri"].to_pylist(), _errors(hit), strict=True))
        parts.append(_flag_section(pictures, status, distinct(hit["uri"].to_pylist()), errors))
    body = "".join(parts)
    return body or "<p>no file is flagged</p>"


def _errors(table: pa.Table) -> list[str]:
    if "error" not in table.column_names:
        return [""] * table.num_rows
    return [(e or "")[:200] for e in table["error"].to_pylist()]


def _flag_section(pictures: Pictures, name: str, uris: list, notes: dict) -> str:
    if not uris:
        return ""
    more = f" ({FLAGGED_SHOWN} shown)" if len(uris) > FLAGGED_SHOWN else ""
    uris = sorted(uris, key=lambda u: u not in pictures.thumbnails)  # pictured ones first
    label = name.replace("_", " ")
    return (f'<details open class="fq-flag" data-flag="{escape(name)}"><summary>{escape(label)}: '
            f"{len(uris):,} files{more}</summary>{grid(pictures, uris[:FLAGGED_SHOWN], notes)}</details>")


def duplicate_sets(pictures: Pictures, files: pa.Table) -> str:
    """Exact and near-duplicate sets, largest first, each as a row of its files."""
    parts = []
    for column, title in (("duplicate_set", "exact duplicates (same bytes)"),
                          ("near_duplicate_set", "near duplicates (similar pictures)")):
        if column not in files.column_names:
            continue
        sets = _sets(files, column)
        if not sets:
            parts.append(f"<h4>{title}</h4><p>none</p>")
            continue
        more = f", the {SETS_SHOWN} largest shown" if len(sets) > SETS_SHOWN else ""
        rows = [f'<div class="fq-set" data-kind="{column}"><span class="fq-count">{len(members)} files'
                f"</span>{grid(pictures, members[:SET_MEMBERS_SHOWN])}</div>"
                for members in sets[:SETS_SHOWN]]
        parts.append(f"<h4>{title}: {len(sets):,} sets{more}</h4>{''.join(rows)}")
    return "".join(parts)


def _sets(files: pa.Table, column: str) -> list[list]:
    members: dict[int, list] = {}
    for uri, set_id in zip(files["uri"].to_pylist(), files[column].to_pylist(), strict=True):
        if set_id is not None:
            members.setdefault(set_id, []).append(uri)
    sets = [distinct(m) for m in members.values()]
    return sorted((s for s in sets if len(s) > 1), key=len, reverse=True)
