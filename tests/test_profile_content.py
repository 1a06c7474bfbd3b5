"""``con.profile`` on photos it has never seen, linked to a warehouse table.

The photos are skimage's samples written as JPEG, with dark and blurred copies, byte-for-byte
copies, re-encoded (smaller, lower quality) copies, files cut short, junk and a missing file.
Each file is referenced by shots in a DuckDB warehouse; the group columns (weather, site) live
in another table, trips, reached by a join. The truth is plain DuckDB over the same warehouse
and the list of files this module wrote, and Pillow and numpy over the same bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image, ImageFilter

import fedquery
from fedquery.cli import main
from fedquery.functions import image_content

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")
JOINED = "SELECT s.uri, t.weather, t.site FROM shots s JOIN trips t USING (trip_id)"
DATA = Path(__file__).parent / "data"


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _files() -> dict[str, tuple[bytes, str]]:
    """uri -> (bytes, what it is)."""
    import skimage.data

    files: dict[str, tuple[bytes, str]] = {}
    for name in PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)())
        original = _jpeg(img)
        files[f"orig/{name}.jpg"] = (original, "orig")
        files[f"copy/{name}.jpg"] = (original, "copy")
        files[f"dark/{name}.jpg"] = (_jpeg(Image.eval(img, lambda v: int(v * 0.08))), "dark")
        files[f"blur/{name}.jpg"] = (_jpeg(img.filter(ImageFilter.GaussianBlur(8))), "blur")
        smaller = img.resize((img.width * 4 // 5, img.height * 4 // 5), Image.Resampling.LANCZOS)
        files[f"re/{name}.jpg"] = (_jpeg(smaller, 55), "re")
    png = io.BytesIO()
    Image.fromarray(__import__("skimage.data").data.astronaut()).save(png, "PNG")
    files["bad/cut.png"] = (png.getvalue()[: len(png.getvalue()) * 4 // 5], "corrupt")
    files["bad/cut.jpg"] = (files["orig/coffee.jpg"][0][:9000], "corrupt")
    files["bad/junk.jpg"] = (b"this is not a picture", "corrupt")
    files["notes/readme.txt"] = (b"hello", "other")
    return files


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("studio")
    files = _files()
    for uri, (data, _) in files.items():
        (root / "pics" / uri).parent.mkdir(parents=True, exist_ok=True)
        (root / "pics" / uri).write_bytes(data)
    uris = sorted(files) + ["gone/missing.jpg"]
    rng = np.random.default_rng(7)
    trips = [(i, ["rain", "clear", "fog"][i % 3], ["north", "south"][i % 2]) for i in range(6)]
    shots = [(k, int(rng.integers(0, 6)), uri) for k, uri in enumerate(uris)]
    shots += [(len(shots) + k, int(rng.integers(0, 6)), uri) for k, uri in enumerate(uris[::4])]
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE TABLE trips (trip_id INTEGER, weather VARCHAR, site VARCHAR)")
        con.executemany("INSERT INTO trips VALUES (?, ?, ?)", trips)
        con.execute("CREATE TABLE shots (shot_id INTEGER, trip_id INTEGER, uri VARCHAR)")
        con.executemany("INSERT INTO shots VALUES (?, ?, ?)", shots)
    catalog = {"sources": {"wh": {"kind": "duckdb", "path": str(root / "warehouse.duckdb")},
                           "pics": {"kind": "files", "root": str(root / "pics")}},
               "tables": {"shots": {"source": "wh", "table": "shots"},
                          "trips": {"source": "wh", "table": "trips"}},
               "blobs": {"shots.uri": "pics"}}
    status = {uri: "missing" if uri not in files else "corrupt" if files[uri][1] == "corrupt"
              else "ok" for uri in uris}
    return {"root": root, "catalog": catalog, "files": files, "status": status}


@pytest.fixture(scope="module")
def con(studio):
    with fedquery.connect(studio["catalog"]) as connection:
        yield connection


@pytest.fixture(scope="module")
def joined(con):
    return con.profile(JOINED, by="weather")


def _truth(studio: dict, by: list[str]) -> dict[tuple, dict[str, int]]:
    """Per group: distinct files, and how many are ok / missing / corrupt, from plain DuckDB
    over the warehouse and this module's own list of files."""
    ref = duckdb.connect()
    ref.execute(f"ATTACH '{studio['root'] / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    keys = ", ".join(f"t.{name}" for name in by)
    pairs = ref.execute(f"SELECT DISTINCT s.uri, {keys} FROM wh.shots s "
                        "JOIN wh.trips t USING (trip_id)").fetchall()
    truth: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for uri, *group in pairs:
        truth[tuple(group)]["files"] += 1
        truth[tuple(group)][studio["status"][uri]] += 1
    return truth


def _groups(profile, by: list[str]) -> dict[tuple, dict[str, int]]:
    return {tuple(g[name] for name in by): {k: g[k] for k in ("files", "ok", "missing", "corrupt")
                                            if g[k]} for g in profile.groups.to_pylist()}


def test_groups_by_a_column_of_another_table_equal_the_truth(studio, joined) -> None:
    truth = _truth(studio, ["weather"])
    assert _groups(joined, ["weather"]) == {k: dict(v) for k, v in truth.items()}
    assert joined.by == ["weather"] and joined.column == "uri"
    assert joined.summary["total"] == len(studio["status"])
    assert joined.summary["missing"] == 1 and joined.summary["corrupt"] == 3


def test_groups_by_a_list_of_columns_equal_the_truth(studio, con) -> None:
    profile = con.profile(JOINED, by=["weather", "site"])
    truth = _truth(studio, ["weather", "site"])
    assert _groups(profile, ["weather", "site"]) == {k: dict(v) for k, v in truth.items()}
    files = profile.to_arrow()
    assert files.column_names[:3] == ["uri", "weather", "site"]
    assert files.num_rows == sum(v["files"] for v in truth.values())


def test_width_height_and_format_equal_pillows(studio, joined) -> None:
    checked = set()
    for row in joined.to_arrow().to_pylist():
        if row["kind"] == "image" and row["status"] == "ok":
            with Image.open(studio["root"] / "pics" / row["uri"]) as img:
                assert (row["width"], row["height"], row["format"]) == (*img.size, img.format)
            assert row["bytes"] == (studio["root"] / "pics" / row["uri"]).stat().st_size
            checked.add(row["uri"])
    assert len(checked) == 5 * len(PHOTOS)


def test_every_exact_duplicate_found(studio, joined) -> None:
    by_hash = defaultdict(set)
    for uri, (data, _) in studio["files"].items():
        by_hash[hashlib.sha256(data).hexdigest()].add(uri)
    truth = {frozenset(s) for s in by_hash.values() if len(s) > 1}
    sets = defaultdict(set)
    for row in joined.to_arrow().to_pylist():
        if row["duplicate_set"] is not None:
            sets[row["duplicate_set"]].add(row["uri"])
    assert {frozenset(s) for s in sets.values()} == truth and len(truth) == len(PHOTOS)
    assert joined.summary["duplicates"] == {"sets": len(PHOTOS), "files": 2 * len(PHOTOS)}


def test_reencoded_copies_are_near_duplicates(joined) -> None:
    near = {r["uri"]: r["near_duplicate_set"] for r in joined.to_arrow().to_pylist()}
    for name in PHOTOS:
        assert near[f"re/{name}.jpg"] is not None
        assert near[f"re/{name}.jpg"] == near[f"orig/{name}.jpg"] == near[f"copy/{name}.jpg"]


def test_near_duplicate_sets_equal_a_brute_force_reference(joined) -> None:
    """Files share a set exactly when a chain of perceptual hashes, each within
    NEAR_DUPLICATE_BITS of the next, joins them (every pair compared here)."""
    from fedquery.profile import NEAR_DUPLICATE_BITS

    rows = {r["uri"]: r for r in joined.to_arrow().to_pylist() if r["phash"] is not None}
    uris = sorted(rows)
    group = {u: {u} for u in uris}
    apart = set()
    for a in uris:
        for b in uris:
            bits = ((rows[a]["phash"] ^ rows[b]["phash"]) & (1 << 64) - 1).bit_count()
            if a < b and bits <= NEAR_DUPLICATE_BITS:
                apart.add(bits)
            if a < b and bits <= NEAR_DUPLICATE_BITS and group[a] is not group[b]:
                merged = group[a] | group[b]
                for u in merged:
                    group[u] = merged
    truth = {frozenset(g) for g in group.values() if len(g) > 1}
    found = defaultdict(set)
    for u in uris:
        if rows[u]["near_duplicate_set"] is not None:
            found[rows[u]["near_duplicate_set"]].add(u)
    assert {frozenset(g) for g in found.values()} == truth
    assert any(len(g) > 3 for g in truth)  # copies, re-encodings and dark copies joined
    assert max(apart) > 0  # and some joined hashes differ: near, not equal


def _reference(path: Path) -> tuple[float, float, float]:
    """Mean luma of the full decode, and the Laplacian variance and luma deviation of the grey
    image shrunk to a long side of 512 (numpy, not fedquery)."""
    with Image.open(path) as img:
        grey = img.convert("L")
    luma = np.asarray(grey, np.float64) / 255
    scale = 512 / max(grey.size)
    if scale < 1:
        grey = grey.resize((round(grey.width * scale), round(grey.height * scale)),
                           Image.Resampling.BOX)
    g = np.asarray(grey, np.float64) / 255
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(luma.mean()), float(lap.var()), float(g.std())


def test_dark_and_blurry_flags_agree_with_a_reference(studio, joined) -> None:
    rows = {r["uri"]: r for r in joined.to_arrow().to_pylist()}
    for name in PHOTOS:
        for kind in ("orig", "dark", "blur"):
            uri = f"{kind}/{name}.jpg"
            brightness, sharpness, contrast = _reference(studio["root"] / "pics" / uri)
            assert rows[uri]["dark"] is (kind == "dark") is (brightness < 0.2), uri
            assert rows[uri]["blurry"] is image_content.blurry(sharpness, contrast), uri
            if kind != "dark":  # a dark JPEG copy loses fine detail too: either way
                assert rows[uri]["blurry"] is (kind == "blur"), uri
            assert rows[uri]["brightness"] == pytest.approx(brightness, abs=0.02)
    assert rows["orig/camera.jpg"]["grayscale"] and not rows["orig/coffee.jpg"]["grayscale"]
    assert joined.summary["flags"]["dark"] == len(PHOTOS)
    dark_blurry = sum(rows[f"dark/{name}.jpg"]["blurry"] for name in PHOTOS)
    assert joined.summary["flags"]["blurry"] == len(PHOTOS) + dark_blurry
    assert dark_blurry < len(PHOTOS)  # sharp photos darkened are not all blurry


def test_bad_files_are_counted_with_what_is_known(joined) -> None:
    rows = {r["uri"]: r for r in joined.to_arrow().to_pylist()}
    assert rows["gone/missing.jpg"]["status"] == "missing"
    cut = rows["bad/cut.jpg"]
    assert cut["status"] == "corrupt" and cut["width"] == 600 and cut["content_hash"]
    assert rows["bad/cut.png"]["status"] == "corrupt" and "truncated" in rows["bad/cut.png"]["error"]
    assert rows["bad/junk.jpg"]["status"] == "corrupt" and rows["bad/junk.jpg"]["width"] is None
    assert rows["notes/readme.txt"]["kind"] == "other" and rows["notes/readme.txt"]["bytes"] == 5


def test_sample_is_n_distinct_files_the_same_every_run(studio, con) -> None:
    first = con.profile(JOINED, by="weather", sample=7)
    uris = first.to_arrow().column("uri").to_pylist()
    assert len(set(uris)) == 7 == first.summary["total"]
    with fedquery.connect(studio["catalog"]) as other:
        again = other.profile("shots", sample=7)
    assert set(again.to_arrow().column("uri").to_pylist()) == set(uris)
    half = con.profile("shots", sample=0.5)
    assert half.summary["total"] == round(len(studio["status"]) * 0.5)
    pairs = duckdb.connect()
    pairs.execute(f"ATTACH '{studio['root'] / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
    expected = pairs.execute("SELECT count(*) FROM wh.shots WHERE list_contains(?, uri)",
                             [uris]).fetchall()[0][0]
    assert first.summary["rows"] == expected


def test_thumbnails_are_small_jpegs_of_groups_and_flagged_files(joined) -> None:
    thumbs = joined.thumbnails
    assert thumbs and all(data.startswith(b"\xff\xd8") for data in thumbs.values())
    for data in thumbs.values():
        with Image.open(io.BytesIO(data)) as img:
            assert max(img.size) <= 128
    assert {f"dark/{n}.jpg" for n in PHOTOS} <= set(thumbs)
    assert {f"blur/{n}.jpg" for n in PHOTOS} <= set(thumbs)
    assert "bad/junk.jpg" not in thumbs


def test_embeddings_of_readable_images(joined) -> None:
    table = joined.embeddings
    ok = {r["uri"] for r in joined.to_arrow().to_pylist() if r["status"] == "ok"
          and r["kind"] == "image"}
    assert table is not None and set(table.column("uri").to_pylist()) == ok
    assert str(table.schema.field("vector").type) == "list<item: float>"
    assert {len(v) for v in table.column("vector").to_pylist()} == {64}


def test_image_stats_filters_in_sql(studio, con) -> None:
    dark = con.sql("SELECT DISTINCT uri FROM shots WHERE (image_stats(uri)).dark ORDER BY uri")
    assert [u for (u,) in dark.fetchall()] == sorted(f"dark/{n}.jpg" for n in PHOTOS)
    row = con.sql("SELECT image_stats(uri) AS s FROM shots WHERE uri = 'orig/rocket.jpg' "
                  "LIMIT 1").fetchall()[0][0]
    assert (row["width"], row["height"]) == (640, 427) and row["error"] is None
    assert row["content_hash"] == image_content.content_hash(studio["files"]["orig/rocket.jpg"][0])
    missing = con.sql("SELECT image_stats(uri).error FROM shots WHERE uri LIKE 'gone/%'").fetchall()
    assert missing[0][0].startswith("file not found")


def test_image_info_finds_a_png_cut_past_its_prefix(studio, con) -> None:
    size = (studio["root"] / "pics" / "bad" / "cut.png").stat().st_size
    assert size > 64 * 1024
    error = con.sql("SELECT image_info(uri).error FROM shots WHERE uri = 'bad/cut.png' "
                    "LIMIT 1").fetchall()[0][0]
    assert error == "truncated: PNG has no IEND chunk at its end"
    whole = con.sql("SELECT image_info(uri).error FROM shots WHERE uri = 'orig/coffee.jpg' "
                    "LIMIT 1").fetchall()[0][0]
    assert whole is None


LASPY = sorted((DATA / "laspy").glob("*.la[sz]"))


@pytest.mark.skipif(not LASPY, reason="no laspy sample files")
def test_pointcloud_stats_and_profile_of_laspy_files() -> None:
    laspy = pytest.importorskip("laspy")
    catalog = {"sources": {"las": {"kind": "files", "root": str(DATA / "laspy")}},
               "tables": {"las_files": {"source": "las"}}}
    with fedquery.connect(catalog) as con:
        rows = con.sql("SELECT uri, pointcloud_stats(uri) AS s FROM las_files "
                       "WHERE extension IN ('las', 'laz') ORDER BY uri").fetchall()
        profile = con.profile("las")
    measured = {r["uri"]: r for r in profile.to_arrow().to_pylist()}
    for uri, stats in rows:
        las = laspy.read(DATA / "laspy" / uri)
        assert stats["points"] == len(las.points) == measured[uri]["points"], uri
        assert stats["max_x"] == pytest.approx(float(np.max(las.x))), uri
        assert measured[uri]["bytes"] == (DATA / "laspy" / uri).stat().st_size
    assert profile.summary["pointclouds"]["count"] == len(rows)
    assert profile.summary["kinds"] == {"pointcloud": len(rows), "other": 1}  # LICENSE.txt


@pytest.mark.parametrize(("args", "message"), [
    ((JOINED, None, "weathr"), "the query's output has no column 'weathr' (did you mean 'weather'?"),
    (("SELECT s.uri AS a, s.uri AS b FROM shots s",), "several blob columns (a, b)"),
    (("SELECT trip_id FROM trips",), "has no blob column"),
    ((JOINED, None, ["weather", "weather"]), "names column 'weather' twice"),
    ((JOINED, None, None, 1.5), "sample must be a positive count or a fraction"),
])
def test_profile_errors_name_the_candidates(con, args, message: str) -> None:
    with pytest.raises(fedquery.PlanError) as info:
        con.profile(*args)
    assert message in str(info.value)


def test_cli_profile_prints_a_summary_and_groups(studio, tmp_path: Path, capsys) -> None:
    import yaml

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(studio["catalog"]))
    page = tmp_path / "p.html"
    assert main(["profile", str(catalog), JOINED, "--by", "weather,site", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    total = len(studio["status"])
    assert f"{total} files, {total - 4} ok, 1 missing, 3 corrupt" in out
    with fedquery.connect(studio["catalog"]) as con:
        blurry = con.profile(JOINED).summary["flags"]["blurry"]
    assert f"dark {len(PHOTOS)}, overexposed 0, blurry {blurry}" in out
    assert f"duplicates     {len(PHOTOS)} sets of {2 * len(PHOTOS)} files" in out
    assert "weather | site  | files" in out and page.read_text().startswith("<!doctype html>")
    assert main(["profile", str(catalog), "shots", "--by", "weather"]) == 1
    assert "has no column 'weather'" in capsys.readouterr().err


def test_progress_shows_on_a_terminal_only(con, monkeypatch, capsys) -> None:
    from fedquery import profile_measure

    con.profile("shots", sample=3)
    assert capsys.readouterr().err == ""  # not a terminal, not Jupyter: quiet
    monkeypatch.setattr(profile_measure, "interactive_stderr", lambda: True)
    con.profile("shots", sample=3)
    err = capsys.readouterr().err
    assert "profile shots" in err and "0/3 [" in err and "file/s" in err
