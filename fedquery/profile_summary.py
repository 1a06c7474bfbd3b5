"""``Profile.summary`` and ``Profile.groups``: counts and ranges over the measured files, in DuckDB.

Counts are over every file; sizes, dimensions and pixel measures over the files read without
error (a truncated file's partial values are left out); flags count the files that have them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

FLAGS = ("dark", "overexposed", "blurry", "tiny", "odd_aspect", "grayscale")
IMAGE_MEASURES = ("brightness", "contrast", "sharpness", "colourfulness", "entropy")
GROUP_COLUMNS = ("files", "ok", "missing", "corrupt", "forbidden", "bytes", "mean_width",
                 "mean_height", "points", *FLAGS, "duplicates", "near_duplicates")
_OK = "status = 'ok'"


def summarize(files: pa.Table, rows: int) -> dict[str, Any]:
    """The summary of a table of measured files, one row per file (``rows``: the source rows
    that point at them)."""
    con = duckdb.connect()
    try:
        con.register("files", files)
        return _summary(con, files, rows)
    finally:
        con.close()


def _summary(con: duckdb.DuckDBPyConnection, files: pa.Table, rows: int) -> dict[str, Any]:
    one = _one_row(con, """
        count(*) AS total, count(*) FILTER (status = 'ok') AS ok,
        count(*) FILTER (status = 'missing') AS missing,
        count(*) FILTER (status = 'corrupt') AS corrupt,
        count(*) FILTER (status = 'forbidden') AS forbidden,
        count(*) FILTER (kind = 'image' AND status = 'ok') AS images,
        count(*) FILTER (kind = 'pointcloud' AND status = 'ok') AS pointclouds""")
    counts = lambda where, column: _counts(con, column, where)  # noqa: E731
    images = {"count": one["images"], **{name: _range(con, name, "kind = 'image'")
                                         for name in ("width", "height", *IMAGE_MEASURES)},
              "modes": counts(f"kind = 'image' AND {_OK}", "mode")}
    return {
        "total": one["total"], "rows": rows, "ok": one["ok"], "missing": one["missing"],
        "corrupt": one["corrupt"], "forbidden": one["forbidden"],
        "formats": counts("format IS NOT NULL", "format"),
        "kinds": counts("kind IS NOT NULL", "kind"),
        "bytes": _range(con, "bytes", "true", total=True),
        "images": images,
        "pointclouds": {"count": one["pointclouds"],
                        "points": _range(con, "points", "kind = 'pointcloud'", total=True),
                        "density": _range(con, "density", "kind = 'pointcloud'")},
        "flags": _one_row(con, ", ".join(f"count(*) FILTER ({f}) AS {f}" for f in FLAGS)),
        "duplicates": _sets(con, "duplicate_set"),
        "near_duplicates": _sets(con, "near_duplicate_set"),
        "errors": _errors(files),
    }


def group_counts(files: pa.Table, by: list[str]) -> pa.Table:
    """A row per combination of ``by`` values (columns of ``files``): ``GROUP_COLUMNS``."""
    con = duckdb.connect()
    try:
        con.register("files", files)
        keys = ", ".join(_quoted(name) for name in by)
        flags = ", ".join(f"count(*) FILTER ({f}) AS {f}" for f in FLAGS)
        return con.sql(f"""
            SELECT {keys}, count(*) AS files, count(*) FILTER ({_OK}) AS ok,
                   count(*) FILTER (status = 'missing') AS missing,
                   count(*) FILTER (status = 'corrupt') AS corrupt,
                   count(*) FILTER (status = 'forbidden') AS forbidden,
                   sum(bytes) FILTER ({_OK})::BIGINT AS bytes,
                   round(avg(width) FILTER ({_OK}), 1) AS mean_width,
                   round(avg(height) FILTER ({_OK}), 1) AS mean_height,
                   sum(points) FILTER ({_OK})::BIGINT AS points, {flags},
                   count(duplicate_set) AS duplicates, count(near_duplicate_set) AS near_duplicates
            FROM files GROUP BY ALL ORDER BY {keys} NULLS LAST""").to_arrow_table()
    finally:
        con.close()


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _one_row(con: duckdb.DuckDBPyConnection, select: str) -> dict[str, Any]:
    result = con.sql(f"SELECT {select} FROM files")
    return dict(zip(result.columns, result.fetchall()[0], strict=True))


def _counts(con: duckdb.DuckDBPyConnection, column: str, where: str) -> dict[str, int]:
    return dict(con.sql(f"SELECT {column}, count(*) FROM files WHERE {where} "
                        "GROUP BY ALL ORDER BY 2 DESC, 1").fetchall())


def _range(con: duckdb.DuckDBPyConnection, column: str, where: str, *,
           total: bool = False) -> dict[str, Any]:
    """min, max, mean (and total) of a column over the files read without error."""
    row = _one_row(con, f"""sum({column}) FILTER ({where} AND {_OK})::DOUBLE AS total,
        min({column}) FILTER ({where} AND {_OK}) AS min, max({column}) FILTER ({where} AND {_OK}) AS max,
        avg({column}) FILTER ({where} AND {_OK}) AS mean""")
    if total:
        row["total"] = int(row["total"]) if row["total"] is not None else None
    else:
        del row["total"]
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def _sets(con: duckdb.DuckDBPyConnection, column: str) -> dict[str, int]:
    return _one_row(con, f"count(DISTINCT {column}) AS sets, count({column}) AS files")


def _errors(files: pa.Table) -> dict[str, int]:
    """The ten commonest errors, each without the URI it names."""
    pairs = zip(files.column("error").to_pylist(), files.column("uri").to_pylist(), strict=True)
    return dict(Counter(_error_kind(e, u) for e, u in pairs if e).most_common(10))


def _error_kind(error: str, uri: str | None) -> str:
    return error.replace(f": {uri}", "").replace(repr(uri), "").strip() if uri else error
