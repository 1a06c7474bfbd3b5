"""The measuring pass of ``con.profile``: every distinct file read once, a batch at a time.

Each batch of ``BATCH`` URIs is measured in the blob I/O pool (reads in parallel; Pillow's
decoders release the GIL) under a run of its own, whose cached bytes are dropped when the
batch ends, and becomes one Arrow record batch: nothing per file is kept in Python between
batches, so memory stays flat in the number of files. Images get ``image_stats`` (pixel
measures, EXIF, hashes, flags: the whole file read within ``limits.image_stats``), point
clouds ``pointcloud_stats``, any other file only its size. A file that is missing, corrupt,
too large or refused is a row with a ``status`` and an ``error``, never a failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fedquery.errors import ForbiddenError
from fedquery.functions import duplicates
from fedquery.functions.blobs import kind_of as blob_kind
from fedquery.functions.image_content import IMAGE_STATS_ARROW
from fedquery.functions.pointcloud_content import POINTCLOUD_STATS_ARROW
from fedquery.functions.rows import struct_array

if TYPE_CHECKING:
    from fedquery.functions.blobs import Blob
    from fedquery.functions.udfs import BlobFunctions

BATCH = 256  # files measured together: one record batch, one run's cache
NEAR_DUPLICATE_BITS = 4  # phashes this many bits apart or fewer are near duplicates
_IMAGE = [f for f in IMAGE_STATS_ARROW if f.name != "error"]
_POINTCLOUD = [f for f in POINTCLOUD_STATS_ARROW
               if f.name != "error" and f.name not in {g.name for g in _IMAGE}]
MEASURED = pa.struct([("uri", pa.string()), ("kind", pa.string()), ("status", pa.string()),
                      ("error", pa.string()), *_IMAGE, *_POINTCLOUD])
MEASURE_NAMES = tuple(f.name for f in MEASURED)
SETS = (("duplicate_set", pa.int64()), ("near_duplicate_set", pa.int64()))


def measure(functions: BlobFunctions, uris: pa.Array, source: str | None, *,
            redact: Callable[[str], str] = str, label: str = "profile") -> pa.Table:
    """A row per URI (``MEASURED`` and the duplicate set columns), in the order given."""
    batches = []
    with progress(len(uris), label) as bar:
        for start in range(0, len(uris), BATCH):
            chunk = uris.slice(start, BATCH)
            batches.append(pa.RecordBatch.from_struct_array(measure_batch(functions, chunk, source,
                                                                          redact)))
            bar.update(len(chunk))
    table = pa.Table.from_batches(batches, pa.schema(list(MEASURED)))
    return with_duplicate_sets(table)


def measure_batch(functions: BlobFunctions, uris: pa.Array, source: str | None,
                  redact: Callable[[str], str] = str) -> pa.StructArray:
    """One batch of URIs measured (a ``MEASURED`` struct per URI, in order), in a run of its
    own; also what a Ray worker runs for its share of the files."""
    with functions.run_of(None) as run:
        rows = functions.blobs.map(lambda uri: _one(functions, uri, source, run), uris.to_pylist())
    for row in rows:
        if row.get("error"):
            row["error"] = redact(row["error"])
    return struct_array(rows, MEASURED)


def with_duplicate_sets(table: pa.Table) -> pa.Table:
    """``duplicate_set`` (equal content hashes) and ``near_duplicate_set`` (perceptual hashes
    within ``NEAR_DUPLICATE_BITS``): the position of the set's first file, NULL when alone."""
    exact = duplicates.duplicate_sets(table.column("content_hash").to_pylist())
    near = duplicates.near_duplicate_sets(table.column("phash").to_pylist(), NEAR_DUPLICATE_BITS)
    for (name, type_), values in zip(SETS, (exact, near), strict=True):
        table = table.append_column(name, pa.array(values, type_))
    return table


def distinct(uris: pa.ChunkedArray) -> pa.Array:
    """Each URI once (NULL once too), in the order first seen."""
    return pc.unique(uris.combine_chunks() if isinstance(uris, pa.ChunkedArray) else uris)


def _one(functions: BlobFunctions, uri: str | None, source: str | None, run: str) -> dict[str, Any]:
    """One file's row: resolved (refused: ``forbidden``), then measured by its kind."""
    if uri is None:
        return {"uri": None, "kind": None, "status": "missing", "error": "no URI"}
    kind = blob_kind(uri) or "other"
    try:
        blob = functions.blobs.resolve(uri, source)
    except ForbiddenError as exc:
        return {"uri": uri, "kind": kind, "status": "forbidden", "error": str(exc)}
    row = functions.guarded(lambda: _read(functions, blob, kind, run), blob, uri)
    error = row.get("error")
    status = "ok" if not error else "missing" if error.startswith("file not found") else "corrupt"
    return {**row, "uri": uri, "kind": kind, "status": status}


def _read(functions: BlobFunctions, blob: Blob, kind: str, run: str) -> dict[str, Any]:
    if kind == "image":
        return functions.image_stats_one(blob, run)
    if kind == "pointcloud":
        row = functions.pointcloud_stats_one(blob, run)
        return {**row, "bytes": functions.blobs.size(blob, run)}
    return {"bytes": functions.blobs.size(blob, run)}


class _Quiet:
    """A progress bar that shows nothing."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def progress(total: int, label: str) -> Any:
    """``tqdm.auto`` over ``total`` files: a widget in Jupyter, a bar on a terminal's stderr,
    nothing otherwise (a script's log, a test)."""
    if not (interactive_stderr() or in_jupyter()):
        return _Quiet()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc=label, leave=False)


def interactive_stderr() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def in_jupyter() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"
