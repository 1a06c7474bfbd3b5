"""The profile report (fedquery.profile_report) on profiles of real files, shaped as the
issue-9 Profile model (tests/report_profiles.py builds them with the real measures)."""

from __future__ import annotations

import base64
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA

from fedquery import profile_report, report_files
from fedquery.profile_report import MAP_POINTS, MAX_GROUPS, render_html, render_page
from fedquery.report_svg import BINS, BOTTOM, HEIGHT, TOP, Series, histogram_svg
from tests import report_profiles as rp
from tests.html_tree import Node, parse

HOSTILE = "<script>alert('w')</script>"


@pytest.fixture(scope="module")
def weather(tmp_path_factory: pytest.TempPathFactory) -> rp.ModelProfile:
    root = tmp_path_factory.mktemp("weather")
    return rp.build(root, rp.weather_set(root), ["weather"])


@pytest.fixture(scope="module")
def page(weather: rp.ModelProfile) -> Node:
    return parse(render_page(weather))


def _label(value: object) -> str:
    return "(null)" if value is None else str(value)


def _rows(profile: rp.ModelProfile) -> list[dict]:
    return profile.to_arrow().to_pylist()


# ---------------------------------------------------------------- histograms


def test_a_histogram_per_measure_with_a_step_line_per_group(weather: rp.ModelProfile, page: Node) -> None:
    charts = {svg.attrs["data-measure"]: svg for svg in page.iter("svg", class_="fq-hist")}
    assert set(charts) == {name for name, _ in profile_report.MEASURES}
    for name in ("brightness", "points", "bytes"):
        expected = Counter(_label(r["weather"]) for r in _rows(weather)
                           if r["status"] == "ok" and r[name] is not None)
        drawn = {}
        for line in charts[name].all("polyline"):
            label, count = line.one("title").text.rsplit(": ", 1)
            drawn[label] = int(count.split()[0].replace(",", ""))
        assert drawn == dict(expected), name


def test_bars_count_the_values_of_one_group() -> None:
    svg = parse(histogram_svg("x", [Series("all", "#000", np.array([1.0, 1, 1, 2, 5]))]))
    plot = HEIGHT - TOP - BOTTOM
    heights = [round(float(r.attrs["height"]) / plot * 3, 6) for r in svg.all("rect")]
    assert heights == [3, 1, 1]  # the tallest bar is the y axis' top: 3
    assert "3" in [t.text for t in svg.all("text")]


def test_values_spanning_decades_get_log_bins() -> None:
    values = np.array([10.0 ** (k / 4) for k in range(17)])  # 1 .. 10,000, evenly in log
    svg = parse(histogram_svg("bytes", [Series("all", "#000", values)], unit="bytes"))
    assert "(log scale)" in svg.one("text", font_weight="bold").text
    assert len(svg.all("rect")) == min(BINS, len(values))  # evenly spread: no bin is empty


# ---------------------------------------------------------------- thumbnails


def _decoded(img: Node) -> bytes:
    src = img.attrs["src"]
    assert src.startswith("data:image/jpeg;base64,")
    return base64.b64decode(src.split(",", 1)[1])


def test_a_thumbnail_grid_per_group_of_the_profiles_thumbnails(weather: rp.ModelProfile, page: Node) -> None:
    section = page.one("section", class_="fq-thumbnails")
    files = defaultdict(list)
    for r in _rows(weather):
        files[_label(r["weather"])].append(r["uri"])
    groups = section.all("div", class_="fq-group")
    assert sorted(g.attrs["data-group"] for g in groups) == sorted(files)
    for group in groups:
        expected = [u for u in dict.fromkeys(files[group.attrs["data-group"]]) if u in weather.thumbnails]
        expected = expected[:report_files.THUMBS_SHOWN]
        figures = group.all("figure")
        assert [f.attrs["title"] for f in figures] == expected
        for figure in figures:
            assert _decoded(figure.one("img")) == weather.thumbnails[figure.attrs["title"]]


def test_flagged_files_each_with_its_thumbnail_and_uri(weather: rp.ModelProfile, page: Node) -> None:
    section = page.one("section", class_="fq-flagged")
    rows = _rows(weather)
    for flag in report_files.FLAGS + report_files.STATUSES:
        expected = list(dict.fromkeys(r["uri"] for r in rows if r.get(flag) or r["status"] == flag))
        found = section.all("details", data_flag=flag)
        if not expected:
            assert not found, flag
            continue
        figures = found[0].all("figure")
        pictured_first = sorted(expected, key=lambda u: u not in weather.thumbnails)
        assert [f.attrs["title"] for f in figures] == pictured_first[:report_files.FLAGGED_SHOWN], flag
        for figure in figures:
            images = figure.all("img")
            assert len(images) == (figure.attrs["title"] in weather.thumbnails), figure.attrs
    missing = section.one("details", data_flag="missing")
    assert all("file not found" in f.text for f in missing.all("figure"))
    assert {"dark", "blurry", "tiny", "odd_aspect", "grayscale", "overexposed", "corrupt", "missing"} <= {
        d.attrs["data-flag"] for d in section.all("details")}


