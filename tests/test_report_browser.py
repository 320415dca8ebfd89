"""The generated site in a real browser: headless Chromium (Debian's package) driven by
Playwright, from file:// and from a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

import visionlens as vl
from visionlens.report import build_report

from .report_helpers import EVIL, FAKE_DATASET, LAYER, TINY, image_folder

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (make test installs it)",
)


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


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


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


@pytest.fixture(params=["file", "http"])
def root(request: pytest.FixtureRequest, site: Path) -> str:
    return site.as_uri() + "/" if request.param == "file" else request.getfixturevalue("server")


def _pages(site: Path) -> list[str]:
    return sorted(p.name for p in site.glob("*.html"))


def test_every_page_loads_cleanly(browser, site: Path, root: str) -> None:  # type: ignore[no-untyped-def]
    w = Watched(browser, root)
    try:
        assert len(_pages(site)) >= 7
        for name in _pages(site):
            w.open(name)
            broken = w.page.evaluate(
                "() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            count = w.page.evaluate("() => document.images.length")
            assert count > 0 and not broken, (name, broken)
            assert w.page.locator("h1").count() == 1
        assert not w.problems and not w.dialogs
    finally:
        w.close()


def test_every_link_works(browser, site: Path, root: str) -> None:  # type: ignore[no-untyped-def]
    w = Watched(browser, root)
    try:
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
    finally:
        w.close()


def test_hover_on_the_map_shows_the_thumbnail(browser, root: str) -> None:  # type: ignore[no-untyped-def]
    w = Watched(browser, root)
    try:
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
    finally:
        w.close()


def test_screenshot_of_the_index(browser, root: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w = Watched(browser, root)
    try:
        w.open("index.html")
        shot = tmp_path / "index.png"
        w.page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    finally:
        w.close()


def test_html_in_a_file_name_is_shown_not_run(browser, site: Path, root: str) -> None:  # type: ignore[no-untyped-def]
    w = Watched(browser, root)
    try:
        for name in _pages(site):
            w.open(name)
            # no element came out of the file name: every <img> points into the site
            srcs = w.page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")
            assert all(s and s.startswith("figures/") for s in srcs), (name, srcs)
            assert w.page.locator("[onerror]").count() == 0
        w.open("index.html")
        assert w.page.get_by_text(EVIL, exact=True).count() >= 1  # shown as text
        w.page.locator("nav.side a", has_text=EVIL).click()
        w.page.wait_for_load_state("load")
        assert w.page.locator("h1").inner_text() == EVIL
        assert not w.dialogs and not w.problems
    finally:
        w.close()
