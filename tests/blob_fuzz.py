"""Seeded mutations of small valid files, and the checks the blob functions must pass on them.

For every format the blob functions read (LAS, LAZ, KITTI ``.bin``, ``.npy``, ASCII and binary
``.pcd``, PNG, JPEG, GIF, WebP, TIFF, BMP) a small valid file is made, then ``count`` seeded
mutants of it: truncations, random bytes, random bytes in the header, huge or negative numbers
written over header fields (binary: 2, 4 or 8 bytes at a header offset, or anywhere, where a
LAZ chunk table or layer sizes lie; text: a number of the header replaced), bytes appended.
``check(folder)`` then runs every function over them (``image_info``, ``thumbnail``,
``embed_image``, ``pointcloud_info``, ``read_pointcloud``, ``con.profile``), and returns what
went wrong: a query that raised, a value that contradicts
another, a valid file reported bad. Under ``strict=True`` a bad file may only raise a
``SourceError`` naming its source and URI.

Run it from the shell (what ``tests/test_blob_fuzz.py`` runs, in a process of its own so that
its peak memory can be measured):

    python -m tests.blob_fuzz FOLDER [--count 200] [--seed 8]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.peak_memory import peak_rss_bytes

IMAGES = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP"}
CLOUDS = ("las", "laz", "bin", "npy", "ascii.pcd", "binary.pcd")
HUGE = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0xFFFF, 0)
TEXT_NUMBERS = ("-1", "-5", "0", "4294967296", "99999999999999999999999999", "9" * 30, "1e9")
LIMITS = {"pointcloud_points": 200_000, "thumbnail_pixels": 4_000_000, "decode_memory": "64MiB",
          "read_pointcloud": "1MiB", "pointcloud_info": "1MiB", "thumbnail": "1MiB",
          "embed_image": "1MiB", "read_blob": "1MiB", "image_info": "1MiB"}
STRICT_SAMPLE = 12  # mutants per format also read one at a time with strict=True


# ---------------------------------------------------------------------- valid files


def originals() -> dict[str, bytes]:
    """A small valid file per format, by the name's suffix (``ascii.pcd``, ``png``, ...)."""
    rng = np.random.default_rng(0)
    points = (rng.random((60, 4)) * [10, 10, 2, 1]).astype(np.float32)
    files = {"bin": points.tobytes(), "npy": _npy(points),
             "ascii.pcd": _pcd(points, "ascii"), "binary.pcd": _pcd(points, "binary"),
             "las": _las(points, compress=False), "laz": _las(points, compress=True)}
    pixels = rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)
    for suffix, fmt in IMAGES.items():
        files[suffix] = _image(pixels, fmt)
    return files


def _npy(points: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, points)
    return out.getvalue()


def _pcd(points: np.ndarray, kind: str) -> bytes:
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\n"
            f"COUNT 1 1 1 1\nWIDTH {len(points)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
            f"POINTS {len(points)}\nDATA {kind}\n").encode()
    if kind == "binary":
        return head + points.astype("<f4").tobytes()
    return head + "".join(" ".join(f"{v:.4f}" for v in p) + "\n" for p in points).encode()


def _las(points: np.ndarray, *, compress: bool) -> bytes:
    import laspy

    header = laspy.LasHeader(point_format=6 if compress else 3, version="1.4" if compress else "1.2")
    header.scales = [0.001, 0.001, 0.001]
    las = laspy.LasData(header)
    las.x, las.y, las.z = (points[:, i].astype(np.float64) for i in range(3))
    las.intensity = (points[:, 3] * 1000).astype(np.uint16)
    out = io.BytesIO()
    las.write(out, do_compress=compress, laz_backend=laspy.LazBackend.Lazrs if compress else None)
    return out.getvalue()