def test_duplicate_sets_are_rows_of_their_files(weather: rp.ModelProfile, page: Node) -> None:
    section = page.one("section", class_="fq-duplicates")
    for column in ("duplicate_set", "near_duplicate_set"):
        sets = defaultdict(list)
        for r in _rows(weather):
            if r[column] is not None and r["uri"] not in sets[r[column]]:
                sets[r[column]].append(r["uri"])
        expected = sorted(sorted(s) for s in sets.values() if len(s) > 1)
        shown = sorted(sorted(f.attrs["title"] for f in row.all("figure"))
                       for row in section.all("div", class_="fq-set", data_kind=column))
        assert shown == expected and expected, column
    exact = [sorted(f.attrs["title"] for f in row.all("figure"))
             for row in section.all("div", data_kind="duplicate_set")]
    assert ["rain/copy-of-original.jpg", "rain/original.jpg"] in exact


def test_header_counts_are_the_summarys(weather: rp.ModelProfile, page: Node) -> None:
    tiles = {t.attrs["data-name"]: t.one("b").text for t in page.iter("div", class_="fq-tile")}
    s = weather.summary
    assert tiles["files"] == str(s["total"]) and tiles["missing"] == str(s["missing"])
    assert tiles["corrupt"] == str(s["corrupt"]) and tiles["images"] == str(s["images"]["count"])
    assert tiles["duplicate sets"] == str(s["duplicates"]["sets"])
    assert tiles["flagged"] == str(len({r["uri"] for r in _rows(weather)
                                        if any(r[f] for f in report_files.FLAGS)}))
    assert tiles["groups"] == str(weather.groups.num_rows)


# ---------------------------------------------------------------- user data


def test_uris_and_group_values_are_escaped(weather: rp.ModelProfile) -> None:
    for text in (render_html(weather), render_page(weather)):
        assert "<script" not in text.lower()
        tree = parse(text)
        assert not tree.all("script")
        assert "rain/&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in text
        assert HOSTILE in [k.text for k in tree.iter("span", class_="fq-key")]
        titles = {f.attrs["title"] for f in tree.iter("figure")}
        assert "rain/<script>alert(1)</script>.jpg" in titles  # attribute values round-trip
        assert any(HOSTILE in t.text for t in tree.iter("title"))  # SVG tooltips


def test_a_select_source_is_shown_as_its_sql(weather: rp.ModelProfile) -> None:
    sql = "SELECT f.image_uri, '<script>x</script>' AS weather\nFROM frames f"
    tree = parse(render_page(rp.ModelProfile(**{**weather.__dict__, "source": sql})))
    assert tree.one("h2").text == "Profile of image_uri from a query"
    assert tree.one("pre", class_="fq-sql").text == sql and not tree.all("script")
    assert parse(render_page(weather)).one("h2").text == "Profile of frames.image_uri"
    assert not parse(render_page(weather)).all("pre")


# ---------------------------------------------------------------- groups


def test_one_group_when_not_grouped(tmp_path: Path) -> None:
    profile = rp.build(tmp_path, rp.weather_set(tmp_path), [])
    tree = parse(render_html(profile))
    assert not tree.all("div", class_="fq-legend") and not tree.all("section", class_="fq-groups")
    brightness = tree.one("svg", data_measure="brightness")
    assert brightness.all("rect") and not brightness.all("polyline")
    groups = tree.one("section", class_="fq-thumbnails").all("div", class_="fq-group")
    assert [g.attrs["data-group"] for g in groups] == ["all files"]
    assert len(groups[0].all("img")) == report_files.THUMBS_SHOWN


def test_groups_beyond_eight_fold_into_other(tmp_path: Path) -> None:
    files = rp.many_set(tmp_path, 130, 12)
    profile = rp.build(tmp_path, files, ["city"])
    labels, shown = profile_report.group_labels(profile.to_arrow(), ["city"])
    sizes = Counter(values["city"] for _, values in files)
    kept = sorted(sizes, key=lambda c: (-sizes[c], c))[:MAX_GROUPS]
    assert shown == [*kept, "other (4 groups)"]
    assert Counter(labels)["other (4 groups)"] == sum(n for c, n in sizes.items() if c not in kept)
    tree = parse(render_html(profile))
    assert [k.text for k in tree.iter("span", class_="fq-key")] == shown
    brightness = tree.one("svg", data_measure="brightness")
    assert len(brightness.all("polyline")) == MAX_GROUPS + 1


def test_a_by_column_that_clashes_with_a_measure_is_read_from_by_name(tmp_path: Path) -> None:
    files = [(u, {"format": "mine", **v}) for u, v in rp.weather_set(tmp_path)]
    profile = rp.build(tmp_path, files, ["format", "weather"])
    assert "by_format" in profile.to_arrow().column_names
    labels, shown = profile_report.group_labels(profile.to_arrow(), ["format", "weather"])
    assert set(shown) == {"mine · rain", "mine · clear", f"mine · {HOSTILE}", "mine · (null)"}


