"""The profile report and an executed notebook, opened in a real headless Chromium.

Debian's ``chromium`` (``.ci/run`` installs it when missing), driven by playwright. Each page
is opened from a file:// URL and must show every picture (each ``<img>`` complete with a
natural width), hold its SVG histograms, log no console error, and ask for nothing but
``file:`` and ``data:`` URLs. Without Chromium or playwright the tests skip on a developer's
machine and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fedquery.profile_report import render_page
from tests import report_profiles as rp
from tests.html_tree import parse
from tests.notebooks import executed, has_profile_api, jupyter_modules

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
LOCAL = ("file:", "data:")
IMAGES = "Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth}))"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: the browser tests must run in CI (.ci/run installs chromium)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        _missing("no chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (the dev extras)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@dataclass
class Visit:
    """What a page did once loaded: its images, its console errors, the URLs it asked for."""

    images: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    histograms: int = 0

    def broken(self) -> list[dict]:
        return [i for i in self.images if not i["complete"] or i["width"] == 0]

    def outside(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL)]


def visit(browser, path: Path) -> Visit:
    seen = Visit()
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("request", lambda r: seen.requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL)
               else route.abort())  # nothing leaves the machine, even if a page asks
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    seen.images = page.evaluate(IMAGES)
    seen.histograms = page.evaluate("document.querySelectorAll('svg.fq-hist').length")
    page.close()
    return seen


def test_the_checks_catch_a_broken_image_and_a_request_out(browser, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><img src="data:image/png;base64,AAAA">'
                    '<img src="http://127.0.0.1:9/x.png">')
    seen = visit(browser, page)
    assert len(seen.broken()) == 2
    assert seen.outside() == ["http://127.0.0.1:9/x.png"] and seen.errors


def test_saved_report_renders_every_image(browser, tmp_path: Path) -> None:
    root = tmp_path / "files"
    profile = rp.build(root, rp.weather_set(root), ["weather"])
    page = tmp_path / "report.html"
    page.write_text(render_page(profile), encoding="utf-8")
    seen = visit(browser, page)
    assert len(seen.images) == len(parse(page.read_text()).all("img")) > 20
    assert not seen.broken(), seen.broken()
    assert seen.histograms == 10  # brightness ... bytes, points, density
    assert seen.errors == [] and seen.outside() == []


def test_saved_report_of_a_real_profile(browser, tmp_path: Path) -> None:
    if not has_profile_api():
        pytest.skip("fedquery.profile has no Profile.thumbnails/embeddings yet (issue-9 profile)")
    import fedquery
    from fedquery.sample_data.generate import build

    catalog = build(tmp_path / "sample")
    with fedquery.connect(catalog) as con:
        profile = con.profile("SELECT f.image_uri, d.weather FROM frames f JOIN drives d USING (drive_id)",
                              column="image_uri", by="weather")
        profile.save_html(tmp_path / "weather.html")
    seen = visit(browser, tmp_path / "weather.html")
    assert len(seen.images) > 40 and not seen.broken()
    assert seen.histograms >= 8 and seen.errors == [] and seen.outside() == []


def notebook_page(nb, path: Path) -> Path:
    """The executed notebook as an HTML page: nbconvert's basic template (its full templates
    load require.js and MathJax from a CDN) in a page of its own."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        _missing("nbconvert is not installed (the dev extras)")
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    path.write_text(f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{path.stem}'
                    f"</title></head><body>{body}</body></html>", encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["profiling", "sql_from_python"])
def test_executed_notebook_renders_every_image(browser, tmp_path_factory, tmp_path: Path, name: str) -> None:
    jupyter_modules()
    page = notebook_page(executed(name, tmp_path_factory), tmp_path / f"{name}.html")
    seen = visit(browser, page)
    assert seen.images and not seen.broken(), seen.broken()
    assert seen.errors == [] and seen.outside() == []
    if name == "profiling" and has_profile_api():
        assert seen.histograms >= 8 and len(seen.images) > 40  # the report in the notebook
