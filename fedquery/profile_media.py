"""What a profile shows of its files: small JPEG thumbnails and a sample of embedding vectors.

Both are capped and chosen by the same seeded order as ``sample`` (``md5(seed || uri)``):
``THUMBS_PER_GROUP`` readable images of each of the ``THUMB_GROUPS`` largest groups, and up
to ``FLAGGED_SHOWN`` flagged files (dark, overexposed, blurry, tiny, odd aspect, grayscale, in
a duplicate or near-duplicate set, corrupt but with a header), taken from each kind of flag in
turn so one common flag cannot hide the others. Thumbnails are made through the ``thumbnail``
function's checks (size caps, decode budget) and re-encoded as JPEG. Embeddings are
``EMBEDDINGS_MAX`` readable images' vectors: the source's one vector column, else the default
image embedder's (``embed_image``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
from PIL import Image

from fedquery.errors import PlanError
from fedquery.profile_source import SAMPLE_SEED, rows_of

if TYPE_CHECKING:
    from fedquery.connection import Connection
    from fedquery.functions.udfs import BlobFunctions
    from fedquery.profile_source import Selection

THUMB_PX = 128
THUMB_QUALITY = 70
THUMBS_PER_GROUP = 12
THUMB_GROUPS = 24
FLAGGED_SHOWN = 60
EMBEDDINGS_MAX = 2000
_KEY = f"md5('{SAMPLE_SEED}:' || coalesce(uri, ''))"
_FLAGGED = ("dark", "overexposed", "blurry", "tiny", "odd_aspect", "grayscale",
            "duplicate_set IS NOT NULL", "near_duplicate_set IS NOT NULL",
            "status = 'corrupt' AND width IS NOT NULL")


def thumbnail_uris(files: pa.Table, by: list[str]) -> list[str]:
    """The URIs to show: a seeded sample per group, then the flagged files (see module doc)."""
    con = duckdb.connect()
    try:
        con.register("files", files)
        chosen = list(dict.fromkeys(_per_group(con, by)))
        shown = set(chosen)
        return chosen + [u for u in _flagged(con) if u not in shown][:FLAGGED_SHOWN]
    finally:
        con.close()


def _per_group(con: duckdb.DuckDBPyConnection, by: list[str]) -> list[str]:
    keys = ", ".join(f'"{i}"' for i in range(len(by)))
    named = ", ".join(f'"{name}" AS "{i}"' for i, name in enumerate(_escaped(by)))
    if not by:
        return [u for (u,) in con.sql(f"""SELECT uri FROM files WHERE kind = 'image'
            AND status = 'ok' ORDER BY {_KEY} LIMIT {THUMBS_PER_GROUP}""").fetchall()]
    return [u for (u,) in con.sql(f"""
        WITH g AS (SELECT uri, {named} FROM files WHERE kind = 'image' AND status = 'ok'),
             big AS (SELECT {keys} FROM g GROUP BY ALL ORDER BY count(*) DESC, {keys}
                     LIMIT {THUMB_GROUPS}),
             ranked AS (SELECT uri, row_number() OVER (PARTITION BY {keys} ORDER BY {_KEY}) AS r
                        FROM g SEMI JOIN big USING ({keys}))
        SELECT uri FROM ranked WHERE r <= {THUMBS_PER_GROUP} ORDER BY r, {_KEY}""").fetchall()]


def _escaped(names: list[str]) -> list[str]:
    return [name.replace('"', '""') for name in names]


def _flagged(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Flagged image URIs, one of each kind of flag in turn (duplicates by set)."""
    lists = []
    for i, flag in enumerate(_FLAGGED):
        order = "duplicate_set, " if "duplicate" in flag and "near" not in flag else (
            "near_duplicate_set, " if "near" in flag else "")
        lists.append([row[0] for row in con.sql(
            f"SELECT DISTINCT uri, {order}{_KEY} AS k{i} FROM files WHERE kind = 'image' "
            f"AND ({flag}) ORDER BY {order}k{i} LIMIT {FLAGGED_SHOWN}").fetchall()])
    out = []
    for turn in range(FLAGGED_SHOWN):
        out += [found[turn] for found in lists if turn < len(found)]
    return list(dict.fromkeys(out))


def thumbnails(functions: BlobFunctions, uris: list[str], source: str | None) -> dict[str, bytes]:
    """Small JPEGs of ``uris`` (those that decode), keyed by URI."""
    with functions.run_of(None) as run:
        pngs = functions.blobs.map(
            lambda uri: functions._thumbnail_one(uri, THUMB_PX, source, run), uris)
    return {uri: _jpeg(png) for uri, png in zip(uris, pngs, strict=True) if png is not None}


def _jpeg(png: bytes) -> bytes:
    """A thumbnail PNG as a JPEG of ``THUMB_QUALITY`` (transparency over white)."""
    with Image.open(io.BytesIO(png)) as img:
        if img.mode in ("RGBA", "LA"):
            back = Image.new("RGB", img.size, "white")
            back.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
            img = back
        out = io.BytesIO()
        img.convert("RGB" if img.mode != "L" else "L").save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def embedding_uris(files: pa.Table) -> list[str]:
    """Up to ``EMBEDDINGS_MAX`` readable images, in the seeded order."""
    con = duckdb.connect()
    try:
        con.register("files", files)
        return [row[0] for row in con.sql(f"""SELECT DISTINCT uri, {_KEY} AS k FROM files
            WHERE kind = 'image' AND status = 'ok' ORDER BY k LIMIT {EMBEDDINGS_MAX}""").fetchall()]
    finally:
        con.close()


def embeddings(con: Connection, selection: Selection, uris: list[str],
               embed: Callable[[list[str], str | None], pa.Table | None]) -> pa.Table | None:
    """``uri`` and ``vector`` (list<float32>) of ``uris``: from the source's vector column,
    else ``embed(uris, source)`` (``embedded``: the default image embedder's); None when
    neither gives any."""
    if not uris:
        return None
    if selection.embedding is not None:
        found = rows_of(con, selection, uris, selection.embedding)
        found = _first_per_uri(found)
    else:
        found = embed(uris, selection.files_source)
    if found is None or found.num_rows == 0:
        return None
    vectors = found.column("value").cast(pa.list_(pa.float32()))
    return pa.table({"uri": found.column("uri"), "vector": vectors})


def _first_per_uri(table: pa.Table) -> pa.Table:
    seen: set[str] = set()
    keep = []
    for i, (uri, valid) in enumerate(zip(table.column("uri").to_pylist(),
                                         table.column("value").is_valid().to_pylist(), strict=True)):
        if valid and uri not in seen:
            seen.add(uri)
            keep.append(i)
    return table.take(pa.array(keep, pa.int64()))


def embedded(functions: BlobFunctions, uris: list[str], source: str | None) -> pa.Table | None:
    """``uris`` embedded here by the default image embedder (those it could embed)."""
    from fedquery.functions import embed_udfs
    from fedquery.functions.embedding import REGISTRY

    try:
        embedder = REGISTRY.get("image")
    except PlanError:
        return None
    udf = embed_udfs.image_udf(functions, embedder)
    vectors = udf(pa.array(uris, pa.string()), pa.array([source] * len(uris), pa.string()))
    valid = np.asarray(vectors.is_valid())
    table = pa.table({"uri": pa.array(uris, pa.string()), "value": vectors})
    return table.filter(pa.array(valid))