# ---------------------------------------------------------------- the embedding map


def test_pca_agrees_with_sklearn() -> None:
    vectors = np.random.default_rng(1).normal(size=(300, 12)) * np.arange(1, 13)
    points, explained = profile_report.pca_2d(vectors)
    reference = PCA(n_components=2).fit(vectors)
    expected = reference.transform(vectors)
    assert np.allclose(np.abs(points), np.abs(expected), atol=1e-8)  # up to each axis' sign
    assert np.allclose(explained, reference.explained_variance_ratio_)


def test_embedding_map_has_a_dot_per_file_coloured_by_its_group(weather: rp.ModelProfile, page: Node) -> None:
    colours = {k.text: k.one("i").attrs["style"].split(":")[1] for k in page.iter("span", class_="fq-key")}
    dots = page.one("svg", class_="fq-map").all("circle")
    assert len(dots) == weather.embeddings.num_rows
    group = {}
    for r in _rows(weather):
        group[r["uri"]] = _label(r["weather"])  # a file in two groups takes its last
    for dot in dots:
        uri = dot.one("title").text.rsplit(" (", 1)[0]
        assert dot.attrs["fill"] == colours[group[uri]]


def test_embedding_map_draws_a_capped_sample(weather: rp.ModelProfile) -> None:
    n = MAP_POINTS + 700
    vectors = np.random.default_rng(2).normal(size=(n, 16)).astype(np.float32)
    embeddings = pa.table({"uri": [f"x/{i}.jpg" for i in range(n)],
                           "vector": pa.array(vectors.tolist(), pa.list_(pa.float32()))})
    profile = rp.ModelProfile(**{**weather.__dict__, "embeddings": embeddings})
    tree = parse(render_html(profile))
    assert len(tree.one("svg", class_="fq-map").all("circle")) == MAP_POINTS
    assert f"{MAP_POINTS:,} of {n:,} embeddings" in tree.one("section", class_="fq-map").text


def test_no_map_without_embeddings(weather: rp.ModelProfile) -> None:
    profile = rp.ModelProfile(**{**weather.__dict__, "embeddings": None})
    assert not parse(render_html(profile)).all("section", class_="fq-map")


# ---------------------------------------------------------------- a page that stands alone


def test_page_loads_nothing_from_outside(page: Node, weather: rp.ModelProfile) -> None:
    text = render_page(weather)
    assert text.startswith("<!doctype html>")
    csp = page.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert not page.all("link") and not page.all("script") and "url(" not in text
    sources = [n.attrs.get(a) for n in page.iter() for a in ("src", "href") if n.attrs.get(a)]
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert set(re.findall(r"https?://[^\"' ]+", text)) == {"http://www.w3.org/2000/svg"}  # a name


def test_page_of_many_files_stays_small(tmp_path: Path) -> None:
    profile = rp.build(tmp_path, rp.many_set(tmp_path, 1500, 20), ["city"])
    assert len(profile.thumbnails) > 200  # the model's caps: 12 a group and 60 flagged
    text = render_page(profile)
    tree = parse(text)
    assert len(text) < 1_500_000, len(text)
    assert len(tree.all("img")) <= (MAX_GROUPS + 1) * report_files.THUMBS_SHOWN \
        + len(report_files.FLAGS) * report_files.FLAGGED_SHOWN \
        + 2 * report_files.SETS_SHOWN * report_files.SET_MEMBERS_SHOWN
    assert len(tree.one("svg", class_="fq-map").all("circle")) == profile.embeddings.num_rows
    dark = tree.one("details", data_flag="dark")
    assert "150 files (24 shown)" in dark.one("summary").text
    assert all(f.all("img") for f in dark.all("figure"))  # the pictured ones come first


def test_thumbnails_beyond_the_byte_budget_are_left_out(weather: rp.ModelProfile) -> None:
    noise = np.random.default_rng(4).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    big = rp.jpeg(rp.Image.fromarray(noise), 95)
    thumbs = dict.fromkeys(weather.thumbnails, big)
    text = render_page(rp.ModelProfile(**{**weather.__dict__, "thumbnails": thumbs}))
    shown = len(parse(text).all("img"))
    assert 0 < shown < len(thumbs)
    assert len(text) < report_files.IMAGE_BUDGET + 400_000
    assert "thumbnails left out to keep the page under" in text


def test_bytes_that_are_not_an_image_are_never_embedded(weather: rp.ModelProfile) -> None:
    thumbs = dict.fromkeys(weather.thumbnails, b"<svg onload=alert(1)>")
    tree = parse(render_html(rp.ModelProfile(**{**weather.__dict__, "thumbnails": thumbs})))
    assert not tree.all("img")
