"""The generated site in a real browser: headless Chromium (Debian's package) driven by
Playwright, from file:// and from a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from visionlens.report import build_report

from .conftest import CHROMIUM, needs_chromium  # noqa: F401 - test_dataset_cli imports CHROMIUM from here
from .report_helpers import EVIL, FAKE_DATASET, LAYER, TINY, image_folder

pytest.importorskip("playwright.sync_api")
# slow: the site is built once for the module (10-40 s on 2 cores), then Chromium drives it
pytestmark = [needs_chromium, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, bundled: vl.Model) -> Path:
    base = tmp_path_factory.mktemp("browser")
    out = base / "site"
    build_report(bundled, [image_folder(base / "images")], [LAYER], out, settings=TINY, extensions=[FAKE_DATASET])
    return out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


class Watched:
    """A page that records console errors, page errors, failed requests and dialogs."""

    def __init__(self, browser, root: str) -> None:  # type: ignore[no-untyped-def]
        self.root = root
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.page.on("request", self._outside)

        def dialog(d) -> None:  # type: ignore[no-untyped-def]
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", dialog)

    def _outside(self, request) -> None:  # type: ignore[no-untyped-def]
        if not request.url.startswith(self.root) and not request.url.startswith("data:"):
            self.problems.append(f"request outside the site: {request.url}")

    def open(self, rel: str) -> None:
        self.page.goto(urljoin(self.root, rel), wait_until="load")

    def close(self) -> None:
        self.page.close()

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(params=["file", "http"])
def root(request: pytest.FixtureRequest, site: Path) -> str:
    return site.as_uri() + "/" if request.param == "file" else request.getfixturevalue("server")


@pytest.fixture()
def w(browser, root: str) -> Iterator[Watched]:  # type: ignore[no-untyped-def]
    """A fresh watched page on the site (from file:// and from HTTP), closed after the test."""
    with Watched(browser, root) as watched:
        yield watched


def _pages(site: Path) -> list[str]:
    return sorted(p.name for p in site.glob("*.html"))


def test_every_page_loads_cleanly(w: Watched, site: Path) -> None:
    pages = _pages(site)
    # the overview, units, synthesis and (fake) dataset pages, one layer page, one per readable image
    fixed = {"index.html", "units.html", "synthesis.html", "dataset.html", f"layer-{LAYER}.html", "image-coffee.html"}
    assert len(pages) == 7 and fixed < set(pages), pages
    wrong = {}  # every page's faults, not only the first page's
    for name in pages:
        w.open(name)
        broken = w.page.evaluate(
            "() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        images = w.page.evaluate("() => document.images.length")
        headings = w.page.locator("h1").count()
        if broken or images == 0 or headings != 1:
            wrong[name] = {"images": images, "broken": broken, "h1": headings}
    assert not wrong
    assert not w.problems and not w.dialogs


def test_every_link_works(w: Watched, site: Path, root: str) -> None:
    seen: set[str] = set()
    ids: dict[str, set[str]] = {}
    fragments: list[tuple[str, str]] = []
    todo = ["index.html"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        w.open(name)
        ids[name] = set(w.page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        for href in w.page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"):
            assert href.startswith(root), href  # relative links only, inside the site
            parsed = urlparse(href)
            rel = unquote(href[len(root) :].split("#")[0])
            assert (site / rel).is_file(), href
            if parsed.fragment:
                fragments.append((rel, unquote(parsed.fragment)))
            if rel.endswith(".html") and rel not in seen:
                todo.append(rel)
    assert all(frag in ids[page] for page, frag in fragments), [f for f in fragments if f[1] not in ids[f[0]]]
    assert seen == set(_pages(site))  # every page reachable from the index
    # the navigation: clicking the side links lands on each page
    w.open("index.html")
    for text in ["Units", "Synthesis", "Dataset", LAYER, "coffee.jpg"]:
        w.page.locator("nav.side a", has_text=text).first.click()
        w.page.wait_for_load_state("load")
        assert w.page.locator("nav.side a.current").inner_text() == text
    assert not w.problems and not w.dialogs


def test_hover_on_the_map_shows_the_thumbnail(w: Watched) -> None:
    w.open("dataset.html")
    view = w.page.locator(".embedmap[data-map='fake-map']")
    view.scroll_into_view_if_needed()
    tip = w.page.locator(".embedmap .vl-tip")

    def hover(i: int) -> None:
        pt = w.page.evaluate(f"() => window.VL_MAP_VIEWS['fake-map'].screenPoint({i})")
        w.page.mouse.move(pt["x"], pt["y"])
        tip.wait_for(state="visible")
        assert tip.inner_text() == f"sample {i} <b>"  # a label is text, never markup
        w.page.wait_for_function(
            "() => { const i = document.querySelector('.vl-tip img'); return i.complete && i.naturalWidth > 0 }"
        )
        assert w.page.locator(".vl-tip img").get_attribute("src") == f"figures/fake-dataset/thumb-{i}.png"

    hover(5)
    w.page.mouse.move(5, 5)
    tip.wait_for(state="hidden")
    # zoom in around the map's centre, pan, then hover again where the point now is
    box = view.bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    w.page.mouse.move(cx, cy)
    w.page.mouse.wheel(0, -400)
    w.page.mouse.down()
    w.page.mouse.move(cx + 40, cy + 25, steps=4)
    w.page.mouse.up()
    assert w.page.evaluate("() => window.VL_MAP_VIEWS['fake-map'].k") > 1.5
    hover(6)
    assert not w.problems and not w.dialogs


def test_screenshot_of_the_index(w: Watched, site: Path, tmp_path: Path) -> None:
    """What Chromium draws: a page the size of the viewport with text, colour and the site's
    pictures where the page puts them."""
    w.open("index.html")
    shot = tmp_path / "index.png"
    w.page.screenshot(path=str(shot))
    with Image.open(shot) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB"), np.float32)
    view = w.page.viewport_size
    assert view is not None and pixels.shape == (view["height"], view["width"], 3)
    # not blank: measured about 31,000 colours and a standard deviation of 58
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000
    assert pixels.std() > 30
    # every picture in view shows its file, scaled to its box (measured: mean differences under
    # 6 of 255; the same comparison 5 px off is about 19, and against the background over 100)
    boxes = w.page.eval_on_selector_all(
        "img",
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [e.getAttribute('src'), r.x, r.y, r.width, r.height] })",
    )
    drawn: dict[str, float] = {}
    for src, x, y, width, height in boxes:
        x0, y0, x1, y1 = round(x), round(y), round(x + width), round(y + height)
        if y0 >= view["height"] or x0 >= view["width"] or y1 <= 0 or x1 <= 0:
            continue  # below the fold
        with Image.open(site / unquote(src)) as im:
            want = np.asarray(im.convert("RGB").resize((x1 - x0, y1 - y0), Image.BILINEAR), np.float32)
        got = pixels[y0:y1, x0:x1]
        drawn[src] = float(np.abs(got - want[: got.shape[0], : got.shape[1]]).mean())
    assert len(drawn) >= 2 and all(d < 12 for d in drawn.values()), drawn
    assert not w.problems and not w.dialogs


def test_html_in_a_file_name_is_shown_not_run(w: Watched, site: Path) -> None:
    wrong = {}
    for name in _pages(site):
        w.open(name)
        # no element came out of the file name: every <img> points into the site
        srcs = w.page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")
        outside = [s for s in srcs if not (s and s.startswith("figures/"))]
        handlers = w.page.locator("[onerror]").count()
        if outside or handlers:
            wrong[name] = {"img src outside figures/": outside, "onerror attributes": handlers}
    assert not wrong
    w.open("index.html")
    # shown as text: the side link, the image card's heading and its thumbnail's title
    assert w.page.get_by_text(EVIL, exact=True).count() == 3
    w.page.locator("nav.side a", has_text=EVIL).click()
    w.page.wait_for_load_state("load")
    assert w.page.locator("h1").inner_text() == EVIL
    assert not w.dialogs and not w.problems


@pytest.mark.parametrize("arch", ["vit_small", "swin_tiny", "convnext_tiny", "resnet50"])
def test_report_on_other_architectures(arch: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The report at its default layers on a transformer, a channels-last Swin, a GELU CNN and a
    ResNet (random weights, 64 px): every page loads without errors, every image is drawn, and
    every figure is a real picture."""
    from dataclasses import replace

    from visionlens.report.dataset_page import extension

    from .archs import MATRIX

    settings = replace(TINY, occlusion_window=32, occlusion_stride=32)
    out = tmp_path / "site"
    build_report(MATRIX[arch](), ["chelsea", "coffee"], None, out, settings=settings, extensions=[extension("samples")])
    figures = [p for p in (out / "figures").rglob("*.png") if "thumbs" not in p.parts]
    blank = [str(p.relative_to(out)) for p in figures if np.asarray(Image.open(p).convert("L"), np.float32).std() < 2]
    assert len(figures) > 30 and not blank, (len(figures), blank)
    with Watched(browser, out.as_uri() + "/") as w:
        wrong = {}
        for name in _pages(out):
            w.open(name)
            broken = w.page.evaluate(
                "() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            if broken or w.page.locator("h1").count() != 1:
                wrong[name] = broken
        assert not wrong and not w.problems and not w.dialogs, (wrong, w.problems)
        assert {"dataset.html", "units.html", "synthesis.html"} < set(_pages(out))
