"""The live explorer driven in headless Chromium (Debian's, through Playwright) as a person
would use it: upload a photo, choose Grad-CAM on a layer, wait for the map, hover and click a
unit, search the dataset for neighbours; no console error, no failed or outside request."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl

from .conftest import needs_chromium
from .serve_helpers import Process, command_server

pytest.importorskip("playwright.sync_api")
pytestmark = [needs_chromium, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    base = tmp_path_factory.mktemp("explorer")
    data = base / "photos"
    for label, names in {"cats": ["chelsea"], "things": ["coffee", "rocket", "astronaut", "motorcycle"]}.items():
        (data / label).mkdir(parents=True)
        for name in names:
            vl.load_image(name).resize((200, 150)).save(data / label / f"{name}.jpg")
    with command_server(base / "cache", "--dataset", str(data), "--unit-steps", "24") as process:
        yield process


def test_a_person_explores_a_photo(browser, server: Process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photo = tmp_path / "my cat.jpg"
    vl.load_image("chelsea").save(photo, quality=90)
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.on("request", lambda r: r.url.startswith((server.base, "data:")) or problems.append(f"outside: {r.url}"))
    page.goto(server.base + "/", wait_until="load")
    page.wait_for_function("() => document.querySelectorAll('#layer option').length > 10")
    assert page.locator("#classes option").count() == 1000  # class names for the target's autocomplete

    page.set_input_files("#file", str(photo))
    page.wait_for_function("() => !document.getElementById('explain').disabled")
    page.wait_for_function("() => document.getElementById('preview').naturalWidth === 224")
    page.select_option("#layer", "blocks.5")
    page.select_option("#method", "gradcam")
    page.fill("#target", "tabby, tabby cat")
    page.click("#explain")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function(
        "() => document.getElementById('overlay').complete && document.getElementById('overlay').naturalWidth > 0"
    )
    caption = page.inner_text("#overlay-caption")
    numbers = page.inner_text("#numbers")
    assert "gradcam at blocks.5" in caption and "tabby" in caption, caption
    assert "deletion AUC 0." in numbers and "insertion AUC 0." in numbers, numbers
    assert page.locator("#curves polyline").count() == 2
    units = page.locator("#units .unit")
    assert units.count() == 12

    units.nth(0).hover()
    tip = page.locator("#unit-tip")
    tip.wait_for(state="visible")
    assert "blocks.5 unit" in tip.inner_text() and "Grad-CAM map" in tip.inner_text()
    units.nth(0).click()
    page.wait_for_selector("#unit:not([hidden])", timeout=120_000)
    loaded = "[...document.querySelectorAll('#patches img, #vis')].every(i => i.complete && i.naturalWidth > 0)"
    page.wait_for_function(f"() => document.querySelectorAll('#patches img').length === 5 && {loaded}")
    assert page.inner_text("#unit-title").startswith("Unit ") and "24 steps" in page.inner_text("#vis-caption")

    page.click("#search")
    page.wait_for_function("() => document.querySelectorAll('#nb-grid figure').length === 5", timeout=120_000)
    first = page.inner_text("#nb-grid figure:first-child figcaption")
    assert first.startswith("cats · chelsea.jpg"), first  # the nearest image to a photo of chelsea is chelsea
    page.wait_for_function(
        "() => [...document.querySelectorAll('#nb-grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#error").is_hidden()

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    assert pixels.std() > 30 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2000
    out = os.environ.get("VISIONLENS_SCREENSHOTS")
    if out:
        shutil.copy(shot, Path(out) / "explorer.png")
    page.close()
    assert problems == []


def test_long_work_shows_progress_and_can_be_cancelled(browser, server: Process) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.base + "/", wait_until="load")
    page.wait_for_function("() => document.querySelectorAll('#sample option').length > 5")
    page.select_option("#sample", "rocket")
    page.select_option("#method", "occlusion")
    page.click("#explain")
    page.wait_for_selector("#status:not([hidden])")
    page.wait_for_function("() => /forward passes/.test(document.getElementById('stage').textContent)", timeout=60_000)
    page.click("#cancel")
    page.wait_for_function("() => document.getElementById('error').textContent === 'cancelled'", timeout=30_000)
    assert page.locator("#status").is_hidden() and page.locator("#result").is_hidden()
    page.close()
    assert problems == []
