"""``con.profile``: files measured by their headers, linked to the table that points at them."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import fedquery
from fedquery.cli import main


def test_profile_of_a_blob_column_equals_the_files(fleet) -> None:
    con, root = fleet
    uris = [u for (u,) in con.sql("SELECT image_uri FROM frames").fetchall()]
    profile = con.profile("frames")
    assert profile.column == "image_uri" and profile.summary["total"] == len(uris)
    paths = [root / "blobs" / "camera" / u for u in uris]
    formats = Counter()
    for path in paths:
        with Image.open(path) as image:
            formats[image.format] += 1
    assert profile.summary["formats"] == dict(formats)
    assert profile.summary["bytes"]["total"] == sum(p.stat().st_size for p in paths)
    assert profile.summary["ok"] == len(uris) and profile.summary["corrupt"] == 0
    files = profile.to_arrow()
    assert files.num_rows == len(uris) and set(files.column("status").to_pylist()) == {"ok"}


def test_grouped_by_a_column_of_the_table(fleet) -> None:
    con, _ = fleet
    profile = con.profile("frames", by="camera")
    expected = dict(con.sql("SELECT camera, count(*) FROM frames GROUP BY ALL").fetchall())
    groups = profile.groups.to_pylist()
    assert {g["camera"]: g["files"] for g in groups} == expected
    assert sum(g["bytes"] for g in groups) == profile.summary["bytes"]["total"]


def test_point_clouds_are_counted(fleet) -> None:
    con, root = fleet
    profile = con.profile("lidar_sweeps", by="drive_id")
    files = profile.to_arrow().to_pylist()
    kitti = [f for f in files if f["uri"].endswith(".bin")]
    assert kitti and profile.summary["pointclouds"]["count"] == len(files)
    for f in kitti[:10]:
        points = np.fromfile(root / "blobs" / "lidar" / f["uri"], np.float32).reshape(-1, 4)
        assert f["points"] == len(points) and f["bytes"] == points.nbytes
    assert profile.summary["pointclouds"]["points"]["total"] == sum(f["points"] for f in files)


@pytest.fixture()
def shelf(tmp_path: Path) -> dict:
    """Good, corrupt, empty and missing files behind a blob column, grouped by a label."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    good = io.BytesIO()
    Image.new("RGB", (20, 10), "blue").save(good, "PNG")
    (blobs / "good.png").write_bytes(good.getvalue())
    (blobs / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (blobs / "empty.png").write_bytes(b"")
    (blobs / "notes.txt").write_text("hello")
    (tmp_path / "lake").mkdir()
    uris = ["good.png", "corrupt.jpg", "empty.png", "missing.png", None, "notes.txt"]
    labels = ["a", "a", "b", "b", "<b>x</b>", "a"]
    pq.write_table(pa.table({"uri": uris, "label": labels}), tmp_path / "lake" / "s.parquet")
    return {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")},
                        "pics": {"kind": "files", "root": str(blobs)}},
            "tables": {"shots": {"source": "lake", "path": "s.parquet"}},
            "blobs": {"shots.uri": "pics"}}


def test_missing_and_corrupt_files_are_counted_not_fatal(shelf) -> None:
    with fedquery.connect(shelf) as con:
        profile = con.profile("shots", by="label")
    statuses = dict(zip(profile.to_arrow().column("uri").to_pylist(),
                        profile.to_arrow().column("status").to_pylist(), strict=True))
    assert statuses == {"good.png": "ok", "corrupt.jpg": "corrupt", "empty.png": "corrupt",
                        "missing.png": "missing", None: "missing", "notes.txt": "ok"}
    summary = profile.summary
    assert (summary["total"], summary["ok"], summary["missing"], summary["corrupt"]) == (6, 2, 2, 2)
    assert summary["formats"] == {"PNG": 1} and summary["kinds"]["other"] == 1
    html = profile._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_files_source_and_sample(shelf) -> None:
    with fedquery.connect(shelf) as con:
        whole = con.profile("pics")
        assert whole.summary["total"] == 4
        first, again = con.profile("pics", sample=2), con.profile("pics", sample=2)
        assert first.to_arrow().num_rows == 2
        assert first.to_arrow().column("uri") == again.to_arrow().column("uri")
        assert con.profile("pics", sample=0.5).summary["total"] == 2
        grouped = con.profile("pics", by="extension")
        assert {g["extension"]: g["files"] for g in grouped.groups.to_pylist()} == {
            "jpg": 1, "png": 2, "txt": 1}