def _image(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


# ---------------------------------------------------------------------- mutants


def header_length(suffix: str, data: bytes) -> int:
    """Where a format's header ends (the part whose numbers say how to read the rest)."""
    if suffix in ("las", "laz"):
        return min(len(data), 400)
    if suffix == "npy" or suffix.endswith("pcd"):
        return data.index(b"DATA") + 12 if suffix.endswith("pcd") else 10 + data[8]
    return min(len(data), 64)


def mutate(data: bytes, suffix: str, rng: random.Random) -> bytes:
    """One seeded mutant of ``data`` (see module doc)."""
    head = header_length(suffix, data)
    kind = rng.choice(("truncate", "bytes", "header", "number", "number", "anywhere", "text",
                       "append"))
    out = bytearray(data)
    if kind == "truncate":
        return bytes(out[:rng.randrange(len(out))])
    if kind == "append":
        return bytes(out + rng.randbytes(rng.randrange(1, 4096)))
    if kind == "text" and (suffix == "npy" or suffix.endswith("pcd")):
        return _text_number(data, head, rng)
    if kind in ("number", "text", "anywhere"):  # "anywhere": counts past the header too
        width, value = rng.choice((2, 4, 8)), rng.choice(HUGE)
        at = rng.randrange(max(1, (head if kind != "anywhere" else len(out)) - width))
        out[at:at + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, rng.choice(("little", "big")))
        return bytes(out)
    span = head if kind == "header" else len(out)
    for _ in range(rng.randrange(1, 9)):
        out[rng.randrange(span)] = rng.randrange(256)
    return bytes(out)


def _text_number(data: bytes, head: int, rng: random.Random) -> bytes:
    """A number of a text header replaced by a huge, negative or odd one."""
    numbers = list(re.finditer(rb"-?\d+", data[:head]))
    if not numbers:
        return data
    found = rng.choice(numbers)
    return data[:found.start()] + rng.choice(TEXT_NUMBERS).encode() + data[found.end():]


def write_corpus(folder: Path, count: int, seed: int) -> dict[str, list[str]]:
    """The originals (``ok-<suffix>``) and ``count`` mutants of each in ``folder``: the names by
    kind (``images``, ``clouds``)."""
    names: dict[str, list[str]] = {"images": [], "clouds": []}
    for suffix, data in originals().items():
        kind = "clouds" if suffix in CLOUDS else "images"
        ext = suffix if "." not in suffix else "pcd"
        stem = suffix.split(".")[0]
        rng = random.Random(f"{seed}-{suffix}")
        for i in range(count + 1):
            name = f"{'ok' if i == 0 else f'm{i:03d}'}-{stem}.{ext}"
            (folder / name).write_bytes(data if i == 0 else mutate(data, suffix, rng))
            names[kind].append(name)
    return names


# ---------------------------------------------------------------------- checks


def check(folder: Path, names: dict[str, list[str]]) -> dict[str, Any]:
    """Every function over every file; a report of the problems found and of what was seen."""
    import fedquery

    problems: list[str] = []
    seen: dict[str, int] = {}
    catalog = {"sources": {"fz": {"kind": "files", "root": str(folder), "limits": LIMITS}}}
    with fedquery.connect(catalog) as con:
        _images(con, names["images"], problems, seen)
        _clouds(con, names["clouds"], problems, seen)
        _profile(con, sum(len(v) for v in names.values()), problems, seen)
    with fedquery.connect(catalog, strict=True) as con:
        _strict(con, names, problems, seen)
    return {"problems": problems, "seen": seen}


def _run(con, sql: str, names: list[str], problems: list[str]) -> list[tuple] | None:
    """``sql`` over ``$names``; when it raises, the files that make it raise on their own."""
    try:
        return con.sql(sql, params={"names": names}).fetchall()
    except Exception as exc:  # noqa: BLE001 - any escape is the finding
        problems.append(f"{sql}: raised {type(exc).__name__}: {str(exc)[:300]}")
    for name in names:
        try:
            con.sql(sql, params={"names": [name]}).fetchall()
        except Exception as exc:  # noqa: BLE001 - the same, one file at a time
            problems.append(f"  {name}: {type(exc).__name__}: {str(exc)[:200]}")
            if len(problems) > 40:
                break
    return None


def _images(con, names: list[str], problems: list[str], seen: dict[str, int]) -> None:
    rows = _run(con, "SELECT u, image_info(u), thumbnail(u, 16), embed_image(u) "
                     "FROM unnest($names) t(u) ORDER BY u", names, problems) or []
    if len(rows) != len(names):
        problems.append(f"images: {len(rows)} rows for {len(names)} files")
    for name, info, thumb, vector in rows:
        ok = info is not None and info["error"] is None
        seen["images ok" if ok else "images with an error"] = seen.get(
            "images ok" if ok else "images with an error", 0) + 1
        if info is None or (ok and not (info["width"] and info["height"] and info["format"])):
            problems.append(f"{name}: image_info {info}")
        if name.startswith("ok-") and not (ok and thumb and vector):
            problems.append(f"{name}: a valid image read as {info}, thumbnail {bool(thumb)}, "
                            f"vector {vector is not None}")
        if thumb is not None and not thumb.startswith(b"\x89PNG"):
            problems.append(f"{name}: thumbnail is not a PNG")


def _clouds(con, names: list[str], problems: list[str], seen: dict[str, int]) -> None:
    rows = _run(con, "SELECT u, pointcloud_info(u), len(read_pointcloud(u)) "
                     "FROM unnest($names) t(u) ORDER BY u", names, problems) or []
    if len(rows) != len(names):
        problems.append(f"clouds: {len(rows)} rows for {len(names)} files")
    for name, info, points in rows:
        ok = info is not None and info["error"] is None
        key = "clouds ok" if ok else "clouds with an error"
        seen[key] = seen.get(key, 0) + 1
        if info is None or (ok and (info["points"] is None or info["points"] < 0)):
            problems.append(f"{name}: pointcloud_info {info}")
        if ok and points is not None and points != info["points"]:
            problems.append(f"{name}: read_pointcloud has {points} points, "
                            f"pointcloud_info says {info['points']}")
        if name.startswith("ok-") and not (ok and points == 60):
            problems.append(f"{name}: a valid cloud read as {info}, {points} points")


def _profile(con, total: int, problems: list[str], seen: dict[str, int]) -> None:
    try:
        summary = con.profile("fz").summary
    except Exception as exc:  # noqa: BLE001 - any escape is the finding
        problems.append(f"profile raised {type(exc).__name__}: {str(exc)[:300]}")
        return
    seen["profile corrupt"] = summary["corrupt"]
    if summary["total"] != total or summary["ok"] + summary["corrupt"] + summary["missing"] != total:
        problems.append(f"profile counts {summary['total']} files, {summary['ok']} ok, "
                        f"{summary['corrupt']} corrupt, {summary['missing']} missing of {total}")


def _strict(con, names: dict[str, list[str]], problems: list[str], seen: dict[str, int]) -> None:
    """A sample of mutants one at a time: a value, or a ``SourceError`` naming the source and
    the file (a bad file under ``strict``; any other error is a bug)."""
    import fedquery

    calls = {"images": ("image_info($u)", "thumbnail($u, 16)", "embed_image($u)", "read_blob($u)"),
             "clouds": ("pointcloud_info($u)", "read_pointcloud($u)")}
    for kind, listed in names.items():
        for name in listed[::max(1, len(listed) // (STRICT_SAMPLE * 6))]:
            for call in calls[kind]:
                try:
                    con.sql(f"SELECT {call}", params={"u": name}).fetchall()
                except fedquery.SourceError as exc:
                    seen["strict errors"] = seen.get("strict errors", 0) + 1
                    if exc.source != "fz" or name not in str(exc):
                        problems.append(f"strict {call} of {name}: {exc} (names neither the "
                                        "source nor the file)")
                except Exception as exc:  # noqa: BLE001 - any other escape is the finding
                    problems.append(f"strict {call} of {name}: {type(exc).__name__}: {exc}"[:300])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    report = check(args.folder, write_corpus(args.folder, args.count, args.seed))
    report["peak_rss_bytes"] = peak_rss_bytes()
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
