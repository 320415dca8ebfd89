"""The interactive map at a million points: written fast, loaded from file:// in Chromium, panned,
zoomed and hovered with no console error and no request beyond its own files; frame times
measured (printed with -s) and bounded generously (2 shared cores, software rendering)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from visionlens.report.core import Page, Section
from visionlens.report.html import Renderer, navigation
from visionlens.report.mapdata import MapData, atlas_layout
from visionlens.report.site import Site

from .conftest import needs_chromium

pytestmark = [needs_chromium, pytest.mark.slow]
N = 1_000_000
TILE = 16  # px: 16,384 thumbnails a sheet, 62 sheets
GROUPS = 10
VIEW = "window.VL_MAP_VIEWS['million']"
# ms of 8 whole-map draws; of one hover look-up (the grid index), averaged over 100
DRAWS = f"""() => {{ const v = {VIEW}, t = [];
  for (let i = 0; i < 8; i++) {{ const s = performance.now(); v.draw(); t.push(performance.now() - s); }}
  return t; }}"""
LOOKUP = f"""() => {{ const v = {VIEW}, r = v.canvas.getBoundingClientRect(), s = performance.now();
  for (let i = 0; i < 100; i++) v.nearest(r.width / 2 + i % 7, r.height / 2);
  return (performance.now() - s) / 100; }}"""
CENTRE = f"""() => {{ const v = {VIEW}, r = v.canvas.getBoundingClientRect();
  return v.nearest(r.width / 2, r.height / 2); }}"""


def _points(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten clusters of uneven size and spread, like a t-SNE map of ten classes."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, GROUPS, n)
    angle = groups * (2 * np.pi / GROUPS)
    centres = np.stack([np.cos(angle), np.sin(angle)], 1) * 30
    spread = 2.0 + groups[:, None] * 0.6
    return (centres + rng.standard_normal((n, 2)) * spread).astype(np.float32), groups


def _thumbs(rows: np.ndarray) -> np.ndarray:
    """A flat colour per point, from its row number: every tile differs, made by broadcasting."""
    colour = np.stack([rows * 37 % 256, rows * 91 % 256, rows * 13 % 256], 1).astype(np.uint8)
    return np.broadcast_to(colour[:, None, None, :], (len(rows), TILE, TILE, 3))


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("million")
    t0 = time.perf_counter()
    xy, groups = _points(N)
    site = Site(root, "synthetic")
    data = MapData(xy, groups=groups, group_names=[f"class {g}" for g in range(GROUPS)])
    m = site.embedding_map(
        "million", data=data, thumbs=_thumbs, thumb_px=TILE, title="A million points", caption="Synthetic clusters."
    )
    page = Page("map.html", "A million points", "Report", [Section("Map", maps=[m])], nav_text="Map")
    renderer = Renderer(site, "synthetic", navigation([page]))
    renderer.copy_assets()
    renderer.write(page)
    return root, time.perf_counter() - t0


def test_a_million_points_pan_zoom_and_hover_smoothly(browser, million: tuple[Path, float], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, write_s = million
    sheets = atlas_layout(N, TILE)[2]
    assert len(list((root / "figures" / "maps").glob("million-thumbs-*.jpg"))) == sheets
    size_mb = (root / "data" / "million.js").stat().st_size / 1e6
    assert size_mb < 20  # 8 bytes of coordinates and 2 of group per point, base64
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        t0 = time.perf_counter()
        page.goto((root / "map.html").as_uri(), wait_until="load")
        page.wait_for_function("() => window.VL_MAP_VIEWS && window.VL_MAP_VIEWS['million']")
        load_s = time.perf_counter() - t0
        v = VIEW
        assert page.evaluate(f"{v}.n") == N
        assert page.evaluate(f"{v}.mode") == "pixels" and page.evaluate(f"{v}.drawnPoints") > 0.99 * N
        view = page.locator(".embedmap[data-map='million']")
        view.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "million-whole.png"))
        # the whole map: direct draw calls, then frames driven by real input
        full = page.evaluate(DRAWS)
        box = view.bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.evaluate(f"{v}.frameTimes = []")
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 120, cy + 60, steps=20)
        page.mouse.up()
        for _ in range(6):  # zoom in, 1.8x a step, around the centre
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(30)
        page.mouse.down()
        page.mouse.move(cx - 80, cy - 40, steps=20)
        page.mouse.up()
        page.wait_for_timeout(100)
        frames = page.evaluate(f"{v}.frameTimes.slice()")
        k = page.evaluate(f"{v}.k")
        assert k > 20 and len(frames) >= 10
        shot = tmp_path / "million.png"
        page.screenshot(path=str(shot))
        # hover: the point nearest the centre after zooming, found by the grid index
        pick = page.evaluate(CENTRE)
        if pick < 0:  # nothing within 9 px of the centre: the first point well inside the view
            pick = page.evaluate(
                f"() => {{ const v = {v}; for (let i = 0; i < v.n; i++) {{ const c = v.toCanvas(i); "
                "if (c[0] > 40 && c[1] > 40 && c[0] < v.w - 200 && c[1] < v.h - 40) return i; } return -1; }"
            )
        pt = page.evaluate(f"{v}.screenPoint({pick})")
        t0 = time.perf_counter()
        hover_ms = page.evaluate(LOOKUP)
        page.mouse.move(pt["x"], pt["y"])
        tip = view.locator(".vl-tip")
        tip.wait_for(state="visible")
        assert page.evaluate(f"{v}.hovered") >= 0
        page.wait_for_function(
            "() => { const i = document.querySelector('.vl-tip img'); return i && i.complete && i.naturalWidth > 0 }"
        )
        src = page.locator(".vl-tip img").get_attribute("src") or ""
        hovered = page.evaluate(f"{v}.hovered")
        assert src == f"figures/maps/million-thumbs-{hovered // atlas_layout(N, TILE)[1]}.jpg"
        assert tip.inner_text() == f"point {hovered}"
        page.screenshot(path=str(tmp_path / "million-hover.png"))
    finally:
        page.close()
    assert not problems, problems
    assert all(u.startswith("file:") for u in requests), [u for u in requests if not u.startswith("file:")]
    sheets_loaded = [u for u in requests if "million-thumbs-" in u]
    assert len(sheets_loaded) <= 2  # on demand: the hovered point's sheet, never one request per point
    report = {
        "points": N,
        "write_s": round(write_s, 2),
        "data_mb": round(size_mb, 1),
        "load_s": round(load_s, 2),
        "full_draw_ms_median": round(statistics.median(full), 1),
        "interactive_frame_ms_median": round(statistics.median(frames), 1),
        "interactive_frame_ms_max": round(max(frames), 1),
        "frames": len(frames),
        "hover_lookup_ms": round(hover_ms, 3),
    }
    print("map at a million points:", json.dumps(report))
    assert report["full_draw_ms_median"] < 100 and report["interactive_frame_ms_median"] < 50
    assert hover_ms < 5