@pytest.mark.parametrize(("args", "message"), [
    (("shot",), "unknown table 'shot' (did you mean 'shots'?)"),
    (("shots", "nope"), "table 'shots' has no column 'nope'"),
    (("shots", None, "nope"), "table 'shots' has no column 'nope'"),
    (("pics", None, "nope"), "the listing of 'pics' has no column 'nope'"),
    (("shots", None, None, 0), "sample must be a positive count or a fraction"),
])
def test_profile_errors(shelf, args, message: str) -> None:
    with fedquery.connect(shelf) as con, pytest.raises(fedquery.PlanError, match=message.replace(
            "(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        con.profile(*args)


def test_cli_profile_writes_html(shelf, tmp_path: Path, capsys) -> None:
    import yaml

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(shelf))
    page = tmp_path / "profile.html"
    assert main(["profile", str(catalog), "shots", "--by", "label", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "6 files, 2 ok, 2 missing, 2 corrupt" in out and "formats        PNG 1" in out
    assert page.read_text().startswith("<!doctype html>")


@pytest.fixture()
def crowd(tmp_path: Path) -> dict:
    """Many rows over a few files, one of them outside the root and one truncated."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    data = io.BytesIO()
    Image.new("RGB", (40, 30), "green").save(data, "PNG")
    (blobs / "a.png").write_bytes(data.getvalue())
    (blobs / "half.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (tmp_path / "outside.png").write_bytes(data.getvalue())
    (tmp_path / "lake").mkdir()
    uris = ["a.png", "half.png", "../outside.png"] * 500
    statuses = ["new", "old"] * 750
    pq.write_table(pa.table({"uri": uris, "status": statuses}), tmp_path / "lake" / "s.parquet")
    return {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")},
                        "pics": {"kind": "files", "root": str(blobs)}},
            "tables": {"shots": {"source": "lake", "path": "s.parquet"}},
            "blobs": {"shots.uri": "pics"}}


@pytest.mark.parametrize("strict", [False, True])
def test_each_file_once_and_refused_uris_counted(crowd, strict: bool) -> None:
    with fedquery.connect(crowd, strict=strict) as con:
        profile = con.profile("shots", by="status")
    s = profile.summary
    assert (s["total"], s["rows"], s["ok"], s["corrupt"], s["forbidden"]) == (3, 1500, 1, 1, 1)
    assert s["bytes"]["total"] == (Path(crowd["sources"]["pics"]["root"]) / "a.png").stat().st_size
    assert s["images"]["width"] == {"min": 40, "max": 40, "mean": 40.0}  # the truncated one is left out
    files = profile.to_arrow()
    assert files.column_names[:2] == ["uri", "by_status"] and files.num_rows == 6
    assert {g["by_status"]: g["files"] for g in profile.groups.to_pylist()} == {"new": 3, "old": 3}
    refused = [f for f in files.to_pylist() if f["status"] == "forbidden"]
    assert refused and all("outside" in f["error"] and f["bytes"] is None for f in refused)


@pytest.mark.parametrize(("sample", "count"), [(1.0, 3), (0.34, 1), (2, 2), (10, 3)])
def test_sample_is_a_count_or_a_fraction(crowd, sample, count: int) -> None:
    with fedquery.connect(crowd) as con:
        assert con.profile("shots", sample=sample).summary["total"] == count


@pytest.mark.parametrize("sample", [2.5, float("nan"), float("inf"), -1, "3"])
def test_bad_sample_is_a_plan_error(crowd, sample) -> None:
    with fedquery.connect(crowd) as con, pytest.raises(fedquery.PlanError, match="sample must be"):
        con.profile("shots", sample=sample)


def test_save_html_refuses_what_is_not_a_path_and_says_why_it_cannot_write(shelf,
                                                                           tmp_path: Path) -> None:
    with fedquery.connect(shelf) as con:
        profile = con.profile("shots")
    for bad in (5, None, b"page.html"):
        with pytest.raises(fedquery.PlanError, match="save_html: expected a file path"):
            profile.save_html(bad)
    with pytest.raises(fedquery.PlanError, match="save_html: not a usable file path"):
        profile.save_html(str(tmp_path / "a\0b.html"))
    missing = tmp_path / "no-such-folder" / "page.html"
    with pytest.raises(FileNotFoundError) as info:
        profile.save_html(missing)
    assert str(missing) in str(info.value)
    profile.save_html(tmp_path / "page.html")
    assert (tmp_path / "page.html").read_bytes().decode("utf-8").startswith("<!doctype html>")


def test_dotted_and_quoted_names(tmp_path: Path) -> None:
    """A table named ``a.b`` and columns named ``u.v`` and ``c"d`` are one name each."""
    (tmp_path / "blobs").mkdir()
    (tmp_path / "lake").mkdir()
    (tmp_path / "blobs" / "x.txt").write_text("hello")
    here, gone = str(tmp_path / "blobs" / "x.txt"), str(tmp_path / "blobs" / "gone.txt")
    pq.write_table(pa.table({"u.v": [here, here, gone], 'c"d': ["p", "q", "q"]}),
                   tmp_path / "lake" / "s.parquet")
    catalog = {"sources": {"lake": {"kind": "parquet", "root": str(tmp_path / "lake")},
                           "pics": {"kind": "files", "root": str(tmp_path / "blobs")}},
               "tables": {"a.b": {"source": "lake", "path": "s.parquet"}}}
    with fedquery.connect(catalog) as con:
        profile = con.profile("a.b", column="u.v", by='c"d')
    assert profile.summary["total"] == 2 and profile.summary["missing"] == 1
    assert {g['c"d']: g["files"] for g in profile.groups.to_pylist()} == {"p": 1, "q": 2}
